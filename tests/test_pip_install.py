"""scripts/pip_install.py, which the Makefile installs with: compact lines, pip's whole output and
its exit status on failure. Offline (--no-index): nothing is downloaded."""

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pip_install.py"


def install(*args):
    return subprocess.run([sys.executable, str(SCRIPT), "--no-index", *args], capture_output=True,
                          text=True, timeout=120)


def test_what_is_already_there_is_counted_not_listed():
    res = install("--dry-run", "pip")
    assert res.returncode == 0, res.stdout
    assert re.fullmatch(r"  0 installed, 1 already there, in \d+ s\n", res.stdout), res.stdout


def test_a_failure_shows_pips_whole_output_and_exit_status():
    res = install("no-such-package-of-bragg-service")
    assert res.returncode == 1
    assert "pip failed (exit 1) after" in res.stdout
    assert "No matching distribution found for no-such-package-of-bragg-service" in res.stdout

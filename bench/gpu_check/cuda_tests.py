"""Section ``tests``: the suite's CUDA-marked tests (``pytest -m cuda``), one pytest run.

The files are those that use the ``cuda`` marker, so that the rest of the suite (and the test
tools only it needs) stays out of the GPU window. Counts come from pytest's JUnit XML.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from .cases import ROOT


def cuda_test_files() -> list[Path]:
    return sorted(p for p in (ROOT / "tests").rglob("test_*.py")
                  if "pytest.mark.cuda" in p.read_text(errors="replace"))


def junit_counts(path: Path) -> dict:
    """passed / failed / errors / skipped and the failing and skipped tests of a JUnit XML file."""
    root = ET.parse(path).getroot()
    out = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": [], "skips": {}}
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        kinds = {c.tag for c in case}
        if "failure" in kinds:
            out["failed"] += 1
            out["failures"].append(name)
        elif "error" in kinds:
            out["errors"] += 1
            out["failures"].append(name)
        elif "skipped" in kinds:
            out["skipped"] += 1
            reason = next(c.get("message", "") for c in case if c.tag == "skipped")
            out["skips"][reason] = out["skips"].get(reason, 0) + 1
        else:
            out["passed"] += 1
    return out


def run(ctx: dict, emit) -> None:
    files = cuda_test_files()
    emit.info(files=[str(p.relative_to(ROOT)) for p in files])
    xml = Path(ctx["work"]) / "cuda-tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
           "-o", "addopts=", f"--junitxml={xml}", *map(str, files)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    tail = (r.stdout + r.stderr)[-3000:]
    print(tail, flush=True)
    if not xml.exists():
        emit.item(name="pytest -m cuda", ok=False, exit_code=r.returncode, log_tail=tail)
        return
    c = junit_counts(xml)
    ran = c["passed"] + c["failed"] + c["errors"]
    bad = c["failed"] + c["errors"]
    on_cuda = ctx["device"] == "cuda"
    # on the CPU the tests skip; only a failure is a verdict there
    ok = (bad == 0 and ran > 0) if on_cuda else (False if bad else None)
    emit.item(name="pytest -m cuda", exit_code=r.returncode, files=len(files), **c, ok=ok,
              log_tail=tail if bad else "")
    if c["skipped"] and not on_cuda:
        emit.not_run(f"{c['skipped']} CUDA-marked tests",
                     "skipped: " + "; ".join(f"{n} x {why}" for why, n in c["skips"].items()))

"""The ``nanobragg`` command line end to end: files and errors (the server: test_server.py)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.golden import load_case, meets_bar

BIN = Path(sys.executable).parent


def run(args, cwd, env=None, **kw):
    e = dict(os.environ, NANOBRAGG_SERVER="off")
    e.update(env or {})
    return subprocess.run([str(BIN / "nanobragg"), *args], cwd=cwd, env=e, capture_output=True,
                          text=True, **kw)


def test_writes_nanobraggs_files_byte_for_byte(tmp_path):
    case = load_case("noise_smv")
    work = case.copy_to(tmp_path / "case")
    for name in ("float.bin", "int.img", "noise.img"):
        (work / name).unlink()
    res = run(case.args, work)
    assert res.returncode == 0, res.stderr
    # the SMV int and noise images are identical to the C program's, header and pixels
    for name in ("int.img", "noise.img"):
        assert (work / name).read_bytes() == (case.folder / name).read_bytes(), name
    img = np.fromfile(work / "float.bin", dtype="<f4").reshape(case.shape)
    assert meets_bar(img, case.reference())[0]
    assert (work / "image.pgm").read_bytes().startswith(b"P5\n128 128\n# pixels scaled by ")
    assert "max_I = 2691.97" in res.stdout and "475001 photons on noise image" in res.stdout


def test_python_m_sim_core_and_default_file_names(tmp_path):
    args = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-lambda", "6.2",
            "-N", "5", "-distance", "100", "-detpixels", "64", "-seed", "3"]
    res = subprocess.run([sys.executable, "-m", "sim_core", *args], cwd=tmp_path,
                         capture_output=True, text=True,
                         env=dict(os.environ, NANOBRAGG_SERVER="off"))
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "floatimage.bin", "image.pgm", "intimage.img", "noiseimage.img"]


def test_hkl_run_writes_fdump_and_a_later_run_reads_it(tmp_path):
    case = load_case("hkl_nearest")
    work = case.copy_to(tmp_path / "case")
    (work / "Fdump.bin").unlink()
    args = case.args + ["-roi", "120", "135", "120", "135"]
    assert run(args, work).returncode == 0
    assert (work / "Fdump.bin").read_bytes() == (case.folder / "Fdump.bin").read_bytes()
    first = np.fromfile(work / "float.bin", dtype="<f4")
    no_hkl = [a for i, a in enumerate(args) if a != "-hkl" and (i == 0 or args[i - 1] != "-hkl")]
    res = run(no_hkl, work)
    assert res.returncode == 0 and "reading structure factors from Fdump.bin" in res.stderr
    np.testing.assert_array_equal(np.fromfile(work / "float.bin", dtype="<f4"), first)


@pytest.mark.parametrize("args,code,text", [
    (["-cell", "50", "-default_F", "1", "-distanse", "100"], 2,
     "nanobragg: error: unknown flag -distanse (did you mean -distance?)"),
    (["-cell", "50", "-default_F", "1", "-detpixels"], 2, "-detpixels needs a value"),
    (["-cell", "50", "-default_F", "1", "-distance", "0"], 1, "detector.distance_mm"),
    (["-cell", "50", "-hkl", "nothere.hkl"], 1, "nothere.hkl"),
])
def test_errors_exit_with_a_message(tmp_path, args, code, text):
    res = run(args, tmp_path)
    assert res.returncode == code
    assert text in res.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_malformed_hkl_names_file_and_line(tmp_path):
    (tmp_path / "bad.hkl").write_text("0 0 0 10\n1 0 0 12\n1 0 x 3\n")
    res = run(["-cell", "50", "-hkl", "bad.hkl", "-detpixels", "8"], tmp_path)
    assert res.returncode == 1
    assert "bad.hkl line 3" in res.stderr

"""End to end: upload inputs, submit golden cases in both forms, poll, download every artifact and
check them against the C program's images; reproduce the image from commands.txt with the CLI."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from sim_core.io.smv import read_smv
from tests.golden import load_case, meets_bar
from tests.service.helpers import download_all, submit, upload, wait_status

SEED = 12345


@pytest.fixture(scope="module")
def mosflm_jobs(service):
    """The mosflm_matrix golden case submitted as a config and as a nanoBragg command line."""
    case = load_case("mosflm_matrix")
    with service.client("alice") as c:
        hkl = upload(c, case.folder / "p1.hkl", "hkl")
        mat = upload(c, case.folder / "A.mat", "matrix")
        args_job = submit(c, {
            "nanobragg_args": case.args + ["-seed", str(SEED)],
            "files": {"p1.hkl": hkl["id"], "A.mat": mat["id"]},
            "trace_pixels": [list(case.trace_pixel)],
            "outputs": ["float", "smv", "noise", "png"], "label": "mosflm args"})
        config_job = submit(c, {
            "config": {
                "crystal": {"matrix_file": mat["id"], "Na": 6, "Nb": 6, "Nc": 6},
                "structure_factors": {"hkl_file": hkl["id"]},
                "beam": {"wavelength_A": 1.0},
                "detector": {"distance_mm": 100, "pixel_size_mm": 0.2, "fast_pixels": 256,
                             "slow_pixels": 256},
                "noise": {"seed": SEED},
            },
            "trace_pixels": [list(case.trace_pixel)],
            "outputs": ["float", "smv", "noise", "png"], "label": "mosflm config"})
        # the answer reads the record after the enqueue: a free worker may have started it already
        assert {args_job["status"], config_job["status"]} <= {"queued", "running"}
        done = {k: wait_status(c, j["id"], timeout=120)
                for k, j in (("args", args_job), ("config", config_job))}
        files = {k: download_all(c, rec) for k, rec in done.items()}
    return case, {"hkl": hkl, "mat": mat}, done, files


EXPECTED = {"floatimage.bin", "intimage.img", "noiseimage.img", "preview.png", "run_metadata.json",
            "commands.txt", "sha256.txt"}


def test_both_forms_finish_with_every_artifact(mosflm_jobs):
    case, _, done, files = mosflm_jobs
    trace = "trace_%d_%d.log" % case.trace_pixel
    for form, rec in done.items():
        assert rec["status"] == "finished", rec
        assert rec["error"] is None and rec["progress"] == 1.0
        assert rec["started_at"] and rec["finished_at"] and rec["device"] == "cpu"
        assert {a["name"] for a in rec["artifacts"]} == EXPECTED | {trace}, form
    # the same simulation, however it was submitted
    assert done["args"]["config_sha256"] == done["config"]["config_sha256"]
    assert files["args"]["floatimage.bin"] == files["config"]["floatimage.bin"]


@pytest.mark.parametrize("form", ["args", "config"])
def test_float_image_meets_the_golden_bar(mosflm_jobs, form):
    case, _, _, files = mosflm_jobs
    image = np.frombuffer(files[form]["floatimage.bin"], dtype="<f4").reshape(case.shape)
    ok, m = meets_bar(image, case.reference())
    assert ok, m


def test_sha256sum_check_passes(mosflm_jobs, tmp_path):
    _, _, _, files = mosflm_jobs
    for name, data in files["args"].items():
        (tmp_path / name).write_bytes(data)
    out = subprocess.run(["sha256sum", "-c", "sha256.txt"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    listed = {line.split("  ", 1)[1] for line in (tmp_path / "sha256.txt").read_text().splitlines()}
    assert listed == set(files["args"]) - {"sha256.txt"}


def test_run_metadata(mosflm_jobs):
    _, ids, done, files = mosflm_jobs
    md = json.loads(files["config"]["run_metadata.json"])
    rec = done["config"]
    assert md["job_id"] == rec["id"] and md["config_sha256"] == rec["config_sha256"]
    assert md["config"]["crystal"]["matrix_file"] == ids["mat"]["id"]
    assert md["seeds"]["seed"] == SEED and md["seeds"]["mosaic_seed"] == 12345678
    assert md["evaluations"] == rec["evaluations"] == 256 * 256 * 9
    assert md["evaluations_per_second"] > 0 and md["elapsed_s"] > 0
    assert md["device"] == "cpu" and md["dtype"] == "float64"
    for key in ("python", "torch", "cuda", "device_name", "worker", "started_at", "finished_at",
                "peak_memory", "project"):
        assert key in md, key
    assert md["project"]["version"] and md["peak_memory"]["bytes"] > 0
    assert md["worker"]["name"] == rec["worker"]


def test_noise_image_is_seeded(mosflm_jobs):
    _, _, _, files = mosflm_jobs
    # same seed, same noise, whichever worker rendered it
    assert files["args"]["noiseimage.img"] == files["config"]["noiseimage.img"]


def test_trace_endpoint_returns_the_traced_pixel(mosflm_jobs, service):
    case, _, done, files = mosflm_jobs
    s, f = case.trace_pixel
    with service.client("alice") as c:
        r = c.get(f"/v1/jobs/{done['args']['id']}/trace", params={"pixel": f"{s},{f}"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text.startswith(f"TRACE_PY_CONFIG: tracing pixel (spixel={s}, fpixel={f})")
    assert r.text == files["args"][f"trace_{s}_{f}.log"].decode()
    # the trace's final intensity is the image's value at that pixel
    image = np.frombuffer(files["args"]["floatimage.bin"], dtype="<f4").reshape(case.shape)
    m = re.search(r"TRACE_PY: I_pixel\S* (\S+)", r.text)
    if m:
        assert float(m.group(1)) == pytest.approx(float(image[s, f]), rel=1e-5)
    assert float(image[s, f]) == pytest.approx(case.meta["trace_value"], rel=1e-4)


def test_commands_txt_reproduces_the_image(mosflm_jobs, tmp_path):
    case, _, _, files = mosflm_jobs
    shutil.copy(case.folder / "p1.hkl", tmp_path / "p1.hkl")
    shutil.copy(case.folder / "A.mat", tmp_path / "A.mat")
    script = files["args"]["commands.txt"].decode()
    assert "nanobragg " in script and "sha256sum -c" in script
    nanobragg = shutil.which("nanobragg") or str(__import__("pathlib").Path(sys.executable).parent
                                                 / "nanobragg")
    # run the script as written: check the inputs, then the nanobragg command line
    out = subprocess.run(["bash", "-e", "-c", script.replace("\nnanobragg ", f"\n{nanobragg} ")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    local = np.fromfile(tmp_path / "floatimage.bin", dtype="<f4").reshape(case.shape)
    served = np.frombuffer(files["args"]["floatimage.bin"], dtype="<f4").reshape(case.shape)
    assert meets_bar(local, case.reference())[0]
    np.testing.assert_allclose(local, served, rtol=1e-6, atol=1e-6 * float(served.max()))
    assert (tmp_path / "noiseimage.img").read_bytes()[512:] == files["args"]["noiseimage.img"][512:]


def test_config_form_cubic_and_noise_cases(service, tmp_path):
    """Two more golden cases, submitted as configs, rendered at the same time by two workers."""
    cubic = load_case("cubic_default_F")
    noisy = load_case("noise_smv")
    with service.client("alice") as c:
        j1 = submit(c, {"config": {
            "crystal": {"cell": {"a_A": 100, "b_A": 100, "c_A": 100}, "Na": 5, "Nb": 5, "Nc": 5},
            "structure_factors": {"default_F": 100}, "beam": {"wavelength_A": 6.2},
            "detector": {"distance_mm": 100, "fast_pixels": 256, "slow_pixels": 256}},
            "outputs": ["float"]})
        j2 = submit(c, {"config": {
            "crystal": {"cell": {"a_A": 60, "b_A": 60, "c_A": 60}, "Na": 6, "Nb": 6, "Nc": 6,
                        "misset_deg": [5, 5, 5]},
            "structure_factors": {"default_F": 100}, "beam": {"wavelength_A": 1.0},
            "detector": {"distance_mm": 80, "pixel_size_mm": 0.3, "fast_pixels": 128,
                         "slow_pixels": 128},
            "noise": {"seed": 12345}}, "outputs": ["float", "smv", "noise"]})
        r1, r2 = wait_status(c, j1["id"], timeout=120), wait_status(c, j2["id"], timeout=120)
        assert r1["status"] == r2["status"] == "finished", (r1, r2)
        assert {a["name"] for a in r1["artifacts"]} == {"floatimage.bin", "run_metadata.json",
                                                         "commands.txt", "sha256.txt"}
        f1, f2 = download_all(c, r1), download_all(c, r2)
    img1 = np.frombuffer(f1["floatimage.bin"], dtype="<f4").reshape(cubic.shape)
    assert meets_bar(img1, cubic.reference())[0]
    img2 = np.frombuffer(f2["floatimage.bin"], dtype="<f4").reshape(noisy.shape)
    assert meets_bar(img2, noisy.reference())[0]
    # the noise of the C program's seeded generator, pixel for pixel
    _, ref_noise = read_smv(noisy.folder / "noise.img")
    served = tmp_path / "noiseimage.img"
    served.write_bytes(f2["noiseimage.img"])
    _, noise = read_smv(served)
    assert np.array_equal(noise, ref_noise)

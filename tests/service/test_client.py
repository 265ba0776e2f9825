"""The ``bragg`` client commands and the Python client against the real service: ids on standard
output, uploads of the files a command line names, live progress, fetch with sha256 checks, traces,
cancel, listing, and the errors people see."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.client import ApiError, BraggClient, ChecksumError, ClientError, verify_dir
from tests.golden import load_case, meets_bar
from tests.service.conftest import ROOT, TOKENS
from tests.service.helpers import LONG_ARGS, wait_status

#: LONG_ARGS on 256 x 256 pixels: 52 M evaluations, a few seconds on a CPU worker
BIG_ARGS = [("256" if a == "128" else a) for a in LONG_ARGS]
CUBIC_ARGS = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-lambda",
              "6.2", "-N", "5", "-distance", "100", "-detpixels", "256"]


def bragg(service, *args, owner: str | None = "alice", env: dict | None = None, cwd=None,
          timeout: float = 180) -> subprocess.CompletedProcess:
    """``bragg ARGS`` as a person runs it, with BRAGG_URL/BRAGG_TOKEN in the environment."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("BRAGG_")}
    e.update({"BRAGG_URL": service.base_url, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
    if owner:
        e["BRAGG_TOKEN"] = TOKENS[owner]
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True,
                          text=True, env=e, cwd=cwd or ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def cubic_job(service, tmp_path_factory):
    """The acceptance path: submit -- ARGS, wait, fetch."""
    out = tmp_path_factory.mktemp("cubic")
    sub = bragg(service, "submit", "--", *CUBIC_ARGS)
    assert sub.returncode == 0, sub.stderr
    job_id = sub.stdout.strip()
    waited = bragg(service, "wait", job_id)
    fetched = bragg(service, "fetch", job_id, "--dir", str(out / "files"))
    return sub, waited, fetched, job_id, out / "files"


def test_submit_prints_the_id_alone(cubic_job):
    sub, _, _, job_id, _ = cubic_job
    assert sub.stdout == job_id + "\n" and len(job_id) == 32 and job_id.isalnum()
    assert f"submitted job {job_id}" in sub.stderr and "65,536 evaluations" in sub.stderr


def test_wait_then_fetch_meets_the_golden_bar(cubic_job):
    _, waited, fetched, job_id, folder = cubic_job
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout == "finished\n" and "100%" in waited.stderr
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip() == str(folder) and "sha256.txt verified" in fetched.stderr
    assert {p.name for p in folder.iterdir()} == {"floatimage.bin", "intimage.img", "preview.png",
                                                   "run_metadata.json", "commands.txt",
                                                   "sha256.txt"}
    case = load_case("cubic_default_F")
    image = np.fromfile(folder / "floatimage.bin", dtype="<f4").reshape(case.shape)
    ok, m = meets_bar(image, case.reference())
    assert ok, m
    out = subprocess.run(["sha256sum", "-c", "sha256.txt"], cwd=folder, capture_output=True)
    assert out.returncode == 0


def test_fetch_detects_a_changed_file(cubic_job, tmp_path):
    *_, folder = cubic_job
    for p in folder.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    assert "floatimage.bin" in verify_dir(tmp_path)
    data = bytearray((tmp_path / "floatimage.bin").read_bytes())
    data[1000] ^= 1
    (tmp_path / "floatimage.bin").write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="floatimage.bin"):
        verify_dir(tmp_path)
    (tmp_path / "preview.png").unlink()
    with pytest.raises(ChecksumError):
        verify_dir(tmp_path)


def test_status_jobs_and_trace(cubic_job, service):
    job_id = cubic_job[3]
    st = bragg(service, "status", job_id, "--json")
    assert st.returncode == 0 and json.loads(st.stdout)["status"] == "finished"
    human = bragg(service, "status", job_id)
    assert human.stdout.startswith(f"job {job_id}, finished") and "floatimage.bin" in human.stdout
    listed = bragg(service, "jobs", "--json", "--limit", "200")
    assert job_id in {j["id"] for j in json.loads(listed.stdout)}
    table = bragg(service, "jobs", "--status", "finished")
    assert job_id in table.stdout
    # bob sees none of alice's jobs
    assert job_id not in bragg(service, "jobs", "--json", "--limit", "200", owner="bob").stdout
    # a pixel not traced at submission: traced now by a trace job, then printed
    tr = bragg(service, "trace", job_id, "30", "40")
    assert tr.returncode == 0, tr.stderr
    assert tr.stdout.startswith("TRACE_PY_CONFIG: tracing pixel (spixel=30, fpixel=40)")
    again = bragg(service, "trace", job_id, "30", "40")
    assert again.stdout == tr.stdout and "trace job" not in again.stderr


def test_submit_uploads_the_files_a_command_line_names(service, tmp_path):
    """Files in a sub-folder, named by relative paths: uploaded and renamed to bare names."""
    case = load_case("mosflm_matrix")
    (tmp_path / "in").mkdir()
    for name in ("A.mat", "p1.hkl"):
        (tmp_path / "in" / name).write_bytes((case.folder / name).read_bytes())
    args = ["-mat", "in/A.mat", "-hkl", "in/p1.hkl", "-lambda", "1.0", "-N", "6", "-distance",
            "100", "-detpixels", "256", "-pixel", "0.2"]
    sub = bragg(service, "submit", "--trace", "128", "129", "--label", "mosflm", "--", *args,
                cwd=tmp_path)
    assert sub.returncode == 0, sub.stderr
    job_id = sub.stdout.strip()
    with BraggClient(service.base_url, TOKENS["alice"]) as bc:
        rec = bc.wait(job_id, timeout=180)
        assert rec["status"] == "finished" and rec["label"] == "mosflm"
        assert rec["trace_pixels"] == [[128, 129]]
        paths = bc.fetch(job_id, tmp_path / "out")
    image = np.fromfile(tmp_path / "out" / "floatimage.bin", dtype="<f4").reshape(case.shape)
    assert meets_bar(image, case.reference())[0]
    assert "trace_128_129.log" in {p.name for p in paths}
    # commands.txt names the files as the command line did, without the folder
    assert "-mat A.mat" in (tmp_path / "out" / "commands.txt").read_text()


def test_submit_config_file_uploads_its_local_files(service, tmp_path):
    case = load_case("mosflm_matrix")
    for name in ("A.mat", "p1.hkl"):
        (tmp_path / name).write_bytes((case.folder / name).read_bytes())
    (tmp_path / "job.json").write_text(json.dumps({
        "config": {"crystal": {"matrix_file": "A.mat", "Na": 6, "Nb": 6, "Nc": 6},
                   "structure_factors": {"hkl_file": "p1.hkl"}, "beam": {"wavelength_A": 1.0},
                   "detector": {"distance_mm": 100, "pixel_size_mm": 0.2, "fast_pixels": 256,
                                "slow_pixels": 256}},
        "outputs": ["float"], "label": "from a file"}))
    sub = bragg(service, "submit", "--config", str(tmp_path / "job.json"), "--dtype", "float64")
    assert sub.returncode == 0, sub.stderr
    with BraggClient(service.base_url, TOKENS["alice"]) as bc:
        rec = bc.wait(sub.stdout.strip(), timeout=180)
    assert rec["status"] == "finished" and rec["label"] == "from a file"
    assert {a["name"] for a in rec["artifacts"]} == {"floatimage.bin", "run_metadata.json",
                                                      "commands.txt", "sha256.txt"}


def test_python_client_follows_progress_and_cancel(service):
    with BraggClient(service.base_url, TOKENS["alice"]) as bc:
        rec = bc.submit_args(BIG_ARGS, label="long")
        seen = []
        done = bc.wait(rec["id"], timeout=180, on_update=lambda r: seen.append(
            (r["status"], r["progress"])))
        assert done["status"] == "finished" and done["evaluations"] == 4 * 128 * 128 * 800
        progress = [p for s, p in seen if s == "running"]
        assert progress and progress == sorted(progress), seen
        assert seen[-1] == ("finished", 1.0) and seen[0][0] in ("queued", "running")
        # progress is written every BRAGG_PROGRESS_INTERVAL_S (0.5 s): a job of a few seconds
        # shows several values on the way
        from datetime import datetime
        took = (datetime.fromisoformat(done["finished_at"].rstrip("Z"))
                - datetime.fromisoformat(done["started_at"].rstrip("Z"))).total_seconds()
        if took > 2.5:
            assert len(set(progress)) >= 2, (took, seen)
        # cancel from the command line, then wait says so with status 1
        job = bc.submit_args(BIG_ARGS, label="to cancel")
    with service.client("alice") as alice:
        wait_status(alice, job["id"], ("running", "finished"), timeout=60)
    c = bragg(service, "cancel", job["id"])
    assert c.returncode == 0 and c.stdout.strip() in ("canceled", "running"), c.stderr
    w = bragg(service, "wait", job["id"], "--quiet")
    assert w.returncode == 1 and w.stdout == "canceled\n", (w.stdout, w.stderr)


def test_errors_people_see(service, tmp_path):
    # no token on a deployment with tokens
    r = bragg(service, "jobs", owner=None)
    assert r.returncode == 2 and "401: missing bearer token" in r.stderr and r.stdout == ""
    # a flag's value checked by the API: 422 with the field
    r = bragg(service, "submit", "--", "-cell", "100", "100", "100", "90", "90", "90",
              "-detpixels", "-3")
    assert r.returncode == 2 and r.stdout == "" and "422" in r.stderr, r.stderr
    # a file the command line names but that is not there
    r = bragg(service, "submit", "--", "-hkl", "missing.hkl", "-N", "5", cwd=tmp_path)
    assert r.returncode == 2 and "-hkl names missing.hkl" in r.stderr and r.stdout == ""
    # neither form
    r = bragg(service, "submit")
    assert r.returncode == 2 and "--config FILE" in r.stderr
    # a service that is not there
    r = bragg(service, "status", "x" * 32, env={"BRAGG_URL": "http://127.0.0.1:9"})
    assert r.returncode == 3 and "cannot reach" in r.stderr
    # flags win over the environment
    r = bragg(service, "jobs", "--token", "nope")
    assert r.returncode == 2 and "invalid bearer token" in r.stderr
    with BraggClient(service.base_url, TOKENS["alice"]) as bc:
        with pytest.raises(ApiError) as err:
            bc.get("0" * 32)
        assert err.value.status_code == 404
        with pytest.raises(ClientError, match="not finished|is queued|is running"):
            bc.fetch(bc.submit_args(LONG_ARGS)["id"], tmp_path / "x")
        for j in bc.jobs(limit=50):
            if j["status"] in ("queued", "running"):
                bc.cancel(j["id"])
    assert not Path(tmp_path / "x").exists()

"""Verification jobs through the service: sides rendered as child jobs on their device's queue, an
uploaded C float image and trace as the reference side, an earlier job as a side, the report
(report.json, report.md, traces, commands.txt, run_metadata.json, sha256.txt) written by a worker
once every side has ended; a killed worker, cancel, another owner, a side with no worker."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from tests.golden import load_case

from .conftest import free_port, wait_for
from .helpers import download_all, get, golden, long_args, submit, upload, wait_status

C_CASE = "phi0_carryover_c_parity"


def verify(client: httpx.Client, body: dict) -> dict:
    r = client.post("/v1/verifications", json=body)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    return r.json()


def children(client: httpx.Client, job_id: str) -> list[dict]:
    r = client.get("/v1/jobs", params={"parent": job_id, "limit": 50})
    assert r.status_code == 200, r.text
    return r.json()["jobs"]


def report_of(client: httpx.Client, rec: dict, tmp_path=None) -> dict:
    files = download_all(client, rec)
    if tmp_path is not None:
        for name, data in files.items():
            (tmp_path / name).write_bytes(data)
        check = subprocess.run(["sha256sum", "-c", "sha256.txt"], cwd=tmp_path,
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    return {"json": json.loads(files["report.json"]), "md": files["report.md"].decode(),
            "files": files}


def _c_body(client: httpx.Client, name: str, phi_mode: str) -> dict:
    case = load_case(name)
    files = {}
    for i, a in enumerate(case.args[:-1]):
        if a in ("-mat", "-hkl"):
            fname = case.args[i + 1]
            files[fname] = upload(client, case.folder / fname,
                                  "matrix" if a == "-mat" else "hkl")["id"]
    image = upload(client, case.folder / "float.bin", "float_image")["id"]
    trace = upload(client, case.folder / "trace_c.log", "trace_log")["id"]
    return {"nanobragg_args": case.args, "files": files, "phi_mode": phi_mode,
            "pixels": [list(case.trace_pixel)], "label": f"{name} {phi_mode}",
            "sides": [{"device": "cpu", "dtype": "float64"},
                      {"reference_image": image, "reference_trace": trace}]}


@pytest.fixture(scope="module")
def against_c(service):
    """phi0_carryover_c_parity in c-parity and default φ mode, and cubic_default_F, against the
    C program's float image and trace."""
    service.ensure_workers(2)
    with service.client("alice") as alice:
        jobs = {(C_CASE, "c-parity"): verify(alice, _c_body(alice, C_CASE, "c-parity")),
                (C_CASE, "default"): verify(alice, _c_body(alice, C_CASE, "default"))}
        done = {k: wait_status(alice, v["id"], timeout=180) for k, v in jobs.items()}
        jobs[("cubic_default_F", "default")] = verify(
            alice, _c_body(alice, "cubic_default_F", "default"))
        done[("cubic_default_F", "default")] = wait_status(
            alice, jobs[("cubic_default_F", "default")]["id"], timeout=180)
    return jobs, done


def test_c_parity_against_the_c_program_meets_every_criterion(against_c, alice, tmp_path):
    jobs, done = against_c
    rec = done[(C_CASE, "c-parity")]
    assert rec["kind"] == "verification" and rec["status"] == "finished", rec
    assert rec["verification"]["verdict"] == "pass"
    sides = rec["verification"]["sides"]
    assert [s["source"] for s in sides] == ["render", "reference"]
    assert sides[0]["name"] == "cpu:float64" and sides[0]["phi_mode"] == "c-parity"
    kids = children(alice, rec["id"])
    assert [k["id"] for k in kids] == [sides[0]["job"]] and kids[0]["status"] == "finished"
    rep = report_of(alice, rec, tmp_path)
    report = rep["json"]
    assert report["verdict"] == "pass", report["criteria"]
    assert all(c["ok"] for c in report["criteria"]) and len(report["criteria"]) == 5
    comp = report["comparisons"][0]
    assert comp["image"]["max_rel"] < 1e-6 and comp["first_divergence"] is None
    ours = report["sides"][0]
    # 36 subpixel blocks (the C program chose oversample 6), 5 φ steps each
    assert ours["traces"]["65,65"]["phi_lines"] == 180
    assert ours["traces"]["65,65"]["final_intensity"] == pytest.approx(318514.59375, rel=1e-6)
    assert ours["environment"]["torch"] and ours["environment"]["worker"]
    names = set(rep["files"])
    assert {"report.json", "report.md", "commands.txt", "run_metadata.json", "sha256.txt",
            "trace_cpu-float64_65_65.log", "trace_reference_65_65.log"} == names
    assert "nanobragg" in rep["files"]["commands.txt"].decode()
    assert "**Verdict: PASS** (5 of 5 criteria met)" in rep["md"]


def test_default_phi_mode_names_the_first_diverging_key(against_c, alice):
    _, done = against_c
    rec = done[(C_CASE, "default")]
    assert rec["status"] == "finished" and rec["verification"]["verdict"] == "fail"
    rep = report_of(alice, rec)
    fd = rep["json"]["comparisons"][0]["first_divergence"]
    assert fd["key"] == "rot_a_angstroms" and fd["occurrence"] == 0
    assert "**first diverging key: `rot_a_angstroms`**" in rep["md"]


def test_a_second_golden_case_against_the_c_program(against_c, alice):
    _, done = against_c
    rec = done[("cubic_default_F", "default")]
    rep = report_of(alice, rec)["json"]
    assert rep["verdict"] == "pass", rep["criteria"]
    # the C traces of the golden cases have no per-φ lines: ours are counted, not compared
    assert rep["comparisons"][0]["traces"][0]["skipped_families"]


def test_an_earlier_job_is_a_side_and_another_owner_cannot_name_it(against_c, alice, bob):
    jobs, done = against_c
    side_job = done[(C_CASE, "c-parity")]["verification"]["sides"][0]["job"]
    case = load_case(C_CASE)
    body = _c_body(alice, C_CASE, "c-parity")
    body["sides"] = [{"against": side_job}, {"device": "cpu", "dtype": "float64"}]
    rec = wait_status(alice, verify(alice, body)["id"], timeout=120)
    report = report_of(alice, rec)["json"]
    assert report["verdict"] == "pass", report["criteria"]
    # the same command on the same worker kind: the images are identical
    assert report["comparisons"][0]["image"]["max_abs"] == 0
    assert report["sides"][0]["source"] == "job" and report["sides"][0]["job"] == side_job
    # bob: alice's jobs read as unknown, as a side and directly
    bob_body = _c_body(bob, C_CASE, "c-parity")
    bob_body["sides"][1] = {"against": side_job}
    r = bob.post("/v1/verifications", json=bob_body)
    assert r.status_code == 404 and "sides.1.against" in r.json()["hint"], r.text
    assert bob.get(f"/v1/jobs/{rec['id']}").status_code == 404
    assert bob.post(f"/v1/jobs/{rec['id']}/cancel").status_code == 404
    assert case.trace_pixel == (65, 65)


def test_uploads_are_checked_and_limits_named(alice):
    case = load_case(C_CASE)
    body = _c_body(alice, C_CASE, "c-parity")
    wrong = upload(alice, golden("cubic_default_F") / "float.bin", "float_image")["id"]
    body["sides"][1]["reference_image"] = wrong
    r = alice.post("/v1/verifications", json=body)
    assert r.status_code == 422, r.text
    err = r.json()["errors"][0]
    assert err["field"] == "sides.1.reference_image"
    assert "65536 float32 pixels; the detector has 128 slow x 128 fast = 16384" in err["message"]
    r = alice.post("/v1/files", data={"kind": "trace_log"},
                   files={"file": ("c.log", b"nanoBragg says hello\n")})
    assert r.status_code == 422 and "no trace lines" in r.text
    body = _c_body(alice, C_CASE, "c-parity")
    body["sides"] = body["sides"][:1]
    r = alice.post("/v1/verifications", json=body)
    assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith("sides")
    body = _c_body(alice, C_CASE, "c-parity")
    body["brightest"] = 16
    body["pixels"] = [[1, 1]] * 0 + [list(case.trace_pixel)]
    r = alice.post("/v1/verifications", json=body)
    assert r.status_code == 422 and "max_trace_pixels" in r.text, r.text

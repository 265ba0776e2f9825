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
from tests.service.browser import open_page, page  # noqa: F401 (the page fixture)
from tests.service.test_worker_parts import wctx  # noqa: F401 (an in-process worker's context)

from .conftest import free_port, wait_for
from jobs import sweeper

from .helpers import download_all, get, golden, long_args, upload, wait_status

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
    body["pixels"] = [[s, 3] for s in range(60)]  # 76 traced pixels: more than 64
    r = alice.post("/v1/verifications", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "pixels" and "max_trace_pixels" in r.text
    assert case.shape == (128, 128)


# -- the supervisor scenario --------------------------------------------------------------------
#: the supervisor command (golden/_bench/supervisor_full.args.txt: 2463 x 2527 pixels, custom
#: detector vectors, -Na 36 -Nb 47 -Nc 29, 10 φ steps, an HKL file), rendered in a 71 x 331 pixel
#: region from pixel (685, 1039) towards the beam (pixel (685, 1039) itself has k = 21, beyond the
#: HKL file's ±12: its intensity is 0) so that the suite stays fast; docs/verification.md has the
#: report of the whole detector
SUPERVISOR_ROI = ["-roi", "1035", "1105", "680", "1010"]


@pytest.fixture()
def big_api(service):
    """An extra API process of the same deployment whose detector limit admits the supervisor's
    6.2 M pixel detector (the suite's APIs allow 300 000)."""
    port = free_port()
    env = dict(service.env, BRAGG_MAX_DETECTOR_PIXELS="7000000")
    proc = service._spawn(["api", "--host", "127.0.0.1", "--port", str(port)],
                          f"api-big-{port}.log", env=env)
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200, 30,
                 what="the API with the larger detector limit")
        client = service.client("alice")
        client.base_url = f"http://127.0.0.1:{port}"
        with client:
            yield client
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_supervisor_scenario_as_one_submission(service, big_api, tmp_path):
    service.ensure_workers(2)
    bench = golden("_bench")
    args = (bench / "supervisor_full.args.txt").read_text().split() + SUPERVISOR_ROI
    files = {"A.mat": upload(big_api, bench / "A.mat", "matrix")["id"],
             "p1.hkl": upload(big_api, bench / "p1.hkl", "hkl")["id"]}
    job = verify(big_api, {"nanobragg_args": args, "files": files, "phi_mode": "c-parity",
                           "pixels": [[685, 1039]], "brightest": 1, "label": "supervisor",
                           "sides": [{"device": "cpu", "dtype": "float64"},
                                     {"device": "cpu", "dtype": "float32"}]})
    assert job["evaluations"] == 2 * 71 * 331 * 10
    rec = wait_status(big_api, job["id"], timeout=300)
    assert rec["status"] == "finished", (rec["error"], rec["warnings"])
    rep = report_of(big_api, rec, tmp_path)
    report = rep["json"]
    assert report["verdict"] == "pass", json.dumps(report["criteria"], indent=1)
    assert report["phi_mode"] == "c-parity" and report["brightest"] == 1
    pixels = [tuple(p) for p in report["pixels"]]
    assert pixels[0] == (685, 1039) and len(pixels) == 2  # and the brightest pixel
    for side in report["sides"]:
        for p in pixels:
            st = side["traces"][f"{p[0]},{p[1]}"]
            assert st["phi_lines"] == 10 and st["missing_keys"] == []
    comp = report["comparisons"][0]
    assert (comp["a"], comp["b"]) == ("cpu:float64", "cpu:float32")
    assert 0 < comp["image"]["max_rel"] <= 1e-3 and not comp["traces_judged"]
    # the final intensities of the traced pixel are the images' values there
    img = np.frombuffer(big_api.get(
        f"/v1/jobs/{report['sides'][0]['job']}/artifacts/floatimage.bin").content,
        dtype="<f4").reshape(2527, 2463)
    final = report["sides"][0]["traces"]["685,1039"]["final_intensity"]
    assert img[685, 1039] == np.float32(final) == 0
    bright = pixels[1]
    assert img[bright] == img.max() > 0
    assert report["sides"][0]["traces"][f"{bright[0]},{bright[1]}"]["final_intensity"] > 0
    assert "| cpu:float64 | (685,1039) |" in rep["md"] and "10 |" in rep["md"]


# -- failures -----------------------------------------------------------------------------------
def _slow_body(seconds: float) -> dict:
    return {"nanobragg_args": long_args(seconds), "pixels": [[64, 64]], "label": "slow",
            "sides": [{"device": "cpu", "dtype": "float64"}, {"device": "cpu", "dtype": "float32"}]}


def test_a_worker_killed_mid_verification_loses_nothing(service, alice):
    service.ensure_workers(2)
    job = verify(alice, _slow_body(4))
    running = wait_for(lambda: next((c for c in children(alice, job["id"])
                                     if c["status"] == "running" and c["progress"] > 0.05), None),
                       60, what="a side rendering")
    victim = running["worker"]
    service.kill_worker(victim, signal.SIGKILL)
    service.start_worker()
    rec = wait_status(alice, job["id"], timeout=180)
    assert rec["status"] == "finished", (rec["error"], rec["warnings"])
    retried = get(alice, running["id"])
    assert retried["attempts"] == 2 and retried["worker"] != victim
    report = report_of(alice, rec)["json"]
    assert report["criteria"][0] == {"name": "every side ran", "ok": True, "value": "2 of 2",
                                     "threshold": "2 of 2", "detail": ""}
    assert report["verdict"] == "pass", report["criteria"]
    service.ensure_workers(2)


def test_cancel_stops_every_side(service, alice):
    service.ensure_workers(2)
    job = verify(alice, _slow_body(20))
    wait_for(lambda: any(c["status"] == "running" for c in children(alice, job["id"])), 60,
             what="a side running")
    r = alice.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code in (200, 202), r.text
    rec = wait_status(alice, job["id"], timeout=30)
    assert rec["status"] == "canceled" and rec["artifacts"] == []
    kids = children(alice, job["id"])
    assert len(kids) == 2 and {k["status"] for k in kids} == {"canceled"}
    ids = {k["id"] for k in kids}
    wait_for(lambda: not [w for w in httpx.get(f"{service.base_url}/readyz").json()["workers"]
                          if w["job"] in ids], 30, what="the workers to let go of the sides")


def test_a_side_without_a_worker_is_reported_not_run(service, alice, redis_url, tmp_path):
    """A cuda side with no CUDA worker: the sweeper fails it (NoWorker) after the queue timeout
    (here: a sweep run as if that time had passed), and the report says so instead of hanging."""
    from jobs.live_workers import fail_unserved
    from jobs.records import Records
    from jobs.settings import Settings
    import redis as redis_lib

    case = load_case(C_CASE)
    body = _c_body(alice, C_CASE, "c-parity")
    body["sides"] = [{"device": "cpu", "dtype": "float64"}, {"device": "cuda", "dtype": "float64"},
                     body["sides"][1]]
    job = verify(alice, body)
    assert any("side cuda:float64: no live worker serves device 'cuda'" in w
               for w in job["warnings"])
    settings = Settings(redis_url=redis_url, namespace="bragg", data_dir=tmp_path)
    conn = redis_lib.Redis.from_url(redis_url)
    ctx = SimpleNamespace(settings=settings, redis=conn, records=Records(conn, "bragg"))
    cuda_side = job["verification"]["sides"][1]["job"]
    wait_for(lambda: cuda_side in fail_unserved(ctx, now=time.time() + 3600), 30,
             what="the cuda side failed")
    rec = wait_status(alice, job["id"], timeout=120)
    assert rec["status"] == "finished" and rec["verification"]["verdict"] == "fail", rec
    report = report_of(alice, rec)
    first = report["json"]["criteria"][0]
    assert first["ok"] is False and first["detail"] == "cuda:float64: not run: no CUDA worker"
    assert "✘ not run: no CUDA worker" in report["md"]
    # the other comparisons still happened
    assert [c["b"] for c in report["json"]["comparisons"]] == ["reference"]
    assert case.trace_pixel == (65, 65)


# -- the client ---------------------------------------------------------------------------------
def test_bragg_verify_against_the_c_program(service, tmp_path):
    """``bragg verify`` uploads the command's files and the references, waits, fetches the report
    verified against sha256.txt, prints the verdict and exits 0 only when every criterion is
    met."""
    from .test_client import bragg

    service.ensure_workers(2)
    case = load_case(C_CASE)
    work = case.copy_to(tmp_path / "case")
    common = ["--pixel", "65,65", "--side", "cpu:float64", "--reference-image", "float.bin",
              "--reference-trace", "trace_c.log", "--quiet"]
    ok = bragg(service, "verify", *common, "--phi-mode", "c-parity", "--dir",
               str(tmp_path / "pass"), "--", *case.args, cwd=work)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == str(tmp_path / "pass")
    assert "PASS: 5 of 5 criteria met" in ok.stderr and "(sha256.txt verified)" in ok.stderr
    assert subprocess.run(["sha256sum", "-c", "sha256.txt"], cwd=tmp_path / "pass",
                          capture_output=True).returncode == 0
    assert json.loads((tmp_path / "pass" / "report.json").read_text())["verdict"] == "pass"
    bad = bragg(service, "verify", *common, "--dir", str(tmp_path / "fail"), "--", *case.args,
                cwd=work)
    assert bad.returncode == 1, bad.stderr
    assert "FAIL: 3 of 5 criteria met" in bad.stderr
    assert "first diverging key: rot_a_angstroms" in bad.stderr
    usage = bragg(service, "verify", "--side", "gpu:float64", "--", *case.args, cwd=work)
    assert usage.returncode == 2 and "expected DEVICE[:DTYPE[:PHI_MODE]]" in usage.stderr


# -- the web page -------------------------------------------------------------------------------


def test_the_page_shows_the_report(page, service, against_c):
    """The criteria with ✔/✘, the Δ table, the first divergence, both traces side by side."""
    _, done = against_c
    pg = page
    open_page(pg, service, "alice")
    job_id = done[(C_CASE, "default")]["id"]
    pg.evaluate(f"location.hash = '#job={job_id}'")
    pg.wait_for_selector("#report-box h3", timeout=30_000)
    assert pg.text_content("#report-box h3") == "Report: FAIL (3 of 5 criteria met)"
    items = pg.locator("#report-box ul.criteria li").all_text_contents()
    assert len(items) == 5 and items[0].startswith("✔ every side ran")
    assert items[-1].startswith("✘ traces: reference against cpu:float64")
    assert "first diverging key: rot_a_angstroms (occurrence 0, pixel (65, 65))" in \
        pg.text_content("#report-box")
    rows = pg.locator("#report-box table.delta tr").all_text_contents()
    assert any(r.startswith("rot_a_angstroms") and r.endswith("✘") for r in rows)
    assert any(r.startswith("F_cell") and r.endswith("✔") for r in rows)
    pg.click("#report-box button")
    pg.wait_for_selector("#report-box .trace-pair pre", timeout=30_000)
    panes = pg.locator("#report-box .trace-pair pre").all_text_contents()
    assert panes[0].startswith("TRACE_PY_CONFIG") and panes[1].startswith("TRACE_CONFIG")
    assert pg.locator("#report-box .trace-pair a").all_text_contents() == [
        "trace_cpu-float64_65_65.log", "trace_reference_65_65.log"]
    assert pg.errors == []


# -- the report step's queueing, in process -----------------------------------------------------


def _small_verification(ctx) -> str:
    from app.verification import VerificationSubmission, create_verification
    from tests.service.helpers import SMALL_CONFIG

    config = dict(SMALL_CONFIG, detector={"distance_mm": 100, "fast_pixels": 8, "slow_pixels": 8},
                  noise={"seed": 5})
    sub = VerificationSubmission(config=config, pixels=[[4, 4]],
                                 sides=[{"device": "cpu"}, {"device": "cpu", "dtype": "float32"}])
    return create_verification(ctx, "tester", sub)


def _last_side_ends_without_rollup(ctx, child: str) -> None:
    """The side's worker dies right after FINISH, before ROLLUP and before enqueueing the report."""
    status, attempt = ctx.records.start(child, "ghost", "cpu", 60)
    assert status == "running"
    assert ctx.records.finish(child, "tester", "ghost", attempt, "failed",
                              {"error_type": "Boom", "error_message": "lost"}) == "failed"


def test_the_sweeper_queues_the_report_when_the_last_sides_worker_died(wctx):
    from jobs import queue as rq_queue
    from worker.tasks import run_job

    r = wctx.records
    parent = _small_verification(wctx)
    first, second = r.child_ids(parent)
    assert r.get(parent).status == "queued" and r.get(parent).rq_id == ""
    assert run_job(first) == "finished"
    assert r.get(parent).status == "running"
    _last_side_ends_without_rollup(wctx, second)
    assert sweeper.settle_series(wctx) >= 1
    rec = r.get(parent)
    assert rec.status == "queued" and rec.rq_id and rec.children_ended == 2
    # in the outbox, on no queue yet: the next pass enqueues it on 'auto'
    assert rec.rq_id not in rq_queue.waiting(wctx.redis, rec.queue)
    assert sweeper.repair_outbox(wctx) == [parent]
    rec = r.get(parent)
    assert rec.queue.endswith(":auto") and rec.rq_id in rq_queue.waiting(wctx.redis, rec.queue)
    # a late ROLLUP of a side leaves the report step alone
    assert r.rollup(parent, first, "tester") == "queued" and r.get(parent).status == "queued"
    assert run_job(parent) == "finished"
    done = r.get(parent)
    assert done.status == "finished" and done.verdict == "fail"
    with wctx.store.open_artifact(parent, "report.json") as fh:
        report = json.load(fh)
    assert report["criteria"][0]["detail"] == "cpu:float32: failed: Boom: lost"
    assert r.rollup(parent, second, "tester") == "finished"


def test_cancel_of_a_queued_report_step_ends_it(wctx):
    from app.verification import cancel_verification

    r = wctx.records
    parent = _small_verification(wctx)
    for child in r.child_ids(parent):
        _last_side_ends_without_rollup(wctx, child)
        r.rollup(parent, child, "tester")
    assert r.get(parent).status == "queued"
    assert cancel_verification(wctx, r.get(parent)) == "cancel-requested"
    rec = r.get(parent)
    assert rec.status == "canceled" and not r.r.sismember(r._k.owner_active("tester"), parent)

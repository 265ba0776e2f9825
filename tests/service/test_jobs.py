"""Jobs: validation, limits, cancel, engine failures, ETags, listing, events, more traces."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.service.conftest import LIMITS
from tests.service.helpers import (LONG_ARGS, SMALL_CONFIG, download_all, get, long_args,
                                   submit, wait_status, with_flag)


def _job_count(client) -> int:
    return len(client.get("/v1/jobs", params={"limit": 200}).json()["jobs"])


def _queue_length(service, device: str) -> int:
    return service.redis.llen(f"rq:queue:bragg:{device}")


# -- invalid input: 422 with the field path, nothing queued ----------------------------------------
@pytest.mark.parametrize("body, field", [
    ({"config": dict(SMALL_CONFIG, detector={"fast_pixels": -3})}, "config.detector.fast_pixels"),
    ({"config": dict(SMALL_CONFIG, crystal={"cell": {"a_A": 100, "b_A": 100, "c_A": 100},
                                            "Na": "many"})}, "config.crystal.Na"),
    ({"config": dict(SMALL_CONFIG, beams={})}, "config.beams"),
    ({"config": SMALL_CONFIG, "nanobragg_args": ["-N", "5"]}, "(body)"),
    ({"config": SMALL_CONFIG, "outputs": ["tiff"]}, "outputs.0"),
    ({"config": SMALL_CONFIG, "trace_pixels": [[64, 0]]}, "trace_pixels.0"),
    ({"config": SMALL_CONFIG, "device": "tpu"}, "device"),
    ({"nanobragg_args": ["-cell", "100", "-default_F", "1", "-detpixels", "64", "-bogus", "1"]},
     "nanobragg_args.6"),
    ({"nanobragg_args": ["-cell", "100", "-default_F", "1", "-detpixels"]}, "nanobragg_args.4"),
    ({"nanobragg_args": ["-cell", "100", "-hkl", "P1.hkl", "-detpixels", "64"]}, "files"),
    ({"nanobragg_args": ["-cell", "100", "-default_F", "1", "-img", "/etc/passwd"]},
     "nanobragg_args.5"),
    ({"config": dict(SMALL_CONFIG, structure_factors={"hkl_file": "/etc/passwd"})},
     "config.structure_factors.hkl_file"),
])
def test_invalid_submission_is_422_and_queues_nothing(service, alice, body, field):
    before = _job_count(alice), _queue_length(service, "auto")
    r = alice.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert field in [e["field"] for e in errors], errors
    assert all(e["message"] for e in errors)
    assert (_job_count(alice), _queue_length(service, "auto")) == before


# -- limits ------------------------------------------------------------------------------------------
def test_detector_pixel_limit(alice):
    r = alice.post("/v1/jobs", json={"config": dict(SMALL_CONFIG, detector={
        "fast_pixels": 600, "slow_pixels": 600})})
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["limit"] == "max_detector_pixels" and err["value"] == 360000
    assert err["allowed"] == int(LIMITS["BRAGG_MAX_DETECTOR_PIXELS"])


def test_evaluation_limit(alice):
    args = with_flag(with_flag(LONG_ARGS, "-detpixels", 512), "-phisteps", 1000)
    r = alice.post("/v1/jobs", json={"nanobragg_args": args})
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["limit"] == "max_evaluations" and err["value"] == 512 * 512 * 4 * 20 * 1000
    assert "max_evaluations" in err["message"]


def test_queued_jobs_per_owner_limit(service, carol):
    limit = int(LIMITS["BRAGG_MAX_QUEUED_JOBS_PER_OWNER"])
    # CUDA jobs stay queued: the test fleet has CPU workers only
    jobs = [submit(carol, {"config": SMALL_CONFIG, "device": "cuda"}) for _ in range(limit)]
    r = carol.post("/v1/jobs", json={"config": SMALL_CONFIG, "device": "cuda"})
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 3600
    body = r.json()
    err = body["errors"][0]
    assert err["limit"] == "max_queued_jobs_per_owner" and err["allowed"] == limit
    assert err["value"] == limit + 1 and err["unfinished"]["jobs"] == limit + 1
    assert "max_queued_jobs_per_owner" in body["detail"] and "try again in" in body["hint"]
    for j in jobs:
        assert carol.post(f"/v1/jobs/{j['id']}/cancel").json()["status"] == "canceled"
    j = submit(carol, {"config": SMALL_CONFIG, "device": "cuda"})
    carol.post(f"/v1/jobs/{j['id']}/cancel")


def test_every_job_has_a_finite_timeout(alice):
    small = submit(alice, {"config": SMALL_CONFIG})
    big = submit(alice, {"nanobragg_args": LONG_ARGS, "device": "cuda"})
    alice.post(f"/v1/jobs/{big['id']}/cancel")
    assert 0 < small["timeout_s"] < big["timeout_s"] < 24 * 3600
    wait_status(alice, small["id"])


# -- cancel -------------------------------------------------------------------------------------------
def test_cancel_queued_job(service, alice):
    job = submit(alice, {"config": SMALL_CONFIG, "device": "cuda"})
    assert _queue_length(service, "cuda") >= 1
    r = alice.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200
    rec = r.json()
    assert rec["status"] == "canceled" and rec["finished_at"] and rec["artifacts"] == []
    assert get(alice, job["id"])["status"] == "canceled"
    assert _queue_length(service, "cuda") == 0
    assert alice.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "canceled"


def test_cancel_running_job_stops_within_two_seconds(service, alice):
    job = submit(alice, {"nanobragg_args": long_args(8), "label": "to cancel"})
    wait_status(alice, job["id"], ("running",), timeout=60, pred=lambda r: r["progress"] > 0)
    t0 = time.monotonic()
    r = alice.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 202 and r.json()["cancel_requested"]
    rec = wait_status(alice, job["id"], timeout=10, interval=0.02)
    elapsed = time.monotonic() - t0
    assert rec["status"] == "canceled", rec
    assert elapsed < 2.0, elapsed
    assert rec["artifacts"] == []
    assert alice.get(f"/v1/jobs/{job['id']}/artifacts/floatimage.bin").status_code == 404
    assert not (service.data_dir / "jobs" / job["id"]).exists()
    assert not list((service.data_dir / "tmp").glob(f"job-{job['id']}-*"))
    assert alice.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200


def test_cancel_finished_job_is_409(alice):
    job = submit(alice, {"config": SMALL_CONFIG})
    wait_status(alice, job["id"])
    assert alice.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409


# -- a job that fails in the engine ---------------------------------------------------------------
def test_engine_failure_is_recorded_and_the_worker_goes_on(service, alice):
    bad = submit(alice, {"config": dict(SMALL_CONFIG, sampling={"roi": [0, 10, 0, 10]}),
                         "trace_pixels": [[40, 40]]})
    rec = wait_status(alice, bad["id"])
    assert rec["status"] == "failed"
    assert rec["error"]["type"] == "ConfigError"
    assert "(40, 40)" in rec["error"]["message"] and "ROI" in rec["error"]["message"]
    assert rec["artifacts"] == [] and not (service.data_dir / "jobs" / bad["id"]).exists()
    # the same worker takes the next job
    good = [submit(alice, {"config": SMALL_CONFIG}) for _ in range(2)]
    assert all(wait_status(alice, g["id"])["status"] == "finished" for g in good)
    assert all(p.poll() is None for p in service.workers.values())


def test_cuda_unavailable_fails_cleanly(service, alice):
    """A 'cuda' job reaching a CPU-only process (a worker told to listen on the cuda queue)."""
    proc = service._spawn(["worker", "--device", "cpu", "--queues", "cuda", "--name", "cudaq"],
                          "worker-cudaq.log")
    try:
        service.wait_workers(["cudaq"])
        job = submit(alice, {"config": SMALL_CONFIG, "device": "cuda"})
        rec = wait_status(alice, job["id"], timeout=30)
        assert rec["status"] == "failed" and rec["error"]["type"] == "DeviceError"
    finally:
        proc.terminate()
        proc.wait(10)


# -- reading: ETag, listing, events ----------------------------------------------------------------
def test_etag_and_304(alice):
    job = submit(alice, {"config": SMALL_CONFIG})
    rec = wait_status(alice, job["id"])
    r = alice.get(f"/v1/jobs/{job['id']}")
    etag = r.headers["etag"]
    r2 = alice.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": etag})
    assert r2.status_code == 304 and r2.content == b""
    assert alice.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": '"x.1"'}).status_code == 200
    art = rec["artifacts"][0]
    r3 = alice.get(art["url"], headers={"If-None-Match": f'"{art["sha256"]}"'})
    assert r3.status_code == 304


def test_etag_changes_with_the_record(alice):
    job = submit(alice, {"config": SMALL_CONFIG, "device": "cuda"})
    e1 = alice.get(f"/v1/jobs/{job['id']}").headers["etag"]
    alice.post(f"/v1/jobs/{job['id']}/cancel")
    r = alice.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": e1})
    assert r.status_code == 200 and r.headers["etag"] != e1


def test_list_newest_first_paginated_and_filtered(bob):
    ids = [submit(bob, {"config": SMALL_CONFIG, "label": f"n{i}"})["id"] for i in range(3)]
    for i in ids:
        wait_status(bob, i)
    page1 = bob.get("/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page1["jobs"]] == ids[::-1][:2]
    page2 = bob.get("/v1/jobs", params={"limit": 2, "cursor": page1["next_cursor"]}).json()
    assert page2["jobs"][0]["id"] == ids[0]
    finished = bob.get("/v1/jobs", params={"status": "finished", "limit": 200}).json()["jobs"]
    assert set(ids) <= {j["id"] for j in finished}
    assert bob.get("/v1/jobs", params={"status": "weird"}).status_code == 422


def test_events_stream_until_the_end(service, alice):
    # a job of several seconds: several progress changes
    job = submit(alice, {"nanobragg_args": long_args(3)})
    events = []
    with alice.stream("GET", f"/v1/jobs/{job['id']}/events", timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    statuses = [e["status"] for k, e in events if k == "status"]
    assert statuses[-1] == "finished" and "running" in statuses
    progress = [e["progress"] for _, e in events]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert any(k == "progress" for k, _ in events)


# -- more traces of a finished job -----------------------------------------------------------------
def test_trace_more_pixels(service, alice):
    job = submit(alice, {"config": SMALL_CONFIG, "trace_pixels": [[32, 32]]})
    wait_status(alice, job["id"])
    jid = job["id"]
    r = alice.get(f"/v1/jobs/{jid}/trace", params={"pixel": "10,20"})
    assert r.status_code == 404 and f"/v1/jobs/{jid}/traces" in r.json()["hint"]
    r = alice.post(f"/v1/jobs/{jid}/traces", json={"pixels": [[10, 20], [32, 32]]})
    assert r.status_code == 202, r.text
    body = r.json()
    tj = body["trace_job"]
    assert tj["kind"] == "trace" and tj["parent"] == jid
    assert tj["config_sha256"] == get(alice, jid)["config_sha256"]
    states = {tuple(p["pixel"]): p["status"] for p in body["pixels"]}
    assert states == {(10, 20): "pending", (32, 32): "ready"}
    first = alice.get(f"/v1/jobs/{jid}/trace", params={"pixel": "10,20"})
    if first.status_code == 404:
        assert tj["id"] in first.json()["hint"]
    wait_status(alice, tj["id"])
    r = alice.get(f"/v1/jobs/{jid}/trace", params={"pixel": "10,20"})
    assert r.status_code == 200
    assert r.text.startswith("TRACE_PY_CONFIG: tracing pixel (spixel=10, fpixel=20)")
    # asking again creates nothing new
    again = alice.post(f"/v1/jobs/{jid}/traces", json={"pixels": [[10, 20]]})
    assert again.status_code == 200 and again.json()["trace_job"] is None
    assert alice.post(f"/v1/jobs/{jid}/traces", json={"pixels": [[64, 0]]}).status_code == 422
    assert alice.get(f"/v1/jobs/{jid}/trace", params={"pixel": "ten"}).status_code == 422


# -- artifacts: names exactly as listed --------------------------------------------------------------
def test_artifact_names_are_exactly_those_listed(service, alice):
    job = submit(alice, {"config": SMALL_CONFIG, "outputs": ["float", "png"]})
    rec = wait_status(alice, job["id"])
    files = download_all(alice, rec)
    assert files["preview.png"].startswith(b"\x89PNG")
    base = f"/v1/jobs/{job['id']}/artifacts/"
    r = alice.get(base + "preview.png")
    assert r.headers["content-type"] == "image/png"
    assert alice.get(base + "run_metadata.json").headers["content-type"] == "application/json"
    for name in ("intimage.img", "noiseimage.img", "..%2F..%2Fsha256.txt", "../../etc/passwd",
                 "%2e%2e", ".", "sha256.txt.part", "SHA256.TXT"):
        assert alice.get(base + name).status_code == 404, name
    raw = httpx.get(service.base_url + base + "..%2F" + job["id"] + "%2Fsha256.txt",
                    headers=alice.headers)
    assert raw.status_code == 404

"""Owner isolation, health, metrics and the OpenAPI document."""

from __future__ import annotations

import httpx

from tests.service.helpers import SMALL_CONFIG, submit, wait_status


def test_owner_isolation(alice, bob):
    job = submit(alice, {"config": SMALL_CONFIG, "trace_pixels": [[1, 2]], "label": "alice's"})
    rec = wait_status(alice, job["id"])
    jid = job["id"]
    for method, path in [("GET", f"/v1/jobs/{jid}"), ("POST", f"/v1/jobs/{jid}/cancel"),
                         ("GET", f"/v1/jobs/{jid}/artifacts/floatimage.bin"),
                         ("GET", f"/v1/jobs/{jid}/events"),
                         ("GET", f"/v1/jobs/{jid}/trace?pixel=1,2")]:
        r = bob.request(method, path)
        assert r.status_code == 404, (method, path, r.status_code)
    r = bob.post(f"/v1/jobs/{jid}/traces", json={"pixels": [[3, 3]]})
    assert r.status_code == 404
    assert jid not in {j["id"] for j in bob.get("/v1/jobs", params={"limit": 200}).json()["jobs"]}
    assert jid in {j["id"] for j in alice.get("/v1/jobs", params={"limit": 200}).json()["jobs"]}
    assert alice.get(rec["artifacts"][0]["url"]).status_code == 200
    # an unknown job looks the same as another owner's (each answer names the id asked for)
    unknown = "0123456789abcdef" * 2
    assert bob.get(f"/v1/jobs/{unknown}").json() == {"detail": f"job {unknown} not found"}
    assert bob.get(f"/v1/jobs/{jid}").json() == {"detail": f"job {jid} not found"}


def test_healthz_readyz(service):
    assert httpx.get(f"{service.base_url}/healthz").json() == {"status": "ok"}
    r = httpx.get(f"{service.base_url}/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready" and body["redis"] == "ok"
    assert {w["name"] for w in body["workers"]} >= set(service.workers)
    assert all(w["device"] == "cpu" for w in body["workers"])


def test_metrics(service, alice):
    job = submit(alice, {"config": SMALL_CONFIG})
    wait_status(alice, job["id"])
    text = httpx.get(f"{service.base_url}/metrics").text
    for needle in ('bragg_jobs{status="finished"}', 'bragg_jobs{status="queued"}',
                   'bragg_queue_length{queue="cpu"}', "bragg_job_duration_seconds_bucket",
                   "bragg_job_duration_seconds_count", "bragg_evaluations_total",
                   'bragg_evaluations_per_second{device="cpu"}', 'bragg_workers{device="cpu"}'):
        assert needle in text, needle
    finished = [line for line in text.splitlines() if line.startswith('bragg_jobs{status="finished"}')]
    assert float(finished[0].split()[-1]) >= 1


def test_openapi_documents_every_route_with_examples(service):
    spec = httpx.get(f"{service.base_url}/openapi.json").json()
    routes = {("post", "/v1/files"), ("post", "/v1/jobs"), ("get", "/v1/jobs"),
              ("get", "/v1/jobs/{job_id}"), ("post", "/v1/jobs/{job_id}/cancel"),
              ("get", "/v1/jobs/{job_id}/artifacts/{name}"), ("get", "/v1/jobs/{job_id}/trace"),
              ("post", "/v1/jobs/{job_id}/traces"), ("get", "/v1/jobs/{job_id}/events"),
              ("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics")}
    paths = spec["paths"]
    for method, path in routes:
        op = paths[path][method]
        assert op.get("summary"), (method, path)
        assert "example" in str(op) or "examples" in str(op), (method, path)
    assert "JobSubmission" in spec["components"]["schemas"]
    assert "SimulationConfig" in spec["components"]["schemas"]


def test_docs_are_public(service):
    assert httpx.get(f"{service.base_url}/docs").status_code == 200

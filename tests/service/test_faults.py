"""Faults with real processes: a worker killed right after taking a job, the API killed between the
record and the queue entry, idempotent retries, Redis stopped and started again, a read-only or
full data folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis

from tests.service.conftest import (ROOT, TOKENS, Service, free_port, redis_server_binary,
                                    wait_for)
from tests.service.helpers import SMALL_CONFIG, get, long_args, submit, wait_status

H = {"Authorization": f"Bearer {TOKENS['alice']}"}


def _idle_workers(service) -> dict:
    service.ensure_workers(2)
    wait_for(lambda: all(w["state"] == "idle" for w in httpx.get(
        f"{service.base_url}/readyz").json()["workers"]), 30, what="idle workers")
    return dict(service.workers)


def test_worker_killed_right_after_taking_a_job(service, alice):
    """Stopped workers sit in RQ's blocking pop: Redis hands the job to one of them, which dies
    before starting it. The sweeper finds the queued job on no queue and enqueues it again."""
    victims = _idle_workers(service)
    for proc in victims.values():
        proc.send_signal(signal.SIGSTOP)
    try:
        job = submit(alice, {"config": SMALL_CONFIG, "label": "taken by a dying worker"})
        wait_for(lambda: service.redis.llen("rq:queue:bragg:auto") == 0, 10,
                 what="a stopped worker's pop to take the job")
    finally:
        for name in victims:
            service.kill_worker(name, signal.SIGKILL)
    first_entry = service.redis.hget(f"bragg:job:{job['id']}", "rq_id")
    service.ensure_workers(2)
    done = wait_status(alice, job["id"], timeout=60)
    assert done["status"] == "finished" and done["attempts"] == 1, done
    assert service.redis.hget(f"bragg:job:{job['id']}", "rq_id") != first_entry


def test_api_killed_between_record_and_queue(service, alice):
    """An API process that dies right after writing the record: the job is in the outbox, the
    other API's sweeper enqueues it; the client's retry with its key gets that same job."""
    key = str(uuid.uuid4())
    body = {"config": SMALL_CONFIG, "label": "outbox"}
    service.post_to_an_api_that_dies_after_the_record(body, dict(H, **{"Idempotency-Key": key}))
    jobs = alice.get("/v1/jobs", params={"limit": 5}).json()["jobs"]
    job = next(j for j in jobs if j["label"] == "outbox")
    done = wait_status(alice, job["id"], timeout=60)
    assert done["status"] == "finished"
    r = alice.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert r.status_code == 202 and r.json()["id"] == job["id"]
    assert r.headers["idempotent-replayed"] == "true"


def test_idempotency_key(service, alice, bob):
    key = str(uuid.uuid4())
    body = {"config": SMALL_CONFIG, "label": "once"}
    first = alice.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 202 and "idempotent-replayed" not in first.headers
    again = alice.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    other = alice.post("/v1/jobs", json=dict(body, label="twice"),
                       headers={"Idempotency-Key": key})
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    theirs = bob.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]
    for c, r in ((alice, first), (bob, theirs)):
        assert wait_status(c, r.json()["id"])["status"] == "finished"


def test_client_sends_a_key_and_retries(service):
    from client.api_client import BraggClient
    c = BraggClient(service.base_url, token=TOKENS["alice"])
    job = c.submit({"config": SMALL_CONFIG, "label": "client key"})
    assert c.last_idempotency_key
    again = c.submit({"config": SMALL_CONFIG, "label": "client key"},
                     idempotency_key=c.last_idempotency_key)
    assert again["id"] == job["id"]
    assert c.wait(job["id"], timeout=60)["status"] == "finished"


# -- a deployment of its own: Redis with its append-only file, stopped and started again ------------
@pytest.fixture()
def aof_stack(tmp_path):
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server")
    port = free_port()
    rdir = tmp_path / "redis"
    rdir.mkdir()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
           "yes", "--appendfsync", "always", "--dir", str(rdir)]

    def start_redis():
        p = subprocess.Popen(cmd, stdout=open(rdir / "redis.log", "ab"), stderr=subprocess.STDOUT)
        wait_for(redis.Redis(port=port).ping, 15, what="redis-server")
        return p

    state = {"redis": start_redis()}
    svc = Service(tmp_path / "svc", f"redis://127.0.0.1:{port}/0")
    svc.start_api()
    svc.start_worker()
    svc.wait_workers(svc.workers)
    yield svc, state, start_redis
    svc.stop_all()
    state["redis"].terminate()
    state["redis"].wait(10)


def _events(base: str, job_id: str, out: list) -> None:
    with httpx.stream("GET", f"{base}/v1/jobs/{job_id}/events", headers=H, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("event: "):
                out.append(line[7:])
    out.append("closed")


def test_redis_restart_with_no_process_restarted(aof_stack):
    svc, state, start_redis = aof_stack
    with svc.client() as alice:
        long = submit(alice, {"nanobragg_args": long_args(4), "label": "through the outage"})
        small = [submit(alice, {"config": SMALL_CONFIG})["id"] for _ in range(2)]
        wait_status(alice, long["id"], ("running",), timeout=60)
        events: list[str] = []
        t = threading.Thread(target=_events, args=(svc.base_url, long["id"], events), daemon=True)
        t.start()
        wait_for(lambda: "status" in events, 10, what="the first event")
        state["redis"].terminate()
        state["redis"].wait(10)
        time.sleep(5)
        t.join(10)
        assert events[-2:] == ["error", "closed"], events  # an error event, then a clean close
        state["redis"] = start_redis()
        for job_id in [long["id"], *small]:
            assert wait_status(alice, job_id, timeout=120)["status"] == "finished"
        after = submit(alice, {"config": SMALL_CONFIG})
        assert wait_status(alice, after["id"], timeout=60)["status"] == "finished"
    assert svc.api.poll() is None
    assert all(p.poll() is None for p in svc.workers.values())


# -- the data folder: read-only, full -------------------------------------------------------------
def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


needs_mount_ns = pytest.mark.skipif(not _can_unshare(), reason="needs a private mount namespace "
                                                                "(unshare -m, as root)")


def _spawn_in_ns(service, mount: str, args: list[str], log: str, env: dict) -> subprocess.Popen:
    """A `bragg` process in its own mount namespace, after ``mount`` (a shell command)."""
    cmd = f"{mount} && exec {sys.executable} -m bragg.main " + " ".join(args)
    return subprocess.Popen(["unshare", "-m", "sh", "-c", cmd], cwd=ROOT, env=env,
                            stdout=open(service.logs / log, "ab"), stderr=subprocess.STDOUT)


@needs_mount_ns
@pytest.mark.parametrize("fault,status", [("read-only", 503), ("full", 507)])
def test_data_folder_faults_answer_json(service, tmp_path, fault, status):
    data = tmp_path / "data"
    for sub in ("files", "jobs", "tmp"):
        (data / sub).mkdir(parents=True)
    mount = (f"mount --bind -o ro {data} {data}" if fault == "read-only" else
             f"mount -t tmpfs -o size=32k tmpfs {data} && mkdir {data}/files {data}/jobs {data}/tmp")
    port = free_port()
    env = dict(service.env, BRAGG_DATA_DIR=str(data), BRAGG_NAMESPACE=f"disk{port}")
    proc = _spawn_in_ns(service, mount, ["api", "--port", str(port)], f"api-{fault}.log", env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(base + "/healthz").status_code == 200, 30, what="the API")
        hkl = "".join(f"{h} {k} 0 100.0\n" for h in range(-60, 60) for k in range(-60, 60))
        r = httpx.post(base + "/v1/files", headers=H, data={"kind": "hkl"},
                       files={"file": ("big.hkl", hkl.encode()[:900_000])}, timeout=30)
        assert r.status_code == status, r.text
        body = r.json()
        assert body["detail"].startswith("the service's data folder is")
        assert str(data) not in r.text and "/tmp" not in r.text
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)


@needs_mount_ns
def test_worker_fails_jobs_on_a_read_only_folder_and_stays_up(service, tmp_path):
    from jobs.settings import Settings
    from app.submit import create_job
    from sim_core.config import load_config
    from worker import context

    data = tmp_path / "data"
    for sub in ("files", "jobs", "tmp"):
        (data / sub).mkdir(parents=True)
    ns = f"ro{free_port()}"
    env = dict(service.env, BRAGG_DATA_DIR=str(data), BRAGG_NAMESPACE=ns,
               BRAGG_WORKER_WARMUP="false")
    proc = _spawn_in_ns(service, f"mount --bind -o ro {data} {data}",
                        ["worker", "--device", "cpu", "--name", ns], "worker-ro.log", env)
    settings = Settings(redis_url=service.redis_url, namespace=ns, data_dir=data)
    ctx = context.build("cpu", name="submitter", settings=settings)
    try:
        for _ in range(2):
            cfg = load_config(SMALL_CONFIG)
            cfg.noise.seed = 1
            job_id = create_job(ctx, "tester", kind="render", config=cfg, file_names={},
                                outputs=["float"], shape=(64, 64), evaluations=4096, warnings=[])
            rec = wait_for(lambda: (lambda r: r if r.status in ("failed", "finished") else None)(
                ctx.records.get(job_id)), 120, 0.1, what="the job to end")
            assert rec.status == "failed" and rec.error_type == "StorageError", rec
            assert rec.error_message.startswith("the service's data folder is read-only")
            assert str(data) not in rec.error_message
            assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(20)

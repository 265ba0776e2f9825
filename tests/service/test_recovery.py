"""Failures of processes: a worker killed mid-job, an API restart."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.service.helpers import SMALL_CONFIG, download_all, get, long_args, submit, wait_status


def _running_on(alice, job_id: str, timeout: float = 60) -> dict:
    return wait_status(alice, job_id, ("running",), timeout=timeout,
                       pred=lambda r: r["progress"] > 0.05)


def test_sigkill_mid_job_is_taken_over_by_another_worker(service, alice, tmp_path):
    service.ensure_workers(2)
    job = submit(alice, {"nanobragg_args": long_args(5), "label": "survives a SIGKILL"})
    rec = _running_on(alice, job["id"])
    victim = rec["worker"]
    assert victim in service.workers
    t_kill = time.monotonic()
    service.kill_worker(victim, signal.SIGKILL)
    done = wait_status(alice, job["id"], timeout=60)
    assert time.monotonic() - t_kill < 60
    assert done["status"] == "finished", done
    assert done["attempts"] == 2 and done["worker"] != victim
    files = download_all(alice, done)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert subprocess.run(["sha256sum", "-c", "sha256.txt"], cwd=tmp_path,
                          capture_output=True).returncode == 0
    # nothing of the killed attempt is left behind
    assert not list((service.data_dir / "tmp").glob(f"job-{job['id']}-*"))
    service.ensure_workers(2)


def test_sigkill_on_every_attempt_ends_failed(service, alice):
    """With BRAGG_JOB_RETRIES=1 a job has two attempts; killing both ends it failed."""
    service.ensure_workers(2)
    job = submit(alice, {"nanobragg_args": long_args(6), "label": "killed twice"})
    first = _running_on(alice, job["id"])
    service.start_worker()  # a third worker keeps the fleet (and the reaper) alive
    service.kill_worker(first["worker"], signal.SIGKILL)
    second = wait_status(alice, job["id"], ("running",), timeout=60,
                         pred=lambda r: r["attempts"] == 2 and r["progress"] > 0)
    assert second["worker"] != first["worker"]
    service.kill_worker(second["worker"], signal.SIGKILL)
    done = wait_status(alice, job["id"], timeout=60)
    assert done["status"] == "failed", done
    assert done["error"]["type"] == "WorkerLost"
    assert "attempt 2 of 2" in done["error"]["message"]
    assert second["worker"] in done["error"]["message"]
    assert done["artifacts"] == [] and not (service.data_dir / "jobs" / job["id"]).exists()
    service.ensure_workers(2)


def test_queued_jobs_survive_an_api_restart(service, alice):
    job = submit(alice, {"config": SMALL_CONFIG, "device": "cuda"})  # no CUDA worker: stays queued
    service.stop_api()
    service.start_api()
    rec = get(alice, job["id"])
    assert rec["status"] == "queued"
    assert service.redis.llen("rq:queue:bragg:cuda") >= 1
    assert alice.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "canceled"


def test_warm_shutdown_finishes_the_job(service, alice):
    """SIGTERM: the worker finishes its job, then leaves."""
    service.ensure_workers(2)
    job = submit(alice, {"nanobragg_args": long_args(2)})
    rec = wait_status(alice, job["id"], ("running",), timeout=60)
    proc = service.workers.pop(rec["worker"])
    proc.send_signal(signal.SIGTERM)
    done = wait_status(alice, job["id"], timeout=60)
    assert done["status"] == "finished" and done["attempts"] == 1
    assert proc.wait(30) == 0
    service.ensure_workers(2)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1"])
def test_api_without_tokens_refuses_non_loopback(service, host):
    env = {k: v for k, v in service.env.items() if k not in ("BRAGG_TOKENS", "BRAGG_TOKENS_FILE")}
    proc = service._spawn(["api", "--host", host, "--port", "1"], "api-refused.log", env=env)
    assert proc.wait(60) == 2
    log = service.log_tail("api-refused.log")
    assert "no tokens are configured" in log and host in log


def test_api_answers_503_while_redis_is_down(service, tmp_path):
    """An API pointed at a Redis that is not there: health is up, the rest is 503, not 500."""
    import httpx
    from tests.service.conftest import free_port, wait_for
    port = free_port()
    env = dict(service.env, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
               BRAGG_DATA_DIR=str(tmp_path / "data"))
    proc = service._spawn(["api", "--port", str(port)], "api-no-redis.log", env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(base + "/healthz").status_code == 200, 30, what="the API")
        h = {"Authorization": "Bearer alice-token"}
        r = httpx.get(base + "/v1/jobs/0123abcd", headers=h)
        assert r.status_code == 503 and "Redis" in r.json()["detail"]
        assert httpx.get(base + "/v1/jobs", headers=h).status_code == 503
        assert httpx.get(base + "/readyz").status_code == 503
    finally:
        proc.terminate()
        proc.wait(10)

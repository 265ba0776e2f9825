"""The worker's parts run in this process against the real Redis of the session (a namespace of
their own, which the session's workers do not serve): job timeout, the attempt fence that stops a
worker presumed dead from publishing, the sweeper; and the settings, store and bind rules."""

from __future__ import annotations

import time

import pytest

from jobs.job import Job
from app.http_server import check_bind
from jobs.settings import Settings
from jobs.store import LocalStore, safe_name
from app.submit import create_job
from sim_core.config import load_config
from tests.service.helpers import SMALL_CONFIG, long_args
from jobs import sweeper
from worker import context
from worker.tasks import run_job


@pytest.fixture()
def wctx(redis_url, tmp_path):
    settings = Settings(redis_url=redis_url, namespace=f"unit{time.monotonic_ns()}",
                        data_dir=tmp_path / "data", lease_ttl_s=2, reaper_interval_s=0.1,
                        job_timeout_base_s=600, job_timeout_min_rate=1e12, job_retries=1)
    ctx = context.build("cpu", name="in-process", settings=settings)
    context.install(ctx)
    yield ctx
    context.install(None)


def _create(ctx, config: dict, evaluations: int = 1000) -> str:
    cfg = load_config(config)
    cfg.noise.seed = 1
    return create_job(ctx, "tester", kind="render", config=cfg, file_names={}, outputs=["float"],
                      shape=(64, 64), evaluations=evaluations, warnings=[])


def test_a_job_past_its_timeout_fails(wctx):
    from sim_core.nanobragg_args import parse_nanobragg_args
    cfg = parse_nanobragg_args(long_args(4)).config.model_dump(mode="json")
    wctx.settings.job_timeout_base_s = 0.5  # a timeout of 1 s (the others' is generous)
    job_id = _create(wctx, cfg)
    rec = wctx.records.get(job_id)
    assert rec.timeout_s == 1
    t0 = time.monotonic()
    assert run_job(job_id) == "failed"
    assert time.monotonic() - t0 < 5
    rec = wctx.records.get(job_id)
    assert rec.status == "failed" and rec.error_type == "JobTimeout"
    assert not (wctx.settings.data_dir / "jobs" / job_id).exists()


def test_run_job_in_process(wctx):
    job_id = _create(wctx, SMALL_CONFIG)
    assert run_job(job_id) == "finished"
    rec = wctx.records.get(job_id)
    names = {a.name for a in rec.artifacts}
    assert names == {"floatimage.bin", "run_metadata.json", "commands.txt", "sha256.txt"}
    assert run_job(job_id) == "finished"  # a duplicate delivery does not run it again
    assert wctx.records.get(job_id).attempts == 1


def test_attempt_fence(wctx):
    rec_id = _create(wctx, SMALL_CONFIG)
    r = wctx.records
    assert r.start(rec_id, "zombie", "cpu", 2) == ("running", 1)
    wctx.redis.delete(r._k.lease(rec_id))  # the zombie stopped renewing
    assert r.requeue(rec_id, "tester", 1, "rq_x", "test") == "queued"
    assert r.start(rec_id, "w2", "cpu", 2) == ("running", 2)
    # the zombie wakes up: it can neither renew nor publish
    assert r.renew(rec_id, "zombie", 1, 2, 0.5) == "lost"
    assert r.finish(rec_id, "tester", "zombie", 1, "finished", {"artifacts": []}) == "lost"
    assert r.finish(rec_id, "tester", "w2", 2, "finished", {"artifacts": []}) == "finished"


def test_sweeper_requeues_at_the_front_then_fails(wctx):
    job_id = _create(wctx, SMALL_CONFIG)
    behind = _create(wctx, SMALL_CONFIG)
    r = wctx.records
    queue_key = f"rq:queue:{wctx.settings.namespace}:auto"
    wctx.redis.lrem(queue_key, 1, r.get(job_id).rq_id)
    assert r.start(job_id, "dead-1", "cpu", 1)[0] == "running"
    assert sweeper.sweep(wctx, "t").requeued == []  # the lease is still alive
    time.sleep(1.2)
    assert sweeper.sweep(wctx, "t").requeued == [(job_id, "queued")]
    rec = r.get(job_id)
    assert rec.status == "queued" and "dead-1" in rec.requeued_reason
    # put back on its queue, ahead of the job that was waiting
    assert [m.decode() for m in wctx.redis.lrange(queue_key, 0, -1)] == [
        rec.rq_id, r.get(behind).rq_id]
    assert r.start(job_id, "dead-2", "cpu", 1) == ("running", 2)
    time.sleep(1.2)
    assert sweeper.sweep(wctx, "t").requeued == [(job_id, "failed")]
    rec = r.get(job_id)
    assert rec.status == "failed" and rec.error_type == "WorkerLost"
    assert job_id not in r.running_ids()
    assert r.status_counts()["failed"] == 1 and r.status_counts()["running"] == 0
    r.cancel(behind, "tester")


def test_status_counts_follow_transitions(wctx):
    ids = [_create(wctx, SMALL_CONFIG) for _ in range(3)]
    r = wctx.records
    r.cancel(ids[0], "tester")
    r.start(ids[1], "w", "cpu", 5)
    assert r.status_counts() == {"queued": 1, "running": 1, "finished": 0, "failed": 0,
                                 "canceled": 1}


def test_a_queued_job_on_no_queue_is_enqueued_again_at_the_front(wctx):
    """The outbox: a record whose queue entry is gone (never written, or taken by a worker that
    died) is enqueued again one lease time later; the old entry can no longer start it."""
    r = wctx.records
    waiting = _create(wctx, SMALL_CONFIG)
    lost = _create(wctx, SMALL_CONFIG)
    queue_key = f"rq:queue:{wctx.settings.namespace}:auto"
    old_entry = r.get(lost).rq_id
    wctx.redis.lrem(queue_key, 1, old_entry)  # as a worker's pop does
    assert sweeper.sweep(wctx, "t").reenqueued == []  # younger than a lease
    time.sleep(wctx.settings.lease_ttl_s + 0.2)
    assert sweeper.sweep(wctx, "t").reenqueued == [lost]
    new_entry = r.get(lost).rq_id
    assert new_entry != old_entry
    assert [m.decode() for m in wctx.redis.lrange(queue_key, 0, -1)] == [
        new_entry, r.get(waiting).rq_id]
    assert r.start(lost, "late", "cpu", 2, old_entry) == ("superseded", 0)
    assert r.start(lost, "w", "cpu", 2, new_entry) == ("running", 1)
    assert sweeper.sweep(wctx, "t").reenqueued == []  # the waiting one is in line
    # RQ's failed registry holds the replaced entry (as RQ puts one there once its worker is
    # found dead): the sweeper drops it and its RQ job; the current entry stays
    failed = f"rq:failed:{wctx.settings.namespace}:auto"
    wctx.redis.zadd(failed, {old_entry: time.time() + 1000, new_entry: time.time() + 1000})
    wctx.redis.hset(f"rq:job:{old_entry}", "status", "failed")
    assert sweeper.sweep(wctx, "t").registry_entries == 1
    assert wctx.redis.zrange(failed, 0, -1) == [new_entry.encode()]
    assert not wctx.redis.exists(f"rq:job:{old_entry}")


def test_retention_removes_old_jobs_uploads_and_tmp(wctx):
    import os
    s, r, store = wctx.settings, wctx.records, wctx.store
    done = _create(wctx, SMALL_CONFIG)
    assert run_job(done) == "finished"
    live = _create(wctx, SMALL_CONFIG)
    src = store.scratch_file()
    src.write_bytes(b"1 2 3 4.0\n")
    digest = "ab" * 32
    store.put_input(src, digest)
    r.put_file("tester", digest, "P1.hkl", 10, "hkl")
    old_tmp = store.tmp / "upload-killed.part"
    old_tmp.write_bytes(b"x")
    os.utime(old_tmp, (time.time() - 7200, time.time() - 7200))
    r.r.sadd(r._k.owner_active("tester"), "gone-job")  # a lost entry holding the quota
    s.job_retention_s = s.upload_retention_s = 0.5
    s.tmp_max_age_s = 3600
    time.sleep(0.6)
    removed = sweeper.apply_retention(wctx)
    assert removed["jobs"] == 1 and removed["job_bytes"] > 0
    assert removed == dict(removed, uploads=1, tmp=1, quota=1)
    assert r.get(done) is None and not (s.data_dir / "jobs" / done).exists()
    assert r.get(live).status == "queued"  # live jobs stay whatever their age
    assert r.get_file("tester", digest) is None and not store.has_input(digest)
    assert not old_tmp.exists()
    assert r.r.smembers(r._k.owner_active("tester")) == {live.encode()}
    assert r.status_counts()["finished"] == 0
    assert r.metrics()["retention_removed:jobs"] == "1"


# -- settings, store, bind rule ---------------------------------------------------------------------
def test_tokens_from_settings_and_file(tmp_path):
    f = tmp_path / "tokens"
    f.write_text("# owners\ncarol: c-token\n\nalice:file-wins\n")
    s = Settings(tokens="alice:a, bob:b", tokens_file=f)
    assert s.token_table() == {"alice": "file-wins", "bob": "b", "carol": "c-token"}
    assert s.owner_of("c-token", s.token_table()) == "carol"
    assert s.owner_of("a", s.token_table()) is None
    with pytest.raises(ValueError):
        Settings(tokens="no-colon").token_table()


def test_bind_rule():
    assert check_bind("0.0.0.0", {}) is not None
    assert check_bind("10.1.2.3", {}) is not None
    assert check_bind("127.0.0.1", {}) is None and check_bind("::1", {}) is None
    assert check_bind("localhost", {}) is None
    assert check_bind("0.0.0.0", {"alice": "x"}) is None


def test_store_publishes_whole_folders(tmp_path):
    store = LocalStore(tmp_path)
    a = store.staging_dir("job1", 1)
    (a / "x.bin").write_bytes(b"first")
    assert store.artifact_path("job1", "x.bin") is None  # not visible before commit
    store.commit("job1", a)
    assert store.artifact_path("job1", "x.bin").read_bytes() == b"first"
    b = store.staging_dir("job1", 2)
    (b / "x.bin").write_bytes(b"second")
    store.commit("job1", b)
    assert store.artifact_path("job1", "x.bin").read_bytes() == b"second"
    assert not list(store.tmp.iterdir())
    left = store.staging_dir("job1", 3)
    store.sweep("job1")
    assert not left.exists()
    for bad in ("../x", "a/b", ".hidden", "..", ""):
        assert not safe_name(bad) and store.artifact_path("job1", bad) is None
    with pytest.raises(ValueError):
        store.staging_dir("../evil", 1)


def test_the_api_starts_without_torch(tmp_path):
    import subprocess
    import sys
    code = ("import sys, app.main, app.http_server\n"
            "app.main.create_app()\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    env = {"BRAGG_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr


def test_the_worker_never_imports_the_http_layer():
    import subprocess
    import sys
    code = ("import sys, worker.main, worker.tasks, worker.worker\n"
            "web = [m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette')\n"
            "       or m in ('app.main', 'app.routes', 'app.errors', 'app.submit')]\n"
            "assert not web, web\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_the_job_model_round_trips_the_hash():
    from jobs.job import TERMINAL_STATUSES, TRANSITIONS, Job, JobStatus
    job = Job(id="j1", owner="alice", outputs=["float"], trace_pixels=[[1, 2]],
              file_names={"sha256:" + "a" * 64: "P1.hkl"}, cancel=True, parent="p0")
    raw = {k.encode(): v.encode() for k, v in job.to_hash().items()}
    back = Job.from_hash(raw)
    assert back == job and back.status is JobStatus.queued and back.cancel is True
    assert raw[b"cancel"] == b"1" and raw[b"started_at"] == b""
    # every status is reachable and every terminal status is a dead end (but for retention)
    reached = {to for (_, to) in TRANSITIONS}
    assert reached == set(JobStatus)
    assert not [t for (frm, t) in TRANSITIONS if frm in TERMINAL_STATUSES]


# -- series -------------------------------------------------------------------------------------------
def _series(ctx, images: int = 3) -> str:
    from app.submit import PreparedJob, create_series
    cfg = load_config(dict(SMALL_CONFIG, detector={"distance_mm": 100, "fast_pixels": 8,
                                                   "slow_pixels": 8},
                           scan={"osc_range_deg": 0.5, "images": images}))
    cfg.noise.seed = 5
    ctx.settings.series_child_evaluations = 1  # one image per child
    ctx.settings.queue_window = 100  # every child let onto the queue (and made) at once
    prepared = PreparedJob(config=cfg, file_names={}, outputs=["float"], shape=(8, 8),
                           evaluations=64, images=images)
    return create_series(ctx, "tester", prepared)


def test_a_series_child_moved_behind_the_parents_back_is_rolled_up(wctx):
    r = wctx.records
    parent = _series(wctx)
    children = r.child_ids(parent)
    assert len(children) == 3 and r.get(parent).status == "queued"
    assert r.r.sismember(r._k.owner_active("tester"), parent)
    assert not r.r.sismember(r._k.owner_active("tester"), children[0])
    for child in children:
        assert run_job(child) == "finished", r.get(child).error_message
    done = r.get(parent)
    assert done.status == "finished" and done.images_done == 3
    # ROLLUP counts a child once, whoever calls it and however often
    for child in children:
        assert r.rollup(parent, child, "tester") == "finished"
    assert r.get(parent).images_done == 3 and r.status_counts()["finished"] == 4
    assert not r.r.sismember(r._k.owner_active("tester"), parent)
    assert not r.r.sismember(r._k.series, parent)


def test_the_sweeper_settles_a_child_whose_worker_died_before_rolling_up(wctx):
    r = wctx.records
    parent = _series(wctx, images=2)
    first, second = r.child_ids(parent)
    assert run_job(first) == "finished"
    # the second child ends without ROLLUP (its worker died right after FINISH)
    status, attempt = r.start(second, "ghost", "cpu", 60)
    assert status == "running"
    assert r.finish(second, "tester", "ghost", attempt, "failed",
                    {"error_type": "Boom", "error_message": "lost"}) == "failed"
    assert r.get(parent).status == "running"
    assert sweeper.settle_series(wctx) >= 1
    rec = r.get(parent)
    assert rec.status == "failed" and rec.images_done == 1 and rec.images_failed == 1
    assert rec.failures == [{"images": [2], "error": {"type": "Boom", "message": "lost"}}]
    assert rec.error_type == "ImagesFailed" and "image 2: Boom: lost" in rec.error_message


def test_retention_removes_a_series_with_its_children(wctx):
    s, r = wctx.settings, wctx.records
    parent = _series(wctx, images=2)
    children = r.child_ids(parent)
    for child in children:
        assert run_job(child) == "finished"
        assert (s.data_dir / "jobs" / child).exists()
    s.job_retention_s = 0.3
    time.sleep(0.4)
    removed = sweeper.apply_retention(wctx)
    assert removed["jobs"] == 3
    assert all(r.get(j) is None for j in [parent, *children])
    assert not any((s.data_dir / "jobs" / c).exists() for c in children)
    assert not r.r.exists(r._k.children(parent)) and not r.r.exists(r._k.settled(parent))


def test_cancel_of_a_queued_series_ends_it_and_empties_the_queue(wctx):
    from jobs import queue as rq_queue
    from app.routes.jobs import cancel_children
    r = wctx.records
    parent = _series(wctx, images=5)
    queue = r.get(r.child_ids(parent)[0]).queue
    assert len(rq_queue.waiting(wctx.redis, queue)) == 5
    assert r.mark_cancel(parent, "tester") == "cancel-requested"
    cancel_children(wctx, parent, "tester")
    rec = r.get(parent)
    assert rec.status == "canceled" and rec.images_canceled == 5 and rec.children_ended == 5
    assert rq_queue.waiting(wctx.redis, queue) == set()
    assert {r.get(c).status for c in r.child_ids(parent)} == {"canceled"}
    assert r.status_counts()["canceled"] == 6 and r.status_counts()["queued"] == 0

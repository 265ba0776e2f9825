"""The sweeper: recovery of jobs that lost their worker or their queue entry, and retention.

Every API process and every worker runs it in a thread (:class:`SweeperThread`); one pass runs at a
time in the whole deployment (a Redis lock), so recovery works with no worker left and with no API
left. One pass:

- **lost leases**: a running job whose lease expired (its worker was killed, lost power or hung for
  ``BRAGG_LEASE_TTL_S``) goes back to the *front* of its queue with its attempt count kept, or ends
  ``failed`` (``WorkerLost``) once its attempts are spent, or ``canceled`` if a cancel was asked for;
- **the outbox**: a job queued for longer than the lease time whose queue entry is on no queue (the
  API died between writing the record and enqueueing it, or a worker died between taking the entry
  and starting the job) gets a new entry at the front of its queue; START refuses the old entry;
- **RQ's registries**: started and failed entries of RQ jobs that no record points to any more
  are removed;
- **series**: every child of a series not ended yet that has moved is rolled up into its parent
  (the worker does it as the child moves; this catches a worker or an API that died in between);
- **retention** (API processes only, every ``BRAGG_RETENTION_INTERVAL_S``): ended jobs older than
  ``BRAGG_JOB_RETENTION_S`` (record and artifacts), uploads no live job uses and unused for
  ``BRAGG_UPLOAD_RETENTION_S``, temporary folders older than ``BRAGG_TMP_MAX_AGE_S``; the owner's
  count of unfinished jobs is reconciled with the records. What was removed is counted in
  ``ns:metrics`` (``/metrics``: ``bragg_retention_removed_total{what}``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from rq.job import Job as RQJob
from rq.registry import FailedJobRegistry, StartedJobRegistry

from jobs import queue as rq_queue
from jobs.live_workers import fail_unserved
from jobs.job import is_series, is_series_child
from jobs.records import now

log = logging.getLogger("bragg.sweeper")


@dataclass
class SweepReport:
    requeued: list[tuple[str, str]] = field(default_factory=list)
    reenqueued: list[str] = field(default_factory=list)
    unserved: list[str] = field(default_factory=list)
    series_settled: int = 0
    registry_entries: int = 0
    retention: dict[str, int] = field(default_factory=dict)


def sweep(ctx, name: str, *, retention: bool = False) -> SweepReport:
    """One pass, if no other process is sweeping. ``ctx`` has ``redis``, ``records``, ``settings``
    and ``store``."""
    r, records, s = ctx.redis, ctx.records, ctx.settings
    report = SweepReport()
    lock_ttl = max(2, int(s.reaper_interval_s * 2))
    if not r.set(records.k.sweeper_lock, name, nx=True, ex=lock_ttl):
        return report
    try:
        report.requeued = requeue_lost(ctx)
        report.unserved = fail_unserved(ctx)
        report.reenqueued = repair_outbox(ctx)
        report.series_settled = settle_series(ctx)
        report.registry_entries = reconcile_registries(ctx)
        if retention and _due(r, records.k.retention, s.retention_interval_s):
            report.retention = apply_retention(ctx)
    finally:
        # release only our own lock (a pass longer than the TTL may have lost it)
        if r.get(records.k.sweeper_lock) == name.encode():
            r.delete(records.k.sweeper_lock)
    return report


def _due(r, key: str, interval_s: float) -> bool:
    return bool(r.set(key, "1", nx=True, px=max(1, int(interval_s * 1000))))


# -- recovery ---------------------------------------------------------------------------------------
def requeue_lost(ctx) -> list[tuple[str, str]]:
    r, records, s = ctx.redis, ctx.records, ctx.settings
    done = []
    for job_id in records.running_ids():
        if records.lease_holder(job_id):
            continue
        rec = records.get(job_id)
        if rec is None:
            r.srem(records.k.running, job_id)
            continue
        # not running any more (or again, on another attempt): REQUEUE itself decides, atomically
        attempt = int(rec.get("attempts") or 0)
        rq_id = rq_queue.new_rq_id(job_id)
        reason = f"no heartbeat for {s.lease_ttl_s} s"
        outcome = records.requeue(job_id, rec["owner"], attempt, rq_id, reason)
        if outcome == "queued":
            try:
                rq_queue.enqueue(r, rec["queue"], job_id, rq_id, int(rec.get("timeout_s") or 60),
                                 at_front=True)
            except Exception:  # noqa: BLE001 - it is in the outbox: the next passes enqueue it
                log.exception("job %s: requeued but not enqueued yet", job_id)
        if outcome in ("failed", "canceled"):
            records.settle(rec)
        if outcome in ("queued", "failed", "canceled"):
            ctx.store.sweep(job_id)
            log.warning("job %s: worker %s lost during attempt %d: %s", job_id, rec.get("worker"),
                        attempt, outcome)
            done.append((job_id, outcome))
    return done


def repair_outbox(ctx) -> list[str]:
    r, records, s = ctx.redis, ctx.records, ctx.settings
    candidates = records.queued_since(now() - s.lease_ttl_s)
    if not candidates:
        return []
    pipe = r.pipeline(transaction=False)
    for job_id in candidates:
        pipe.hmget(records.k.job(job_id), "status", "rq_id", "queue", "timeout_s")
    rows = pipe.execute()
    waiting: dict[str, set[str]] = {}
    still_waiting = {}
    done = []
    for job_id, (status, rq_id, queue, timeout) in zip(candidates, rows):
        if status != b"queued":
            r.zrem(records.k.queued, job_id)
            continue
        rq_id, queue = (rq_id or b"").decode(), (queue or b"").decode()
        if queue not in waiting:
            waiting[queue] = rq_queue.waiting(r, queue)
        if rq_id in waiting[queue]:
            still_waiting[job_id] = now()  # in line: look again one lease time later
            continue
        new_id = rq_queue.new_rq_id(job_id)
        if not records.reenqueue(job_id, rq_id, new_id):
            continue
        try:
            rq_queue.enqueue(r, queue, job_id, new_id, int(timeout or 60), at_front=True)
        except Exception:  # noqa: BLE001 - still in the outbox
            log.exception("job %s: could not be enqueued again", job_id)
            continue
        log.warning("job %s: queued but on no queue (entry %s); enqueued again at the front",
                    job_id, rq_id)
        done.append(job_id)
    if still_waiting:
        r.zadd(records.k.queued, still_waiting, xx=True)  # xx: a job started meanwhile stays out
    return done


def settle_series(ctx) -> int:
    """Roll up the children of live series that ended without their parent hearing of it (or
    started: the parent shows running). Returns how many children were looked at anew."""
    records, r = ctx.records, ctx.redis
    looked = 0
    for parent in records.live_series():
        status, owner = r.hmget(records.k.job(parent), "status", "owner")
        if status is None or status.decode() not in ("queued", "running"):
            r.srem(records.k.series, parent)
            continue
        settled = records.settled_children(parent)
        todo = [c for c in records.child_ids(parent) if c not in settled]
        pipe = r.pipeline(transaction=False)
        for child in todo:
            pipe.hget(records.k.job(child), "status")
        for child, st in zip(todo, pipe.execute()):
            if st is not None and st != b"queued":
                records.rollup(parent, child, owner.decode())
                looked += 1
    return looked


def reconcile_registries(ctx) -> int:
    """Drop RQ's started/failed entries whose record has moved on (ended, or another entry)."""
    r, s = ctx.redis, ctx.settings
    removed = 0
    for device in rq_queue.DEVICES:
        qname = rq_queue.queue_name(s.namespace, device)
        for registry in (StartedJobRegistry(qname, connection=r),
                         FailedJobRegistry(qname, connection=r)):
            started = isinstance(registry, StartedJobRegistry)
            for member in r.zrange(registry.key, 0, 199):
                # RQ ids hold no ':'; a started entry is "<rq id>:<execution id>"
                rq_id = member.decode().partition(":")[0]
                if _stale_entry(ctx, rq_id, started):
                    r.zrem(registry.key, member)
                    r.delete(RQJob.key_for(rq_id))
                    removed += 1
    return removed


def _stale_entry(ctx, rq_id: str, started: bool) -> bool:
    rec = ctx.records.get(rq_queue.job_id_of(rq_id))
    if rec is not None and rec.get("rq_id") == rq_id and rec["status"] in ("queued", "running"):
        return False
    if started:  # a live worker removes its own entry once it has done its bookkeeping
        try:
            job = RQJob.fetch(rq_id, connection=ctx.redis)
        except Exception:  # noqa: BLE001 - no such RQ job: the entry is stale
            return True
        return not (job.worker_name and ctx.redis.exists(ctx.records.k.worker(job.worker_name)))
    return True


# -- retention ----------------------------------------------------------------------------------------
def apply_retention(ctx) -> dict[str, int]:
    r, records, s, store = ctx.redis, ctx.records, ctx.settings, ctx.store
    removed = {"jobs": 0, "job_bytes": 0, "uploads": 0, "tmp": 0, "quota": 0}
    for job_id in records.ended_before(now() - s.job_retention_s):
        rec = records.get(job_id)
        if rec is None:
            r.zrem(records.k.ended, job_id)
            continue
        if is_series_child(rec) and records.get(rec["parent"]) is not None:
            r.zrem(records.k.ended, job_id)  # a series' child goes with its series
            continue
        # a series' children first (the parent's record lists them)
        family = [records.get(c) for c in records.child_ids(job_id)] \
            if is_series(rec) else []
        for one in [c for c in family if c is not None] + [rec]:
            store.remove_job(one["id"])
            if records.forget(one["id"], one["owner"]) != "live":
                removed["jobs"] += 1
                removed["job_bytes"] += sum(int(a.get("size", 0))
                                            for a in one.get("artifacts") or [])
    stale = records.uploads_unused_since(now() - s.upload_retention_s)
    if stale:
        in_use = _files_in_use(records)
        for owner, digest in stale:
            if digest in in_use:
                records.touch_files(owner, [digest])
                continue
            if records.forget_file(owner, digest):
                store.remove_input(digest)
            removed["uploads"] += 1
    removed["tmp"] = store.remove_stale_tmp(s.tmp_max_age_s, set(records.running_ids()))
    removed["quota"] = _reconcile_quota(records)
    pipe = r.pipeline(transaction=False)
    for what, n in removed.items():
        if n:
            pipe.hincrby(records.k.metrics, f"retention_removed:{what}", n)
    pipe.execute()
    if any(removed.values()):
        log.info("retention removed %s", removed)
    return removed


def _files_in_use(records) -> set[str]:
    ids = [m.decode() for m in records.r.zrange(records.k.queued, 0, -1)] + records.running_ids()
    used: set[str] = set()
    for job_id in ids:
        rec = records.get(job_id)
        for ref in (rec or {}).get("file_names") or {}:
            used.add(ref.removeprefix("sha256:"))
    return used


def _reconcile_quota(records) -> int:
    """An owner's unfinished-job count holds only queued and running jobs."""
    dropped = 0
    for owner in (m.decode() for m in records.r.smembers(records.k.owners)):
        key = records.k.owner_active(owner)
        ids = [m.decode() for m in records.r.smembers(key)]
        if not ids:
            continue
        pipe = records.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(records.k.job(job_id), "status")
        dead = [j for j, st in zip(ids, pipe.execute()) if st not in (b"queued", b"running")]
        if dead:
            records.r.srem(key, *dead)
            dropped += len(dead)
    return dropped


# -- the API's thread -----------------------------------------------------------------------------------
class SweeperThread(threading.Thread):
    """Sweeps every ``BRAGG_REAPER_INTERVAL_S`` (with retention in API processes); survives Redis
    outages."""

    def __init__(self, ctx, name: str, retention: bool = True):
        super().__init__(name="bragg-sweeper", daemon=True)
        self.ctx = ctx
        self.sweeper_name = name
        self.retention = retention
        self.stopping = threading.Event()

    def run(self) -> None:
        backoff = self.ctx.settings.reaper_interval_s
        while not self.stopping.wait(backoff):
            try:
                sweep(self.ctx, self.sweeper_name, retention=self.retention)
                backoff = self.ctx.settings.reaper_interval_s
            except Exception as exc:  # noqa: BLE001 - Redis may be away: try again later
                log.warning("sweep failed (%s: %s); next try in %.0f s", type(exc).__name__, exc,
                            backoff)
                backoff = min(30.0, backoff * 2)

    def stop(self) -> None:
        self.stopping.set()


__all__ = ["sweep", "SweepReport", "SweeperThread", "requeue_lost", "repair_outbox", "settle_series",
           "reconcile_registries", "apply_retention"]

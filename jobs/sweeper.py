"""The sweeper: recovery of jobs that lost their worker or their queue entry, and retention.

Every API process and every worker runs it in a thread (:class:`SweeperThread`); one pass runs at a
time in the whole deployment (a Redis lock), so recovery works with no worker left and with no API
left. One pass:

- **lost leases**: a running job whose lease expired (its worker was killed, lost power or hung for
  ``BRAGG_LEASE_TTL_S``) goes back to the *front* of its queue with its attempt count kept, or ends
  ``failed`` (``WorkerLost``) once its attempts are spent, or ``canceled`` if a cancel was asked for;
- **admission**: waiting jobs are let onto every queue that has room (jobs.admission), should
  the process that wrote them have died before it did;
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
from jobs.admission import admit
from jobs.context import ServiceContext
from jobs.live_workers import fail_unserved
from jobs.records import now

log = logging.getLogger("bragg.sweeper")


@dataclass
class SweepReport:
    requeued: list[tuple[str, str]] = field(default_factory=list)
    reenqueued: list[str] = field(default_factory=list)
    admitted: int = 0
    unserved: list[str] = field(default_factory=list)
    series_settled: int = 0
    registry_entries: int = 0
    retention: dict[str, int] = field(default_factory=dict)


def sweep(ctx: ServiceContext, name: str, *, retention: bool = False) -> SweepReport:
    """One pass, if no other process is sweeping."""
    records, s = ctx.records, ctx.settings
    report = SweepReport()
    if not records.acquire_sweep(name, max(2, int(s.reaper_interval_s * 2))):
        return report
    try:
        report.requeued = requeue_lost(ctx)
        report.unserved = fail_unserved(ctx)
        report.reenqueued = repair_outbox(ctx)
        report.admitted = admit(ctx)
        report.series_settled = settle_series(ctx)
        report.registry_entries = reconcile_registries(ctx)
        if retention and records.retention_due(s.retention_interval_s):
            report.retention = apply_retention(ctx)
    finally:
        records.release_sweep(name)
    return report


# -- recovery ---------------------------------------------------------------------------------------
def requeue_lost(ctx: ServiceContext) -> list[tuple[str, str]]:
    r, records, s = ctx.redis, ctx.records, ctx.settings
    done = []
    for job_id in records.running_ids():
        if records.lease_holder(job_id):
            continue
        job = records.get(job_id)
        if job is None:
            records.drop_running(job_id)
            continue
        # not running any more (or again, on another attempt): REQUEUE itself decides, atomically
        rq_id = rq_queue.new_rq_id(job_id)
        reason = f"no heartbeat for {s.lease_ttl_s} s"
        outcome = records.requeue(job_id, job.owner, job.attempts, rq_id, reason)
        if outcome in ("queued", "failed", "canceled"):
            # the lost attempt's leftovers go before the job is on a queue again: a worker may
            # take it and publish its next attempt within milliseconds of the enqueue
            ctx.store.sweep(job_id)
        if outcome == "queued":
            try:
                rq_queue.enqueue(r, job.queue, job_id, rq_id, job.timeout_s or 60, at_front=True)
            except Exception:  # noqa: BLE001 - it is in the outbox: the next passes enqueue it
                log.exception("job %s: requeued but not enqueued yet", job_id)
        if outcome in ("failed", "canceled"):
            records.settle(job)
        if outcome in ("queued", "failed", "canceled"):
            log.warning("job %s: worker %s lost during attempt %d: %s", job_id, job.worker,
                        job.attempts, outcome)
            done.append((job_id, outcome))
    return done


def repair_outbox(ctx: ServiceContext) -> list[str]:
    r, records, s = ctx.redis, ctx.records, ctx.settings
    candidates = records.queued_since(now() - s.lease_ttl_s)
    if not candidates:
        return []
    waiting: dict[str, set[str]] = {}
    still_waiting = []
    done = []
    for job_id, job in zip(candidates, records.get_many(candidates)):
        if job is None or job.status != "queued":
            records.leave_outbox(job_id)
            continue
        if job.queue not in waiting:
            waiting[job.queue] = rq_queue.waiting(r, job.queue)
        if job.rq_id in waiting[job.queue]:
            still_waiting.append(job_id)  # in line: look again one lease time later
            continue
        new_id = rq_queue.new_rq_id(job_id)
        if not records.reenqueue(job_id, job.rq_id, new_id):
            continue
        try:
            rq_queue.enqueue(r, job.queue, job_id, new_id, job.timeout_s or 60, at_front=True)
        except Exception:  # noqa: BLE001 - still in the outbox
            log.exception("job %s: could not be enqueued again", job_id)
            continue
        log.warning("job %s: queued but on no queue (entry %s); enqueued again at the front",
                    job_id, job.rq_id)
        done.append(job_id)
    records.look_again_later(still_waiting)
    return done


def settle_series(ctx: ServiceContext) -> int:
    """Roll up the children of live series that ended without their parent hearing of it (or
    started: the parent shows running). Returns how many children were looked at anew."""
    records = ctx.records
    looked = 0
    for parent_id in records.live_series():
        parent = records.get(parent_id)
        if parent is None or parent.ended:
            records.drop_live_series(parent_id)
            continue
        for child in records.unsettled_moved_children(parent_id):
            records.rollup(parent_id, child, parent.owner)
            looked += 1
    return looked


def reconcile_registries(ctx: ServiceContext) -> int:
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


def _stale_entry(ctx: ServiceContext, rq_id: str, started: bool) -> bool:
    job = ctx.records.get(rq_queue.job_id_of(rq_id))
    if job is not None and job.rq_id == rq_id and not job.ended:
        return False
    if started:  # a live worker removes its own entry once it has done its bookkeeping
        try:
            job = RQJob.fetch(rq_id, connection=ctx.redis)
        except Exception:  # noqa: BLE001 - no such RQ job: the entry is stale
            return True
        return not (job.worker_name and ctx.records.worker_alive(job.worker_name))
    return True


# -- retention ----------------------------------------------------------------------------------------
def apply_retention(ctx: ServiceContext) -> dict[str, int]:
    records, s, store = ctx.records, ctx.settings, ctx.store
    removed = {"jobs": 0, "job_bytes": 0, "uploads": 0, "tmp": 0, "quota": 0}
    for job_id in records.ended_before(now() - s.job_retention_s):
        job = records.get(job_id)
        if job is None:
            records.leave_ended(job_id)
            continue
        if job.is_series_child and records.get(job.parent) is not None:
            records.leave_ended(job_id)  # a series' child goes with its series
            continue
        # a series' (a verification's) children first (the parent's record lists them)
        family = list(records.children(job_id)) if job.has_children else []
        for one in family + [job]:
            store.remove_job(one.id)
            if records.forget(one.id, one.owner) != "live":
                removed["jobs"] += 1
                removed["job_bytes"] += sum(a.size for a in one.artifacts)
    stale = records.uploads_unused_since(now() - s.upload_retention_s)
    if stale:
        in_use = records.files_in_use()
        for owner, digest in stale:
            if digest in in_use:
                records.touch_files(owner, [digest])
                continue
            if records.forget_file(owner, digest):
                store.remove_input(digest)
            removed["uploads"] += 1
    removed["tmp"] = store.remove_stale_tmp(s.tmp_max_age_s, set(records.running_ids()))
    removed["quota"] = records.reconcile_quota()
    records.count_retention(removed)
    if any(removed.values()):
        log.info("retention removed %s", removed)
    return removed


# -- the API's thread -----------------------------------------------------------------------------------
class SweeperThread(threading.Thread):
    """Sweeps every ``BRAGG_REAPER_INTERVAL_S`` (with retention in API processes); survives Redis
    outages."""

    def __init__(self, ctx: ServiceContext, name: str, retention: bool = True):
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

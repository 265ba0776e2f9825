"""Which devices the live workers serve: a job for a device no live worker serves is accepted with
a warning, and fails with a clear reason once it has waited ``BRAGG_QUEUE_TIMEOUT_S`` (the sweep
runs in the sweeper of every API process and worker, see jobs/sweeper.py)."""

from __future__ import annotations

import time

from jobs import queue as rq_queue
from jobs.context import ServiceContext


def served_queues(ctx: ServiceContext) -> set[str]:
    return {q for w in ctx.records.live_workers() for q in w.queues}


def serving_workers(ctx: ServiceContext, device: str) -> int:
    """How many live workers take jobs of ``device``."""
    queue = rq_queue.queue_name(ctx.settings.namespace, device)
    return sum(1 for w in ctx.records.live_workers() if queue in w.queues)


def served_devices(ctx: ServiceContext) -> list[str]:
    """Devices of the jobs some live worker takes ('auto' whenever any worker is alive)."""
    queues = served_queues(ctx)
    return [d for d in rq_queue.DEVICES if rq_queue.queue_name(ctx.settings.namespace, d) in queues]


def unserved_warnings(ctx: ServiceContext, device: str) -> list[str]:
    if rq_queue.queue_name(ctx.settings.namespace, device) in served_queues(ctx):
        return []
    return [f"no live worker serves device {device!r} now: the job waits for one, and fails if "
            f"none takes it within {ctx.settings.queue_timeout_s:g} s"]


def fail_unserved(ctx: ServiceContext, now: float | None = None) -> list[str]:
    """Fail the queued jobs that no live worker can take and that waited past the queue timeout.

    It looks at every queued job (``ns:queued``), also those in the outbox that are on no queue
    yet; FAIL_QUEUED refuses a job that a worker started meanwhile."""
    now = time.time() if now is None else now
    ns, limit = ctx.settings.namespace, ctx.settings.queue_timeout_s
    served = served_queues(ctx)
    if all(rq_queue.queue_name(ns, d) in served for d in rq_queue.DEVICES):
        return []
    records = ctx.records
    failed = []
    for job in records.queued_jobs(5000):
        if job.status != "queued" or not job.queue or job.queue in served:
            continue
        waited = now - (job.created_at or now)
        if waited < limit:
            continue
        device = job.queue.rpartition(":")[2]
        reason = (f"no live worker serves device {device!r}: the job waited {waited:.0f} s, "
                  f"longer than the queue timeout of {limit:g} s")
        if records.fail_queued(job.id, job.owner, "NoWorker", reason):
            rq_queue.discard(ctx.redis, job.rq_id)
            failed.append(job.id)
            records.settle(job)
            if job.is_series_child:  # its series makes no more children to wait in vain
                records.mark_cancel(job.parent, job.owner, stop_only=True)
    return failed


__all__ = ["served_devices", "served_queues", "serving_workers", "unserved_warnings",
           "fail_unserved"]

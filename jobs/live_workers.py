"""Which devices the live workers serve: a job for a device no live worker serves is accepted with
a warning, and fails with a clear reason once it has waited ``BRAGG_QUEUE_TIMEOUT_S`` (the sweep
runs in the sweeper of every API process and worker, see app/sweeper.py)."""

from __future__ import annotations

import time

from jobs import queue as rq_queue
from jobs.metrics import live_workers


def served_queues(ctx) -> set[str]:
    return {q for w in live_workers(ctx.redis, ctx.records.k) for q in w["queues"]}


def served_devices(ctx) -> list[str]:
    """Devices of the jobs some live worker takes ('auto' whenever any worker is alive)."""
    queues = served_queues(ctx)
    return [d for d in rq_queue.DEVICES if rq_queue.queue_name(ctx.settings.namespace, d) in queues]


def unserved_warnings(ctx, device: str) -> list[str]:
    if rq_queue.queue_name(ctx.settings.namespace, device) in served_queues(ctx):
        return []
    return [f"no live worker serves device {device!r} now: the job waits for one, and fails if "
            f"none takes it within {ctx.settings.queue_timeout_s:g} s"]


def fail_unserved(ctx, now: float | None = None) -> list[str]:
    """Fail the queued jobs that no live worker can take and that waited past the queue timeout.

    It looks at every queued job (``ns:queued``), also those in the outbox that are on no queue
    yet; FAIL_QUEUED refuses a job that a worker started meanwhile."""
    now = time.time() if now is None else now
    ns, limit = ctx.settings.namespace, ctx.settings.queue_timeout_s
    served = served_queues(ctx)
    if all(rq_queue.queue_name(ns, d) in served for d in rq_queue.DEVICES):
        return []
    r, records = ctx.redis, ctx.records
    ids = [m.decode() for m in r.zrange(records.k.queued, 0, 4999)]
    pipe = r.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(records.k.job(job_id), "status", "queue", "created_at", "owner", "rq_id")
    failed = []
    for job_id, row in zip(ids, pipe.execute()):
        status, queue, created, owner, rq_id = (v.decode() if v else "" for v in row)
        if status != "queued" or not queue or queue in served:
            continue
        waited = now - float(created or now)
        if waited < limit:
            continue
        device = queue.rpartition(":")[2]
        reason = (f"no live worker serves device {device!r}: the job waited {waited:.0f} s, "
                  f"longer than the queue timeout of {limit:g} s")
        if records.fail_queued(job_id, owner, "NoWorker", reason):
            rq_queue.discard(r, rq_id)
            failed.append(job_id)
            rec = records.get(job_id)
            if rec is not None:
                records.settle(rec)
    return failed


__all__ = ["served_devices", "served_queues", "unserved_warnings", "fail_unserved"]

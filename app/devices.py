"""Which devices the live workers serve: a job for a device no live worker serves is accepted with
a warning, and fails with a clear reason once it has waited ``BRAGG_QUEUE_TIMEOUT_S`` (the sweep
runs in every worker's heartbeat, see worker/reaper.py)."""

from __future__ import annotations

import time

from . import queue as rq_queue
from .metrics import live_workers


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
    """Fail the queued jobs that no live worker can take and that waited past the queue timeout."""
    now = time.time() if now is None else now
    ns, limit = ctx.settings.namespace, ctx.settings.queue_timeout_s
    served = served_queues(ctx)
    failed = []
    for device in rq_queue.DEVICES:
        queue = rq_queue.queue_name(ns, device)
        if queue in served:
            continue
        for rq_id in rq_queue.queued_ids(ctx.redis, queue):
            job_id = rq_id.split("_")[0]
            rec = ctx.records.get(job_id)
            if rec is None or rec["status"] != "queued":
                continue
            waited = now - float(rec["created_at"] or now)
            if waited < limit:
                continue
            reason = (f"no live worker serves device {device!r}: the job waited {waited:.0f} s, "
                      f"longer than the queue timeout of {limit:g} s")
            if ctx.records.fail_queued(job_id, rec["owner"], "NoWorker", reason):
                rq_queue.discard(ctx.redis, rq_id)
                failed.append(job_id)
    return failed


__all__ = ["served_devices", "served_queues", "unserved_warnings", "fail_unserved"]

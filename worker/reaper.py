"""Recovery of jobs whose worker died: a job is *running* only while its worker renews its lease.

Every worker's heartbeat thread calls :func:`sweep` every ``BRAGG_REAPER_INTERVAL_S`` seconds; one
sweep at a time runs (a Redis lock). A running job whose lease has expired (its worker was killed,
lost power or hung for ``BRAGG_LEASE_TTL_S`` seconds) is put back on its queue with its attempt
count kept, or ends ``failed`` (``WorkerLost``) once its attempts are spent, or ``canceled`` if a
cancel was asked for. A worker that comes back after losing its job finds the attempt changed and
drops its result.
"""

from __future__ import annotations

import logging

from app import queue as rq_queue
from app.devices import fail_unserved

log = logging.getLogger("bragg.reaper")


def sweep(ctx) -> list[tuple[str, str]]:
    """One pass; returns (job id, outcome) for every job it acted on."""
    r, records, s = ctx.redis, ctx.records, ctx.settings
    lock_ttl = max(1, int(s.reaper_interval_s))
    if not r.set(records.k.reaper_lock, ctx.name, nx=True, ex=lock_ttl):
        return []
    done = []
    for job_id in records.running_ids():
        if records.lease_holder(job_id):
            continue
        rec = records.get(job_id)
        if rec is None:
            r.srem(records.k.running, job_id)
            continue
        if rec["status"] != "running":
            r.srem(records.k.running, job_id)
            continue
        attempt = int(rec.get("attempts") or 0)
        rq_id = rq_queue.new_rq_id(job_id)
        reason = f"no heartbeat for {s.lease_ttl_s} s"
        outcome = records.requeue(job_id, rec["owner"], attempt, rq_id, reason)
        if outcome == "queued":
            try:
                rq_queue.enqueue(r, rec["queue"], job_id, rq_id, int(rec.get("timeout_s") or 60))
            except Exception as exc:  # noqa: BLE001
                records.fail_unqueued(job_id, rec["owner"], f"could not requeue: {exc}")
                outcome = "failed"
        if outcome in ("queued", "failed", "canceled"):
            ctx.store.sweep(job_id)
            log.warning("job %s: worker %s lost during attempt %d: %s", job_id, rec.get("worker"),
                        attempt, outcome)
            done.append((job_id, outcome))
    done += [(job_id, "failed") for job_id in fail_unserved(ctx)]
    return done

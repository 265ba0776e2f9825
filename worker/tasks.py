"""The RQ task: run one job through its kind's runner and publish its artifacts, or record why not.

``run_job(job_id)`` never raises for a job's own failure: an engine error, a timeout or a cancel ends
the job's record (failed / canceled) and the worker carries on with the next job. Artifacts are
written into a staging folder and published as a whole; a failed or canceled job leaves nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

import redis

from jobs.admission import admit
from jobs.job import Job
from jobs.kinds import spec
from jobs.kinds.render import clean_message
from jobs.kinds.verification import enqueue_report
from jobs.running import RunningJob, Stop, until_redis_answers
from jobs.store import disk_error

from worker import context
from worker.context import WorkerContext

log = logging.getLogger("bragg.worker")


def run_job(job_id: str) -> Optional[str]:
    """RQ entry point. Returns the job's final status (or why it was not run)."""
    ctx = context.get()
    job = ctx.records.get(job_id)
    if job is None:
        log.warning("job %s: no record; skipped", job_id)
        return "missing"
    device = ctx.device if job.requested_device == "auto" else job.requested_device
    label = "cuda:0" if device == "cuda" else device
    from rq import get_current_job
    current = get_current_job()
    # this worker took an entry off the queue: there is room for the next owner's turn
    admit(ctx, [current.origin] if current is not None else None)
    # the entry's id: an entry that the sweeper replaced (its taker seemed dead) is refused
    status, attempt = ctx.records.start(job_id, ctx.name, label, ctx.settings.lease_ttl_s,
                                        current.id if current is not None else "")
    if status != "running":
        log.info("job %s: %s, not started", job_id, status)
        return status
    running = RunningJob(ctx, job, attempt)
    hb = ctx.heartbeat
    if hb is not None:
        hb.current = running
    _settle(ctx, job)
    try:
        return _execute(ctx, job, running, device)
    except Exception as exc:  # noqa: BLE001 - e.g. Redis gone while finishing: do not leave it running
        log.exception("job %s: could not be completed", job_id)
        try:
            return _fail(ctx, job, running, type(exc).__name__, str(exc))
        except Exception:  # noqa: BLE001 - the sweeper requeues it once the lease expires
            return "error"
    finally:
        if hb is not None:
            hb.current = None
        _settle(ctx, job)


def _settle(ctx: WorkerContext, job: Job) -> None:
    """Roll a series child's move up into its series (the sweeper does it should this fail);
    a verification's last side queues its report step, enqueued here at once."""
    try:
        if ctx.records.settle(job) == "report":
            enqueue_report(ctx, job.parent)
    except redis.RedisError as exc:
        log.warning("job %s: its series %s not updated yet (%s)", job.id, job.parent, exc)


def _execute(ctx: WorkerContext, job: Job, running: RunningJob, device: str) -> str:
    from rq.timeouts import JobTimeoutException
    from sim_core.errors import RenderCancelled, SimCoreError

    from jobs.artifacts import seal

    job_id, owner, name, attempt = job.id, job.owner, ctx.name, running.attempt
    log.info("job %s: attempt %d on %s", job_id, attempt, device)
    staging = None
    try:
        ctx.store.sweep(job_id)
        staging = ctx.store.staging_dir(job_id, attempt)
        if device == "cuda":
            import torch
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
        kind = spec(job)
        if kind.run is None:
            raise SimCoreError(f"a {job.kind.value} job is not run by a worker")
        result = kind.run(ctx, job, running, device, staging)
        artifacts = seal(staging)
        # the attempt must still be ours (and not canceled) right before publishing: after a
        # Redis outage this waits for Redis, which then says whether the lease survived it
        running.renew(wait=True)
        running.check()
        ctx.store.commit(job_id, staging)
        done = {"artifacts": [a.model_dump() for a in artifacts], "progress": "1",
                "device": result.device}
        if result.warnings:
            done["warnings"] = result.warnings
        done.update(result.fields)
        out = until_redis_answers(ctx, lambda: ctx.records.finish(
            job_id, owner, name, attempt, "finished", done))
        if out == "cancel":
            ctx.store.remove_job(job_id)
            ctx.records.finish(job_id, owner, name, attempt, "canceled")
            log.info("job %s: canceled while finishing", job_id)
            return "canceled"
        if out == "lost":
            log.warning("job %s: attempt %d was taken from this worker; result dropped", job_id,
                        attempt)
            return "lost"
        ctx.records.observe_job(time.time() - running.started, result.evaluations,
                                result.render_s, result.evaluations_per_second, result.device)
        log.info("job %s: finished in %.3f s", job_id, time.time() - running.started)
        return "finished"
    except (Stop, RenderCancelled):
        reason = running.reason or "cancel"
        if reason == "lost":
            log.warning("job %s: attempt %d was taken from this worker; stopped", job_id, attempt)
            return "lost"
        if reason == "timeout":
            return _fail(ctx, job, running, "JobTimeout", f"the job ran longer than its timeout of "
                                                          f"{job.timeout_s} s")
        ctx.records.finish(job_id, owner, name, attempt, "canceled")
        log.info("job %s: canceled", job_id)
        return "canceled"
    except JobTimeoutException as exc:
        return _fail(ctx, job, running, "JobTimeout", str(exc) or "the job exceeded its timeout")
    except SimCoreError as exc:
        return _fail(ctx, job, running, type(exc).__name__, clean_message(ctx, job, str(exc)))
    except OSError as exc:
        found = disk_error(exc)
        if found is None:
            log.exception("job %s: unexpected error", job_id)
            return _fail(ctx, job, running, type(exc).__name__, clean_message(ctx, job, str(exc)))
        log.error("job %s: storage error: %s", job_id, exc)
        return _fail(ctx, job, running, "StorageError",
                     f"{found[1]} ({exc.strerror}); the job wrote nothing")
    except Exception as exc:  # noqa: BLE001 - the job fails, the worker goes on
        log.exception("job %s: unexpected error", job_id)
        return _fail(ctx, job, running, type(exc).__name__, clean_message(ctx, job, str(exc)))
    finally:
        if staging is not None:
            ctx.store.discard(staging)


def _fail(ctx: WorkerContext, job: Job, running: RunningJob, etype: str, message: str) -> str:
    log.info("job %s: failed: %s: %s", job.id, etype, message)
    out = until_redis_answers(ctx, lambda: ctx.records.finish(
        job.id, job.owner, ctx.name, running.attempt, "failed",
        {"error_type": etype, "error_message": message[:4000]}))
    if out == "failed":  # a folder this attempt may have published is not the job's result
        try:
            ctx.store.remove_job(job.id)
        except OSError as exc:
            log.error("job %s: could not remove its folder: %s", job.id, exc)
    return "failed"


__all__ = ["run_job"]

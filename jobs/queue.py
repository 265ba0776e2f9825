"""RQ queues: which queue a job goes to, enqueueing, and queue lengths.

Three queues per deployment: ``<ns>:cuda`` (only CUDA workers listen), ``<ns>:cpu`` and ``<ns>:auto``
(every worker listens; ``auto`` jobs run on whichever worker takes them first). The RQ job only
carries the job id: the record in Redis (jobs.records) is the source of truth, and the task is named
by its import path so that the API never imports the worker code (or torch).
"""

from __future__ import annotations

import uuid

import redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job

TASK = "worker.tasks.run_job"
DEVICES = ("cuda", "cpu", "auto")


def queue_name(ns: str, device: str) -> str:
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}")
    return f"{ns}:{device}"


def default_queues(ns: str, worker_device: str) -> list[str]:
    """A CUDA worker prefers CUDA jobs, then takes 'auto' and 'cpu' jobs; a CPU worker never takes
    CUDA jobs."""
    if worker_device == "cuda":
        return [queue_name(ns, d) for d in ("cuda", "auto", "cpu")]
    return [queue_name(ns, d) for d in ("cpu", "auto")]


def new_rq_id(job_id: str) -> str:
    return f"{job_id}_{uuid.uuid4().hex[:8]}"


def enqueue(connection: redis.Redis, queue: str, job_id: str, rq_id: str, timeout_s: int,
            at_front: bool = False) -> None:
    """Put the job on its queue; ``at_front`` for a job that had been taken already (a retry)."""
    q = Queue(queue, connection=connection)
    # RQ's own timeout is a backstop: the task stops itself at timeout_s between chunks
    q.enqueue(TASK, job_id, job_id=rq_id, job_timeout=timeout_s + 60, result_ttl=0,
              failure_ttl=86400, description=f"bragg job {job_id}", at_front=at_front)


def enqueue_many(connection: redis.Redis, queue: str, jobs: list[tuple[str, str, int]]) -> None:
    """Put ``(job id, rq id, timeout)`` entries on one queue, in order, in one pipeline (the
    children of a series)."""
    q = Queue(queue, connection=connection)
    q.enqueue_many([Queue.prepare_data(TASK, args=(job_id,), job_id=rq_id, timeout=timeout_s + 60,
                                       result_ttl=0, failure_ttl=86400,
                                       description=f"bragg job {job_id}")
                    for job_id, rq_id, timeout_s in jobs])


def discard_many(connection: redis.Redis, queue: str, rq_ids: list[str]) -> None:
    """Remove queued RQ jobs of one queue in one pipeline (best effort, as :func:`discard`)."""
    if not rq_ids:
        return
    key = Queue(queue, connection=connection).key
    pipe = connection.pipeline(transaction=False)
    for rq_id in rq_ids:
        pipe.lrem(key, 0, rq_id)
        pipe.delete(Job.key_for(rq_id))
    pipe.execute()


def job_id_of(rq_id: str) -> str:
    """The bragg job id inside an RQ job id (``<job id>_<8 hex>``)."""
    return rq_id.rpartition("_")[0] or rq_id


def waiting(connection: redis.Redis, queue: str) -> set[str]:
    """RQ job ids waiting in a queue (taken ones are no longer there)."""
    return {m.decode() for m in connection.lrange(Queue(queue, connection=connection).key, 0, -1)}


def discard(connection: redis.Redis, rq_id: str) -> None:
    """Remove a queued RQ job (best effort: a worker that takes it anyway finds the record canceled)."""
    if not rq_id:
        return
    try:
        Job.fetch(rq_id, connection=connection).cancel()
    # gone already, taken and ended meanwhile, or canceled already (RQ 3 refuses a second cancel)
    except (NoSuchJobError, InvalidJobOperation):
        pass


def queue_lengths(connection: redis.Redis, ns: str) -> dict[str, int]:
    return {d: Queue(queue_name(ns, d), connection=connection).count for d in DEVICES}


__all__ = ["TASK", "queue_name", "default_queues", "new_rq_id", "enqueue", "enqueue_many",
           "discard", "discard_many",
           "queue_lengths", "job_id_of", "waiting"]

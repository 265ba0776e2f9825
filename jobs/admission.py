"""Fair share between owners: which waiting jobs are let onto the RQ queues, and when.

A new job (a series: its parent) waits in its owner's line for its queue. ADMIT lets jobs on
while fewer than ``BRAGG_QUEUE_WINDOW`` entries wait on the queue, the owners with a waiting job
taking turns, one job (one child of a series) per turn. So one owner's backlog of thousands of
images stays in its line, and another owner's first job is on the queue after at most one turn of
every other owner and behind at most the window. Who calls :func:`admit`:

- the API, right after it has written a submission;
- a worker, each time it has taken an entry off a queue (there is room again);
- the sweeper, every pass (a process that died between a job's record and its admission, or a
  Redis error in between, delays a job by one pass at most).

A job let on is in the outbox (``ns:queued``) until a worker starts it: should the caller die
before the enqueue below, the sweeper enqueues it one lease time later.
"""

from __future__ import annotations

import logging

import redis
from rq import Queue

from jobs import queue as rq_queue
from jobs.context import ServiceContext

log = logging.getLogger("bragg.admission")


def admit(ctx: ServiceContext, queues: list[str] | tuple[str, ...] | None = None) -> int:
    """Let waiting jobs onto ``queues`` (default: every queue) and enqueue them; returns how many.
    Never raises for Redis trouble: what was let on is in the outbox."""
    names = queues or [rq_queue.queue_name(ctx.settings.namespace, d) for d in rq_queue.DEVICES]
    done = 0
    for queue in dict.fromkeys(names):
        try:
            key = Queue(queue, connection=ctx.redis).key
            entries = ctx.records.admit(queue, key, ctx.settings.queue_window)
            if entries:
                rq_queue.enqueue_many(ctx.redis, queue, entries)
            done += len(entries)
        except redis.RedisError as exc:
            log.warning("queue %s: could not let waiting jobs on (%s); the sweeper will", queue,
                        exc)
    return done


__all__ = ["admit"]

"""A job while a worker runs it: the lease, progress, cancel and deadline, shared by the engine's
hooks (``progress``, ``should_stop``) and the worker's heartbeat thread (``renew``)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Optional

import redis

from jobs.context import WorkerServices
from jobs.job import Job

log = logging.getLogger("bragg.worker")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss() -> int:
    """This process's resident memory (bytes)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except OSError:
        return 0


class Stop(Exception):
    """Raised to end a job early: canceled, timed out, or taken from this worker."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class RunResult:
    """What running a job gave, besides its files: the record's device and warnings, and the
    figures for /metrics."""

    device: str
    evaluations: int = 0
    render_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    #: more fields of the record, set when the job finishes (a render's detector geometry)
    fields: dict = field(default_factory=dict)

    @property
    def evaluations_per_second(self) -> float:
        return self.evaluations / self.render_s if self.render_s > 0 else 0.0


class RunningJob:
    """What the engine's hooks and the heartbeat thread share about the job in progress."""

    def __init__(self, ctx: WorkerServices, job: Job, attempt: int):
        self.ctx = ctx
        self.job = job
        self.id = job.id
        self.attempt = attempt
        self.started = time.time()
        self.deadline = time.monotonic() + (job.timeout_s or 3600)
        self.progress_value = 0.0
        self._written = -1.0
        self._last_write = 0.0
        self._last_check = 0.0
        self.reason: Optional[str] = None
        self._unreachable = False
        #: a child of a series: its parent and how many images it renders
        self.series = job.parent if job.is_series_child else None
        self.images = len(job.image_numbers)
        self.peak_rss = rss()

    # -- shared with the heartbeat thread ---------------------------------------------------------
    def pending_progress(self) -> Optional[float]:
        return self.progress_value if self.progress_value != self._written else None

    def renew(self, wait: bool = False) -> None:
        """Refresh the lease, write the progress, and learn about a cancel or a lost lease.
        While Redis is unreachable the render goes on (the lease decides once Redis is back);
        with ``wait`` this waits for Redis to answer instead (before publishing)."""
        s = self.ctx.settings
        p = self.pending_progress()

        def call():
            return self.ctx.records.renew(self.id, self.ctx.name, self.attempt, s.lease_ttl_s, p)

        try:
            out = until_redis_answers(self.ctx, call) if wait else call()
        except redis.RedisError as exc:
            if not self._unreachable:
                log.warning("job %s: could not renew its lease (%s); rendering on", self.id, exc)
            self._unreachable = True
            self._last_write = self._last_check = time.monotonic()
            return
        self._unreachable = False
        if p is not None:
            self._written = p
            if self.series and out == "ok":
                # the child's share of its series' progress (0.95 of a job is its render)
                self.ctx.records.series_progress(self.series, self.id,
                                                 min(1.0, p / 0.95) * self.images)
        self._last_write = self._last_check = time.monotonic()
        if out == "cancel" and self.reason is None:
            self.reason = "cancel"
        elif out == "lost":
            self.reason = "lost"

    # -- engine hooks ---------------------------------------------------------------------------------
    def progress(self, fraction: float) -> None:
        self.progress_value = round(min(1.0, max(0.0, fraction)) * 0.95, 4)
        self.peak_rss = max(self.peak_rss, rss())
        if time.monotonic() - self._last_write >= self.ctx.settings.progress_interval_s:
            self.renew()

    def should_stop(self) -> bool:
        if self.reason is None and time.monotonic() > self.deadline:
            self.reason = "timeout"
        if self.reason is None and (time.monotonic() - self._last_check
                                    >= self.ctx.settings.cancel_check_interval_s):
            self.renew()
        return self.reason is not None

    def check(self) -> None:
        if self.should_stop():
            raise Stop(self.reason)

    def peak_memory(self, device: str) -> dict:
        if device.startswith("cuda"):
            import torch
            return {"kind": "cuda_max_allocated", "bytes": int(torch.cuda.max_memory_allocated())}
        return {"kind": "process_rss", "bytes": int(max(self.peak_rss, rss()))}


def until_redis_answers(ctx: WorkerServices, call):
    """``call()``, retried with backoff while Redis is unreachable (at most
    ``BRAGG_REDIS_OUTAGE_MAX_S``): a finished render is published after an outage, not lost."""
    deadline = time.monotonic() + ctx.settings.redis_outage_max_s
    delay = 0.2
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("Redis unreachable (%s); retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(5.0, delay * 2)


__all__ = ["RunningJob", "RunResult", "Stop", "until_redis_answers", "rss"]

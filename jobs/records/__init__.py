"""Job and file records in Redis: small hashes, changed only through atomic Lua transitions.

Redis holds records, queue state and progress, never image or trace bytes. :class:`Records` is the
only code that knows the keys (``keys.py``) and calls the scripts (``scripts.py``); it is made of
one part per concern — single jobs and the sweeper's bookkeeping (``jobs.py``), series
(``series.py``), uploaded files (``files.py``), metrics and live workers (``metrics.py``) — and
hands out typed records: :class:`~jobs.job.Job` and :class:`~jobs.job.FileRecord`.
"""

from __future__ import annotations

from typing import Optional

from jobs.job import Job

from .base import iso, job_of, now, plain_id
from .files import FileRecords
from .jobs import STATUSES, JobRecords
from .keys import Keys
from .metrics import DURATION_BUCKETS, LiveWorker, MetricRecords
from .series import QueueEntry, SeriesRecords


class Records(JobRecords, SeriesRecords, FileRecords, MetricRecords):
    """Synchronous access to the records (the API's threads, the workers, the sweeper)."""


class AsyncRecords:
    """The reads of the API's hot paths (job status polls, event streams) on redis.asyncio."""

    def __init__(self, connection, ns: str):
        self.r = connection
        self._k = Keys(ns)

    async def get(self, job_id: str) -> Optional[Job]:
        return job_of(await self.r.hgetall(self._k.job(job_id)))

    async def get_owned(self, job_id: str, owner: str) -> Optional[Job]:
        if not plain_id(job_id):
            return None
        job = await self.get(job_id)
        return job if job is not None and job.owner == owner else None


__all__ = ["Records", "AsyncRecords", "LiveWorker", "QueueEntry", "iso", "now", "STATUSES",
           "DURATION_BUCKETS"]

"""What every part of the records shares: the connection, the keys, the scripts, the encoding."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Optional

import redis

from jobs.job import Job, encode_fields

from .keys import Keys
from .scripts import SCRIPTS


def now() -> float:
    return time.time()


def iso(ts: Any) -> Optional[str]:
    """Epoch seconds (as stored) -> ISO 8601 UTC with milliseconds, None for unset."""
    if ts in (None, "", b""):
        return None
    dt = datetime.fromtimestamp(float(ts), tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def encode(fields: dict) -> list:
    """A dict -> flat [field, value, ...] for HSET, JSON-encoding lists and dicts."""
    return [x for kv in encode_fields(fields).items() for x in kv]


def s_(v) -> str:
    return v.decode() if isinstance(v, bytes) else v


def job_of(raw: dict) -> Optional[Job]:
    """A job hash as Redis returns it -> a Job (None for a missing or partial record)."""
    return Job.from_hash(raw) if raw and b"status" in raw else None


def plain_id(job_id: str) -> bool:
    return 0 < len(job_id) <= 64 and all(c.isalnum() or c in "-_" for c in job_id)


class RecordsBase:
    """The connection (``r``), the keys (``_k``) and the registered scripts (``_<name>``)."""

    def __init__(self, connection: redis.Redis, ns: str):
        self.r = connection
        self._k = Keys(ns)
        for name, text in SCRIPTS.items():
            setattr(self, f"_{name}", connection.register_script(text))

    def _jobs(self, ids: list[str]) -> list[Optional[Job]]:
        """The records of ``ids`` in one round trip (None where a record is gone)."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self._k.job(job_id))
        return [job_of(raw) for raw in pipe.execute()]

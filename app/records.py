"""Job and file records in Redis: small hashes, changed only through atomic Lua transitions.

Redis holds records, queue state and progress, never image or trace bytes. Keys (``ns`` is
``BRAGG_NAMESPACE``)::

    ns:job:<id>              hash: the job record (status, progress, config, artifacts list, ...)
    ns:job:<id>:traces       hash: "slow,fast" -> id of the trace job that traces that pixel
    ns:owner:<owner>:jobs    sorted set: the owner's jobs by submission sequence (newest = highest)
    ns:owner:<owner>:active  set: the owner's queued and running jobs (the queued-jobs limit)
    ns:file:<owner>:<hex>    hash: an uploaded file the owner may use (name, size, kind)
    ns:running               set: running jobs (the reaper looks for lost leases among them)
    ns:lease:<id>            string with a TTL: "worker|attempt" while a live worker runs the job
    ns:worker:<name>         hash with a TTL: a live worker (device, queues, state, current job)
    ns:stats:status          hash: number of jobs in each status
    ns:metrics               hash: duration histogram and evaluation counters (for /metrics)

Every status change goes through one of the scripts below, which check the current status (and, for
a worker, that it still holds the job's current attempt), so that cancel, start, finish and requeue
can race without corrupting a record. ``version`` grows with every change: it is the ETag.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any, Iterable, Optional

import redis

STATUSES = ("queued", "running", "finished", "failed", "canceled")
TERMINAL = ("finished", "failed", "canceled")
#: buckets of the job duration histogram (seconds)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 4 * 3600)
_JSON_FIELDS = ("outputs", "trace_pixels", "file_names", "warnings", "artifacts", "shape")

_CREATE = """
local n = redis.call('SCARD', KEYS[3])
if tonumber(ARGV[1]) > 0 and n >= tonumber(ARGV[1]) then return {0, n} end
local seq = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[1], 'seq', seq, 'version', 1, unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], seq, ARGV[2])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('HINCRBY', KEYS[5], 'queued', 1)
return {1, seq}
"""

_START = """
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'queued' then return {st or 'missing', 0} end
local a = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[3], 'worker', ARGV[1],
           'device', ARGV[2], 'progress', '0')
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('SET', KEYS[3], ARGV[1] .. '|' .. a, 'EX', ARGV[4])
redis.call('HINCRBY', KEYS[4], 'queued', -1)
redis.call('HINCRBY', KEYS[4], 'running', 1)
return {'running', a}
"""

_RENEW = """
local v = redis.call('HMGET', KEYS[1], 'status', 'attempts', 'worker', 'cancel', 'progress')
if v[1] ~= 'running' or v[2] ~= ARGV[2] or v[3] ~= ARGV[1] then return 'lost' end
redis.call('SET', KEYS[2], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[3])
if ARGV[4] ~= '' and ARGV[4] ~= v[5] then
  redis.call('HSET', KEYS[1], 'progress', ARGV[4])
  redis.call('HINCRBY', KEYS[1], 'version', 1)
end
if v[4] == '1' then return 'cancel' end
return 'ok'
"""

_FINISH = """
local v = redis.call('HMGET', KEYS[1], 'status', 'attempts', 'worker', 'cancel')
if v[1] ~= 'running' or v[2] ~= ARGV[2] or v[3] ~= ARGV[1] then return 'lost' end
local outcome = ARGV[4]
if outcome == 'finished' and v[4] == '1' then return 'cancel' end
redis.call('HSET', KEYS[1], 'status', outcome, 'finished_at', ARGV[3])
if #ARGV > 5 then redis.call('HSET', KEYS[1], unpack(ARGV, 6)) end
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('SREM', KEYS[2], ARGV[5])
redis.call('DEL', KEYS[3])
redis.call('SREM', KEYS[4], ARGV[5])
redis.call('HINCRBY', KEYS[5], 'running', -1)
redis.call('HINCRBY', KEYS[5], outcome, 1)
return outcome
"""

_CANCEL = """
local v = redis.call('HMGET', KEYS[1], 'status', 'cancel')
if v[1] == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'canceled', 'finished_at', ARGV[1], 'cancel', '1')
  redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('SREM', KEYS[2], ARGV[2])
  redis.call('HINCRBY', KEYS[3], 'queued', -1)
  redis.call('HINCRBY', KEYS[3], 'canceled', 1)
  return 'canceled'
elseif v[1] == 'running' then
  if v[2] ~= '1' then
    redis.call('HSET', KEYS[1], 'cancel', '1', 'cancel_requested_at', ARGV[1])
    redis.call('HINCRBY', KEYS[1], 'version', 1)
  end
  return 'cancel-requested'
end
return v[1] or 'missing'
"""

_REQUEUE = """
local v = redis.call('HMGET', KEYS[1], 'status', 'attempts', 'cancel', 'max_attempts', 'worker')
if v[1] ~= 'running' then
  redis.call('SREM', KEYS[2], ARGV[3])
  return 'skip'
end
if v[2] ~= ARGV[1] then return 'skip' end
if redis.call('EXISTS', KEYS[3]) == 1 then return 'alive' end
redis.call('SREM', KEYS[2], ARGV[3])
redis.call('HINCRBY', KEYS[5], 'running', -1)
redis.call('HINCRBY', KEYS[1], 'version', 1)
local lost = 'worker ' .. (v[5] or '?') .. ' stopped responding during attempt ' .. v[2] ..
             ' of ' .. v[4] .. ' (' .. ARGV[5] .. ')'
if v[3] == '1' then
  redis.call('HSET', KEYS[1], 'status', 'canceled', 'finished_at', ARGV[2])
  redis.call('SREM', KEYS[4], ARGV[3])
  redis.call('HINCRBY', KEYS[5], 'canceled', 1)
  return 'canceled'
end
if tonumber(v[2]) >= tonumber(v[4]) then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'finished_at', ARGV[2], 'error_type', 'WorkerLost',
             'error_message', lost .. '; no attempts left')
  redis.call('SREM', KEYS[4], ARGV[3])
  redis.call('HINCRBY', KEYS[5], 'failed', 1)
  return 'failed'
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'progress', '0', 'worker', '', 'started_at', '',
           'rq_id', ARGV[4], 'requeued_reason', lost .. '; requeued')
redis.call('HINCRBY', KEYS[5], 'queued', 1)
return 'queued'
"""


def now() -> float:
    return time.time()


def iso(ts: Any) -> Optional[str]:
    """Epoch seconds (as stored) -> ISO 8601 UTC with milliseconds, None for unset."""
    if ts in (None, "", b""):
        return None
    dt = datetime.fromtimestamp(float(ts), tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class Keys:
    def __init__(self, ns: str):
        self.ns = ns
        self.seq = f"{ns}:seq"
        self.running = f"{ns}:running"
        self.stats = f"{ns}:stats:status"
        self.metrics = f"{ns}:metrics"
        self.workers = f"{ns}:workers"
        self.reaper_lock = f"{ns}:lock:reaper"

    def job(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}"

    def traces(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}:traces"

    def owner_jobs(self, owner: str) -> str:
        return f"{self.ns}:owner:{owner}:jobs"

    def owner_active(self, owner: str) -> str:
        return f"{self.ns}:owner:{owner}:active"

    def file(self, owner: str, digest: str) -> str:
        return f"{self.ns}:file:{owner}:{digest}"

    def lease(self, job_id: str) -> str:
        return f"{self.ns}:lease:{job_id}"

    def worker(self, name: str) -> str:
        return f"{self.ns}:worker:{name}"


def decode(raw: dict) -> dict:
    """A job hash as stored (bytes) -> a dict with JSON fields parsed."""
    rec = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
           for k, v in raw.items()}
    for k in _JSON_FIELDS:
        if k in rec and rec[k] != "":
            rec[k] = json.loads(rec[k])
    return rec


def encode(fields: dict) -> list:
    """A dict -> flat [field, value, ...] for HSET, JSON-encoding lists and dicts."""
    out: list = []
    for k, v in fields.items():
        if isinstance(v, (list, dict, tuple)):
            v = json.dumps(v, separators=(",", ":"))
        elif v is None:
            v = ""
        elif isinstance(v, bool):
            v = "1" if v else "0"
        out += [k, v if isinstance(v, (str, bytes)) else str(v)]
    return out


class Records:
    """Synchronous access to job and file records (the API's threads and the workers use it)."""

    def __init__(self, connection: redis.Redis, ns: str):
        self.r = connection
        self.k = Keys(ns)
        self._create = connection.register_script(_CREATE)
        self._start = connection.register_script(_START)
        self._renew = connection.register_script(_RENEW)
        self._finish = connection.register_script(_FINISH)
        self._cancel = connection.register_script(_CANCEL)
        self._requeue = connection.register_script(_REQUEUE)

    # -- jobs: reads --------------------------------------------------------------------------------
    def get(self, job_id: str) -> Optional[dict]:
        raw = self.r.hgetall(self.k.job(job_id))
        return decode(raw) if raw and b"status" in raw else None

    def get_owned(self, job_id: str, owner: str) -> Optional[dict]:
        if not _plain_id(job_id):
            return None
        rec = self.get(job_id)
        return rec if rec is not None and rec.get("owner") == owner else None

    def list(self, owner: str, *, status: Optional[str] = None, limit: int = 20,
             cursor: Optional[int] = None) -> tuple[list[dict], Optional[int]]:
        """The owner's jobs, newest first; ``cursor`` is the sequence number to continue below."""
        key = self.k.owner_jobs(owner)
        top = f"({cursor}" if cursor is not None else "+inf"
        out: list[dict] = []
        next_cursor = None
        batch = max(limit, 50) if status else limit + 1
        while True:
            pairs = self.r.zrevrangebyscore(key, top, "-inf", start=0, num=batch, withscores=True)
            if not pairs:
                break
            pipe = self.r.pipeline(transaction=False)
            for member, _ in pairs:
                pipe.hgetall(self.k.job(member.decode()))
            raws = pipe.execute()
            for (member, score), raw in zip(pairs, raws):
                if not raw:
                    continue
                rec = decode(raw)
                if status and rec.get("status") != status:
                    top = f"({int(score)}"
                    continue
                if len(out) == limit:
                    next_cursor = int(out[-1]["seq"])
                    return out, next_cursor
                out.append(rec)
                top = f"({int(score)}"
            if len(pairs) < batch:
                break
        return out, next_cursor

    # -- jobs: transitions --------------------------------------------------------------------------
    def create(self, job_id: str, owner: str, fields: dict, limit: int) -> tuple[bool, int]:
        keys = [self.k.job(job_id), self.k.owner_jobs(owner), self.k.owner_active(owner),
                self.k.seq, self.k.stats]
        ok, n = self._create(keys=keys, args=[limit, job_id] + encode(fields))
        return bool(ok), int(n)

    def start(self, job_id: str, worker: str, device: str, lease_ttl: int) -> tuple[str, int]:
        st, attempt = self._start(keys=[self.k.job(job_id), self.k.running, self.k.lease(job_id),
                                        self.k.stats],
                                  args=[worker, device, now(), lease_ttl, job_id])
        return (st.decode() if isinstance(st, bytes) else st), int(attempt)

    def renew(self, job_id: str, worker: str, attempt: int, lease_ttl: int,
              progress: Optional[float] = None) -> str:
        p = "" if progress is None else f"{progress:.4f}"
        out = self._renew(keys=[self.k.job(job_id), self.k.lease(job_id)],
                          args=[worker, attempt, lease_ttl, p])
        return out.decode() if isinstance(out, bytes) else out

    def finish(self, job_id: str, owner: str, worker: str, attempt: int, outcome: str,
               fields: dict | None = None) -> str:
        keys = [self.k.job(job_id), self.k.running, self.k.lease(job_id),
                self.k.owner_active(owner), self.k.stats]
        out = self._finish(keys=keys, args=[worker, attempt, now(), outcome, job_id]
                           + encode(fields or {}))
        return out.decode() if isinstance(out, bytes) else out

    def cancel(self, job_id: str, owner: str) -> str:
        out = self._cancel(keys=[self.k.job(job_id), self.k.owner_active(owner), self.k.stats],
                           args=[now(), job_id])
        return out.decode() if isinstance(out, bytes) else out

    def requeue(self, job_id: str, owner: str, attempt: int, rq_id: str, reason: str) -> str:
        keys = [self.k.job(job_id), self.k.running, self.k.lease(job_id),
                self.k.owner_active(owner), self.k.stats]
        out = self._requeue(keys=keys, args=[attempt, now(), job_id, rq_id, reason])
        return out.decode() if isinstance(out, bytes) else out

    def fail_unqueued(self, job_id: str, owner: str, message: str) -> None:
        """Mark a job failed that could not be put on the queue (right after create)."""
        pipe = self.r.pipeline()
        pipe.hset(self.k.job(job_id), mapping={"status": "failed", "finished_at": now(),
                                               "error_type": "QueueError", "error_message": message})
        pipe.hincrby(self.k.job(job_id), "version", 1)
        pipe.srem(self.k.owner_active(owner), job_id)
        pipe.hincrby(self.k.stats, "queued", -1)
        pipe.hincrby(self.k.stats, "failed", 1)
        pipe.execute()

    def fail_queued(self, job_id: str, owner: str, etype: str, message: str) -> bool:
        """Fail a job that is still queued (WATCHed: a worker that starts it first wins)."""
        key = self.k.job(job_id)
        with self.r.pipeline() as pipe:
            try:
                pipe.watch(key)
                if pipe.hget(key, "status") != b"queued":
                    return False
                pipe.multi()
                pipe.hset(key, mapping={"status": "failed", "finished_at": now(),
                                        "error_type": etype, "error_message": message})
                pipe.hincrby(key, "version", 1)
                pipe.srem(self.k.owner_active(owner), job_id)
                pipe.hincrby(self.k.stats, "queued", -1)
                pipe.hincrby(self.k.stats, "failed", 1)
                pipe.execute()
                return True
            except redis.WatchError:
                return False

    def set_fields(self, job_id: str, fields: dict) -> None:
        pipe = self.r.pipeline()
        pipe.hset(self.k.job(job_id), mapping=dict(zip(*[iter(encode(fields))] * 2)))
        pipe.hincrby(self.k.job(job_id), "version", 1)
        pipe.execute()

    def running_ids(self) -> list[str]:
        return sorted(m.decode() for m in self.r.smembers(self.k.running))

    def lease_holder(self, job_id: str) -> Optional[str]:
        v = self.r.get(self.k.lease(job_id))
        return v.decode() if v else None

    def status_counts(self) -> dict[str, int]:
        raw = self.r.hgetall(self.k.stats)
        counts = {s: 0 for s in STATUSES}
        for k, v in raw.items():
            counts[k.decode()] = int(v)
        return counts

    # -- traces of a job ------------------------------------------------------------------------------
    def trace_jobs(self, job_id: str) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.r.hgetall(self.k.traces(job_id)).items()}

    def set_trace_jobs(self, job_id: str, pixels: Iterable[tuple[int, int]], trace_job: str):
        mapping = {f"{s},{f}": trace_job for s, f in pixels}
        if mapping:
            self.r.hset(self.k.traces(job_id), mapping=mapping)

    # -- files ------------------------------------------------------------------------------------------
    def put_file(self, owner: str, digest: str, name: str, size: int, kind: str,
                 summary: Optional[dict] = None) -> dict:
        rec = {"id": f"sha256:{digest}", "name": name, "size": size, "kind": kind,
               "created_at": now()}
        mapping = {k: str(v) for k, v in rec.items()}
        mapping["summary"] = json.dumps(summary or {}, separators=(",", ":"))
        self.r.hset(self.k.file(owner, digest), mapping=mapping)
        return dict(rec, summary=summary or {})

    def get_file(self, owner: str, digest: str) -> Optional[dict]:
        raw = self.r.hgetall(self.k.file(owner, digest))
        if not raw:
            return None
        rec = {k.decode(): v.decode() for k, v in raw.items()}
        rec["size"] = int(rec["size"])
        rec["summary"] = json.loads(rec.get("summary") or "{}")
        return rec

    # -- metrics ----------------------------------------------------------------------------------------
    def observe_job(self, duration_s: float, evaluations: int, render_s: float, eps: float,
                    device: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        for b in DURATION_BUCKETS:
            if duration_s <= b:
                pipe.hincrby(self.k.metrics, f"duration_le_{b}", 1)
        pipe.hincrby(self.k.metrics, "duration_count", 1)
        pipe.hincrbyfloat(self.k.metrics, "duration_sum", duration_s)
        if evaluations > 0:  # renders (trace jobs only add to the durations)
            pipe.hincrby(self.k.metrics, "evaluations_total", int(evaluations))
            pipe.hincrbyfloat(self.k.metrics, "render_seconds_total", render_s)
            pipe.hset(self.k.metrics, f"last_eps:{device.split(':')[0]}", f"{eps:.1f}")
        pipe.execute()

    def metrics(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.r.hgetall(self.k.metrics).items()}


class AsyncRecords:
    """The reads of the API's hot paths (job status polls, event streams) on redis.asyncio."""

    def __init__(self, connection, ns: str):
        self.r = connection
        self.k = Keys(ns)

    async def get(self, job_id: str) -> Optional[dict]:
        raw = await self.r.hgetall(self.k.job(job_id))
        return decode(raw) if raw and b"status" in raw else None

    async def get_owned(self, job_id: str, owner: str) -> Optional[dict]:
        if not _plain_id(job_id):
            return None
        rec = await self.get(job_id)
        return rec if rec is not None and rec.get("owner") == owner else None


def _plain_id(job_id: str) -> bool:
    return 0 < len(job_id) <= 64 and all(c.isalnum() or c in "-_" for c in job_id)


__all__ = ["Records", "AsyncRecords", "Keys", "decode", "encode", "iso", "now", "STATUSES", "TERMINAL",
           "DURATION_BUCKETS"]

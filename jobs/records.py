"""Job and file records in Redis: small hashes, changed only through atomic Lua transitions.

Redis holds records, queue state and progress, never image or trace bytes. Keys (``ns`` is
``BRAGG_NAMESPACE``)::

    ns:job:<id>              hash: the job record (status, progress, config, artifacts list, ...)
    ns:job:<id>:traces       hash: "slow,fast" -> id of the trace job that traces that pixel
                             (of a series: "n:slow,fast", n the image)
    ns:job:<id>:children     sorted set: a series' child jobs by the number of their first image
    ns:job:<id>:settled      hash: child id -> the status it ended in, once ROLLUP counted it
    ns:job:<id>:partial      hash: running child id -> the images it has rendered so far (progress)
    ns:series                set: series (parents) not ended yet (the sweeper settles their children)
    ns:owner:<owner>:jobs    sorted set: the owner's jobs by submission sequence (newest = highest)
    ns:owner:<owner>:active  set: the owner's queued and running jobs (the queued-jobs limit)
    ns:file:<owner>:<hex>    hash: an uploaded file the owner may use (name, size, kind, summary)
    ns:running               set: running jobs (the sweeper looks for lost leases among them)
    ns:queued                sorted set: queued jobs by the time they were put on a queue; the
                             outbox of the queue (the sweeper enqueues one found on no queue again)
    ns:ended                 sorted set: finished, failed and canceled jobs by end time (retention)
    ns:owners                set: owners that ever submitted (quota reconciliation)
    ns:idem:<owner>:<hash>   string with a 24 h TTL: "<job id> <body sha256>" of an Idempotency-Key
    ns:uploads               sorted set: "<owner>:<hex>" uploads by their last use (retention)
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

from jobs.job import TERMINAL_STATUSES, Job, JobStatus, decode_hash, encode_fields, is_series_child

STATUSES = tuple(s.value for s in JobStatus)
TERMINAL = tuple(s.value for s in TERMINAL_STATUSES)
#: buckets of the job duration histogram (seconds)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 4 * 3600)

# The start of both creating scripts: an idempotency key used before returns the earlier job
# (KEYS[7]), the owner's unfinished jobs (KEYS[3]) are checked against the limit ARGV[1], and the
# new record gets the next sequence number (KEYS[4]) as 'seq'.
_ADMIT = """
if ARGV[3] ~= '' then
  local prev = redis.call('GET', KEYS[7])
  if prev then return {2, prev} end
end
local n = redis.call('SCARD', KEYS[3])
if tonumber(ARGV[1]) > 0 and n >= tonumber(ARGV[1]) then return {0, n} end
local seq = redis.call('INCR', KEYS[4])
"""

_CREATE = _ADMIT + """
redis.call('HSET', KEYS[1], 'seq', seq, 'version', 1, unpack(ARGV, 7))
redis.call('ZADD', KEYS[2], seq, ARGV[2])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('HINCRBY', KEYS[5], 'queued', 1)
redis.call('ZADD', KEYS[6], ARGV[5], ARGV[2])
redis.call('SADD', KEYS[8], ARGV[6])
if ARGV[3] ~= '' then redis.call('SET', KEYS[7], ARGV[2] .. ' ' .. ARGV[3], 'EX', ARGV[4]) end
return {1, seq}
"""

_START = """
local v = redis.call('HMGET', KEYS[1], 'status', 'rq_id')
if v[1] ~= 'queued' then return {v[1] or 'missing', 0} end
-- a queue entry that the sweeper replaced (its worker seemed dead) must not run the job twice
if ARGV[6] ~= '' and v[2] ~= ARGV[6] then return {'superseded', 0} end
local a = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[3], 'worker', ARGV[1],
           'device', ARGV[2], 'progress', '0')
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('SET', KEYS[3], ARGV[1] .. '|' .. a, 'EX', ARGV[4])
redis.call('HINCRBY', KEYS[4], 'queued', -1)
redis.call('HINCRBY', KEYS[4], 'running', 1)
redis.call('ZREM', KEYS[5], ARGV[5])
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
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[5])
return outcome
"""


def _end_queued(outcome: str) -> str:
    """Lua lines that end a queued job as ``outcome`` once its status is set: KEYS are the job, the
    owner's active set, the stats, the outbox and the ended index; ARGV[1] is now, ARGV[2] the id."""
    return f"""
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'queued', -1)
redis.call('HINCRBY', KEYS[3], '{outcome}', 1)
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('ZADD', KEYS[5], ARGV[1], ARGV[2])
"""


_CANCEL = """
local v = redis.call('HMGET', KEYS[1], 'status', 'cancel')
if v[1] == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'canceled', 'finished_at', ARGV[1], 'cancel', '1')
""" + _end_queued("canceled") + """
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
  redis.call('ZADD', KEYS[7], ARGV[2], ARGV[3])
  return 'canceled'
end
if tonumber(v[2]) >= tonumber(v[4]) then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'finished_at', ARGV[2], 'error_type', 'WorkerLost',
             'error_message', lost .. '; no attempts left')
  redis.call('SREM', KEYS[4], ARGV[3])
  redis.call('HINCRBY', KEYS[5], 'failed', 1)
  redis.call('ZADD', KEYS[7], ARGV[2], ARGV[3])
  return 'failed'
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'progress', '0', 'worker', '', 'started_at', '',
           'rq_id', ARGV[4], 'requeued_reason', lost .. '; requeued')
redis.call('HINCRBY', KEYS[5], 'queued', 1)
redis.call('ZADD', KEYS[6], ARGV[2], ARGV[3])
return 'queued'
"""

# A queued job found on no queue (the API died before enqueueing it, or a worker died between
# taking it from the queue and starting it) gets a new queue entry; the old entry, should it
# surface, is refused by START.
_REENQUEUE = """
local v = redis.call('HMGET', KEYS[1], 'status', 'rq_id')
if v[1] ~= 'queued' or v[2] ~= ARGV[1] then return 'skip' end
redis.call('HSET', KEYS[1], 'rq_id', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 'ok'
"""

# A queued job that no live worker can take (its device is served by none) ends failed after the
# queue timeout; a worker that started it meanwhile wins. Its queue entry is discarded afterwards.
_FAIL_QUEUED = """
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'queued' then return st or 'missing' end
redis.call('HSET', KEYS[1], 'status', 'failed', 'finished_at', ARGV[1], 'error_type', ARGV[3],
           'error_message', ARGV[4])
""" + _end_queued("failed") + """
return 'failed'
"""

# A series: the parent record (counted once against the owner's limit, with no queue entry of its
# own) and every child record (in the outbox, to be enqueued), written together, so that no
# crash leaves a parent without its children. ARGV[8] is the number of parent field words; each
# child follows as: id, first image number, number of field words, the words.
_CREATE_SERIES = _ADMIT + """
local np = tonumber(ARGV[8])
redis.call('HSET', KEYS[1], 'seq', seq, 'version', 1, unpack(ARGV, 9, 8 + np))
redis.call('ZADD', KEYS[2], seq, ARGV[2])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[8], ARGV[6])
redis.call('SADD', KEYS[10], ARGV[2])
local i = 9 + np
local made = 0
while i <= #ARGV do
  local nf = tonumber(ARGV[i + 2])
  local cseq = redis.call('INCR', KEYS[4])
  redis.call('HSET', ARGV[7] .. ARGV[i], 'seq', cseq, 'version', 1, unpack(ARGV, i + 3, i + 2 + nf))
  redis.call('ZADD', KEYS[9], ARGV[i + 1], ARGV[i])
  redis.call('ZADD', KEYS[6], ARGV[5], ARGV[i])
  made = made + 1
  i = i + 3 + nf
end
redis.call('HINCRBY', KEYS[5], 'queued', 1 + made)
if ARGV[3] ~= '' then redis.call('SET', KEYS[7], ARGV[2] .. ' ' .. ARGV[3], 'EX', ARGV[4]) end
return {1, seq}
"""

# A series' progress: its images done and the share of its running children (images_partial),
# over its images.
_SET_PROGRESS = """
local function set_progress(key, images)
  local h = redis.call('HMGET', key, 'images_done', 'images_partial')
  local sum = tonumber(h[1] or '0') + tonumber(h[2] or '0')
  redis.call('HSET', key, 'progress', string.format('%.4f', math.min(1, sum / tonumber(images))))
end
"""

# A series moves with its children: after any move of a child, ROLLUP looks at the child's status.
# A started child makes a queued parent running; an ended child is counted once (the settled hash
# remembers it, so that the worker, the sweeper and a cancel may all call ROLLUP for the same
# child) into the images done, failed or canceled; the last child ends the parent: canceled if a
# cancel was asked for, failed if an image failed, else finished.
_ROLLUP = _SET_PROGRESS + """
local p = redis.call('HMGET', KEYS[1], 'status', 'children', 'cancel', 'images')
if not p[1] then return 'missing' end
local cst = redis.call('HGET', KEYS[2], 'status')
if not cst then return p[1] end
if p[1] == 'queued' and cst ~= 'queued' and cst ~= 'canceled' then
  local dev = redis.call('HGET', KEYS[2], 'device') or ''
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[2], 'device', dev)
  redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('HINCRBY', KEYS[5], 'queued', -1)
  redis.call('HINCRBY', KEYS[5], 'running', 1)
  p[1] = 'running'
end
if cst ~= 'finished' and cst ~= 'failed' and cst ~= 'canceled' then return p[1] end
if p[1] ~= 'queued' and p[1] ~= 'running' then return p[1] end
if redis.call('HSETNX', KEYS[3], ARGV[1], cst) == 0 then return p[1] end
local c = redis.call('HMGET', KEYS[2], 'image_numbers', 'error_type', 'error_message')
local nums = cjson.decode(c[1])
local ended = redis.call('HINCRBY', KEYS[1], 'children_ended', 1)
local share = tonumber(redis.call('HGET', KEYS[8], ARGV[1]) or '0')
if share ~= 0 then
  redis.call('HDEL', KEYS[8], ARGV[1])
  redis.call('HINCRBYFLOAT', KEYS[1], 'images_partial', -share)
end
if cst == 'finished' then
  redis.call('HINCRBY', KEYS[1], 'images_done', #nums)
  set_progress(KEYS[1], p[4])
elseif cst == 'failed' then
  redis.call('HINCRBY', KEYS[1], 'images_failed', #nums)
  local raw = redis.call('HGET', KEYS[1], 'failures')
  local list = {}
  if raw and raw ~= '' and raw ~= '[]' then list = cjson.decode(raw) end
  table.insert(list, {images = nums, error = {type = c[2] or '', message = c[3] or ''}})
  redis.call('HSET', KEYS[1], 'failures', cjson.encode(list))
else
  redis.call('HINCRBY', KEYS[1], 'images_canceled', #nums)
end
redis.call('HINCRBY', KEYS[1], 'version', 1)
if ended < tonumber(p[2]) then return p[1] end
local outcome = 'finished'
local failed = tonumber(redis.call('HGET', KEYS[1], 'images_failed') or '0')
if p[3] == '1' then
  outcome = 'canceled'
elseif failed > 0 then
  outcome = 'failed'
  local first = cjson.decode(redis.call('HGET', KEYS[1], 'failures'))[1]
  redis.call('HSET', KEYS[1], 'error_type', 'ImagesFailed', 'error_message',
             failed .. ' of ' .. p[4] .. ' images failed; image ' ..
             table.concat(first.images, ', ') .. ': ' .. first.error.type .. ': ' ..
             first.error.message)
elseif tonumber(redis.call('HGET', KEYS[1], 'images_canceled') or '0') > 0 then
  outcome = 'canceled'
end
redis.call('HSET', KEYS[1], 'status', outcome, 'finished_at', ARGV[2])
redis.call('SREM', KEYS[4], ARGV[3])
redis.call('HINCRBY', KEYS[5], p[1], -1)
redis.call('HINCRBY', KEYS[5], outcome, 1)
redis.call('ZADD', KEYS[6], ARGV[2], ARGV[3])
redis.call('SREM', KEYS[7], ARGV[3])
return outcome
"""

# A running child's share of a series' progress: the images it has rendered so far (a fraction of
# its own), kept per child in the partial hash and summed in the parent's 'images_partial', so that
# the parent's progress moves while its children render. ROLLUP takes a child's share out when it
# counts the child; a retried child's share is replaced by its next write.
_SERIES_PROGRESS = _SET_PROGRESS + """
local p = redis.call('HMGET', KEYS[1], 'status', 'images')
if p[1] ~= 'queued' and p[1] ~= 'running' then return 0 end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 0 end
local old = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HINCRBYFLOAT', KEYS[1], 'images_partial', tonumber(ARGV[2]) - old)
set_progress(KEYS[1], p[2])
redis.call('HINCRBY', KEYS[1], 'version', 1)
return 1
"""

# A cancel of a series marks the parent; the caller then cancels every child (CANCEL) and each
# child's ROLLUP ends the parent once the last one has ended.
_MARK_CANCEL = """
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'queued' and st ~= 'running' then return st or 'missing' end
if redis.call('HGET', KEYS[1], 'cancel') ~= '1' then
  redis.call('HSET', KEYS[1], 'cancel', '1', 'cancel_requested_at', ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'version', 1)
end
return 'cancel-requested'
"""

# Retention: remove an ended job's record and its indexes (only while it is still ended).
_FORGET = """
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'queued' or st == 'running' then
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 'live'
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[7], KEYS[8], KEYS[9])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('SREM', KEYS[5], ARGV[1])
if st then redis.call('HINCRBY', KEYS[6], st, -1) end
return st or 'missing'
"""


#: every script, registered by Records as ``_<name>``
SCRIPTS = {"create": _CREATE, "start": _START, "renew": _RENEW, "finish": _FINISH,
           "cancel": _CANCEL, "requeue": _REQUEUE, "reenqueue": _REENQUEUE, "forget": _FORGET,
           "fail_queued": _FAIL_QUEUED, "create_series": _CREATE_SERIES, "rollup": _ROLLUP,
           "mark_cancel": _MARK_CANCEL, "series_progress": _SERIES_PROGRESS}


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
        self.sweeper_lock = f"{ns}:lock:sweeper"
        self.queued = f"{ns}:queued"
        self.ended = f"{ns}:ended"
        self.owners = f"{ns}:owners"
        self.uploads = f"{ns}:uploads"
        self.retention = f"{ns}:retention"

    def job(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}"

    def traces(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}:traces"

    def children(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}:children"

    def settled(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}:settled"

    def partial(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}:partial"

    @property
    def series(self) -> str:
        return f"{self.ns}:series"

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

    def idempotency(self, owner: str, key_hash: str) -> str:
        return f"{self.ns}:idem:{owner}:{key_hash}"


def decode(raw: dict) -> dict:
    """A job hash as stored (bytes) -> a dict with JSON fields parsed (``Job.from_record`` types
    it)."""
    return decode_hash(raw)


def encode(fields: dict) -> list:
    """A dict -> flat [field, value, ...] for HSET, JSON-encoding lists and dicts."""
    return [x for kv in encode_fields(fields).items() for x in kv]


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else v


class Records:
    """Synchronous access to job and file records (the API's threads and the workers use it)."""

    def __init__(self, connection: redis.Redis, ns: str):
        self.r = connection
        self.k = Keys(ns)
        for name, text in SCRIPTS.items():
            setattr(self, f"_{name}", connection.register_script(text))

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
    def create(self, job_id: str, owner: str, fields: dict, limit: int,
               idempotency: tuple[str, str] | None = None,
               idempotency_ttl: int = 86400) -> tuple[int, object]:
        """Write a queued record and put it in the outbox (``ns:queued``). Returns (1, seq), or
        (0, unfinished jobs) over the owner's limit, or (2, "<job id> <body hash>") when the
        idempotency key (key hash, body hash) was used before."""
        key_hash, body_hash = idempotency or ("", "")
        keys = [self.k.job(job_id), self.k.owner_jobs(owner), self.k.owner_active(owner),
                self.k.seq, self.k.stats, self.k.queued,
                self.k.idempotency(owner, key_hash or "-"), self.k.owners]
        code, val = self._create(keys=keys, args=[limit, job_id, body_hash, idempotency_ttl, now(),
                                                  owner] + encode(fields))
        return int(code), (_s(val) if int(code) == 2 else int(val))

    def idempotent_job(self, owner: str, key_hash: str) -> Optional[tuple[str, str]]:
        """(job id, body hash) stored under an owner's idempotency key, if any."""
        v = self.r.get(self.k.idempotency(owner, key_hash))
        if not v:
            return None
        job_id, _, body = _s(v).partition(" ")
        return job_id, body

    def start(self, job_id: str, worker: str, device: str, lease_ttl: int,
              rq_id: str = "") -> tuple[str, int]:
        st, attempt = self._start(keys=[self.k.job(job_id), self.k.running, self.k.lease(job_id),
                                        self.k.stats, self.k.queued],
                                  args=[worker, device, now(), lease_ttl, job_id, rq_id])
        return _s(st), int(attempt)

    def renew(self, job_id: str, worker: str, attempt: int, lease_ttl: int,
              progress: Optional[float] = None) -> str:
        p = "" if progress is None else f"{progress:.4f}"
        out = self._renew(keys=[self.k.job(job_id), self.k.lease(job_id)],
                          args=[worker, attempt, lease_ttl, p])
        return _s(out)

    def finish(self, job_id: str, owner: str, worker: str, attempt: int, outcome: str,
               fields: dict | None = None) -> str:
        keys = [self.k.job(job_id), self.k.running, self.k.lease(job_id),
                self.k.owner_active(owner), self.k.stats, self.k.ended]
        out = self._finish(keys=keys, args=[worker, attempt, now(), outcome, job_id]
                           + encode(fields or {}))
        return _s(out)

    def cancel(self, job_id: str, owner: str, client=None) -> str:
        """CANCEL (``client``: a pipeline, whose execute() then gives the outcome)."""
        out = self._cancel(keys=[self.k.job(job_id), self.k.owner_active(owner), self.k.stats,
                                 self.k.queued, self.k.ended],
                           args=[now(), job_id], client=client)
        return out if client is not None else _s(out)

    def requeue(self, job_id: str, owner: str, attempt: int, rq_id: str, reason: str) -> str:
        keys = [self.k.job(job_id), self.k.running, self.k.lease(job_id),
                self.k.owner_active(owner), self.k.stats, self.k.queued, self.k.ended]
        out = self._requeue(keys=keys, args=[attempt, now(), job_id, rq_id, reason])
        return _s(out)

    def reenqueue(self, job_id: str, old_rq_id: str, new_rq_id: str) -> bool:
        """Give a queued job found on no queue a new queue entry id (then enqueue it)."""
        out = self._reenqueue(keys=[self.k.job(job_id), self.k.queued],
                              args=[old_rq_id, new_rq_id, now(), job_id])
        return _s(out) == "ok"

    def forget(self, job_id: str, owner: str) -> str:
        """Remove an ended job's record and indexes; returns the status it had ('live' if it is
        queued or running again)."""
        keys = [self.k.job(job_id), self.k.traces(job_id), self.k.owner_jobs(owner),
                self.k.ended, self.k.owner_active(owner), self.k.stats,
                self.k.children(job_id), self.k.settled(job_id), self.k.partial(job_id)]
        return _s(self._forget(keys=keys, args=[job_id]))

    # -- series ---------------------------------------------------------------------------------------
    def create_series(self, job_id: str, owner: str, fields: dict,
                      children: list[tuple[str, int, dict]], limit: int,
                      idempotency: tuple[str, str] | None = None,
                      idempotency_ttl: int = 86400) -> tuple[int, object]:
        """Write a series: its parent record and every child ``(id, first image, fields)``, the
        children in the outbox. Returns as :meth:`create`."""
        key_hash, body_hash = idempotency or ("", "")
        keys = [self.k.job(job_id), self.k.owner_jobs(owner), self.k.owner_active(owner),
                self.k.seq, self.k.stats, self.k.queued,
                self.k.idempotency(owner, key_hash or "-"), self.k.owners,
                self.k.children(job_id), self.k.series]
        words = encode(fields)
        args = [limit, job_id, body_hash, idempotency_ttl, now(), owner, self.k.job(""),
                len(words)] + words
        for child_id, first, child_fields in children:
            cw = encode(child_fields)
            args += [child_id, first, len(cw)] + cw
        code, val = self._create_series(keys=keys, args=args)
        return int(code), (_s(val) if int(code) == 2 else int(val))

    def rollup(self, parent: str, child: str, owner: str, client=None) -> str:
        """Count a child's move into its series (idempotent); returns the parent's status
        (``client``: a pipeline, as for :meth:`cancel`)."""
        keys = [self.k.job(parent), self.k.job(child), self.k.settled(parent),
                self.k.owner_active(owner), self.k.stats, self.k.ended, self.k.series,
                self.k.partial(parent)]
        out = self._rollup(keys=keys, args=[child, now(), parent], client=client)
        return out if client is not None else _s(out)

    def series_progress(self, parent: str, child: str, images: float) -> None:
        """A running child has rendered ``images`` of its images (a fraction of them) so far."""
        self._series_progress(keys=[self.k.job(parent), self.k.partial(parent),
                                    self.k.settled(parent)], args=[child, f"{images:.4f}"])

    def settle(self, rec: dict) -> Optional[str]:
        """ROLLUP of a series child (``rec``); None for any other job."""
        if is_series_child(rec):
            return self.rollup(rec["parent"], rec["id"], rec["owner"])
        return None

    def cancel_children(self, parent: str, owner: str) -> list[dict]:
        """CANCEL every child of a series, then ROLLUP each, in two pipelines. Returns the
        children canceled here while queued (``id``, ``rq_id``, ``queue``: their queue entries
        are to be discarded)."""
        children = self.child_ids(parent)
        pipe = self.r.pipeline(transaction=False)
        for child in children:
            self.cancel(child, owner, client=pipe)
            pipe.hmget(self.k.job(child), "rq_id", "queue")
        out = pipe.execute()
        canceled = [{"id": child, "rq_id": _s(rq_id or b""), "queue": _s(queue or b"")}
                    for child, outcome, (rq_id, queue) in zip(children, out[::2], out[1::2])
                    if _s(outcome) == "canceled"]
        pipe = self.r.pipeline(transaction=False)
        for child in children:
            self.rollup(parent, child, owner, client=pipe)
        pipe.execute()
        return canceled

    def mark_cancel(self, parent: str) -> str:
        return _s(self._mark_cancel(keys=[self.k.job(parent)], args=[now()]))

    def child_ids(self, parent: str) -> list[str]:
        """A series' children in image order."""
        return [_s(m) for m in self.r.zrange(self.k.children(parent), 0, -1)]

    def children_of(self, parent: str, *, limit: int = 20, cursor: Optional[int] = None
                    ) -> tuple[list[dict], Optional[int]]:
        """A page of a series' children (records) in image order; the cursor is the first image
        of the next page."""
        ids_scores = self.r.zrangebyscore(self.k.children(parent),
                                          cursor if cursor is not None else "-inf", "+inf",
                                          start=0, num=limit + 1, withscores=True)
        pipe = self.r.pipeline(transaction=False)
        for member, _ in ids_scores[:limit]:
            pipe.hgetall(self.k.job(_s(member)))
        recs = [decode(raw) for raw in pipe.execute() if raw]
        nxt = int(ids_scores[limit][1]) if len(ids_scores) > limit else None
        return recs, nxt

    def child_for_image(self, parent: str, n: int) -> Optional[dict]:
        """The child record that renders image ``n`` of a series (None if none does)."""
        found = self.r.zrevrangebyscore(self.k.children(parent), n, "-inf", start=0, num=1)
        if not found:
            return None
        rec = self.get(_s(found[0]))
        return rec if rec is not None and n in (rec.get("image_numbers") or []) else None

    def settled_children(self, parent: str) -> set[str]:
        return {_s(m) for m in self.r.hkeys(self.k.settled(parent))}

    def live_series(self) -> list[str]:
        return sorted(_s(m) for m in self.r.smembers(self.k.series))

    def queued_since(self, before: float, limit: int = 500) -> list[str]:
        """Jobs put on a queue before ``before`` and still queued (oldest first)."""
        return [_s(m) for m in self.r.zrangebyscore(self.k.queued, "-inf", before, start=0,
                                                    num=limit)]

    def ended_before(self, before: float, limit: int = 200) -> list[str]:
        return [_s(m) for m in self.r.zrangebyscore(self.k.ended, "-inf", before, start=0,
                                                    num=limit)]

    def fail_queued(self, job_id: str, owner: str, etype: str, message: str) -> bool:
        """Fail a job that is still queued (a worker that starts it first wins)."""
        keys = [self.k.job(job_id), self.k.owner_active(owner), self.k.stats, self.k.queued,
                self.k.ended]
        return _s(self._fail_queued(keys=keys, args=[now(), job_id, etype, message])) == "failed"

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

    def set_trace_jobs(self, job_id: str, keys: Iterable[str], trace_job: str):
        """``keys``: "slow,fast" of a job's pixels, "n:slow,fast" of image n's of a series."""
        mapping = {key: trace_job for key in keys}
        if mapping:
            self.r.hset(self.k.traces(job_id), mapping=mapping)

    # -- files ------------------------------------------------------------------------------------------
    def put_file(self, owner: str, digest: str, name: str, size: int, kind: str,
                 summary: Optional[dict] = None) -> dict:
        rec = {"id": f"sha256:{digest}", "name": name, "size": size, "kind": kind,
               "created_at": now()}
        mapping = {k: str(v) for k, v in rec.items()}
        mapping["summary"] = json.dumps(summary or {}, separators=(",", ":"))
        pipe = self.r.pipeline()
        pipe.hset(self.k.file(owner, digest), mapping=mapping)
        pipe.zadd(self.k.uploads, {f"{owner}:{digest}": rec["created_at"]})
        pipe.execute()
        return dict(rec, summary=summary or {})

    def touch_files(self, owner: str, digests: Iterable[str]) -> None:
        """A job uses these uploads now (retention counts from their last use)."""
        members = {f"{owner}:{d}": now() for d in digests}
        if members:
            self.r.zadd(self.k.uploads, members)

    def uploads_unused_since(self, before: float, limit: int = 200) -> list[tuple[str, str]]:
        out = []
        for m in self.r.zrangebyscore(self.k.uploads, "-inf", before, start=0, num=limit):
            owner, _, digest = _s(m).rpartition(":")
            out.append((owner, digest))
        return out

    def forget_file(self, owner: str, digest: str) -> bool:
        """Drop the owner's upload record; True when no owner has this content any more."""
        pipe = self.r.pipeline()
        pipe.delete(self.k.file(owner, digest))
        pipe.zrem(self.k.uploads, f"{owner}:{digest}")
        pipe.execute()
        for _member, _score in self.r.zscan_iter(self.k.uploads, match=f"*:{digest}"):
            return False
        return True

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
           "DURATION_BUCKETS", "Job", "JobStatus"]

"""The Lua scripts that change job records, each one atomic step of the job state machine
(``jobs.job.TRANSITIONS``). Each script starts with its KEYS and ARGV and what it returns;
``jobs.records`` registers them and is the only caller. A script checks the current state (and,
for a worker, that it still holds the job's current attempt) before it moves anything, so that
cancel, start, finish and requeue can race without corrupting a record; ``version`` grows with
every change (the record's ETag).
"""

from __future__ import annotations

# The start of both creating scripts: an idempotency key used before returns the earlier job
# (KEYS[7]), the owner's unfinished jobs (KEYS[3]) are checked against the limit ARGV[1], and the
# new record gets the next sequence number (KEYS[4]) as 'seq'.
_ADMIT = """
-- (the start of CREATE and CREATE_SERIES)
-- KEYS[3] the owner's active set, KEYS[4] the sequence counter, KEYS[7] the idempotency key
-- ARGV[1] the owner's limit of unfinished jobs (0: none), ARGV[3] the body hash ('' without a key)
-- an idempotency key used before returns {2, '<job id> <body hash>'}; over the limit {0, n}
if ARGV[3] ~= '' then
  local prev = redis.call('GET', KEYS[7])
  if prev then return {2, prev} end
end
local n = redis.call('SCARD', KEYS[3])
if tonumber(ARGV[1]) > 0 and n >= tonumber(ARGV[1]) then return {0, n} end
local seq = redis.call('INCR', KEYS[4])
"""

_CREATE = """
-- CREATE: a new queued record, in the outbox
-- KEYS[1] job, KEYS[2] owner's jobs, KEYS[3] owner's active set, KEYS[4] sequence counter,
-- KEYS[5] status counts, KEYS[6] outbox, KEYS[7] idempotency key, KEYS[8] owners
-- ARGV[1] limit, ARGV[2] job id, ARGV[3] body hash, ARGV[4] idempotency TTL, ARGV[5] now,
-- ARGV[6] owner, ARGV[7..] field, value, ...
-- returns {1, seq} (written), {0, n} (over the limit) or {2, '<job id> <body hash>'}
""" + _ADMIT + """
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
-- START: queued -> running, for the worker that holds the job's current queue entry
-- KEYS[1] job, KEYS[2] running set, KEYS[3] lease, KEYS[4] status counts, KEYS[5] outbox
-- ARGV[1] worker, ARGV[2] device, ARGV[3] now, ARGV[4] lease TTL, ARGV[5] job id,
-- ARGV[6] the queue entry's id ('' : any)
-- returns {'running', attempt} or {status | 'missing' | 'superseded', 0}
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
-- RENEW: extend the lease of the attempt a worker holds, and write its progress
-- KEYS[1] job, KEYS[2] lease
-- ARGV[1] worker, ARGV[2] attempt, ARGV[3] lease TTL, ARGV[4] progress ('' : unchanged)
-- returns 'ok', 'cancel' (a cancel is pending) or 'lost' (the attempt is not the worker's)
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
-- FINISH: running -> finished | failed | canceled, by the worker holding the attempt
-- KEYS[1] job, KEYS[2] running set, KEYS[3] lease, KEYS[4] owner's active set,
-- KEYS[5] status counts, KEYS[6] ended index
-- ARGV[1] worker, ARGV[2] attempt, ARGV[3] now, ARGV[4] outcome, ARGV[5] job id,
-- ARGV[6..] field, value, ... to set
-- returns the outcome, 'cancel' (finished asked while a cancel is pending) or 'lost'
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
-- CANCEL: queued -> canceled; running: the cancel flag, seen by the worker between chunks
-- KEYS[1] job, KEYS[2] owner's active set, KEYS[3] status counts, KEYS[4] outbox,
-- KEYS[5] ended index
-- ARGV[1] now, ARGV[2] job id
-- returns 'canceled', 'cancel-requested' or the status it had ('missing')
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
-- REQUEUE: a running job whose lease expired -> queued (attempts left), failed or canceled
-- KEYS[1] job, KEYS[2] running set, KEYS[3] lease, KEYS[4] owner's active set,
-- KEYS[5] status counts, KEYS[6] outbox, KEYS[7] ended index
-- ARGV[1] the attempt the sweeper saw, ARGV[2] now, ARGV[3] job id, ARGV[4] new queue entry id,
-- ARGV[5] why
-- returns 'queued', 'failed', 'canceled', 'alive' (the lease is back) or 'skip'
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
-- REENQUEUE: a queued job found on no queue gets a new queue entry id
-- KEYS[1] job, KEYS[2] outbox
-- ARGV[1] the entry id seen, ARGV[2] the new one, ARGV[3] now, ARGV[4] job id
-- returns 'ok' or 'skip' (it moved meanwhile)
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
-- FAIL_QUEUED: queued -> failed (no live worker serves its device)
-- KEYS[1] job, KEYS[2] owner's active set, KEYS[3] status counts, KEYS[4] outbox,
-- KEYS[5] ended index
-- ARGV[1] now, ARGV[2] job id, ARGV[3] error type, ARGV[4] error message
-- returns 'failed' or the status it had
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
_CREATE_SERIES = """
-- CREATE_SERIES: a series' parent and every child, in one step
-- KEYS[1..8] as CREATE (KEYS[6]: the outbox the children go into), KEYS[9] the parent's
-- children, KEYS[10] live series
-- ARGV[1..6] as CREATE, ARGV[7] the key prefix of a job record, ARGV[8] the number of the
-- parent's field words, ARGV[9..] the parent's words, then per child: id, first image number,
-- number of field words, the words
-- returns as CREATE
""" + _ADMIT + """
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
-- set_progress(key, images): a series' progress from its images done and partial
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
_ROLLUP = """
-- ROLLUP: count a child's move into its series (idempotent per child)
-- KEYS[1] parent, KEYS[2] child, KEYS[3] settled children, KEYS[4] owner's active set,
-- KEYS[5] status counts, KEYS[6] ended index, KEYS[7] live series, KEYS[8] partial shares,
-- KEYS[9] outbox
-- ARGV[1] child id, ARGV[2] now, ARGV[3] parent id, ARGV[4] a queue entry id for a
-- verification's report
-- returns the parent's status ('missing' without a parent), or 'report' when a verification's
-- last side has ended and its report step is now queued (in the outbox, to be enqueued)
""" + _SET_PROGRESS + """
local p = redis.call('HMGET', KEYS[1], 'status', 'children', 'cancel', 'images', 'kind',
                     'children_ended')
if not p[1] then return 'missing' end
-- a verification whose sides have all ended is its own report step now: sides move it no more
if p[5] == 'verification' and tonumber(p[6] or '0') >= tonumber(p[2]) then return p[1] end
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
if p[5] == 'verification' and p[3] ~= '1' then
  -- every side has ended (finished or not: the report says which did not run): the parent is
  -- queued for its report, in the outbox at time 0 so that the next sweeper pass enqueues it
  -- should the caller not
  redis.call('HSET', KEYS[1], 'status', 'queued', 'rq_id', ARGV[4], 'progress', '0')
  redis.call('HINCRBY', KEYS[5], p[1], -1)
  redis.call('HINCRBY', KEYS[5], 'queued', 1)
  redis.call('ZADD', KEYS[9], 0, ARGV[3])
  redis.call('SREM', KEYS[7], ARGV[3])
  return 'report'
end
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
_SERIES_PROGRESS = """
-- SERIES_PROGRESS: a running child's share of its series' images
-- KEYS[1] parent, KEYS[2] partial shares, KEYS[3] settled children
-- ARGV[1] child id, ARGV[2] the images it has rendered (a fraction)
-- returns 1 when written, 0 when the series or the child has ended
""" + _SET_PROGRESS + """
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
-- MARK_CANCEL: flag a live series for cancel (the caller then cancels each child)
-- KEYS[1] parent
-- ARGV[1] now
-- returns 'cancel-requested' or the status it had
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
-- FORGET: remove an ended job's record and its indexes
-- KEYS[1] job, KEYS[2] its traces, KEYS[3] owner's jobs, KEYS[4] ended index,
-- KEYS[5] owner's active set, KEYS[6] status counts, KEYS[7] children, KEYS[8] settled,
-- KEYS[9] partial shares
-- ARGV[1] job id
-- returns the status it had, 'live' (queued or running again) or 'missing'
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

__all__ = ["SCRIPTS"]

"""The Lua scripts that change job records, each one atomic step of the job state machine
(``jobs.job.TRANSITIONS``). Each script starts with its KEYS and ARGV and what it returns;
``jobs.records`` registers them and is the only caller. A script checks the current state (and,
for a worker, that it still holds the job's current attempt) before it moves anything, so that
cancel, start, finish and requeue can race without corrupting a record; ``version`` grows with
every change (the record's ETag).
"""

from __future__ import annotations

# The start of every creating script: an idempotency key used before returns the earlier job
# (KEYS[7]); the owner's unfinished work with the new job (KEYS[3]: its queued and running jobs, a
# series counting the images it has left) is checked against the limits in ARGV[1]; the new record
# gets the next sequence number (KEYS[4]) as 'seq'. The loop reads at most the owner's job limit
# of records.
_CREATE_START = """
-- (the start of CREATE, CREATE_SERIES and CREATE_LAZY_SERIES)
-- KEYS[1] the new job, KEYS[3] the owner's active set, KEYS[4] the sequence counter,
-- KEYS[7] the idempotency key
-- ARGV[1] "<jobs> <images> <evaluations> <its images> <its evaluations>": the owner's limits of
-- unfinished work (0: none) and the new job's cost; ARGV[2] its id, ARGV[3] the body hash ('')
-- an idempotency key used before returns {2, '<job id> <body hash>'}; over a limit
-- {0, '<limit> <jobs> <images> <evaluations>'} (the owner's unfinished work with the new job)
if ARGV[3] ~= '' then
  local prev = redis.call('GET', KEYS[7])
  if prev then return {2, prev} end
end
local lim = {}
for w in string.gmatch(ARGV[1], '%S+') do lim[#lim + 1] = tonumber(w) end
local prefix = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[2])
local active = redis.call('SMEMBERS', KEYS[3])
local load = {#active + 1, lim[4], lim[5]}
if lim[1] == 0 or #active < lim[1] then
  for _, id in ipairs(active) do
    local h = redis.call('HMGET', prefix .. id, 'kind', 'images', 'images_done', 'images_failed',
                         'images_canceled', 'evaluations')
    local ev = tonumber(h[6] or '0') or 0
    local n = tonumber(h[2] or '0') or 0
    if h[1] == 'series' and n > 0 then
      local left = n - (tonumber(h[3] or '0') or 0) - (tonumber(h[4] or '0') or 0)
                     - (tonumber(h[5] or '0') or 0)
      load[2] = load[2] + left
      load[3] = load[3] + ev * left / n
    else
      load[2] = load[2] + 1
      load[3] = load[3] + ev
    end
  end
end
local names = {'jobs', 'images', 'evaluations'}
for i = 1, 3 do
  if lim[i] > 0 and load[i] > lim[i] then
    return {0, names[i] .. string.format(' %.0f %.0f %.0f', load[1], load[2], load[3])}
  end
end
local seq = redis.call('INCR', KEYS[4])
"""

# A new job waits in its owner's line (KEYS[9]) until ADMIT lets it onto its RQ queue; an owner
# whose line was empty joins the end of the turns (KEYS[10]).
_JOIN_LINE = """
-- join_line(line, turns, owner, id)
local function join_line(line, turns, owner, id)
  if redis.call('RPUSH', line, id) == 1 then redis.call('RPUSH', turns, owner) end
end
"""

_CREATE = """
-- CREATE: a new queued record, in its owner's line
-- KEYS[1] job, KEYS[2] owner's jobs, KEYS[3] owner's active set, KEYS[4] sequence counter,
-- KEYS[5] status counts, KEYS[6] outbox, KEYS[7] idempotency key, KEYS[8] owners,
-- KEYS[9] the owner's line of the job's queue, KEYS[10] the turns of that queue
-- ARGV[1] limits and cost, ARGV[2] job id, ARGV[3] body hash, ARGV[4] idempotency TTL, ARGV[5] now,
-- ARGV[6] owner, ARGV[7..] field, value, ...
-- returns {1, seq} (written), {0, '<limit> ...'} (over a limit) or {2, '<job id> <body hash>'}
""" + _CREATE_START + _JOIN_LINE + """
redis.call('HSET', KEYS[1], 'seq', seq, 'version', 1, unpack(ARGV, 7))
redis.call('ZADD', KEYS[2], seq, ARGV[2])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('HINCRBY', KEYS[5], 'queued', 1)
join_line(KEYS[9], KEYS[10], ARGV[6], ARGV[2])
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

# A verification: the parent record (counted once against the owner's limits, with no queue
# entry of its own) and every child record (each in the owner's line, to be let onto its queue),
# written together, so that no crash leaves a parent without its children. ARGV[8] is the number
# of parent field words; each child follows as: id, first image number, number of field words,
# the words.
_CREATE_SERIES = """
-- CREATE_SERIES: a parent and every child, in one step
-- KEYS[1..8] as CREATE, KEYS[9] the parent's children, KEYS[10] live series,
-- KEYS[11] the parent's live children
-- ARGV[1..6] as CREATE, ARGV[7] the key prefix of a job record, ARGV[8] the number of the
-- parent's field words, ARGV[9..] the parent's words, then per child: id, first image number,
-- the owner's line of its queue, that queue's turns, number of field words, the words
-- returns as CREATE
""" + _CREATE_START + _JOIN_LINE + """
local np = tonumber(ARGV[8])
redis.call('HSET', KEYS[1], 'seq', seq, 'version', 1, unpack(ARGV, 9, 8 + np))
redis.call('ZADD', KEYS[2], seq, ARGV[2])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[8], ARGV[6])
redis.call('SADD', KEYS[10], ARGV[2])
local i = 9 + np
local made = 0
while i <= #ARGV do
  local nf = tonumber(ARGV[i + 4])
  local cseq = redis.call('INCR', KEYS[4])
  redis.call('HSET', ARGV[7] .. ARGV[i], 'seq', cseq, 'version', 1, unpack(ARGV, i + 5, i + 4 + nf))
  redis.call('ZADD', KEYS[9], ARGV[i + 1], ARGV[i])
  redis.call('SADD', KEYS[11], ARGV[i])
  join_line(ARGV[i + 2], ARGV[i + 3], ARGV[6], ARGV[i])
  made = made + 1
  i = i + 5 + nf
end
redis.call('HINCRBY', KEYS[5], 'queued', 1 + made)
if ARGV[3] ~= '' then redis.call('SET', KEYS[7], ARGV[2] .. ' ' .. ARGV[3], 'EX', ARGV[4]) end
return {1, seq}
"""

# A series: only its parent record and the fields its children share (KEYS[12]); the parent waits
# in its owner's line and ADMIT makes its children one at a time as their turns come, so that a
# series of thousands of images costs the same to submit (and to cancel) as one job.
_CREATE_LAZY_SERIES = """
-- CREATE_LAZY_SERIES: a series' parent, its children's shared fields, in its owner's line
-- KEYS[1..10] as CREATE, KEYS[11] live series, KEYS[12] the children's shared fields
-- ARGV[1..6] as CREATE, ARGV[7] the number of the parent's field words, ARGV[8..] the parent's
-- words, then the shared words
-- returns as CREATE
""" + _CREATE_START + _JOIN_LINE + """
local np = tonumber(ARGV[7])
redis.call('HSET', KEYS[1], 'seq', seq, 'version', 1, 'children_made', 0, unpack(ARGV, 8, 7 + np))
redis.call('HSET', KEYS[12], unpack(ARGV, 8 + np))
redis.call('ZADD', KEYS[2], seq, ARGV[2])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[8], ARGV[6])
redis.call('SADD', KEYS[11], ARGV[2])
redis.call('HINCRBY', KEYS[5], 'queued', 1)
join_line(KEYS[9], KEYS[10], ARGV[6], ARGV[2])
if ARGV[3] ~= '' then redis.call('SET', KEYS[7], ARGV[2] .. ' ' .. ARGV[3], 'EX', ARGV[4]) end
return {1, seq}
"""

# A series' images in groups: child k of n holds consecutive images, the first 'images mod n'
# groups one image more (sim_core.series.plan_child_count); group_offset is the number of images
# before group k.
_GROUPS = """
local function group_offset(images, n, k)
  return k * math.floor(images / n) + math.min(k, images % n)
end
"""

# Fair share: the owners with jobs waiting for a queue take turns, one job (one child of a series)
# per turn, and only while fewer than the window's entries wait on the RQ queue, so that one
# owner's backlog stays in its line (and in no worker's way) and another owner's first job is let
# on within one turn. The API calls it after a submission, a worker each time it takes an entry,
# the sweeper every pass. Two callers at once may let on a few entries more than the window
# (the entries are pushed by the callers after the script); the window is a bound, not a count.
# A series' child is made here from the shared fields: its images are the k-th of the series'
# consecutive groups (the first 'images mod children' groups hold one image more).
_ADMIT = """
-- ADMIT: let waiting jobs onto an RQ queue, owners in turn, up to the window
-- KEYS[1] the queue's turns, KEYS[2] RQ's list of the queue, KEYS[3] outbox, KEYS[4] sequence
-- counter, KEYS[5] status counts
-- ARGV[1] window, ARGV[2] now, ARGV[3] the key prefix of the queue's lines, ARGV[4] the key
-- prefix of a job record, ARGV[5] the most lines to look at
-- returns {id, queue entry id, timeout, ...} of the jobs let on (in the outbox: to be enqueued)
""" + _GROUPS + """
local free = tonumber(ARGV[1]) - redis.call('LLEN', KEYS[2])
local out = {}
local looked = 0
while free > 0 and looked < tonumber(ARGV[5]) do
  looked = looked + 1
  local owner = redis.call('LPOP', KEYS[1])
  if not owner then break end
  local line = ARGV[3] .. owner
  local id = redis.call('LINDEX', line, 0)
  if id then
    local jk = ARGV[4] .. id
    local j = redis.call('HMGET', jk, 'status', 'kind', 'cancel', 'children', 'children_made',
                         'images', 'first_image', 'evaluations', 'rq_id', 'timeout_s')
    if (j[1] ~= 'queued' and j[1] ~= 'running') or j[3] == '1' then
      redis.call('LPOP', line)
    elseif j[2] == 'series' then
      local k, n = tonumber(j[5] or '0'), tonumber(j[4])
      if k + 1 >= n then redis.call('LPOP', line) end
      if k < n then
        local images, first = tonumber(j[6]), tonumber(j[7])
        local start = first + group_offset(images, n, k)
        local count = group_offset(images, n, k + 1) - group_offset(images, n, k)
        local nums = {}
        for i = 0, count - 1 do nums[#nums + 1] = start + i end
        local label = 'image ' .. start
        if count > 1 then label = 'images ' .. start .. '-' .. (start + count - 1) end
        local cid = string.format('%s-%05d', id, k)
        local ck = ARGV[4] .. cid
        local cseq = redis.call('INCR', KEYS[4])
        local rq = cid .. '_' .. string.format('%08x', cseq % 4294967296)
        local per = math.floor(tonumber(j[8]) / images)
        local shared = redis.call('HGETALL', jk .. ':template')
        redis.call('HSET', ck, unpack(shared))
        redis.call('HSET', ck, 'id', cid, 'seq', cseq, 'version', 1, 'status', 'queued',
                   'image_numbers', cjson.encode(nums), 'label', label, 'evaluations',
                   string.format('%.0f', per * count), 'rq_id', rq, 'created_at', ARGV[2])
        redis.call('HSET', jk, 'children_made', k + 1)
        redis.call('ZADD', jk .. ':children', start, cid)
        redis.call('SADD', jk .. ':live', cid)
        redis.call('HINCRBY', KEYS[5], 'queued', 1)
        redis.call('ZADD', KEYS[3], ARGV[2], cid)
        local timeout = redis.call('HGET', ck, 'timeout_s')
        out[#out + 1] = cid
        out[#out + 1] = rq
        out[#out + 1] = timeout
        free = free - 1
      end
    else
      redis.call('LPOP', line)
      redis.call('ZADD', KEYS[3], ARGV[2], id)
      out[#out + 1] = id
      out[#out + 1] = j[9]
      out[#out + 1] = j[10]
      free = free - 1
    end
    if redis.call('LLEN', line) > 0 then redis.call('RPUSH', KEYS[1], owner) end
  end
end
return out
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

# The end of a series (or of a verification that was canceled): canceled if a cancel was asked
# for, failed if an image failed, canceled if an image was, else finished.
_END_SERIES = """
-- end_series(parent key, parent id, now, status it had, owner's active set, status counts,
-- ended index, live series): the parent's final status
local function end_series(pk, pid, at, from, k_active, k_stats, k_ended, k_series)
  local h = redis.call('HMGET', pk, 'cancel', 'images_failed', 'images_canceled', 'images')
  local outcome = 'finished'
  local failed = tonumber(h[2] or '0') or 0
  if h[1] == '1' then
    outcome = 'canceled'
  elseif failed > 0 then
    outcome = 'failed'
    local first = cjson.decode(redis.call('HGET', pk, 'failures'))[1]
    redis.call('HSET', pk, 'error_type', 'ImagesFailed', 'error_message',
               failed .. ' of ' .. h[4] .. ' images failed; image ' ..
               table.concat(first.images, ', ') .. ': ' .. first.error.type .. ': ' ..
               first.error.message)
  elseif (tonumber(h[3] or '0') or 0) > 0 then
    outcome = 'canceled'
  end
  redis.call('HSET', pk, 'status', outcome, 'finished_at', at)
  redis.call('SREM', k_active, pid)
  redis.call('HINCRBY', k_stats, from, -1)
  redis.call('HINCRBY', k_stats, outcome, 1)
  redis.call('ZADD', k_ended, at, pid)
  redis.call('SREM', k_series, pid)
  return outcome
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
-- KEYS[9] outbox, KEYS[10] the parent's live children
-- ARGV[1] child id, ARGV[2] now, ARGV[3] parent id, ARGV[4] a queue entry id for a
-- verification's report
-- returns the parent's status ('missing' without a parent), or 'report' when a verification's
-- last side has ended and its report step is now queued (in the outbox, to be enqueued)
""" + _SET_PROGRESS + _END_SERIES + """
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
redis.call('SREM', KEYS[10], ARGV[1])
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
return end_series(KEYS[1], ARGV[3], ARGV[2], p[1], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
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

# A cancel of a series marks the parent; a series that has children still to be made makes no
# more (ADMIT drops it from the line): its count of children becomes the children made, the
# images of the others count as canceled, and with no child left alive it ends here. The caller
# then cancels each live child, and the last one's ROLLUP ends the parent. Without a cancel
# ('stop': a child failed for want of a worker) the series only stops making children.
_MARK_CANCEL = """
-- MARK_CANCEL: flag a live series for cancel (or stop it making children)
-- KEYS[1] parent, KEYS[2] owner's active set, KEYS[3] status counts, KEYS[4] ended index,
-- KEYS[5] live series
-- ARGV[1] now, ARGV[2] parent id, ARGV[3] 'cancel' or 'stop'
-- returns 'cancel-requested', the status it ended in here, or the status it had
""" + _END_SERIES + _GROUPS + """
local h = redis.call('HMGET', KEYS[1], 'status', 'cancel', 'kind', 'children', 'children_made',
                     'images', 'children_ended')
local st = h[1]
if st ~= 'queued' and st ~= 'running' then return st or 'missing' end
local changed = false
if ARGV[3] == 'cancel' and h[2] ~= '1' then
  redis.call('HSET', KEYS[1], 'cancel', '1', 'cancel_requested_at', ARGV[1])
  changed = true
end
local out = 'cancel-requested'
if h[3] == 'series' and h[5] then
  local n, made, images = tonumber(h[4]), tonumber(h[5]), tonumber(h[6])
  if made < n then
    local covered = group_offset(images, n, made)
    redis.call('HSET', KEYS[1], 'children', made)
    redis.call('HINCRBY', KEYS[1], 'images_canceled', images - covered)
    changed = true
    if tonumber(h[7] or '0') >= made then
      out = end_series(KEYS[1], ARGV[2], ARGV[1], st, KEYS[2], KEYS[3], KEYS[4], KEYS[5])
    end
  end
end
if changed then redis.call('HINCRBY', KEYS[1], 'version', 1) end
return out
"""

# Retention: remove an ended job's record and its indexes (only while it is still ended).
_FORGET = """
-- FORGET: remove an ended job's record and its indexes
-- KEYS[1] job, KEYS[2] its traces, KEYS[3] owner's jobs, KEYS[4] ended index,
-- KEYS[5] owner's active set, KEYS[6] status counts, KEYS[7] children, KEYS[8] settled,
-- KEYS[9] partial shares, KEYS[10] live children, KEYS[11] the children's shared fields
-- ARGV[1] job id
-- returns the status it had, 'live' (queued or running again) or 'missing'
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'queued' or st == 'running' then
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 'live'
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('SREM', KEYS[5], ARGV[1])
if st then redis.call('HINCRBY', KEYS[6], st, -1) end
return st or 'missing'
"""

#: every script, registered by Records as ``_<name>``
SCRIPTS = {"create": _CREATE, "start": _START, "renew": _RENEW, "finish": _FINISH,
           "cancel": _CANCEL, "requeue": _REQUEUE, "reenqueue": _REENQUEUE, "forget": _FORGET,
           "fail_queued": _FAIL_QUEUED, "create_series": _CREATE_SERIES,
           "create_lazy_series": _CREATE_LAZY_SERIES, "admit": _ADMIT, "rollup": _ROLLUP,
           "mark_cancel": _MARK_CANCEL, "series_progress": _SERIES_PROGRESS}

__all__ = ["SCRIPTS"]

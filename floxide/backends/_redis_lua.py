"""Lua scripts of the Redis backend: each operation that changes a run is one script.

Every key a script touches is passed in KEYS (one layout for a single server and a
cluster); a run's keys and its queue shard's keys share the hash tag `{S}` of the shard
the run is pinned to (`_redis_keys`), so each script touches one hash slot. KEYS of a
run script, in this order (P = prefix, S = shard, R = run id, Q = queue):
  1 P:{S}:run:R           HASH run record, context, version, counters, token sequence,
                          metrics (`m|NODE`: "COUNT TOTAL MAX", one field per node, so a
                          commit looks up and writes one field of a long record, not three)
  2 P:{S}:run:R:items     HASH item id -> item record (msgpack: node, payload, attempt,
                          state, token, worker, last error, expired); the run's live items
  3 P:{S}:run:R:scopes    HASH open join scope id -> live items carrying it
  4 P:{S}:run:R:fired     HASH open join scope id -> JSON of the join items it fires
  5 P:{S}:run:R:col       LIST of "K\\x1fVALUE": the values collected for join key K
  6 P:{S}:run:R:outputs   LIST of outputs;  7 :errors LIST of errors
  8 P:{S}:run:R:done      LIST holding the final status once finished (waiters BLMOVE it)
  9 P:{S}:leases          ZSET "R\\x1fI\\x1fTOKEN" -> lease deadline (the reaper scans it)
 10 P:{S}:q:Q:ready       LIST of "R\\x1fT\\x1fI" ready to lease (T: when it became ready)
 11 P:{S}:q:Q:delayed     ZSET "R\\x1fI" -> due time (durable delayed retries)
 12 P:{S}:q:Q:wake        LIST of wake-up tokens idle workers block on (BLPOP): run ids
 13 P:{S}:runs            ZSET R -> created time (listing)
 14 P:{S}:expiring        ZSET R -> time its keys expire (finished runs; trims P:{S}:runs)
 15 P:{S}:run:R:contrib   HASH item id -> its contribution to the context, not yet folded
                          into the base ('context'); the run record's 'contrib' counts the
                          contributions ever stored (absent: none, nothing to read)
 16 P:{S}:run:R:stage:TOKEN  LIST of a big commit's items, staged by the lease with TOKEN
                          (COMMIT only, when given: see `_redis_stage`)
P:workers (HASH worker id -> JSON info) has scripts of its own. ARGV[1] is the TTL of
finished runs (ms), ARGV[2] the run id (as keys hold it). A lease's member in P:{S}:leases
carries its token, so one ZREM both checks a lease and ends it. A script leases only
items of the run whose keys it was given: LEASE answers `{'run', R}` when the head of the
queue belongs to another run, and the caller asks again with that run's keys.
Times come from the server (TIME), so hosts with skewed clocks agree on lease deadlines.
"""

# A labelled port of `floxide._step.count_scopes`, the one join arithmetic (innermost scope
# first; each scope gains n_new - 1 live items plus the join items inner scopes fired in
# this step; a scope at zero closes and fires). tests/test_step.py feeds random commit
# sequences through both and compares.
COUNT_SCOPES = r"""
local function count_scopes(scopes_key, fired_key, ids, n_new)
  local fired = {}
  for _, sid in ipairs(ids) do
    local c = redis.call('HINCRBY', scopes_key, sid, n_new - 1 + #fired)
    if c == 0 then
      local f = cjson.decode(redis.call('HGET', fired_key, sid))
      redis.call('HDEL', scopes_key, sid)
      redis.call('HDEL', fired_key, sid)
      if type(f) ~= 'table' then error('garbled join items') end
      for _, x in ipairs(f) do table.insert(fired, x) end
    end
  end
  return fired
end
"""

PRELUDE = r"""
local TTL = tonumber(ARGV[1])  -- milliseconds
local t = redis.call('TIME')
local NOW = tonumber(t[1]) + tonumber(t[2]) / 1000000
local SEP = '\31'
local RK, ITEMS, SCOPES, FIRED, COL = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local OUTPUTS, ERRORS, DONE, LEASES = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local READY, DELAYED, WAKE, RUNS, EXPIRING = KEYS[10], KEYS[11], KEYS[12], KEYS[13], KEYS[14]
local CONTRIB = KEYS[15]
local RUN = ARGV[2]
local COMMITTED = nil  -- the id of the item a commit ended, until its record is dropped
-- item record fields
local NODE, PAYLOAD, ATTEMPT, STATE, TOKEN, WORKER, LAST_ERROR, EXPIRED = 1, 2, 3, 4, 5, 6, 7, 8

local function is_int(v)
  local n = tonumber(v)
  return n ~= nil and n == math.floor(n)
end

-- whether a stored value is absent or a number (an integer if `integral`; '' if `optional`)
local function num_ok(v, integral, optional)
  if not v then return true end
  if v == '' then return optional == true end
  local n = tonumber(v)
  return n ~= nil and (not integral or n == math.floor(n))
end

local function is_live(status)
  return status == 'pending' or status == 'running' or status == 'paused'
end

-- the contributions leases carry ({item id, data, ...}: the 14th field of a lease), read
-- before the first grant; none unless the run record counts some ('contrib'). Only the
-- first lease of a reply carries them (CONTRIBS_SENT): the others give false, the same
local CONTRIBS = {}
local CONTRIBS_SENT = false
-- whether the run has stored contributions (nil: not read yet; see finish)
local HAS_CONTRIB = nil
-- the tag ('version/created_at') of the base the caller holds ('' = none): its leases
-- give false instead of that base (a big base is not copied out for every lease: nor a
-- new one, given once per reply, its later leases giving false), and
-- their 15th field is the tag of the base they stand for; CREATED is the run's creation
-- time (a run created again under the same id starts at version 0 again)
local HELD, CREATED = '', ''

-- the run's contributions as {item id, data, ...}; nil when they cannot be read
local function read_contributions()
  local c = redis.pcall('HGETALL', CONTRIB)
  if type(c) ~= 'table' or c.err then return nil end
  return c
end

-- an item record; false if it cannot be read, nil if there is none (or it is done: the
-- record 'd' a commit leaves when it leases the next item in the same HSET)
local function read_item(raw)
  if not raw or raw == 'd' then return nil end
  local ok, it = pcall(cmsgpack.unpack, raw)
  if not ok or type(it) ~= 'table' or type(it[NODE]) ~= 'string'
      or type(it[PAYLOAD]) ~= 'string' or type(it[ATTEMPT]) ~= 'number'
      or type(it[STATE]) ~= 'string' or type(it[TOKEN]) ~= 'number' then
    return false
  end
  return it
end

local function new_item(node, payload, attempt)
  return cmsgpack.pack({node, payload, tonumber(attempt), 'queued', 0, '', '', 0})
end

-- a ready-list entry: run id, the time it became ready (orders shards' heads), item id
local function entry(id, at)
  return RUN .. SEP .. string.format('%.6f', at or NOW) .. SEP .. id
end

local function held(id, token)
  return RUN .. SEP .. id .. SEP .. string.format('%d', token)
end

-- commands with many arguments, in chunks Lua's stack takes
local function chunked(cmd, key, values, width)
  local n = #values
  local step = 1000 * width  -- unpack gives at most 8000 values (LUAI_MAXCSTACK)
  for a = 1, n, step do
    redis.call(cmd, key, unpack(values, a, math.min(n, a + step - 1)))
  end
end

-- the tokens name the run (a worker woken leases from it first: one round trip)
local function wake(n)
  if n <= 0 then return end
  local w = {}
  for j = 1, math.min(n, 8) do w[j] = RUN end
  redis.call('LPUSH', WAKE, unpack(w))
  redis.call('LTRIM', WAKE, 0, 63)
end

local function add_error(node, item, attempt, kind, msg, tb, handled)
  local entry = cjson.encode({node, item, tonumber(attempt), kind, msg, NOW, tb or '',
                              handled or 0})
  redis.call('RPUSH', ERRORS, entry)
end

local function finish(status, err, kind)
  if COMMITTED then
    redis.call('HDEL', ITEMS, COMMITTED)
    COMMITTED = nil
  end
  local fields = {'status', status, 'updated_at', tostring(NOW), 'finished_at', tostring(NOW),
                  'pending', 0}
  if err then
    table.insert(fields, 'error'); table.insert(fields, err)
    table.insert(fields, 'error_kind'); table.insert(fields, kind)
  end
  redis.call('HSET', RK, unpack(fields))
  local all = redis.call('HGETALL', ITEMS)
  local leases, kept = {}, {}
  for j = 1, #all, 2 do
    local it = read_item(all[j + 1])
    if it and it[STATE] == 'leased' then table.insert(leases, held(all[j], it[TOKEN])) end
    if it and status == 'failed' then
      it[STATE] = 'failed'
      table.insert(kept, all[j]); table.insert(kept, cmsgpack.pack(it))
    end
  end
  if #leases > 0 then chunked('ZREM', LEASES, leases, 1) end
  if status == 'failed' then  -- its work state is kept (expiring) for RETRY_RUN
    if #kept > 0 then chunked('HSET', ITEMS, kept, 2) end
    for _, k in ipairs({ITEMS, SCOPES, FIRED, COL}) do redis.call('PEXPIRE', k, TTL) end
  else
    redis.call('DEL', ITEMS, SCOPES, FIRED, COL)
    redis.call('ZADD', EXPIRING, NOW + TTL / 1000, RUN)
  end
  redis.call('DEL', DONE)
  redis.call('RPUSH', DONE, status)
  for _, k in ipairs({RK, OUTPUTS, ERRORS, DONE}) do redis.call('PEXPIRE', k, TTL) end
  if HAS_CONTRIB == nil then HAS_CONTRIB = redis.call('HEXISTS', RK, 'contrib') == 1 end
  if HAS_CONTRIB then redis.call('PEXPIRE', CONTRIB, TTL) end
end

-- fail the run when its stored `what` cannot be read (before anything else is written);
-- the message is floxide.backends._redis.unreadable
local function fail_unreadable(what)
  local msg = 'stored data of run ' .. RUN .. ' cannot be read: ' .. what
  finish('failed', msg, 'backend')
  return msg
end

-- the run's record fields a lease needs, checked: (r, bad) with r = {status, deadline,
-- version, pending, context, seq, contrib}; the contributions of a live run are read
-- into CONTRIBS
local function read_run()
  local r = redis.call('HMGET', RK, 'status', 'deadline', 'version', 'pending', 'context',
                       'seq', 'contrib', 'created_at')
  CREATED = r[8] or ''
  HAS_CONTRIB = r[7] ~= false
  local bad = nil
  if not num_ok(r[2], false, true) then bad = 'deadline'
  elseif not num_ok(r[3], true) then bad = 'version'
  elseif not num_ok(r[4], true) then bad = 'pending'
  elseif not num_ok(r[6], true) then bad = 'seq'
  elseif not num_ok(r[7], true) then bad = 'context contributions' end
  if not bad and r[7] and r[1] and is_live(r[1]) then
    CONTRIBS = read_contributions()
    if not CONTRIBS then bad = 'context contributions' end
  end
  return r, bad
end

-- lease item `id` (record `it`, queued) of this run to `worker`; appends 15 fields to `out`
local function grant(r, seq, id, it, worker, lease, out)
  local deadline = NOW + lease
  it[STATE], it[TOKEN], it[WORKER] = 'leased', seq, worker
  if COMMITTED then  -- the committed item's record is marked done in the same command
    redis.call('HSET', ITEMS, COMMITTED, 'd', id, cmsgpack.pack(it))
    COMMITTED = nil
  else
    redis.call('HSET', ITEMS, id, cmsgpack.pack(it))
  end
  redis.call('ZADD', LEASES, deadline, held(id, seq))
  local n, version = #out, r[3] or '0'
  local tag = version .. '/' .. CREATED
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = RUN, id, it[NODE], it[PAYLOAD]
  out[n + 5], out[n + 6] = tostring(it[ATTEMPT]), string.format('%d', seq)
  out[n + 7], out[n + 8] = tostring(deadline), it[LAST_ERROR] or ''
  out[n + 9], out[n + 10] = tostring(it[EXPIRED] or 0), worker
  out[n + 11], out[n + 12], out[n + 13] = r[5] or '', version, r[2] or ''
  if tag == HELD then out[n + 11] = false else HELD = tag end  -- given once per reply
  out[n + 14], out[n + 15] = not CONTRIBS_SENT and CONTRIBS, tag
  CONTRIBS_SENT = true
end

-- whether the run's deadline passed (then it is failed here, as floxide._step says)
local function past_deadline(r, node, id, attempt)
  if r[2] and r[2] ~= '' and NOW > tonumber(r[2]) then
    -- the message is floxide._step.DEADLINE_PASSED
    add_error(node, id, attempt, 'timeout', 'run deadline passed')
    finish('failed', 'run deadline passed', 'timeout')
    return true
  end
  return false
end
"""

TAKE = r"""
-- move due delayed items to the ready list
local function promote()
  local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', NOW, 'WITHSCORES', 'LIMIT', 0, 1000)
  if #due > 0 then
    local entries, members = {}, {}
    for j = 1, #due, 2 do
      local m = due[j]
      local sep = string.find(m, SEP, 1, true)
      table.insert(members, m)
      table.insert(entries, string.sub(m, 1, sep) .. string.format('%.6f', tonumber(due[j + 1]))
                   .. string.sub(m, sep))
    end
    chunked('RPUSH', READY, entries, 1)
    chunked('ZREM', DELAYED, members, 1)
  end
  return #due / 2
end

-- lease up to `limit` ready items at the head of the queue that belong to this run,
-- appending 15 fields per lease to `out`; returns (leased, the head entry when it is
-- another run's, the run's token sequence after, its status after); the caller writes
-- the sequence (and `running` for a pending run that got a lease) to the run record
local function take(r, worker, limit, lease, out)
  local got, scanned, seq, other = 0, 0, tonumber(r[6] or '0'), nil
  local status = r[1]
  local prefix = RUN .. SEP
  while got < limit and scanned < limit * 4 + 64 do
    local m = redis.call('LPOP', READY)
    if not m then break end
    if string.sub(m, 1, #prefix) ~= prefix then  -- another run's: back to the head
      redis.call('LPUSH', READY, m)
      other = m
      break
    end
    scanned = scanned + 1
    if status and is_live(status) then
      local id = string.sub(m, (string.find(m, SEP, #prefix + 1, true) or #m) + 1)
      local it = read_item(redis.call('HGET', ITEMS, id))
      if it == false then
        fail_unreadable('item ' .. id); status = 'failed'
      elseif it and it[STATE] ~= 'queued' and it[STATE] ~= 'leased' and it[STATE] ~= 'parked'
          and it[STATE] ~= 'failed' then
        fail_unreadable('state of item ' .. id); status = 'failed'
      elseif it and it[STATE] == 'queued' then
        if past_deadline(r, it[NODE], id, it[ATTEMPT]) then
          status = 'failed'
        elseif status == 'paused' then
          it[STATE] = 'parked'
          redis.call('HSET', ITEMS, id, cmsgpack.pack(it))
        else
          seq = seq + 1
          grant(r, seq, id, it, worker, lease, out)
          got = got + 1
        end
      end
    end
  end
  return got, other, seq, status
end
"""

# ARGV: TTL, run_id, workflow, queue, fingerprint, input, context, deadline ('' = none),
#       n, then n * (item_id, node, payload, attempt, delay)
CREATE = (
    PRELUDE
    + r"""
if redis.call('EXISTS', RK) == 1 then return 'exists' end
HAS_CONTRIB = false
local n = tonumber(ARGV[9])
local status = 'pending'
if n == 0 then status = 'completed' end
redis.call('HSET', RK, 'workflow', ARGV[3], 'queue', ARGV[4], 'fingerprint', ARGV[5],
           'input', ARGV[6], 'context', ARGV[7], 'deadline', ARGV[8], 'status', status,
           'version', 0, 'created_at', tostring(NOW), 'updated_at', tostring(NOW),
           'pending', n, 'done', 0, 'failed', 0, 'retried', 0, 'seq', 0)
local gone = redis.call('ZRANGEBYSCORE', EXPIRING, '-inf', NOW, 'LIMIT', 0, 16)
if #gone > 0 then  -- drop expired runs from the index of runs (a few per call: amortised)
  redis.call('ZREM', RUNS, unpack(gone))
  redis.call('ZREM', EXPIRING, unpack(gone))
end
redis.call('ZADD', RUNS, NOW, RUN)
redis.call('ZREM', EXPIRING, RUN)
local records, ready, delayed = {}, {}, {}
for k = 0, n - 1 do
  local b = 10 + k * 5
  local id, delay = ARGV[b], tonumber(ARGV[b + 4])
  table.insert(records, id); table.insert(records, new_item(ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]))
  if delay > 0 then
    table.insert(delayed, NOW + delay); table.insert(delayed, RUN .. SEP .. id)
  else
    table.insert(ready, entry(id))
  end
end
if n > 0 then chunked('HSET', ITEMS, records, 2) end
if #ready > 0 then chunked('RPUSH', READY, ready, 1) end
if #delayed > 0 then chunked('ZADD', DELAYED, delayed, 2) end
if n == 0 then finish('completed', nil, nil) end
wake(#ready)
return 'ok'
"""
)

# ARGV: TTL, run_id (or '' for none: then it only looks), worker, limit, lease_seconds,
#       the tag of the run's base the caller holds ('' = none; see HELD)
# returns {the head entry when it is another run's (else ''), next due or '', then 15
# fields per lease (the 14th: the run's contributions, {item id, data, ...}, false after
# the first lease: the same; the 15th:
# the tag of its base)}: when another run is at the head, ask again with its keys
LEASE = (
    PRELUDE
    + TAKE
    + r"""
local worker, limit, lease = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
HELD = ARGV[6] or ''
promote()
local out = {'', ''}
local got, other = 0, nil
if RUN == '' then
  other = redis.call('LINDEX', READY, 0)
else
  local r, bad = read_run()
  if bad and r[1] and is_live(r[1]) then
    fail_unreadable(bad)
    r[1] = 'failed'
  end
  local seq, after
  got, other, seq, after = take(r, worker, limit, lease, out)
  if got > 0 and after == 'pending' then
    redis.call('HSET', RK, 'seq', seq, 'status', 'running', 'updated_at', tostring(NOW))
  elseif got > 0 then
    redis.call('HSET', RK, 'seq', seq)
  end
end
if other then out[1] = other end
if got == 0 and not other then
  local first = redis.call('ZRANGE', DELAYED, 0, 0, 'WITHSCORES')
  if first[2] then out[2] = first[2] end
end
return out
"""
)

# ARGV: TTL, run_id, lease_seconds, then n * (item_id, token)
HEARTBEAT = (
    PRELUDE
    + r"""
local lease = tonumber(ARGV[3])
local status = redis.call('HGET', RK, 'status')
local out = {}
local k = 4
while ARGV[k] do
  local m = held(ARGV[k], tonumber(ARGV[k + 1]))
  local live = status and is_live(status)
  if live and redis.call('ZADD', LEASES, 'XX', 'CH', NOW + lease, m) == 1 then
    table.insert(out, 1)
  else
    table.insert(out, 0)
  end
  k = k + 2
end
return out
"""
)

# ARGV: TTL, run_id, item_id, token, context mode ('0' unchanged, '1' write if the version
#       is still the base version, else answer 'conflict', '2' write, '3' contribute: see
#       below), context, base version (mode '3': of the compaction, '' = none), node,
#       duration, opened scope ('0' | '1', id, open count, fired JSON), then counted
#       lists: scopes id*, items (id, node, payload, attempt, delay)*, outputs entry*,
#       collect (key, data)*, drop key*; then failure kind, message ('' = none);
#       then take (leases to take after the commit, 0 = none), lease_seconds, worker,
#       handled errors (counted), traceback, keep ('1' keeps the failing item), promote
#       ('1' moves due delayed items to the ready list first), then counted folded
#       contributions (item id, data)*, then the compacted base ('' = none), then the tag
#       of the run's base the caller holds (see HELD)
#       A 16th key, when given, is the staging list the items were sent to (STAGE) with
#       none in ARGV but their count: read in slices and deleted, or 'restage' if it does
#       not hold all of them (the caller sends them again; nothing was written).
# returns {'committed', how many items it made ready for other workers, then 15 fields per
#       lease taken, as LEASE}, or 'lost', 'inactive', 'conflict', 'restage'
# The context part ports floxide.backends._base.context_write: a base written (modes '1',
#       '2', and '3' with a compaction whose base version is still the stored one) drops
#       the folded contributions still stored unchanged; mode '3' then stores the step's
#       contribution (the context argument, '' = none) under its item id with no version
#       check, so concurrent steps never conflict and a re-run replaces its own.
COMMIT = (
    PRELUDE
    + COUNT_SCOPES
    + TAKE
    + r"""
local item_id, token = ARGV[3], tonumber(ARGV[4])
local mode = ARGV[5]
local node, duration = ARGV[8], tonumber(ARGV[9])
local MK = 'm|' .. node
-- everything this commit reads is checked before it writes anything
local r = redis.call('HMGET', RK, 'status', 'deadline', 'version', 'pending', 'context', 'seq',
                     'done', 'failed', MK, 'contrib', 'created_at')
-- the node's metrics, "COUNT TOTAL MAX", into r[9], r[10], r[11] (garbled: left in r[9])
table.insert(r, 10, false); table.insert(r, 10, false)
if r[9] then
  local count, total, max = string.match(r[9], '^(%S+) (%S+) (%S+)$')
  if count then r[9], r[10], r[11] = count, total, max end
end
CREATED = r[13] or ''
HELD = ARGV[#ARGV]
HAS_CONTRIB = r[12] ~= false
if not r[1] or not is_live(r[1]) then return 'inactive' end
local bad = nil  -- (no table of checks: this runs on every step)
if not num_ok(r[2], false, true) then bad = 'deadline'
elseif not num_ok(r[3], true) then bad = 'version'
elseif not num_ok(r[4], true) or tonumber(r[4] or '1') < 1 then bad = 'pending'  -- counts this item
elseif not num_ok(r[6], true) then bad = 'seq'
elseif not num_ok(r[7], true) then bad = 'done'
elseif not num_ok(r[8], true) then bad = 'failed'
elseif not num_ok(r[9], true) then bad = 'metrics ' .. node .. '|count'
elseif not num_ok(r[10]) then bad = 'metrics ' .. node .. '|total'
elseif not num_ok(r[11]) then bad = 'metrics ' .. node .. '|max'
elseif not num_ok(r[12], true) then bad = 'context contributions' end
if bad then
  fail_unreadable(bad)
  return 'inactive'
end
if mode == '1' and (r[3] or '0') ~= ARGV[7] then return 'conflict' end
local has_open, open_id, open_n, open_fired = ARGV[10], ARGV[11], ARGV[12], ARGV[13]
local k = 14
local n_scopes = tonumber(ARGV[k]); k = k + 1
local scope_ids = {}
for j = 0, n_scopes - 1 do scope_ids[j + 1] = ARGV[k + j] end
k = k + n_scopes
local n_items = tonumber(ARGV[k]); k = k + 1
local items_at = k
local STAGED = KEYS[16]  -- the items were staged there (STAGE), not given in ARGV
if not STAGED then k = k + n_items * 5 end
local n_out = tonumber(ARGV[k]); local outs_at = k + 1; k = k + 1 + n_out
local n_col = tonumber(ARGV[k]); local cols_at = k + 1; k = k + 1 + n_col * 2
local n_drop = tonumber(ARGV[k]); local drops_at = k + 1; k = k + 1 + n_drop
local fkind, fmsg = ARGV[k], ARGV[k + 1]
local take_n, take_lease, worker = tonumber(ARGV[k + 2]), tonumber(ARGV[k + 3]), ARGV[k + 4]
local n_handled = tonumber(ARGV[k + 5])
local handled_at = k + 6
local tb = ARGV[handled_at + n_handled]
local keep = ARGV[handled_at + n_handled + 1] == '1'
local want_promote = ARGV[handled_at + n_handled + 2] == '1'
local n_folded = tonumber(ARGV[handled_at + n_handled + 3])
local folded_at = handled_at + n_handled + 4
local compacted = ARGV[folded_at + n_folded * 2]
-- the contributions are read (leases carry them) or written: a garbled key fails the run
if mode == '3' or n_folded > 0 or (r[12] and take_n > 0) then
  local t = redis.call('TYPE', CONTRIB)['ok']
  if t ~= 'hash' and t ~= 'none' then
    fail_unreadable('context contributions')
    return 'inactive'
  end
end
-- staged items: all of them, or none are applied (the caller stages them again)
if STAGED and redis.call('LLEN', STAGED) ~= n_items * 5 then return 'restage' end
-- the lease: one ZREM checks that it is still held and ends it
local attempt = 1
if fmsg ~= '' or keep then
  local it = read_item(redis.call('HGET', ITEMS, item_id))
  if it then attempt = it[ATTEMPT] end
  if redis.call('ZREM', LEASES, held(item_id, token)) == 0 then return 'lost' end
  if keep and it then
    it[STATE] = 'failed'
    redis.call('HSET', ITEMS, item_id, cmsgpack.pack(it))
  elseif not keep then
    COMMITTED = item_id
  end
else
  if redis.call('ZREM', LEASES, held(item_id, token)) == 0 then return 'lost' end
  COMMITTED = item_id  -- dropped with the next lease's HSET, or at the end
end
-- join scopes (a garbled count or list of join items fails the run): register the one
-- this step opened, then floxide._step.count_scopes
local fired = {}
if fmsg == '' then
  if has_open == '1' then
    redis.call('HSET', SCOPES, open_id, open_n)
    redis.call('HSET', FIRED, open_id, open_fired)
  end
  if n_scopes > 0 then
    local ok, got = pcall(count_scopes, SCOPES, FIRED, scope_ids, n_items)
    if ok then  -- each join item a list of strings: its id, node and payload
      for _, x in ipairs(got) do
        if type(x) ~= 'table' or type(x[1]) ~= 'string' or type(x[2]) ~= 'string'
           or type(x[3]) ~= 'string' then ok = false end
      end
    end
    if not ok then
      fail_unreadable('join scopes ' .. table.concat(scope_ids, ','))
      return 'inactive'
    end
    fired = got
  end
end
for j = 0, n_out - 1 do redis.call('RPUSH', OUTPUTS, ARGV[outs_at + j]) end
if n_col > 0 then
  local entries = {}
  for j = 0, n_col - 1 do
    entries[j + 1] = ARGV[cols_at + j * 2] .. SEP .. ARGV[cols_at + j * 2 + 1]
  end
  chunked('RPUSH', COL, entries, 1)
end
if n_drop > 0 then  -- a join fired: its collection goes (the others are kept, in order)
  local drop = {}
  for j = 0, n_drop - 1 do drop[ARGV[drops_at + j] .. SEP] = true end
  local kept = {}
  for _, e in ipairs(redis.call('LRANGE', COL, 0, -1)) do
    local sep = string.find(e, SEP, 1, true)
    if not (sep and drop[string.sub(e, 1, sep)]) then table.insert(kept, e) end
  end
  redis.call('DEL', COL)
  if #kept > 0 then chunked('RPUSH', COL, kept, 1) end
end
local failed = tonumber(r[8] or '0') + n_handled
for j = 1, n_handled do redis.call('RPUSH', ERRORS, ARGV[handled_at + j - 1]) end
local fields = {MK, string.format('%d', tonumber(r[9] or '0') + 1) .. ' '
                    .. tostring(tonumber(r[10] or '0') + duration) .. ' '
                    .. tostring(math.max(tonumber(r[11] or '0'), duration)),
                'updated_at', tostring(NOW), 'failed', failed}
local base = nil
if mode == '1' or mode == '2' then
  base = ARGV[6]
elseif mode == '3' and ARGV[7] ~= '' and (r[3] or '0') == ARGV[7] then
  base = compacted
end
if base then
  local version = tonumber(r[3] or '0') + 1
  table.insert(fields, 'context'); table.insert(fields, base)
  table.insert(fields, 'version'); table.insert(fields, version)
  r[5], r[3] = base, string.format('%d', version)
  for a = 0, n_folded - 1, 4000 do  -- drop the folded contributions still stored unchanged
    local ids = {}
    for j = a, math.min(n_folded, a + 4000) - 1 do table.insert(ids, ARGV[folded_at + j * 2]) end
    local now = redis.call('HMGET', CONTRIB, unpack(ids))
    local gone = {}
    for j, id in ipairs(ids) do
      if now[j] == ARGV[folded_at + (a + j - 1) * 2 + 1] then table.insert(gone, id) end
    end
    if #gone > 0 then redis.call('HDEL', CONTRIB, unpack(gone)) end
  end
end
local has_contrib = r[12] ~= false
if mode == '3' and ARGV[6] ~= '' then
  redis.call('HSET', CONTRIB, item_id, ARGV[6])
  table.insert(fields, 'contrib'); table.insert(fields, tonumber(r[12] or '0') + 1)
  has_contrib = true
  HAS_CONTRIB = true
end
local function drop_committed()
  if COMMITTED then
    redis.call('HDEL', ITEMS, COMMITTED)
    COMMITTED = nil
  end
end
if fmsg ~= '' then
  fields[6] = failed + 1
  redis.call('HSET', RK, unpack(fields))
  add_error(node, item_id, attempt, fkind, fmsg, tb, 0)
  finish('failed', fmsg, fkind)
  return {'committed', 0}
end
local pending = tonumber(r[4] or '0') + n_items + #fired - 1
table.insert(fields, 'done'); table.insert(fields, tonumber(r[7] or '0') + 1)
-- the new items; the first ready one is leased to this worker at once when it has room
local out = {'committed', 0}
local records, ready, delayed = {}, {}, {}
local n_ready = 0
local seq = tonumber(r[6] or '0')
local own = nil
-- (oldest first: only when nothing else is ready)
local can_own = take_n > 0 and pending > 0 and n_items + #fired > 0 and r[1] ~= 'paused'
  and not (r[2] and r[2] ~= '' and NOW > tonumber(r[2])) and redis.call('LLEN', READY) == 0
local function add(id, it_node, payload, attempt_n, delay)
  if delay <= 0 and can_own and own == nil then
    own = {id, {it_node, payload, tonumber(attempt_n), 'queued', 0, '', '', 0}}
    return
  end
  table.insert(records, id); table.insert(records, new_item(it_node, payload, attempt_n))
  if delay > 0 then
    table.insert(delayed, NOW + delay); table.insert(delayed, RUN .. SEP .. id)
  else
    table.insert(ready, entry(id))
  end
end
local function flush()  -- write the items added so far
  if #records > 0 then chunked('HSET', ITEMS, records, 2) end
  if #ready > 0 then chunked('RPUSH', READY, ready, 1) end
  if #delayed > 0 then chunked('ZADD', DELAYED, delayed, 2) end
  n_ready = n_ready + #ready
  records, ready, delayed = {}, {}, {}
end
if STAGED then  -- read in slices, each written before the next is read
  for a = 0, n_items * 5 - 1, 5000 do
    local v = redis.call('LRANGE', STAGED, a, a + 4999)
    for b = 1, #v, 5 do add(v[b], v[b + 1], v[b + 2], v[b + 3], tonumber(v[b + 4])) end
    flush()
  end
  redis.call('DEL', STAGED)
else
  for j = 0, n_items - 1 do
    local b = items_at + j * 5
    add(ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], tonumber(ARGV[b + 4]))
  end
end
for _, f in ipairs(fired) do add(f[1], f[2], f[3], 1, 0) end
flush()
if pending <= 0 then
  table.insert(fields, 'pending'); table.insert(fields, pending)
  redis.call('HSET', RK, unpack(fields))
  finish('completed', nil, nil)
  return out
end
local got, status = 0, r[1]
if has_contrib and take_n > 0 then CONTRIBS = redis.call('HGETALL', CONTRIB) end
if own then
  seq = seq + 1
  grant(r, seq, own[1], own[2], worker, take_lease, out)
  got = 1
end
local woken = n_ready
if want_promote then woken = woken + promote() end
if take_n > got then
  r[6] = string.format('%d', seq)
  local more, other_run
  more, other_run, seq, status = take(r, worker, take_n - got, take_lease, out)
  got = got + more
  woken = woken - more
end
if status == 'failed' then  -- leasing found the run past its deadline or garbled
  drop_committed()
  return out
end
table.insert(fields, 'pending'); table.insert(fields, pending)
table.insert(fields, 'seq'); table.insert(fields, seq)
if r[1] == 'pending' and got > 0 then
  table.insert(fields, 'status'); table.insert(fields, 'running')
end
redis.call('HSET', RK, unpack(fields))
drop_committed()
wake(woken)
out[2] = math.max(woken, 0)
return out
"""
)

"""Lua scripts of the Redis backend: each operation that changes a run is one script.

Keys (P = prefix, R = run id, I = item id, Q = queue, M = "R\\x1fI"):
  P:token                 fencing-token counter (expires TTL after the last lease)
  P:leases                ZSET M -> lease deadline (all queues; the reaper scans it)
  P:runs                  ZSET R -> created time (listing)
  P:expiring              ZSET R -> time its keys expire (finished runs; trims P:runs)
  P:workers               HASH worker id -> JSON info
  P:q:Q:ready             LIST of M ready to lease
  P:q:Q:delayed           ZSET M -> due time (durable delayed retries)
  P:q:Q:wake              LIST of wake-up tokens idle workers block on (BLPOP)
  P:run:R                 HASH run record, context, version, counters; 'contrib' counts
                          the contributions the run ever stored (their sequence numbers)
  P:run:R:cseq            ZSET item id -> sequence number of its stored contribution
  P:run:R:contrib         HASH item id -> its contribution to the context (not yet
                          folded into 'context'; see COMMIT's modes '3' and '4')
  P:run:R:live            SET of item ids not yet done
  P:run:R:parked          LIST of item ids leased while the run was paused
  P:run:R:scopes          HASH open join scope id -> live items carrying it
  P:run:R:fired           HASH open join scope id -> JSON of the join items it fires
  P:run:R:cols / :col:K   SET of join collection keys / LIST of collected values
  P:run:R:outputs         LIST of outputs, :errors LIST of errors, :metrics HASH
  P:run:R:done            LIST holding the final status once finished (waiters BLMOVE it)
  P:item:R:I              HASH node, payload, attempt, state, token, worker, deadline, ...
Times come from the server (TIME), so hosts with skewed clocks agree on lease deadlines.

Why over 700 lines: one script per operation of the `Backend` protocol, each atomic and
self-contained (a script cannot call another), sharing only the PRELUDE helpers.
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
      for _, x in ipairs(f) do table.insert(fired, x) end
    end
  end
  return fired
end
"""

PRELUDE = r"""
local P = ARGV[1]
local TTL = tonumber(ARGV[2])  -- milliseconds
local t = redis.call('TIME')
local NOW = tonumber(t[1]) + tonumber(t[2]) / 1000000
local SEP = '\31'

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

-- the first of `fields` of hash `key` whose value is set but not a number (nil if none)
local function bad_number(key, fields, integral)
  local values = redis.call('HMGET', key, unpack(fields))
  for j, f in ipairs(fields) do
    local v = values[j]
    if v and (tonumber(v) == nil or (integral and not is_int(v))) then return f end
  end
  return nil
end

-- the parts of a string joined by SEP
local function split(s)
  local parts, at = {}, 1
  while true do
    local j = string.find(s, SEP, at, true)
    if not j then table.insert(parts, string.sub(s, at)); return parts end
    table.insert(parts, string.sub(s, at, j - 1))
    at = j + 1
  end
end

-- the contributions of run `rk` (joined by SEP: key, data, ...), all of them or those
-- stored after sequence number `after`; nil when they cannot be read
local function contributions(rk, after)
  if not after then
    local c = redis.pcall('HGETALL', rk .. ':contrib')
    if type(c) ~= 'table' or c.err then return nil end
    return table.concat(c, SEP)
  end
  local ids = redis.pcall('ZRANGEBYSCORE', rk .. ':cseq', '(' .. after, '+inf')
  if type(ids) ~= 'table' or ids.err then return nil end
  if #ids == 0 then return '' end
  local data = redis.pcall('HMGET', rk .. ':contrib', unpack(ids))
  if type(data) ~= 'table' or data.err then return nil end
  local out = {}
  for j, id in ipairs(ids) do
    if not data[j] then return nil end
    out[2 * j - 1] = id
    out[2 * j] = data[j]
  end
  return table.concat(out, SEP)
end

local function is_live(status)
  return status == 'pending' or status == 'running' or status == 'paused'
end

local function wake(queue, n)
  if n <= 0 then return end
  local key = P .. ':q:' .. queue .. ':wake'
  for _ = 1, math.min(n, 8) do redis.call('LPUSH', key, '1') end
  redis.call('LTRIM', key, 0, 63)
end

local function add_error(rk, node, item, attempt, kind, msg, tb, handled)
  local entry = cjson.encode({node, item, tonumber(attempt), kind, msg, NOW, tb or '',
                              handled or 0})
  redis.call('RPUSH', rk .. ':errors', entry)
end

local function finish(run_id, status, err, kind)
  local rk = P .. ':run:' .. run_id
  redis.call('HSET', rk, 'status', status, 'updated_at', tostring(NOW),
             'finished_at', tostring(NOW), 'pending', 0)
  if err then redis.call('HSET', rk, 'error', err, 'error_kind', kind) end
  if status == 'failed' then  -- its work state is kept (expiring) for RETRY_RUN
    for _, id in ipairs(redis.call('SMEMBERS', rk .. ':live')) do
      local ik = P .. ':item:' .. run_id .. ':' .. id
      redis.call('HSET', ik, 'state', 'failed')
      redis.call('PEXPIRE', ik, TTL)
      redis.call('ZREM', P .. ':leases', run_id .. SEP .. id)
    end
    for _, c in ipairs(redis.call('SMEMBERS', rk .. ':cols')) do
      redis.call('PEXPIRE', rk .. ':col:' .. c, TTL)
    end
    for _, suffix in ipairs({':live', ':scopes', ':fired', ':cols'}) do
      redis.call('PEXPIRE', rk .. suffix, TTL)
    end
    redis.call('DEL', rk .. ':parked', rk .. ':done')
    redis.call('RPUSH', rk .. ':done', status)
    for _, suffix in ipairs({'', ':outputs', ':errors', ':metrics', ':done',
                            ':contrib', ':cseq'}) do
      redis.call('PEXPIRE', rk .. suffix, TTL)
    end
    return
  end
  for _, id in ipairs(redis.call('SMEMBERS', rk .. ':live')) do
    redis.call('DEL', P .. ':item:' .. run_id .. ':' .. id)
    redis.call('ZREM', P .. ':leases', run_id .. SEP .. id)
  end
  for _, c in ipairs(redis.call('SMEMBERS', rk .. ':cols')) do
    redis.call('DEL', rk .. ':col:' .. c)
  end
  redis.call('DEL', rk .. ':live', rk .. ':scopes', rk .. ':fired', rk .. ':parked', rk .. ':cols',
             rk .. ':done')
  redis.call('RPUSH', rk .. ':done', status)
  for _, suffix in ipairs({'', ':outputs', ':errors', ':metrics', ':done',
                            ':contrib', ':cseq'}) do
    redis.call('PEXPIRE', rk .. suffix, TTL)
  end
  redis.call('ZADD', P .. ':expiring', NOW + TTL / 1000, run_id)
end

-- drop expired runs from the index of runs (a few per call: amortised)
local function trim_index()
  local gone = redis.call('ZRANGEBYSCORE', P .. ':expiring', '-inf', NOW, 'LIMIT', 0, 16)
  if #gone > 0 then
    redis.call('ZREM', P .. ':runs', unpack(gone))
    redis.call('ZREM', P .. ':expiring', unpack(gone))
  end
end

-- fail a run whose stored `what` cannot be read (before anything else is written); the
-- message is floxide.backends._redis.unreadable
local function fail_unreadable(run_id, what)
  local msg = 'stored data of run ' .. run_id .. ' cannot be read: ' .. what
  finish(run_id, 'failed', msg, 'backend')
  return msg
end

local function enqueue(run_id, queue, id, node, payload, attempt, delay)
  local ik = P .. ':item:' .. run_id .. ':' .. id
  redis.call('HSET', ik, 'node', node, 'payload', payload, 'attempt', attempt,
             'state', 'queued', 'queue', queue, 'token', 0, 'expired', 0)
  redis.call('SADD', P .. ':run:' .. run_id .. ':live', id)
  local m = run_id .. SEP .. id
  if delay > 0 then
    redis.call('ZADD', P .. ':q:' .. queue .. ':delayed', NOW + delay, m)
    return 0
  end
  redis.call('RPUSH', P .. ':q:' .. queue .. ':ready', m)
  return 1
end

-- returns (rk, ik, code, attempt): code is nil when the lease is still held and the run live
local function check_lease(run_id, item_id, token)
  local rk = P .. ':run:' .. run_id
  local status = redis.call('HGET', rk, 'status')
  if not status or not is_live(status) then return rk, nil, 'inactive' end
  local ik = P .. ':item:' .. run_id .. ':' .. item_id
  local f = redis.call('HMGET', ik, 'state', 'token', 'attempt')
  if f[1] ~= 'leased' or f[2] ~= token then return rk, ik, 'lost' end
  return rk, ik, nil, f[3]
end
"""

# ARGV: P, TTL, run_id, workflow, queue, fingerprint, input, context, deadline ('' = none),
#       n, then n * (item_id, node, payload, attempt, delay)
CREATE = (
    PRELUDE
    + r"""
local run_id, queue = ARGV[3], ARGV[5]
local rk = P .. ':run:' .. run_id
if redis.call('EXISTS', rk) == 1 then return 'exists' end
local n = tonumber(ARGV[10])
local status = 'pending'
if n == 0 then status = 'completed' end
redis.call('HSET', rk, 'workflow', ARGV[4], 'queue', queue, 'fingerprint', ARGV[6],
           'input', ARGV[7], 'context', ARGV[8], 'deadline', ARGV[9], 'status', status,
           'version', 0, 'created_at', tostring(NOW), 'updated_at', tostring(NOW),
           'pending', n, 'done', 0, 'failed', 0, 'retried', 0)
trim_index()
redis.call('ZADD', P .. ':runs', NOW, run_id)
redis.call('ZREM', P .. ':expiring', run_id)
local ready = 0
for k = 0, n - 1 do
  local b = 11 + k * 5
  ready = ready + enqueue(run_id, queue, ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3],
                          tonumber(ARGV[b + 4]))
end
if n == 0 then finish(run_id, 'completed', nil, nil) end
wake(queue, ready)
return 'ok'
"""
)

TAKE = r"""
-- lease up to `limit` ready items of `queue` to `worker`, appending 16 fields per lease to
-- `out` (due delayed items become ready first); returns how many were leased
-- `known` maps run ids to the base the caller already holds, tagged 'version/created_at'
-- (a run re-created under the same id differs), and the sequence number of the last
-- contribution it holds: a lease of such a run gives false instead of the base, and only
-- the contributions stored since (a big base and many contributions are not copied out
-- for every lease); every lease ends with the tag and the run's sequence number (15th
-- and 16th fields); see RedisBackend._bases
local function known_bases(s)
  local known = {}
  if s == '' then return known end
  local parts = split(s)
  for j = 1, #parts - 2, 3 do known[parts[j]] = {parts[j + 1], parts[j + 2]} end
  return known
end

local function take(queue, worker, limit, lease, out, known)
  local ready = P .. ':q:' .. queue .. ':ready'
  local delayed = P .. ':q:' .. queue .. ':delayed'
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', NOW, 'LIMIT', 0, 1000)
  for _, m in ipairs(due) do
    redis.call('RPUSH', ready, m)
    redis.call('ZREM', delayed, m)
  end
  local got, scanned = 0, 0
  while got < limit and scanned < limit * 4 + 64 do
    local m = redis.call('LPOP', ready)
    if not m then break end
    scanned = scanned + 1
    local sep = string.find(m, SEP, 1, true)
    local run_id, item_id = string.sub(m, 1, sep - 1), string.sub(m, sep + 1)
    local rk = P .. ':run:' .. run_id
    local ik = P .. ':item:' .. run_id .. ':' .. item_id
    -- one read of the run and one of the item, checked before anything is written
    local r = redis.call('HMGET', rk, 'status', 'deadline', 'version', 'pending', 'contrib',
                         'created_at')
    local f = redis.call('HMGET', ik, 'state', 'node', 'payload', 'attempt', 'last_error',
                         'expired')
    local status, state = r[1], f[1]
    if status and is_live(status) and state and state ~= 'queued' and state ~= 'leased'
        and state ~= 'parked' then
      fail_unreadable(run_id, 'state of item ' .. item_id)
    elseif status and is_live(status) and state == 'queued' then
      local bad = nil
      if not num_ok(r[2], false, true) then bad = 'deadline'
      elseif not num_ok(r[3], true) then bad = 'version'
      elseif not num_ok(r[4], true) then bad = 'pending'
      elseif not num_ok(f[4], true) then bad = 'attempt' end
      -- the contributions not yet folded into the context go with the lease (14th field:
      -- key SEP data SEP ..., one string, cheaper to send and parse than a nested list),
      -- only those the caller lacks when it holds the base (see known_bases)
      local tag = (r[3] or '0') .. '/' .. (r[6] or '')
      local held = known[run_id]
      if held and held[1] ~= tag then held = nil end
      local contrib = ''
      if not bad and not num_ok(r[5], true) then bad = 'context contributions' end
      if not bad and r[5] then
        contrib = contributions(rk, held and held[2])
        if not contrib then bad = 'context contributions' end
      end
      if bad then
        fail_unreadable(run_id, bad)
      elseif r[2] and r[2] ~= '' and NOW > tonumber(r[2]) then
        -- the message is floxide._step.DEADLINE_PASSED
        add_error(rk, f[2], item_id, f[4], 'timeout', 'run deadline passed')
        finish(run_id, 'failed', 'run deadline passed', 'timeout')
      elseif status == 'paused' then
        redis.call('HSET', ik, 'state', 'parked')
        redis.call('RPUSH', rk .. ':parked', item_id)
      else
        if status == 'pending' then
          redis.call('HSET', rk, 'status', 'running', 'updated_at', tostring(NOW))
        end
        local token = redis.call('INCR', P .. ':token')
        redis.call('PEXPIRE', P .. ':token', TTL)
        local deadline = NOW + lease
        redis.call('HSET', ik, 'state', 'leased', 'worker', worker, 'token', token,
                   'deadline', tostring(deadline))
        redis.call('ZADD', P .. ':leases', deadline, m)
        for _, v in ipairs({run_id, item_id, f[2], f[3], f[4], tostring(token),
                            tostring(deadline), f[5] or '', f[6] or '0', worker,
                            false, r[3], r[2] or ''}) do
          table.insert(out, v)
        end
        if held then out[#out - 2] = false
        else out[#out - 2] = redis.call('HGET', rk, 'context') end
        table.insert(out, contrib)
        table.insert(out, tag)
        table.insert(out, r[5] or '0')
        got = got + 1
      end
    end
  end
  return got
end
"""

# ARGV: P, TTL, queue, worker, limit, lease_seconds, known bases (see take)
# returns {next_due or '', then 16 fields per lease (the 14th: the contributions, joined
#         by SEP: key, data, key, data...; the 15th and 16th: see known_bases)}
LEASE = (
    PRELUDE
    + TAKE
    + r"""
local queue, worker, limit, lease = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local out = {''}
if take(queue, worker, limit, lease, out, known_bases(ARGV[7])) == 0 then
  local first = redis.call('ZRANGE', P .. ':q:' .. queue .. ':delayed', 0, 0, 'WITHSCORES')
  if first[2] then out[1] = first[2] end
end
return out
"""
)

# ARGV: P, TTL, lease_seconds, then n * (run_id, item_id, token)
HEARTBEAT = (
    PRELUDE
    + r"""
local lease = tonumber(ARGV[3])
local out = {}
local k = 4
while ARGV[k] do
  local run_id, item_id, token = ARGV[k], ARGV[k + 1], ARGV[k + 2]
  local rk, ik, bad = check_lease(run_id, item_id, token)
  if bad then
    table.insert(out, 0)
  else
    redis.call('HSET', ik, 'deadline', tostring(NOW + lease))
    redis.call('ZADD', P .. ':leases', NOW + lease, run_id .. SEP .. item_id)
    table.insert(out, 1)
  end
  k = k + 3
end
return out
"""
)

# ARGV: P, TTL, run_id, item_id, token, context mode ('0' unchanged, '1' write if the version
#       is still the base version, else answer 'conflict', '2' write), context, base version,
#       node, duration, opened scope ('0' | '1', id, open count, fired JSON), then counted
#       lists: scopes id*, items (id, node, payload, attempt, delay)*, outputs entry*,
#       collect (key, data)*, drop key*; then failure kind, message ('' = none); then
#       take (leases to take after the commit, 0 = none), lease_seconds, worker, ...,
#       and last the known bases (see take)
# returns 'committed' (or 'lost', 'inactive', 'conflict'); with take > 0, a commit returns
#       {'committed', then 16 fields per lease taken, as LEASE}
# Context modes '3' and '4' (a backend storing contributions: floxide.backends._base's
#       context_write is the rule this ports): ARGV[8] is '' or the strings
#       version, (base,) key1, data1, ... joined by SEP (none holds it: keys are item ids,
#       the rest is JSON), naming the contributions the step's read folded.
#       '3': ARGV[7] is the step's contribution ('' = none), stored under its item id with
#       no version check, so concurrent steps never conflict and a duplicate item
#       overwrites its own; with ARGV[8], the base given there is written and the folded
#       contributions still stored unchanged are removed, only if the version is still the
#       one given (a compaction: else skipped, a concurrent one won). '4': ARGV[7] replaces
#       the base if the version is still the one in ARGV[8] (else 'conflict', as '1'), and
#       the folded contributions still stored unchanged are removed.
COMMIT = (
    PRELUDE
    + COUNT_SCOPES
    + TAKE
    + r"""
local run_id, item_id, token = ARGV[3], ARGV[4], ARGV[5]
local rk, ik, lost, attempt = check_lease(run_id, item_id, token)
if lost then return lost end
local mode = ARGV[6]
local node, duration = ARGV[9], tonumber(ARGV[10])
-- everything this commit reads is checked before it writes anything
local mk = rk .. ':metrics'
local r = redis.call('HMGET', rk, 'version', 'pending', 'done', 'failed', 'queue', 'contrib')
local mf = redis.call('HMGET', mk, node .. '|count', node .. '|total', node .. '|max')
local bad = nil
if not num_ok(attempt, true) then bad = 'attempt' end
for j, name in ipairs({'version', 'pending', 'done', 'failed'}) do
  if not bad and not num_ok(r[j], true) then bad = name end
end
for j, name in ipairs({'count', 'total', 'max'}) do
  if not bad and not num_ok(mf[j], j == 1) then bad = 'metrics ' .. node .. '|' .. name end
end
local n_check = tonumber(ARGV[15])
if not bad and n_check > 0 then
  local sids = {}
  for j = 1, n_check do sids[j] = ARGV[15 + j] end
  local counts = redis.call('HMGET', rk .. ':scopes', unpack(sids))
  local fired_at = redis.call('HMGET', rk .. ':fired', unpack(sids))
  for j, sid in ipairs(sids) do
    if counts[j] and not is_int(counts[j]) then bad = 'join scope ' .. sid; break end
    if fired_at[j] and not pcall(cjson.decode, fired_at[j]) then
      bad = 'join items of scope ' .. sid; break
    end
  end
end
local folded = nil
if not bad and (mode == '3' or mode == '4') then
  local t = redis.call('TYPE', rk .. ':contrib')['ok']
  if t ~= 'hash' and t ~= 'none' then bad = 'context contributions' end
  t = redis.call('TYPE', rk .. ':cseq')['ok']
  if t ~= 'zset' and t ~= 'none' then bad = 'context contributions' end
  if not num_ok(r[6], true) then bad = 'context contributions' end
  if ARGV[8] ~= '' then folded = split(ARGV[8]) end
end
if bad then
  fail_unreadable(run_id, bad)
  return 'inactive'
end
if mode == '1' and r[1] ~= ARGV[8] then return 'conflict' end
if mode == '4' and r[1] ~= folded[1] then return 'conflict' end
local queue = r[5]
-- a failing item is kept for RETRY_RUN (ARGV ends: tb, '1', known bases)
local keep = ARGV[#ARGV - 1] == '1'
if keep then
  redis.call('HSET', ik, 'state', 'failed')
else
  redis.call('DEL', ik)
  redis.call('SREM', rk .. ':live', item_id)
end
redis.call('ZREM', P .. ':leases', run_id .. SEP .. item_id)
if mode == '1' or mode == '2' then
  redis.call('HSET', rk, 'context', ARGV[7])
  redis.call('HINCRBY', rk, 'version', 1)
elseif folded and (mode == '4' or r[1] == folded[1]) then  -- write the base, drop the folded
  local first = 2
  if mode == '4' then
    redis.call('HSET', rk, 'context', ARGV[7])
  else
    redis.call('HSET', rk, 'context', folded[2])
    first = 3
  end
  redis.call('HINCRBY', rk, 'version', 1)
  local ck = rk .. ':contrib'
  for j = first, #folded - 1, 2 do
    if redis.call('HGET', ck, folded[j]) == folded[j + 1] then
      redis.call('HDEL', ck, folded[j])
      redis.call('ZREM', rk .. ':cseq', folded[j])
    end
  end
end
if mode == '3' and ARGV[7] ~= '' then
  redis.call('HSET', rk .. ':contrib', item_id, ARGV[7])
  redis.call('ZADD', rk .. ':cseq', redis.call('HINCRBY', rk, 'contrib', 1), item_id)
end
local has_open, open_id, open_n, open_fired = ARGV[11], ARGV[12], ARGV[13], ARGV[14]
local k = 15
local n_scopes = tonumber(ARGV[k]); k = k + 1
local scopes_at = k
k = k + n_scopes
local n_items = tonumber(ARGV[k]); k = k + 1
local items_at = k
k = k + n_items * 5
local n = tonumber(ARGV[k]); k = k + 1
for _ = 1, n do redis.call('RPUSH', rk .. ':outputs', ARGV[k]); k = k + 1 end
n = tonumber(ARGV[k]); k = k + 1
for _ = 1, n do
  redis.call('RPUSH', rk .. ':col:' .. ARGV[k], ARGV[k + 1])
  redis.call('SADD', rk .. ':cols', ARGV[k])
  k = k + 2
end
n = tonumber(ARGV[k]); k = k + 1
for _ = 1, n do
  redis.call('DEL', rk .. ':col:' .. ARGV[k]); redis.call('SREM', rk .. ':cols', ARGV[k]); k = k + 1
end
local fkind, fmsg = ARGV[k], ARGV[k + 1]
local take_n, take_lease, worker = tonumber(ARGV[k + 2]), tonumber(ARGV[k + 3]), ARGV[k + 4]
-- failures a fallback took over (encoded entries), then the failure's traceback
local n_handled = tonumber(ARGV[k + 5])
for j = 1, n_handled do redis.call('RPUSH', rk .. ':errors', ARGV[k + 5 + j]) end
if n_handled > 0 then redis.call('HINCRBY', rk, 'failed', n_handled) end
redis.call('HINCRBY', mk, node .. '|count', 1)
redis.call('HINCRBYFLOAT', mk, node .. '|total', duration)
local mx = tonumber(mf[3] or '0') or 0
if duration > mx then redis.call('HSET', mk, node .. '|max', tostring(duration)) end
local ready = 0
if fmsg ~= '' then
  add_error(rk, node, item_id, attempt, fkind, fmsg, ARGV[#ARGV - 2], 0)
  redis.call('HINCRBY', rk, 'failed', 1)
  finish(run_id, 'failed', fmsg, fkind)
else
  redis.call('HINCRBY', rk, 'done', 1)
  for j = 0, n_items - 1 do
    local b = items_at + j * 5
    ready = ready + enqueue(run_id, queue, ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3],
                            tonumber(ARGV[b + 4]))
  end
  -- join scopes: register the one this step opened, then floxide._step.count_scopes
  if has_open == '1' then
    redis.call('HSET', rk .. ':scopes', open_id, open_n)
    redis.call('HSET', rk .. ':fired', open_id, open_fired)
  end
  local scope_ids = {}
  for j = 0, n_scopes - 1 do scope_ids[j + 1] = ARGV[scopes_at + j] end
  local fired = count_scopes(rk .. ':scopes', rk .. ':fired', scope_ids, n_items)
  for _, f in ipairs(fired) do
    ready = ready + enqueue(run_id, queue, f[1], f[2], f[3], 1, 0)
  end
  local fired_n = #fired
  local pending = redis.call('HINCRBY', rk, 'pending', n_items + fired_n - 1)
  if pending <= 0 then
    finish(run_id, 'completed', nil, nil)
  else
    redis.call('HSET', rk, 'updated_at', tostring(NOW))
  end
end
if take_n <= 0 then
  wake(queue, ready)
  return 'committed'
end
-- the committing worker has room: lease to it now, and wake others only for what is left
local out = {'committed'}
local got = take(queue, worker, take_n, take_lease, out, known_bases(ARGV[#ARGV]))
wake(queue, ready - got)
return out
"""
)

# ARGV: P, TTL, run_id, item_id, token, delay, kind, message, traceback
RETRY = (
    PRELUDE
    + r"""
local run_id, item_id, token, delay = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local rk, ik, bad = check_lease(run_id, item_id, token)
if bad then return bad end
local bad = bad_number(ik, {'attempt'}, true) or bad_number(rk, {'retried'}, true)
if bad then
  fail_unreadable(run_id, bad)
  return 'inactive'
end
local f = redis.call('HMGET', ik, 'node', 'attempt', 'queue')
add_error(rk, f[1], item_id, f[2], ARGV[7], ARGV[8], ARGV[9], 1)
redis.call('HINCRBY', rk, 'retried', 1)
redis.call('HSET', ik, 'state', 'queued', 'attempt', tonumber(f[2]) + 1, 'last_error', ARGV[8],
           'expired', 0, 'worker', '')
local m = run_id .. SEP .. item_id
redis.call('ZREM', P .. ':leases', m)
if delay > 0 then
  redis.call('ZADD', P .. ':q:' .. f[3] .. ':delayed', NOW + delay, m)
else
  redis.call('RPUSH', P .. ':q:' .. f[3] .. ':ready', m)
  wake(f[3], 1)
end
redis.call('HSET', rk, 'updated_at', tostring(NOW))
return 'committed'
"""
)

# ARGV: P, TTL, run_id, item_id, token
RELEASE = (
    PRELUDE
    + r"""
local run_id, item_id, token = ARGV[3], ARGV[4], ARGV[5]
local rk, ik, bad = check_lease(run_id, item_id, token)
if bad then return bad end
local queue = redis.call('HGET', ik, 'queue')
redis.call('HSET', ik, 'state', 'queued', 'worker', '')
local m = run_id .. SEP .. item_id
redis.call('ZREM', P .. ':leases', m)
redis.call('LPUSH', P .. ':q:' .. queue .. ':ready', m)
wake(queue, 1)
return 'committed'
"""
)

# ARGV: P, TTL, worker_ttl
REAP = (
    PRELUDE
    + r"""
local expired = redis.call('ZRANGEBYSCORE', P .. ':leases', '-inf', NOW, 'LIMIT', 0, 500)
local count = 0
for _, m in ipairs(expired) do
  redis.call('ZREM', P .. ':leases', m)
  local sep = string.find(m, SEP, 1, true)
  local run_id, item_id = string.sub(m, 1, sep - 1), string.sub(m, sep + 1)
  local rk = P .. ':run:' .. run_id
  local ik = P .. ':item:' .. run_id .. ':' .. item_id
  local status = redis.call('HGET', rk, 'status')
  local f = redis.call('HMGET', ik, 'state', 'node', 'attempt', 'worker', 'queue')
  local bad = nil
  if status and is_live(status) and f[1] == 'leased' then
    bad = bad_number(ik, {'attempt'}, true) or bad_number(rk, {'retried'}, true)
  end
  if bad then
    fail_unreadable(run_id, bad)
  elseif status and is_live(status) and f[1] == 'leased' then
    local msg = 'lease expired: worker ' .. (f[4] or '?') .. ' did not finish in time'
    add_error(rk, f[2], item_id, f[3], 'lease', msg, '', 1)
    redis.call('HINCRBY', rk, 'retried', 1)
    redis.call('HSET', ik, 'state', 'queued', 'attempt', tonumber(f[3]) + 1,
               'last_error', msg, 'expired', 1, 'worker', '')
    redis.call('RPUSH', P .. ':q:' .. f[5] .. ':ready', m)
    wake(f[5], 1)
    count = count + 1
  end
end
local wk = P .. ':workers'
local limit = NOW - tonumber(ARGV[3])
local all = redis.call('HGETALL', wk)
for j = 1, #all, 2 do
  local ok, info = pcall(cjson.decode, all[j + 1])
  if not ok or type(info) ~= 'table' or type(info[6]) ~= 'number' or info[6] < limit then
    redis.call('HDEL', wk, all[j])  -- gone, or unreadable
  end
end
return count
"""
)

# ARGV: P, TTL, run_id, action
CONTROL = (
    PRELUDE
    + r"""
local run_id, action = ARGV[3], ARGV[4]
local rk = P .. ':run:' .. run_id
local status = redis.call('HGET', rk, 'status')
if not status then return 'missing' end
if action == 'cancel' and is_live(status) then
  finish(run_id, 'cancelled', 'cancelled', 'cancelled')
elseif action == 'pause' and (status == 'pending' or status == 'running') then
  redis.call('HSET', rk, 'status', 'paused', 'updated_at', tostring(NOW))
elseif action == 'resume' and status == 'paused' then
  redis.call('HSET', rk, 'status', 'running', 'updated_at', tostring(NOW))
  local queue = redis.call('HGET', rk, 'queue')
  local parked = redis.call('LRANGE', rk .. ':parked', 0, -1)
  for _, id in ipairs(parked) do
    local ik = P .. ':item:' .. run_id .. ':' .. id
    if redis.call('HGET', ik, 'state') == 'parked' then
      redis.call('HSET', ik, 'state', 'queued')
      redis.call('RPUSH', P .. ':q:' .. queue .. ':ready', run_id .. SEP .. id)
    end
  end
  redis.call('DEL', rk .. ':parked')
  wake(queue, #parked)
end
return 'ok'
"""
)

# ARGV: P, TTL, run_id, node, item_id, attempt, kind, message, traceback
FAIL = (
    PRELUDE
    + r"""
local run_id = ARGV[3]
local rk = P .. ':run:' .. run_id
local status = redis.call('HGET', rk, 'status')
if not status or not is_live(status) then return 0 end
add_error(rk, ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], 0)
finish(run_id, 'failed', ARGV[8], ARGV[7])
return 1
"""
)

# ARGV: P, TTL, run_id, deadline ('' = none) -> the run's status before ('missing')
RETRY_RUN = (
    PRELUDE
    + r"""
local run_id = ARGV[3]
local rk = P .. ':run:' .. run_id
local status = redis.call('HGET', rk, 'status')
if not status then return 'missing' end
if status ~= 'failed' then return status end
local queue = redis.call('HGET', rk, 'queue')
local ids = redis.call('SMEMBERS', rk .. ':live')
for _, id in ipairs(ids) do
  local ik = P .. ':item:' .. run_id .. ':' .. id
  redis.call('HSET', ik, 'state', 'queued', 'attempt', 1, 'expired', 0, 'last_error', '',
             'worker', '', 'token', 0)
  redis.call('PERSIST', ik)
  redis.call('RPUSH', P .. ':q:' .. queue .. ':ready', run_id .. SEP .. id)
end
for _, c in ipairs(redis.call('SMEMBERS', rk .. ':cols')) do
  redis.call('PERSIST', rk .. ':col:' .. c)
end
for _, suffix in ipairs({'', ':live', ':scopes', ':fired', ':cols', ':outputs', ':errors',
                         ':metrics', ':contrib', ':cseq'}) do
  redis.call('PERSIST', rk .. suffix)
end
redis.call('DEL', rk .. ':done')
redis.call('ZREM', P .. ':expiring', run_id)  -- live again: its keys no longer expire
redis.call('HDEL', rk, 'error', 'error_kind', 'finished_at')
local next_status = 'running'
if #ids == 0 then next_status = 'completed' end
redis.call('HSET', rk, 'status', next_status, 'deadline', ARGV[4], 'pending', #ids,
           'updated_at', tostring(NOW))
if #ids == 0 then finish(run_id, 'completed', nil, nil) end
wake(queue, #ids)
return status
"""
)

# ARGV: P, TTL, run_id -> {leased, queued}
COUNTS = (
    PRELUDE
    + r"""
local run_id = ARGV[3]
local leased, queued = 0, 0
for _, id in ipairs(redis.call('SMEMBERS', P .. ':run:' .. run_id .. ':live')) do
  if redis.call('HGET', P .. ':item:' .. run_id .. ':' .. id, 'state') == 'leased' then
    leased = leased + 1
  else
    queued = queued + 1
  end
end
return {leased, queued}
"""
)

# ARGV: P, TTL, run_id -> {} (no run) or {context, version, contributions (joined by SEP,
#       as LEASE gives them), or false when they cannot be read}: one atomic read
CONTEXT = (
    PRELUDE
    + r"""
local rk = P .. ':run:' .. ARGV[3]
local r = redis.call('HMGET', rk, 'context', 'version', 'contrib')
if not r[1] then return {} end
local contrib = ''
if r[3] then contrib = contributions(rk, nil) or false end
return {r[1], r[2] or '', contrib}
"""
)

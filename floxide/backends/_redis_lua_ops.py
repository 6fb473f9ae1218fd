"""The Redis backend's scripts besides create, lease, heartbeat and commit (`_redis_lua`,
which describes the keys): retry, release, reaping, wake-ups, control, failing, retrying
a failed run, counting a run's items, staging a big commit's items."""

from floxide.backends._redis_lua import PRELUDE

# ARGV: TTL, run_id, item_id, token, delay, kind, message, traceback
RETRY = (
    PRELUDE
    + r"""
local item_id, token, delay = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local status = redis.call('HMGET', RK, 'status', 'retried')
if not status[1] or not is_live(status[1]) then return 'inactive' end
if redis.call('ZREM', LEASES, held(item_id, token)) == 0 then return 'lost' end
local it = read_item(redis.call('HGET', ITEMS, item_id))
if not it then
  fail_unreadable('item ' .. item_id)
  return 'inactive'
end
if not num_ok(status[2], true) then
  fail_unreadable('retried')
  return 'inactive'
end
add_error(it[NODE], item_id, it[ATTEMPT], ARGV[6], ARGV[7], ARGV[8], 1)
redis.call('HSET', RK, 'retried', tonumber(status[2] or '0') + 1, 'updated_at', tostring(NOW))
it[STATE], it[ATTEMPT], it[LAST_ERROR], it[EXPIRED], it[WORKER] =
  'queued', it[ATTEMPT] + 1, ARGV[7], 0, ''
redis.call('HSET', ITEMS, item_id, cmsgpack.pack(it))
if delay > 0 then
  redis.call('ZADD', DELAYED, NOW + delay, RUN .. SEP .. item_id)
else
  redis.call('RPUSH', READY, entry(item_id))
  wake(1)
end
return 'committed'
"""
)

# ARGV: TTL, run_id, item_id, token
RELEASE = (
    PRELUDE
    + r"""
local item_id, token = ARGV[3], tonumber(ARGV[4])
local status = redis.call('HGET', RK, 'status')
if not status or not is_live(status) then return 'inactive' end
if redis.call('ZREM', LEASES, held(item_id, token)) == 0 then return 'lost' end
local it = read_item(redis.call('HGET', ITEMS, item_id))
if not it then
  fail_unreadable('item ' .. item_id)
  return 'inactive'
end
it[STATE], it[WORKER] = 'queued', ''
redis.call('HSET', ITEMS, item_id, cmsgpack.pack(it))
redis.call('LPUSH', READY, entry(item_id, 0))  -- first in line again
wake(1)
return 'committed'
"""
)

# KEYS: P:{S}:leases -> the expired lease members (at most 500)
REAP_SCAN = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 500)
"""

# ARGV: TTL, run_id, then n * (item_id, token) of expired leases -> how many were requeued
REAP_RUN = (
    PRELUDE
    + r"""
local r = redis.call('HMGET', RK, 'status', 'retried')
local count = 0
local k = 3
local retried = tonumber(r[2] or '0')
while ARGV[k] do
  local id, token = ARGV[k], tonumber(ARGV[k + 1])
  local m = held(id, token)
  local score = redis.call('ZSCORE', LEASES, m)
  if score and tonumber(score) <= NOW then
    redis.call('ZREM', LEASES, m)
    if r[1] and is_live(r[1]) then
      local it = read_item(redis.call('HGET', ITEMS, id))
      if retried == nil then
        fail_unreadable('retried')
        return count
      elseif it == false then
        fail_unreadable('item ' .. id)
        return count
      end
      if it and it[STATE] == 'leased' and it[TOKEN] == token then
        local msg = 'lease expired: worker ' .. (it[WORKER] or '?') .. ' did not finish in time'
        add_error(it[NODE], id, it[ATTEMPT], 'lease', msg, '', 1)
        retried = retried + 1
        it[STATE], it[ATTEMPT], it[LAST_ERROR], it[EXPIRED], it[WORKER] =
          'queued', it[ATTEMPT] + 1, msg, 1, ''
        redis.call('HSET', ITEMS, id, cmsgpack.pack(it))
        redis.call('RPUSH', READY, entry(id))
        count = count + 1
      end
    end
  end
  k = k + 2
end
if count > 0 then
  redis.call('HSET', RK, 'retried', retried)
  wake(count)
end
return count
"""
)

# KEYS: P:q:Q:wake (a queue's wake-up list on a cluster, outside every shard); ARGV: TTL, n
WAKE = r"""
local w = {}
for j = 1, math.min(tonumber(ARGV[2]), 8) do w[j] = '1' end
if #w > 0 then
  redis.call('LPUSH', KEYS[1], unpack(w))
  redis.call('LTRIM', KEYS[1], 0, 63)
end
return #w
"""

# KEYS: P:workers; ARGV: TTL, worker_ttl -> drops workers not seen within it (or unreadable)
REAP_WORKERS = r"""
local t = redis.call('TIME')
local limit = tonumber(t[1]) + tonumber(t[2]) / 1000000 - tonumber(ARGV[2])
local all = redis.call('HGETALL', KEYS[1])
for j = 1, #all, 2 do
  local ok, info = pcall(cjson.decode, all[j + 1])
  if not ok or type(info) ~= 'table' or type(info[6]) ~= 'number' or info[6] < limit then
    redis.call('HDEL', KEYS[1], all[j])
  end
end
return 0
"""

# ARGV: TTL, run_id, action
CONTROL = (
    PRELUDE
    + r"""
local action = ARGV[3]
local status = redis.call('HGET', RK, 'status')
if not status then return 'missing' end
if action == 'cancel' and is_live(status) then
  finish('cancelled', 'cancelled', 'cancelled')
elseif action == 'pause' and (status == 'pending' or status == 'running') then
  redis.call('HSET', RK, 'status', 'paused', 'updated_at', tostring(NOW))
elseif action == 'resume' and status == 'paused' then
  redis.call('HSET', RK, 'status', 'running', 'updated_at', tostring(NOW))
  local all = redis.call('HGETALL', ITEMS)
  local records, ready = {}, {}
  for j = 1, #all, 2 do
    local it = read_item(all[j + 1])
    if it and it[STATE] == 'parked' then
      it[STATE] = 'queued'
      table.insert(records, all[j]); table.insert(records, cmsgpack.pack(it))
      table.insert(ready, entry(all[j]))
    end
  end
  if #ready > 0 then
    chunked('HSET', ITEMS, records, 2)
    chunked('RPUSH', READY, ready, 1)
  end
  wake(#ready)
end
return 'ok'
"""
)

# ARGV: TTL, run_id, node, item_id, attempt, kind, message, traceback
FAIL = (
    PRELUDE
    + r"""
local status = redis.call('HGET', RK, 'status')
if not status or not is_live(status) then return 0 end
add_error(ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], 0)
finish('failed', ARGV[7], ARGV[6])
return 1
"""
)

# ARGV: TTL, run_id, deadline ('' = none) -> the run's status before ('missing')
RETRY_RUN = (
    PRELUDE
    + r"""
local status = redis.call('HGET', RK, 'status')
if not status then return 'missing' end
if status ~= 'failed' then return status end
local all = redis.call('HGETALL', ITEMS)
local records, ready = {}, {}
for j = 1, #all, 2 do
  local it = read_item(all[j + 1])
  if it then
    it[STATE], it[ATTEMPT], it[EXPIRED], it[LAST_ERROR], it[WORKER] = 'queued', 1, 0, '', ''
    table.insert(records, all[j]); table.insert(records, cmsgpack.pack(it))
    table.insert(ready, entry(all[j]))
  end
end
if #ready > 0 then
  chunked('HSET', ITEMS, records, 2)
  chunked('RPUSH', READY, ready, 1)
end
for _, k in ipairs({RK, ITEMS, SCOPES, FIRED, COL, OUTPUTS, ERRORS, CONTRIB}) do
  redis.call('PERSIST', k)
end
redis.call('DEL', DONE)
redis.call('ZREM', EXPIRING, RUN)  -- live again: its keys no longer expire
redis.call('HDEL', RK, 'error', 'error_kind', 'finished_at')
local next_status = 'running'
if #ready == 0 then next_status = 'completed' end
redis.call('HSET', RK, 'status', next_status, 'deadline', ARGV[3], 'pending', #ready,
           'updated_at', tostring(NOW))
if #ready == 0 then finish('completed', nil, nil) end
wake(#ready)
return status
"""
)

# ARGV: TTL, run_id -> {leased, queued}
COUNTS = (
    PRELUDE
    + r"""
local leased, queued = 0, 0
for _, raw in ipairs(redis.call('HVALS', ITEMS)) do
  local it = read_item(raw)
  if it and it[STATE] == 'leased' then
    leased = leased + 1
  elseif raw ~= 'd' then
    queued = queued + 1
  end
end
return {leased, queued}
"""
)

# -> {node, queued, leased, node, queued, leased, ...} over the run's items not yet done
NODE_COUNTS = (
    PRELUDE
    + r"""
local counts, order = {}, {}
for _, raw in ipairs(redis.call('HVALS', ITEMS)) do
  local it = read_item(raw)
  if it then
    local c = counts[it[NODE]]
    if not c then c = {0, 0}; counts[it[NODE]] = c; table.insert(order, it[NODE]) end
    if it[STATE] == 'leased' then c[2] = c[2] + 1 else c[1] = c[1] + 1 end
  end
end
local out = {}
for _, node in ipairs(order) do
  table.insert(out, node); table.insert(out, counts[node][1]); table.insert(out, counts[node][2])
end
return out
"""
)

# ARGV: TTL, run_id -> {} (no run) or {context, version, contrib, contributions ({item id,
#       data, ...}, or false when they cannot be read)}: one atomic read
CONTEXT = (
    PRELUDE
    + r"""
local r = redis.call('HMGET', RK, 'context', 'version', 'contrib')
if not r[1] then return {} end
local c = {}
if r[3] then c = read_contributions() or false end
return {r[1], r[2] or '', r[3] or '', c}
"""
)

# KEYS: the staging list of one lease's commit (`_redis_stage`, in the run's slot);
# ARGV: TTL, fresh ('1': empty it first), expiry (ms), values (at most 8000) -> its length.
# Inert until COMMIT reads it: a worker that dies while staging leaves no change to the
# run, and the list expires.
STAGE = r"""
if ARGV[2] == '1' then redis.call('DEL', KEYS[1]) end
if #ARGV > 3 then redis.call('RPUSH', KEYS[1], unpack(ARGV, 4)) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('LLEN', KEYS[1])
"""

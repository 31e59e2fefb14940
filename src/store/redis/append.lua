-- A post: idempotency, both token buckets, the epoch and the append, in one step.
-- KEYS: log, epoch, post, login's rate, address's rate.
-- ARGV: post ttl (s), maxlen, from, body, login burst, login per second, a new epoch (used
-- only if there is none), address burst, address per second.
-- Returns {'ok', '<epoch>-<stream id>'} or {'rate', '<ms to wait>'}. A post is charged to
-- both buckets only when both have a token.
local done = redis.call('GET', KEYS[3])
if done then return {'ok', done} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function level(key, burst, per_ms)
  local bucket = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = bucket[1] and tonumber(bucket[1]) or burst
  local at = bucket[2] and tonumber(bucket[2]) or now
  return math.min(burst, tokens + math.max(0, now - at) * per_ms)
end
local buckets = {
  {KEYS[4], tonumber(ARGV[5]), tonumber(ARGV[6]) / 1000},
  {KEYS[5], tonumber(ARGV[8]), tonumber(ARGV[9]) / 1000},
}
local wait = 0
for _, b in ipairs(buckets) do
  b[4] = level(b[1], b[2], b[3])
  if b[4] < 1 then wait = math.max(wait, math.ceil((1 - b[4]) / b[3])) end
end
if wait > 0 then return {'rate', tostring(wait)} end
for _, b in ipairs(buckets) do
  redis.call('HSET', b[1], 'tokens', tostring(b[4] - 1), 'at', tostring(now))
  redis.call('PEXPIRE', b[1], math.ceil(b[2] / b[3]) + 1000)
end
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[7]
  redis.call('SET', KEYS[2], epoch)
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', epoch, 'from', ARGV[3], 'body', ARGV[4])
local full = epoch .. '-' .. id
redis.call('SET', KEYS[3], full, 'EX', ARGV[1])
return {'ok', full}

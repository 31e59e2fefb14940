-- A post: its key, its deadline, both token buckets, the epoch and the append, in one step.
-- KEYS: log, epoch, post's key, login's rate, address's rate.
-- ARGV: key ttl (s), maxlen, from, body, login burst, login per second, a new epoch (used
-- only if there is none), address burst, address per second, deadline (Unix ms, Redis's
-- clock), '1' to keep from and body with the key (a client's key: a resend may say
-- anything) or '0' (a key of the instance's own, retried only with this same post).
-- Returns {'ok', '<epoch>-<stream id>'}; {'ok', id, from, body} when the key was used
-- before (what that post stored; nothing is stored now); {'rate', '<ms to wait>'}; or
-- {'late'} when the script runs after its deadline (Redis was stalled while the post
-- waited, and the instance has answered it with an error): then nothing is stored. A post
-- is charged to both buckets only when both have a token.
local done = redis.call('HMGET', KEYS[3], 'id', 'from', 'body')
if done[1] and done[2] then return {'ok', done[1], done[2], done[3]} end
if done[1] then return {'ok', done[1]} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now > tonumber(ARGV[10]) then return {'late'} end
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
if ARGV[11] == '1' then
  redis.call('HSET', KEYS[3], 'id', full, 'from', ARGV[3], 'body', ARGV[4])
else
  redis.call('HSET', KEYS[3], 'id', full)
end
redis.call('EXPIRE', KEYS[3], ARGV[1])
return {'ok', full}

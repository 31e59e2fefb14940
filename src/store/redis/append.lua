-- A post: its key, its deadline, both token buckets, the epoch and the append, in one step.
-- Every call from a script costs more than its command does, so it makes six: one read of
-- all four keys, the clock, and the writes.
-- KEYS: log, epoch, post's key, login's rate, address's rate.
-- ARGV: key ttl (s), maxlen, from, body, login burst, login per second, a new epoch (used
-- only if there is none), address burst, address per second, deadline (Unix ms, Redis's
-- clock), '1' to keep from and body with the key (a client's key: a resend may say
-- anything) or '0' (a key of the instance's own, retried only with this same post), the
-- entry's tag (the posting instance and its ticket, for that instance alone).
-- Returns {'ok', '<epoch>-<stream id>'}; {'ok', id, from, body} when the key was used
-- before (what that post stored; nothing is stored now); {'rate', '<ms to wait>'}; or
-- {'late'} when the script runs after its deadline (Redis was stalled while the post
-- waited, and the instance has answered it with an error): then nothing is stored. A post
-- is charged to both buckets only when both have a token.
-- A post's key holds the id, then with a client's key '\n' from '\n' body (a name has no
-- line break; a body may). A bucket holds '<tokens> <at ms>'.
local got = redis.call('MGET', KEYS[3], KEYS[4], KEYS[5], KEYS[2])
if got[1] then
  local id, from, body = string.match(got[1], '^([^\n]*)\n([^\n]*)\n(.*)$')
  if id then return {'ok', id, from, body} end
  return {'ok', got[1]}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now > tonumber(ARGV[10]) then return {'late'} end
local buckets = {
  {KEYS[4], got[2], tonumber(ARGV[5]), tonumber(ARGV[6]) / 1000},
  {KEYS[5], got[3], tonumber(ARGV[8]), tonumber(ARGV[9]) / 1000},
}
local wait = 0
for _, b in ipairs(buckets) do
  local key, held, burst, per_ms = b[1], b[2], b[3], b[4]
  local tokens, at
  if held then tokens, at = string.match(held, '^(%S+) (%S+)$') end
  local level = burst
  if tokens then
    level = math.min(burst, tonumber(tokens) + math.max(0, now - tonumber(at)) * per_ms)
  end
  b[5] = level
  if level < 1 then wait = math.max(wait, math.ceil((1 - level) / per_ms)) end
end
if wait > 0 then return {'rate', tostring(wait)} end
for _, b in ipairs(buckets) do
  redis.call('SET', b[1], tostring(b[5] - 1) .. ' ' .. now, 'PX', math.ceil(b[3] / b[4]) + 1000)
end
local epoch = got[4]
if not epoch then
  epoch = ARGV[7]
  redis.call('SET', KEYS[2], epoch)
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', epoch, 'from', ARGV[3], 'body', ARGV[4], 't', ARGV[12])
local full = epoch .. '-' .. id
local kept = full
if ARGV[11] == '1' then kept = full .. '\n' .. ARGV[3] .. '\n' .. ARGV[4] end
redis.call('SET', KEYS[3], kept, 'EX', ARGV[1])
return {'ok', full}

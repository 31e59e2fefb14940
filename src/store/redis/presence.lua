-- Presence across instances, in one step per instance and tick: sweep the logins no
-- instance refreshed in time (they leave), then refresh the logins connected to this
-- instance (new ones join). Atomic, so exactly one instance announces each change.
-- KEYS: online (zset login -> expiry ms), who (hash login -> "since|name"), log, epoch.
-- ARGV: ttl ms, maxlen, notices ("1"/"0"), a new epoch, then login, name pairs.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local function notice(kind, name, body)
  if ARGV[3] ~= '1' then return end
  local epoch = redis.call('GET', KEYS[4])
  if not epoch then
    epoch = ARGV[4]
    redis.call('SET', KEYS[4], epoch)
  end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'e', epoch, 'k', kind, 'from', name, 'body', body)
end
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, login in ipairs(gone) do
  redis.call('ZREM', KEYS[1], login)
  local who = redis.call('HGET', KEYS[2], login)
  redis.call('HDEL', KEYS[2], login)
  if who then notice('leave', string.match(who, '^[^|]*|(.*)$'), 'left the room') end
end
for i = 5, #ARGV, 2 do
  local login, name = ARGV[i], ARGV[i + 1]
  if redis.call('ZSCORE', KEYS[1], login) then
    redis.call('ZADD', KEYS[1], 'GT', now + ttl, login)
  else
    redis.call('ZADD', KEYS[1], now + ttl, login)
    redis.call('HSET', KEYS[2], login, now .. '|' .. name)
    notice('join', name, 'joined the room')
  end
end
return #gone

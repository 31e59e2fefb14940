-- Presence across instances, in one step per call: this instance's heartbeat, the
-- instances that stopped beating, this instance's changes, the holds whose grace is over,
-- and the notices due. Atomic, so exactly one call announces each change.
--
-- Each instance holds the logins connected to it: `held` has a member "<instance>|<login>"
-- scored +inf while connected and, once released, with when the grace ends; `holders`
-- counts a login's holds, and it leaves when the last one goes. An instance beats once a
-- second (`instances`, scored with when its beat expires); one that stops is dead, and its
-- holds are released as if its connections closed then. Time in which no call ran at all
-- (the store was away, or every instance was) does not count: every deadline moves on by
-- it, so an outage of any length is no transition (see docs/ARCHITECTURE.md).
--
-- KEYS: 1 who (hash login -> "since|name"), 2 since (zset login -> since), 3 held,
--   4 holders (hash), 5 instances (zset; "<key>:<instance>" is the set of its logins),
--   6 clock (when a call last ran), 7 fold (hash: <k>c pending count, <k>t last notice),
--   8 join names (list), 9 leave names (list), 10 log, 11 epoch, 12 revoked (zset).
-- ARGV: 1 this instance, 2 grace ms, 3 beat ttl ms, 4 notices "1"/"0", 5 maxlen,
--   6 a new epoch, 7 fold period ms, 8 outage threshold ms, 9 longest fold period ms,
--   10 slack ms (a tick's script runs a little after the tick), then triples op, login, name:
--   "c" connected here, "r" released here (gone; leaves after the grace), "x" logged out.
-- Returns 1 if this instance was known (beating), 0 if not: then it sends all its logins.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me, grace, beat = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local notices, period, slack = ARGV[4] == '1', tonumber(ARGV[7]), tonumber(ARGV[10])

local last = tonumber(redis.call('GET', KEYS[6]) or now)
if now - last > tonumber(ARGV[8]) then
  local gap = now - last
  local released = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(+inf', 'WITHSCORES')
  for i = 1, #released, 2 do
    redis.call('ZADD', KEYS[3], tonumber(released[i + 1]) + gap, released[i])
  end
  local beats = redis.call('ZRANGE', KEYS[5], 0, -1, 'WITHSCORES')
  for i = 1, #beats, 2 do
    redis.call('ZADD', KEYS[5], tonumber(beats[i + 1]) + gap, beats[i])
  end
end
redis.call('SET', KEYS[6], now)

local function fold(k, name)
  if not notices then return end
  if redis.call('HINCRBY', KEYS[7], k .. 'c', 1) <= 20 then
    redis.call('RPUSH', k == 'j' and KEYS[8] or KEYS[9], name)
  end
end

local function leave(login)
  local who = redis.call('HGET', KEYS[1], login)
  if not who then return end
  redis.call('HDEL', KEYS[1], login)
  redis.call('ZREM', KEYS[2], login)
  fold('l', string.match(who, '^[^|]*|(.*)$'))
end

local function unhold(instance, login)
  if redis.call('ZREM', KEYS[3], instance .. '|' .. login) == 0 then return end
  redis.call('SREM', KEYS[5] .. ':' .. instance, login)
  if redis.call('HINCRBY', KEYS[4], login, -1) <= 0 then
    redis.call('HDEL', KEYS[4], login)
    leave(login)
  end
end

local known = redis.call('ZSCORE', KEYS[5], me)
redis.call('ZADD', KEYS[5], now + beat, me)
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)) do
  local logins = KEYS[5] .. ':' .. dead
  for _, login in ipairs(redis.call('SMEMBERS', logins)) do
    redis.call('ZADD', KEYS[3], 'XX', 'LT', now + grace, dead .. '|' .. login)
  end
  redis.call('DEL', logins)
  redis.call('ZREM', KEYS[5], dead)
end

for i = 11, #ARGV, 3 do
  local op, login, name = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local member = me .. '|' .. login
  if op == 'c' then
    local ended = tonumber(redis.call('ZSCORE', KEYS[12], login) or '0')
    if ended * 1000 <= now then
      if redis.call('ZADD', KEYS[3], '+inf', member) == 1 then
        redis.call('HINCRBY', KEYS[4], login, 1)
      end
      redis.call('SADD', KEYS[5] .. ':' .. me, login)
      if redis.call('HSETNX', KEYS[1], login, now .. '|' .. name) == 1 then
        redis.call('ZADD', KEYS[2], now, login)
        fold('j', name)
      end
    end
  elseif op == 'r' then
    redis.call('ZADD', KEYS[3], 'XX', now + grace, member)
  elseif op == 'x' then
    for _, instance in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
      unhold(instance, login)
    end
    -- Holds of instances found dead are swept later; the login leaves now.
    leave(login)
  end
end

for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  local instance, login = string.match(member, '^([^|]*)|(.*)$')
  unhold(instance, login)
end

-- At most one notice of a kind per period; a crowd doubles the period (up to ARGV[9] ms),
-- a quiet one brings it back to ARGV[7] ms.
local function announce(k, kind, names_key)
  local fold = redis.call('HMGET', KEYS[7], k .. 'c', k .. 't', k .. 'p')
  local count = tonumber(fold[1] or '0')
  local last_notice = tonumber(fold[2] or '0')
  local wait = tonumber(fold[3] or period)
  if now < last_notice + wait - slack then return end
  if count == 0 then
    redis.call('HSET', KEYS[7], k .. 'p', period)
    return
  end
  if count > 1 then wait = math.min(wait * 2, tonumber(ARGV[9])) else wait = period end
  local names = redis.call('LRANGE', names_key, 0, -1)
  redis.call('DEL', names_key)
  redis.call('HSET', KEYS[7], k .. 'c', 0, k .. 't', now, k .. 'p', wait)
  local epoch = redis.call('GET', KEYS[11])
  if not epoch then
    epoch = ARGV[6]
    redis.call('SET', KEYS[11], epoch)
  end
  redis.call('XADD', KEYS[10], 'MAXLEN', '~', ARGV[5], '*', 'e', epoch, 'k', kind,
    'from', names[1], 'n', table.concat(names, ','), 'c', count)
end
announce('j', 'join', KEYS[8])
announce('l', 'leave', KEYS[9])
return known and 1 or 0

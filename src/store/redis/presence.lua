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
--   6 clock (when a call last ran), 7 fold (hash: <k>t last notice, <k>p its period, b
--   leaves waiting for their joins), 8 joins to announce (list of logins), 9 leaves to
--   announce (list), 10 log, 11 epoch, 12 revoked (zset), 13 pending (hash login -> what
--   is still to be announced).
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

-- With notices, the list (`since`) shows what they said: a login is listed from its join
-- notice to its leave notice, and `who` keeps it until then. `pending` says what is still
-- to be announced: 'j' its join, 'l' its leave, 'jl' both (then the leave waits for the
-- join; the fold's 'b' counts those). Without notices the list is the state itself.
local function join(login, name)
  local pending = redis.call('HGET', KEYS[13], login)
  if pending == 'l' or pending == 'jl' then
    -- Back before its leave was announced: nobody was told it left. Its entry stays in
    -- the leaves list (removing it is a scan of the list) and is skipped when announced.
    if pending == 'l' then
      redis.call('HDEL', KEYS[13], login)
    else
      redis.call('HSET', KEYS[13], login, 'j')
      redis.call('HINCRBY', KEYS[7], 'b', -1)
    end
    return
  end
  if redis.call('HSETNX', KEYS[1], login, now .. '|' .. name) == 0 then return end
  if notices then
    redis.call('HSET', KEYS[13], login, 'j')
    redis.call('RPUSH', KEYS[8], login)
  else
    redis.call('ZADD', KEYS[2], now, login)
  end
end

local function leave(login)
  local pending = redis.call('HGET', KEYS[13], login)
  if pending == 'l' or pending == 'jl' or redis.call('HEXISTS', KEYS[1], login) == 0 then
    return
  end
  if not notices then
    redis.call('HDEL', KEYS[1], login)
    redis.call('ZREM', KEYS[2], login)
    return
  end
  if pending == 'j' then
    redis.call('HSET', KEYS[13], login, 'jl')
    redis.call('HINCRBY', KEYS[7], 'b', 1)
  else
    redis.call('HSET', KEYS[13], login, 'l')
  end
  redis.call('RPUSH', KEYS[9], login)
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
      join(login, name)
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
-- a quiet one brings it back to ARGV[7] ms. A notice lists (or unlists) its logins.
local function announce(k, kind, logins_key)
  local fold = redis.call('HMGET', KEYS[7], k .. 't', k .. 'p', 'b')
  local last_notice = tonumber(fold[1] or '0')
  local wait = tonumber(fold[2] or period)
  if now < last_notice + wait - slack then return end
  local count = redis.call('LLEN', logins_key)
  if count == 0 then
    redis.call('HSET', KEYS[7], k .. 'p', period)
    return
  end
  -- A leave waits for its login's join: said the other way round, a page would list the
  -- login again.
  if k == 'l' and tonumber(fold[3] or '0') > 0 then
    if redis.call('LLEN', KEYS[8]) > 0 then return end
    -- No join waits, so no leave can wait for one: a count left over (keys lost) is reset.
    redis.call('HSET', KEYS[7], 'b', 0)
  end
  if count > 1 then wait = math.min(wait * 2, tonumber(ARGV[9])) else wait = period end
  local names, said = {}, 0
  for _, login in ipairs(redis.call('LRANGE', logins_key, 0, -1)) do
    local since, name = string.match(redis.call('HGET', KEYS[1], login) or '', '^([^|]*)|(.*)$')
    -- Only what still waits: a leave taken back (or an entry already announced) is not.
    local waits = redis.call('HGET', KEYS[13], login)
    if k == 'j' then waits = waits == 'j' or waits == 'jl' else waits = waits == 'l' end
    if name and waits then
      said = said + 1
      if #names < 20 then names[#names + 1] = name end
      if k == 'j' then
        redis.call('ZADD', KEYS[2], since, login)
        if redis.call('HGET', KEYS[13], login) == 'jl' then
          redis.call('HSET', KEYS[13], login, 'l')
          redis.call('HINCRBY', KEYS[7], 'b', -1)
        else
          redis.call('HDEL', KEYS[13], login)
        end
      else
        redis.call('HDEL', KEYS[1], login)
        redis.call('ZREM', KEYS[2], login)
        redis.call('HDEL', KEYS[13], login)
      end
    end
  end
  redis.call('DEL', logins_key)
  redis.call('HSET', KEYS[7], k .. 't', now, k .. 'p', wait)
  if #names == 0 then return end
  local epoch = redis.call('GET', KEYS[11])
  if not epoch then
    epoch = ARGV[6]
    redis.call('SET', KEYS[11], epoch)
  end
  redis.call('XADD', KEYS[10], 'MAXLEN', '~', ARGV[5], '*', 'e', epoch, 'k', kind,
    'from', names[1], 'n', table.concat(names, ','), 'c', said)
end
announce('j', 'join', KEYS[8])
announce('l', 'leave', KEYS[9])
return known and 1 or 0

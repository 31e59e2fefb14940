-- A logout: the ended login in the set (scored by when its cookie expires, the expired ones
-- dropped) and an announcement numbered in order, so a follower that finds a number
-- missing knows announcements were trimmed before it read them, and reloads the set.
-- KEYS: revoked (sorted set), revocations (stream), their counter.
-- ARGV: login, until (Unix s), now (Unix s), announcements kept.
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local n = redis.call('INCR', KEYS[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'l', ARGV[1], 'u', ARGV[2], 'n', n)
return n

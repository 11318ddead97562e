-- A room's epoch and newest id, created if missing (RedisStore::open_channel).
-- KEYS: 1 meta, 2 log
-- ARGV: 1 a fresh epoch, 2 the newest id this node saw in the room (0 if none)
-- Returns {epoch, seq}.
local meta, log = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'epoch')
if epoch then
  return {epoch, redis.call('HGET', meta, 'seq')}
end
local seq = tonumber(ARGV[2])
local top = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
if #top > 0 then
  seq = math.max(seq, tonumber(string.match(top[1][1], '^(%d+)')))
end
redis.call('HSET', meta, 'epoch', ARGV[1], 'seq', seq, 'live', 0)
return {ARGV[1], tostring(seq)}

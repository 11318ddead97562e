-- Deletes one message of a room: a tombstone (RedisStore::delete; see mod.rs for the keys).
-- KEYS: 1 meta, 2 log, 3 del, 4 dlog
-- ARGV: 1 id, 2 retain, 3 the pub/sub channel
-- Returns 1 when deleted, 0 when there is no such message (or it is deleted already).
local meta, log, del, dlog, id = KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  return 0
end
if #redis.call('XRANGE', log, id .. '-0', id .. '-0') == 0 or redis.call('ZSCORE', del, id) then
  return 0
end
redis.call('ZADD', del, id, id)
redis.call('HINCRBY', meta, 'live', -1)
local entry = redis.call('XADD', dlog, 'MAXLEN', ARGV[2], '*', 'd', id)
redis.call('PUBLISH', ARGV[3], 'd ' .. epoch .. ' ' .. id .. ' ' .. entry)
return 1

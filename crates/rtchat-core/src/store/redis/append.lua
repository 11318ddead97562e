-- Stores one post of a room and publishes it (RedisStore::append; see mod.rs for the keys).
-- KEYS: 1 meta, 2 log, 3 del, [4 the idempotency key]
-- ARGV: 1 epoch this node knows ('' if none), 2 the newest id this node saw in it,
--       3 a fresh epoch (used if the room's must change), 4 time (ms), 5 retain,
--       6 user, 7 text, 8 uid ('' if none), 9 dedupe window (ms), 10 the pub/sub channel
-- Returns {'ok', epoch, json} | {'dup', epoch, json} | {'conflict', epoch, id}
local meta, log, del = KEYS[1], KEYS[2], KEYS[3]
local known_epoch, known_seq = ARGV[1], tonumber(ARGV[2])
local epoch = redis.call('HGET', meta, 'epoch')
local seq = tonumber(redis.call('HGET', meta, 'seq') or '0')
if not epoch then
  -- New, or lost (a Redis without persistence restarted, FLUSHALL): a new epoch, and ids
  -- never below what anyone has seen.
  epoch = ARGV[3]
  seq = known_seq
  local top = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
  if #top > 0 then
    seq = math.max(seq, tonumber(string.match(top[1][1], '^(%d+)')))
  end
  redis.call('HSET', meta, 'epoch', epoch, 'seq', seq, 'live', 0)
elseif epoch == known_epoch and seq < known_seq then
  -- A stale copy (a failover to a replica that had not seen every post): ids this node
  -- has seen would be handed out again. A new epoch instead.
  epoch = ARGV[3]
  seq = known_seq
  redis.call('HSET', meta, 'epoch', epoch, 'seq', seq)
end
if KEYS[4] then
  local first = redis.call('GET', KEYS[4])
  if first then
    local m = cjson.decode(first)
    if m.text == ARGV[7] then
      return {'dup', epoch, first}
    end
    return {'conflict', epoch, tostring(m.id)}
  end
end
seq = seq + 1
local m = {id = seq, user = ARGV[6], text = ARGV[7], time = tonumber(ARGV[4])}
if ARGV[8] ~= '' then
  m.uid = ARGV[8]
end
local json = cjson.encode(m)
redis.call('XADD', log, 'MAXLEN', ARGV[5], seq .. '-0', 'm', json)
redis.call('HSET', meta, 'seq', seq)
redis.call('HINCRBY', meta, 'live', 1)
if KEYS[4] and tonumber(ARGV[9]) > 0 then
  redis.call('SET', KEYS[4], json, 'PX', ARGV[9])
end
if seq % 1024 == 0 then
  -- Deleted ids older than the stream's oldest entry are of no use any more.
  local oldest = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)
  if #oldest > 0 then
    redis.call('ZREMRANGEBYSCORE', del, '-inf', '(' .. string.match(oldest[1][1], '^(%d+)'))
  end
end
redis.call('PUBLISH', ARGV[10], 'm ' .. epoch .. ' ' .. json)
return {'ok', epoch, json}

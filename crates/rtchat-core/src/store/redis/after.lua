-- Messages of a room after an id, oldest first, deleted ones left out (RedisStore::after).
-- KEYS: 1 meta, 2 log, 3 del, 4 edit
-- ARGV: 1 after, 2 limit
-- Returns {truncated (0|1), json...}: truncated when messages right after `after` are no
-- longer kept (a tombstone is no gap: the message's own entry stays).
local meta, log, del, edit = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local after, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {0}
local from = '(' .. after .. '-0'
local first = true
while #out - 1 < limit do
  local batch = redis.call('XRANGE', log, from, '+', 'COUNT', limit - #out + 17)
  if #batch == 0 then
    break
  end
  for _, e in ipairs(batch) do
    local fields = e[2]
    if fields[1] == 'm' then
      local id = string.match(e[1], '^(%d+)')
      if first then
        first = false
        if tonumber(id) > after + 1 then
          out[1] = 1
        end
      end
      if not redis.call('ZSCORE', del, id) then
        out[#out + 1] = redis.call('HGET', edit, id) or fields[2]
        if #out - 1 == limit then
          break
        end
      end
    end
    from = '(' .. e[1]
  end
end
if first and tonumber(redis.call('HGET', meta, 'seq') or '0') > after then
  -- Every message after `after` went (retention).
  out[1] = 1
end
return out

-- The newest messages of a room, newest first, deleted ones left out (RedisStore::recent).
-- KEYS: 1 log, 2 del, 3 edit
-- ARGV: 1 how many
-- Returns their JSON.
local log, del, edit, n = KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1])
local out = {}
local before = '+'
while #out < n do
  local batch = redis.call('XREVRANGE', log, before, '-', 'COUNT', n - #out + 16)
  if #batch == 0 then
    break
  end
  for _, e in ipairs(batch) do
    local fields = e[2]
    if fields[1] == 'm' then
      local id = string.match(e[1], '^(%d+)')
      if not redis.call('ZSCORE', del, id) then
        out[#out + 1] = redis.call('HGET', edit, id) or fields[2]
        if #out == n then
          break
        end
      end
    end
    before = '(' .. e[1]
  end
end
return out

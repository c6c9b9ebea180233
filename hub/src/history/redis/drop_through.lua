local known = redis.call('HGET', KEYS[2], 'through')
if not known or tonumber(ARGV[1]) > tonumber(known) then
  redis.call('HSET', KEYS[2], 'through', ARGV[1])
end
local entries = redis.call('XRANGE', KEYS[1], '-', ARGV[1] .. '-0', 'COUNT', tonumber(ARGV[2]))
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for f = 1, #fields, 2 do
    if fields[f] == 'id' then
      redis.call('ZREM', KEYS[3], member(fields[f + 1], string.match(entry[1], '^%d+')))
      break
    end
  end
  redis.call('XDEL', KEYS[1], entry[1])
end
return {#entries, redis.call('XLEN', KEYS[1])}

local function raise(field, value)
  local known = redis.call('HGET', KEYS[2], field)
  if not known or tonumber(value) > tonumber(known) then
    redis.call('HSET', KEYS[2], field, value)
  end
end
if ARGV[2] ~= '' then raise('volatile:' .. ARGV[1], ARGV[2]) end
raise('scanned:' .. ARGV[1], ARGV[3])
local dropped = 0
for j = 4, #ARGV, 2 do
  dropped = dropped + redis.call('XDEL', KEYS[1], ARGV[j] .. '-0')
  redis.call('ZREM', KEYS[3], member(ARGV[j + 1], ARGV[j]))
end
return {dropped, redis.call('XLEN', KEYS[1])}

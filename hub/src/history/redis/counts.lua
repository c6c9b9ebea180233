for i = 1, #ARGV, 2 do
  local topic = ARGV[i]
  local count = tonumber(ARGV[i + 1])
  local found = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. topic .. '\0', '(' .. topic .. '\1', 'LIMIT', 0, 1)
  if #found > 0 then
    redis.call('ZREM', KEYS[1], found[1])
    count = count + tonumber(string.sub(found[1], #topic + 2))
  end
  if count > 0 then
    redis.call('ZADD', KEYS[1], 0, topic .. '\0' .. string.format('%d', count))
  end
end
return 0

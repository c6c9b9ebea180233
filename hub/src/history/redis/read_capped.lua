local entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])
local budget = tonumber(ARGV[4])
local read = {}
for _, entry in ipairs(entries) do
  local size = 0
  local fields = entry[2]
  for i = 1, #fields - 1, 2 do
    if fields[i] == 'data' or fields[i] == 'id' then
      size = size + #fields[i + 1]
    end
  end
  if #read > 0 and size > budget then
    break
  end
  read[#read + 1] = entry
  budget = budget - size
end
return {read, redis.call('HGETALL', KEYS[2])}

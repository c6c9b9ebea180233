local n = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local clock = tonumber(redis.call('HGET', KEYS[2], 'clock') or '0')
if now < clock then now = clock end
local seq = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #top > 0 then
  local newest = tonumber(string.match(top[1][1], '^%d+'))
  if newest > seq then redis.call('HSET', KEYS[2], 'seq', newest) end
end
local last = redis.call('HINCRBY', KEYS[2], 'seq', n)
local first = last - n + 1
local created = string.format('%d', now)
for i = 0, n - 1 do
  local a = 1 + i * 6
  local pos = string.format('%d', first + i)
  redis.call('XADD', KEYS[1], pos .. '-0',
    'id', ARGV[a + 1], 'topics', ARGV[a + 2], 'data', ARGV[a + 3],
    'private', ARGV[a + 4], 'type', ARGV[a + 5], 'retry', ARGV[a + 6], 'created_ms', created)
  redis.call('ZADD', KEYS[3], 0, member(ARGV[a + 1], pos))
end
redis.call('HSET', KEYS[2], 'clock', created)
return {first, redis.call('XLEN', KEYS[1])}

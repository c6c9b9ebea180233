local n = tonumber(ARGV[2])
local after = redis.call('HGET', KEYS[2], 'seq') or '0'
local last = redis.call('HINCRBY', KEYS[2], 'liveseq', n)
for i = 0, n - 1 do
  local a = 2 + i * 6
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], string.format('%d', last - n + 1 + i) .. '-0',
    'after', after, 'id', ARGV[a + 1], 'topics', ARGV[a + 2], 'data', ARGV[a + 3],
    'private', ARGV[a + 4], 'type', ARGV[a + 5], 'retry', ARGV[a + 6])
end
return 0

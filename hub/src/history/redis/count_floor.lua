local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', tonumber(ARGV[1]))
if #entries == 0 then return 0 end
return tonumber(string.match(entries[#entries][1], '^%d+'))

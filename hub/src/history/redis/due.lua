local after = ARGV[1]
local cutoff = tonumber(ARGV[2])
local prefix = ARGV[3]
local limit = tonumber(ARGV[4])
local want = ARGV[5] == '1'
local out = {after, '0'}
local looked = 0
while looked < limit do
  local chunk = redis.call('XRANGE', KEYS[1], '(' .. after .. '-0', '+', 'COUNT', math.min(100, limit - looked))
  if #chunk == 0 then out[2] = '1' return out end
  for _, entry in ipairs(chunk) do
    local created, topics, id = 0, '', ''
    local fields = entry[2]
    for f = 1, #fields, 2 do
      if fields[f] == 'created_ms' then created = tonumber(fields[f + 1]) or 0
      elseif fields[f] == 'topics' then topics = fields[f + 1]
      elseif fields[f] == 'id' then id = fields[f + 1] end
    end
    if created >= cutoff then out[2] = '1' return out end
    after = string.match(entry[1], '^%d+')
    out[1] = after
    looked = looked + 1
    if want and string.sub(topics, 1, #prefix) == prefix then
      out[#out + 1] = after
      out[#out + 1] = id
    end
  end
end
return out

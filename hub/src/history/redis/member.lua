local function member(id, pos)
  return id .. '\0' .. string.rep('0', 20 - #pos) .. pos
end

--- An object whose finaliser runs fn: tables take __gc from Lua 5.2 on;
-- 5.1 and LuaJIT need a userdata from newproxy. (Shared by
-- spec/reentrancy_spec.lua and the child process one of its tests runs.)
return function(fn)
  local newproxy = rawget(_G, "newproxy")
  if newproxy then
    local p = newproxy(true)
    getmetatable(p).__gc = fn
    return p
  end
  return setmetatable({}, { __gc = fn })
end

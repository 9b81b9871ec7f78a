-- Lets the examples run straight from a checkout: `lua5.4 examples/hello.lua`
-- after `make` finds this checkout's modules and the C core it built. With
-- modkie installed (luarocks) and no build here, it changes nothing and the
-- installed modules are used. Each example loads it with
--   pcall(dofile, (arg and arg[0] or ""):gsub("[^/]*$", "") .. "checkout.lua")
-- which does nothing when the example was copied elsewhere.
local examples = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local root = examples .. "/.."
local build = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
local core = root .. "/build/" .. build .. "/modkie/core.so"
local f = io.open(core, "rb")
if f then
  f:close()
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
  package.cpath = root .. "/build/" .. build .. "/?.so;" .. package.cpath
elseif not pcall(require, "modkie.core") then
  io.stderr:write(("modkie is not built for %s yet: run `make` in %s (or install it: luarocks make "
    .. "modkie-scm-1.rockspec)\n"):format(_VERSION, root))
  os.exit(1)
end

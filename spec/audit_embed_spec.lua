-- An adversarial read of "never blocks its host" (README, "Waiting without
-- blocking"; docs/embedding.md), over real sockets. Each case runs the host in
-- a child process, so that spec/support/slowdns.c (an LD_PRELOAD shim: a name
-- ending in .slowdns.test takes MODKIE_SLOW_DNS seconds to resolve, as with a
-- DNS server that does not answer) can stand in for a slow resolver.
--
-- The bounds on time are loose on purpose (a shared machine, sanitizer
-- builds): each is a fraction of the stall it guards against, so a pass means
-- the stall did not reach the host, not that the host was fast.
local helper = require "spec.helper"

local LUA = os.getenv("MODKIE_TEST_LUA") or "lua5.4"
local STALL = 5 -- seconds a slow name takes to resolve

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

describe("a slow DNS resolver", function()
  local m, dir, shim
  setup(function()
    m = helper.mock({ "--job-seconds", "0.3" })
    dir = helper.tmpdir()
    shim = dir .. "/slowdns.so"
    -- the compiler without the sanitizers `make asan` preloads into this process
    assert(os.execute(("env -u LD_PRELOAD cc -shared -fPIC spec/support/slowdns.c -o %s -ldl"):format(q(shim))),
      "could not build spec/support/slowdns.c")
  end)
  teardown(function()
    m.stop()
    helper.rmdir(dir)
  end)

  -- Run `body` (Lua) in a child with the shim preloaded; its stdout, and its exit status.
  local function child(body, cmd, stall)
    local path = dir .. "/child.lua"
    helper.write_file(path, ([[
local modkie = require "modkie"
local socket = require "socket"
local now = socket.gettime
local PORT = %d
%s
]]):format(m.port, body))
    local preload = os.getenv("LD_PRELOAD")
    preload = (preload and preload ~= "" and preload .. " " or "") .. shim
    local p = assert(io.popen(("LD_PRELOAD=%s MODKIE_SLOW_DNS=%d timeout 60 %s %s 2>&1; echo \"exit=$?\"")
      :format(q(preload), stall or STALL, cmd or LUA, q(path))))
    local out = p:read("*a")
    p:close()
    return out, tonumber(out:match("exit=(%d+)%s*$"))
  end

  local CLIENT = [[
local client = modkie.new{ api_key = "k", base_url = "http://gw.slowdns.test:" .. PORT, allow_insecure = true,
  retries = 0, CONNECT }
local job = client:submit("kling/kling-3-0", { prompt = "x" })
for _ = 1, 10 do client:update(); socket.sleep(0.01) end -- the createTask is resolving its host now
]]

  it("regression: client:close() with a transfer whose host is resolving returns at once", function()
    -- libcurl 7.88 joins the resolver thread when a transfer is removed
    -- mid-resolve: close blocked until getaddrinfo returned (the whole stall)
    local out, status = child(CLIENT:gsub("CONNECT", "connect_timeout = 30") .. [[
local t = now(); client:close()
print(("close=%.3f state=%s"):format(now() - t, job.state))
]])
    assert.equal(0, status, out)
    local took = assert(tonumber(out:match("close=([%d.]+)")), out)
    assert.equal("cancelled", out:match("state=(%a+)"))
    assert.is_true(took < STALL / 5, "close blocked " .. took .. " s on the resolver (stall " .. STALL .. " s)")
  end)

  it("regression: job:cancel() of a createTask whose host is resolving returns at once", function()
    local out, status = child(CLIENT:gsub("CONNECT", "connect_timeout = 30") .. [[
local t = now(); job:cancel(); local c = now() - t
t = now(); client:update(); local f = now() - t
print(("cancel=%.3f frame=%.3f state=%s"):format(c, f, job.state))
client:close()
]])
    assert.equal(0, status, out)
    local c, f = out:match("cancel=([%d.]+) frame=([%d.]+)")
    assert.truthy(c, out)
    assert.equal("cancelled", out:match("state=(%a+)"))
    assert.is_true(tonumber(c) + tonumber(f) < STALL / 5, out)
  end)

  it("regression: a connect_timeout that runs out while the host resolves does not block that frame", function()
    -- the frame in which libcurl gave up on the name waited for getaddrinfo
    -- to return: connect_timeout 1 s, a frame of 4 s
    local out, status = child(CLIENT:gsub("CONNECT", "connect_timeout = 1") .. [[
local t0, worst = now(), 0
while not job.done and now() - t0 < 20 do
  local t = now(); client:update(); worst = math.max(worst, now() - t); socket.sleep(0.01)
end
print(("worst=%.3f total=%.3f state=%s kind=%s"):format(worst, now() - t0, job.state, job.error and job.error.kind))
client:close()
]])
    assert.equal(0, status, out)
    local worst, total = out:match("worst=([%d.]+) total=([%d.]+)")
    assert.truthy(worst, out)
    assert.equal("network", out:match("kind=(%a+)"), out) -- nothing was sent: not ambiguous
    assert.is_true(tonumber(worst) < 0.5, "a frame took " .. worst .. " s")
    assert.is_true(tonumber(total) < STALL - 1, out)
  end)

  it("frames go on while a host resolves (libcurl's threaded resolver)", function()
    local out, status = child(CLIENT:gsub("CONNECT", "connect_timeout = 30") .. [[
local t0, worst = now(), 0
while not job.done and now() - t0 < 30 do
  local t = now(); client:update(); worst = math.max(worst, now() - t); socket.sleep(0.01)
end
print(("worst=%.3f state=%s"):format(worst, job.state))
]])
    assert.equal(0, status, out)
    assert.equal("success", out:match("state=(%a+)"), out)
    assert.is_true(tonumber(out:match("worst=([%d.]+)")) < 0.5, out)
  end)

  it("regression: a Redis store whose name does not resolve does not block the steps that ask it", function()
    -- the store looked the name up again, synchronously, at each question
    -- (one a second while away): with a 2 s stall, frames of 2 s back to back
    local out, status = child([[
local client = modkie.new{ api_key = "k", base_url = "http://127.0.0.1:" .. PORT, retries = 0,
  rate = { shared = "redis://fail.slowdns.test:6379/0" } } -- the lookup at new() may block: it is not a step
local job = client:submit("kling/kling-3-0", { prompt = "x" })
local t0, worst, frames = now(), 0, 0
while now() - t0 < 5 do
  local t = now(); client:update(); worst = math.max(worst, now() - t); frames = frames + 1; socket.sleep(0.01)
end
print(("worst=%.3f frames=%d store=%s"):format(worst, frames, client:stats().store))
client:close()
]], nil, 2)
    assert.equal(0, status, out)
    local worst = assert(tonumber(out:match("worst=([%d.]+)")), out)
    assert.equal("away", out:match("store=(%a+)"), out)
    assert.is_true(worst < 0.5, "a frame took " .. worst .. " s: " .. out)
  end)

  it("regression: a host that closes its Lua state while a resolve is left behind lives on", function()
    -- the resolver thread that close() leaves running returns into libcurl:
    -- libcurl must still be mapped after lua_close unloads modkie.core
    if jit then return end -- the host below embeds PUC Lua
    local inc = "/usr/include/lua" .. _VERSION:match("%d+%.%d+")
    local host = dir .. "/host"
    helper.write_file(host .. ".c", [[
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
  lua_State *L = luaL_newstate();
  (void)argc;
  luaL_openlibs(L);
  if (luaL_dofile(L, argv[1])) { fprintf(stderr, "%s\n", lua_tostring(L, -1)); return 1; }
  lua_close(L);
  sleep(]] .. STALL + 1 .. [[);
  puts("lived on");
  return 0;
}
]])
    assert(os.execute(("env -u LD_PRELOAD cc -I%s %s.c -o %s -llua%s"):format(inc, q(host), q(host),
      _VERSION:match("%d+%.%d+"))), "could not build the host")
    local out, status = child(CLIENT:gsub("CONNECT", "connect_timeout = 30") .. "client:close()\n", q(host))
    assert.equal(0, status, out)
    assert.matches("lived on", out)
  end)
end)

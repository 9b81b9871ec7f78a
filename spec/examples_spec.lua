-- The embedding examples, run for real against the emulator: the C host's
-- 60 Hz frame loop, and the LÖVE game driven through a stand-in for LÖVE's API.
local helper = require "spec.helper"

describe("examples", function()
  local m
  setup(function() m = helper.mock({ "--job-seconds", "0.5" }) end)
  teardown(function() m.stop() end)

  it("host: a C program's 60 Hz frame loop runs five jobs to success", function()
    local out = assert(io.popen("build/examples/modkie-host examples/host/game.lua " .. m.url .. " 2>&1; echo rc=$?"))
      :read("*a")
    assert.matches("success success success success success", out)
    assert.matches("update%(%): p50", out)
    assert.matches("rc=0", out)
  end)

  it("love: jobs started by key presses progress frame by frame and are drawn", function()
    local now, drawn, quit = 0, {}, false
    _G.love = {
      filesystem = { getSource = function() return "examples/love" end },
      timer = { getTime = function() return now end },
      graphics = { print = function(text) drawn[#drawn + 1] = text end },
      event = { quit = function() quit = true end },
    }
    -- the game sets package paths for LÖVE's LuaJIT: keep this Lua's, with
    -- modkie already loaded, and point the game's client at the emulator
    local saved_path, saved_cpath = package.path, package.cpath
    local modkie = require "modkie"
    local client_new = modkie.new
    modkie.new = function(o) o.base_url, o.poll_interval = m.url, 0.05 return client_new(o) end
    finally(function()
      package.path, package.cpath = saved_path, saved_cpath
      modkie.new = client_new
      _G.love = nil
    end)
    assert(loadfile("examples/love/main.lua"))()
    local love = _G.love
    local frames = 0
    love.load()
    love.keypressed("space")
    love.keypressed("space")
    repeat
      frames = frames + 1
      now = now + 1 / 60
      love.update(1 / 60)
      drawn = {}
      love.draw()
      helper.sleep(1 / 60)
    until drawn[3] and drawn[2]:match("success") and drawn[3]:match("success") or frames > 600
    assert.matches("^1%. a dragon over a lake%s+success", drawn[2])
    assert.matches("^2%. a neon city in the rain%s+success", drawn[3])
    assert.matches("/files/task_", drawn[2])
    assert.is_true(frames > 5, "the jobs took frames, not one blocking call")
    love.keypressed("escape")
    assert.is_true(quit)
    love.quit()
  end)
end)

-- examples/demo.lua (what `make demo` runs) starts an emulator and stops it
-- at the end: it must end even when that emulator will not stop on SIGTERM.
describe("examples/demo.lua", function()
  local q = helper.shell_quote

  it("never hangs on an emulator that ignores SIGTERM: it escalates to SIGKILL and ends", function()
    local root = helper.tmpdir()
    finally(function()
      -- the real emulator behind the stand-in, if the stand-in could not stop it
      for _, name in ipairs({ "real.pid", "stubborn.pid" }) do
        local pid = (helper.read_file(root .. "/" .. name) or ""):match("%d+")
        if pid then os.execute("kill -9 " .. pid .. " 2>/dev/null") end
      end
      helper.rmdir(root)
    end)
    -- a checkout whose bin/modkie is a stand-in: it starts the real emulator
    -- but names a process that ignores SIGTERM as the emulator, and waits for it
    local here = io.popen("pwd"):read("*l")
    os.execute(("mkdir -p %s/bin %s/examples && ln -s %s/lua %s/lua && ln -s %s/build %s/build")
      :format(q(root), q(root), q(here), q(root), q(here), q(root)))
    os.execute(("cp examples/demo.lua examples/checkout.lua %s/examples/"):format(q(root)))
    helper.write_file(root .. "/bin/modkie", ([[
local root, real = %q, %q
local p = assert(io.popen("exec lua5.4 " .. real .. "/bin/modkie mock --port 0 --job-seconds 0.5"))
local line = assert(p:read("*l"))
local f = assert(io.open(root .. "/real.pid", "w")); f:write(line:match("pid=(%%d+)")); f:close()
os.execute("sh -c 'trap \"\" TERM; echo $$ >" .. root .. "/stubborn.tmp; mv " .. root .. "/stubborn.tmp " .. root
  .. "/stubborn.pid; exec sleep 1000' </dev/null >/dev/null 2>&1 &")
local stubborn
repeat
  f = io.open(root .. "/stubborn.pid"); stubborn = f and f:read("*l"); if f then f:close() end
  if not stubborn then os.execute("sleep 0.05") end
until stubborn
io.write((line:gsub("pid=%%d+", "pid=" .. stubborn)), "\n")
io.stdout:flush()
os.execute("while kill -0 " .. stubborn .. " 2>/dev/null; do sleep 0.1; done")
os.execute("kill " .. line:match("pid=(%%d+)"))
p:close()
]]):format(root, here))
    local out = os.tmpname()
    local ok = os.execute(("timeout 120 %s %s/examples/demo.lua %s/out >%s 2>&1"):format(
      os.getenv("MODKIE_TEST_LUA") or "lua5.4", q(root), q(root), out))
    local text = helper.read_file(out) or ""
    os.remove(out)
    assert(ok == true or ok == 0, "the demo did not end well (124: it hung):\n" .. text)
    assert.matches("4 of 5 jobs succeeded", text, 1, true)
    -- the stand-in was killed: gone, or a zombie (state Z) waiting to be reaped
    local stat = helper.read_file("/proc/" .. helper.read_file(root .. "/stubborn.pid"):match("%d+") .. "/stat")
    assert.is_true(stat == nil or stat:match("^%d+ %b() (%a)") == "Z", "the stand-in still runs")
  end)
end)

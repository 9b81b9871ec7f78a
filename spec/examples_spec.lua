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

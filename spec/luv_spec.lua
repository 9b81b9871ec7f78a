-- A host's own event loop (libuv through luv) drives the client: it waits on
-- client:fds() and client:timeout(), and calls step(0) only when something is due.
local helper = require "spec.helper"
local uv = require "luv"

describe("modkie.luv", function()
  local m
  setup(function() m = helper.mock({ "--job-seconds", "0.6" }) end)
  teardown(function() m.stop() end)

  it("runs jobs to completion from uv.run, stepping only when something is due", function()
    local client = helper.client(m, { poll_interval = 0.2 })
    local steps = 0
    local step = client.step
    client.step = function(self, t) steps = steps + 1 return step(self, t) end
    local driver = require("modkie.luv").attach(client, uv)
    local results = {}
    for i = 1, 30 do
      client:go(function()
        results[i] = assert(assert(client:submit("kling/kling-3-0", { prompt = "uv " .. i })):await(20))
      end)
    end
    driver.sync()
    uv.run()
    driver.close()
    uv.run()
    for i = 1, 30 do assert.equal("success", results[i].state) end
    -- 30 creates and ~4 polls each: a step per readiness or deadline, not a spin
    assert.is_true(steps < 1000, steps .. " steps")
    assert.same({}, client:fds())
    assert.is_nil(client:timeout())
    client:close()
  end)

  it("watches sockets only while transfers are in flight", function()
    local client = helper.client(m, { poll_interval = 5 })
    -- a host's loop asks for the sockets before it waits on them: the first
    -- call hands libcurl's sockets to the host (docs/embedding.md); before
    -- it, libcurl runs on its own loop and a fast answer may end the
    -- createTask inside the very call that hands them over
    assert.same({}, client:fds())
    local job = assert(client:submit("kling/kling-3-0", { prompt = "fds" }))
    local saw = 0
    while not job.id do
      client:step(0) -- starts the createTask; its socket is watched until it answers
      saw = math.max(saw, #client:fds())
    end
    assert.is_true(saw >= 1, "the createTask connection was watched")
    for _, s in ipairs(client:fds()) do assert.is_number(s.fd) end
    client:step(0.05)
    assert.same({}, client:fds(), "a job waiting for its next poll needs no socket")
    assert.is_true(client:timeout() > 1)
    client:close()
  end)
end)

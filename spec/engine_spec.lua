-- The C core's own promises, seen through the client and modkie.core.
local helper = require "spec.helper"
local core = require "modkie.core"
local cjson = require "cjson.safe"

local KLING = "kling/kling-3-0"

describe("modkie.core", function()
  local m
  setup(function() m = helper.mock({ "--job-seconds", "0.1" }) end)
  teardown(function() m.stop() end)

  -- when the emulator created each task, ms, earliest first
  local function created_times()
    local _, tasks = m.request("GET", "/__mock/tasks")
    local times = {}
    for _, t in ipairs(tasks) do times[#times + 1] = t.created end
    table.sort(times)
    return times
  end

  -- step `e` until it has given `n` events of type `kind`
  local function until_events(e, kind, n)
    local seen = 0
    while seen < n do
      for _, ev in ipairs(e:step(0.1) or {}) do
        if ev.type == kind then seen = seen + 1 end
      end
    end
  end

  local function engine(opts)
    local o = { base_url = m.url, api_key = "k", decode = cjson.new().decode, submit_rate = false, poll_rate = false }
    for k, v in pairs(opts or {}) do o[k] = v end
    return core.new(o)
  end

  it("returns nothing from step and nil from timeout when idle", function()
    local e = engine()
    assert.is_nil(e:step(0))
    assert.is_nil(e:timeout())
    e:close()
    assert.is_true(e:closed())
    assert.has_error(function() e:step(0) end, "modkie: the client is closed")
  end)

  it("reports what finished as data, and frees every op", function()
    local e = engine({ poll_interval = 0.02 })
    local h = e:submit(cjson.encode({ model = KLING, input = { prompt = "data" } }), 10)
    local seen, done = {}, nil
    while not done do
      for _, ev in ipairs(e:step(1) or {}) do
        assert.equal(h, ev.h)
        seen[#seen + 1] = ev.type
        if ev.type == "done" then done = ev end
      end
    end
    assert.equal("accepted", seen[1])
    assert.equal("success", done.state)
    assert.equal("success", done.result.raw.state) -- the record, read in C, as Lua tables
    assert.equal(0, e:stats().live)
    assert.is_false(e:cancel(h), "a finished op's handle is stale")
    e:close()
  end)

  it("gives stale handles nothing, even when the slot is reused", function()
    local e = engine()
    local t1 = e:timer(10)
    assert.is_true(e:cancel(t1))
    local t2 = e:timer(10)
    assert.are_not.equal(t1, t2)
    assert.is_false(e:cancel(t1))
    assert.is_true(e:cancel(t2))
    e:close()
  end)

  it("fires timers in order and says when it next needs a step", function()
    local e = engine()
    local late, early = e:timer(0.2), e:timer(0.05)
    local t = e:timeout()
    assert.is_true(t > 0 and t <= 0.05)
    local order = {}
    while #order < 2 do
      for _, ev in ipairs(e:step(1) or {}) do order[#order + 1] = ev.h end
    end
    assert.same({ early, late }, order)
    e:close()
  end)

  it("spaces createTask to the submit rate: never more than N in any window", function()
    local c = helper.client(m, { rate = { submit = { 5, 0.5 }, poll = false } })
    m.request("POST", "/__mock/reset")
    local jobs = {}
    for i = 1, 16 do jobs[i] = assert(c:submit(KLING, { prompt = "rate " .. i })) end
    require("modkie").await_all(jobs, 30)
    c:close()
    local times = created_times()
    assert.equal(16, #times)
    for i = 6, #times do
      -- the 6th create after any create comes at least one window (500 ms) later
      assert.is_true(times[i] - times[i - 5] >= 500, ("creates %d and %d were %d ms apart"):format(
        i - 5, i, times[i] - times[i - 5]))
    end
  end)

  it("holds a createTask at the door until send: nothing leaves before, rate token and slot kept", function()
    m.request("POST", "/__mock/reset")
    local e = engine({ poll_interval = 0.02, submit_rate = { 2, 30 }, max_connections = 1 })
    local body = function(i) return cjson.encode({ model = KLING, input = { prompt = "door " .. i } }) end
    local hs = {}
    for i = 1, 3 do hs[i] = e:submit(body(i), 30, true) end
    local ready = {}
    for _ = 1, 3 do
      for _, ev in ipairs(e:step(0.1) or {}) do
        assert.equal("ready", ev.type)
        ready[#ready + 1] = ev.h
      end
    end
    -- two rate tokens: two at the door, the third still waits for a token
    assert.same({ hs[1], hs[2] }, ready)
    assert.equal(2, e:stats().held)
    assert.equal(0, e:stats().creates)
    assert.equal(0, m.stats().creates or 0)
    assert.is_false(e:send(hs[3]), "not at the door: nothing to send")
    -- cancelled at the door: its slot comes back, nothing was sent
    assert.is_true(e:cancel(hs[2]))
    assert.equal(1, e:stats().held)
    assert.is_true(e:send(hs[1]))
    assert.is_false(e:send(hs[1]), "sent once")
    local done
    while not done do
      for _, ev in ipairs(e:step(1) or {}) do
        if ev.type == "done" then done = ev end
      end
    end
    assert.equal(hs[1], done.h)
    assert.equal("success", done.state)
    assert.equal(1, e:stats().creates)
    assert.equal(1, m.stats().creates)
    e:close()
  end)

  it("counts a createTask held at the door from when it is sent, as the gateway does", function()
    m.request("POST", "/__mock/reset")
    local e = engine({ poll_interval = 0.05, submit_rate = { 3, 1 } })
    local body = function(i) return cjson.encode({ model = KLING, input = { prompt = "sent late " .. i } }) end
    local held = {}
    for i = 1, 3 do held[i] = e:submit(body(i), 30, true) end
    until_events(e, "ready", 3)
    -- held most of a window: their tokens are old, their requests are not
    local t0 = core.now()
    while core.now() - t0 < 0.8 do e:step(0.1) end
    for i = 1, 3 do assert.is_true(e:send(held[i])) end
    for i = 4, 6 do e:submit(body(i), 30) end
    until_events(e, "done", 6)
    e:close()
    local times = created_times()
    assert.equal(6, #times)
    for i = 4, 6 do
      assert.is_true(times[i] - times[i - 3] >= 1000, ("creates %d and %d were %d ms apart"):format(
        i - 3, i, times[i] - times[i - 3]))
    end
  end)

  it("counts a request the gateway read late from when it may have been counted", function()
    -- the gateway stops reading for 0.5 s (busy, paused): what it then reads
    -- it counts late, and the client sees it in the round trip
    local g = helper.mock({ "--job-seconds", "0.1", "--limits", "create=3/1,poll=1000/1" })
    finally(function() os.execute("kill -CONT " .. g.pid .. " 2>/dev/null"); g.stop() end)
    local e = core.new({ base_url = g.url, api_key = "k", decode = cjson.new().decode,
      poll_interval = 0.05, submit_rate = { 3, 1 }, poll_rate = false })
    local body = function(i) return cjson.encode({ model = KLING, input = { prompt = "read late " .. i } }) end
    for i = 1, 8 do e:submit(body(-i), 30) end -- enough round trips to know the usual one
    until_events(e, "done", 8)
    local t0 = core.now()
    while core.now() - t0 < 1.1 do e:step(0.1) end -- their window is over
    os.execute("kill -STOP " .. g.pid)
    for i = 1, 6 do e:submit(body(i), 30) end
    t0 = core.now()
    while core.now() - t0 < 0.5 do e:step(0.05) end
    os.execute("kill -CONT " .. g.pid)
    until_events(e, "done", 6)
    assert.equal(0, e:stats().rate_limited)
    e:close()
    local _, limits = g.request("GET", "/__mock/limits")
    assert.equal(14, #limits.create.keys[1].admitted)
    assert.equal(0, #limits.create.keys[1].refused)
  end)

  it("ends a job held at the door at its deadline, as never sent", function()
    local e = engine({ submit_rate = false })
    local h = e:submit(cjson.encode({ model = KLING, input = { prompt = "late" } }), 0.2, true)
    local types = {}
    local t0 = core.now()
    while types[#types] ~= "done" and core.now() - t0 < 10 do
      for _, ev in ipairs(e:step(0.5) or {}) do
        types[#types + 1] = ev.type
        assert.equal(h, ev.h)
        if ev.type == "done" then assert.equal("deadline", ev.error.kind) end
      end
    end
    assert.same({ "ready", "done" }, types)
    assert.equal(0, e:stats().held)
    assert.equal(0, e:stats().creates)
    e:close()
  end)

  it("hands each client its own engine: no shared state", function()
    local a, b = engine({ poll_interval = 0.02 }), engine({ poll_interval = 0.02 })
    local ha = a:timer(0.01)
    b:timer(5)
    local evs = a:step(1)
    assert.equal(ha, evs[1].h)
    assert.is_nil(b:step(0))
    assert.equal(1, b:stats().live)
    assert.equal(0, a:stats().live)
    a:close()
    b:close()
  end)

  it("builds the poll URL with the task id percent-encoded", function()
    local c = helper.client(m, { retries = 0 })
    local rec, err = c:record("task a/b?c=d&e")
    assert.is_nil(rec)
    assert.equal("not_found", err.kind)
    c:close()
  end)
end)

-- Lua that runs inside a step (a poll_interval function, the log hook, a
-- __gc finaliser, the interpreter's Ctrl-C hook) and
-- calls back into the client: the rule of docs/embedding.md, against the
-- emulator. The regression specs failed before issue 9's fix (under `make
-- asan` as heap-use-after-free, in a plain build as the symptom each names).
local helper = require "spec.helper"
local modkie = require "modkie"

local KLING = "kling/kling-3-0"

local with_finaliser = require "spec.support.finaliser"

-- Run `script` in a child of this spec's Lua (MODKIE_TEST_LUA), stopped after
-- `seconds`: its exit code (timeout's 124 when it was stopped) and its output.
local function run_child(script, seconds)
  local lua = os.getenv("MODKIE_TEST_LUA") or "lua5.4"
  local out = os.tmpname()
  local ok, _, code = os.execute(("timeout %d %s -e %s >%s 2>&1"):format(seconds, lua, helper.shell_quote(script),
    out))
  if type(ok) == "number" then code = ok / 256 end -- Lua 5.1
  local text = helper.read_file(out) or ""
  os.remove(out)
  return code, text
end

-- What a client shows of its engine: nothing left behind once every job ended.
local function assert_clean(c)
  local s = c:stats()
  assert.equal(0, s.live, "ops left alive")
  assert.equal(0, s.timers, "timers left for freed ops")
  assert.equal(0, s.in_flight)
end

describe("Lua run inside a step", function()
  local m
  setup(function() m = helper.mock({ "--job-seconds", "0.3" }) end)
  teardown(function() m.stop() end)

  it("regression: job:cancel() inside a poll_interval function (was a use after free; a timer left for a freed op)",
    function()
      local c = helper.client(m, {
        poll_interval = function(_, polls, job)
          if polls >= 1 then job:cancel() end
          return 0.2
        end,
      })
      local job = assert(c:submit(KLING, { prompt = "give up after one poll [seconds=30]" }))
      local res, err = job:await(10)
      assert.is_nil(res)
      assert.equal("cancelled", err.kind)
      assert.equal("cancelled", job.state)
      c:step(0.3) -- the client carries on as if nothing happened
      assert_clean(c)
      c:close()
    end)

  it("cancel of another job, submit, and close inside poll_interval: at once, at once, at the end of the step",
    function()
      local c, other, extra, closed_inside
      c = helper.client(m, {
        poll_interval = function(_, polls, job)
          if job and job.meta == "first" and polls >= 1 then
            if other and not other.done then other:cancel() end
            if not extra then extra = assert(c:submit(KLING, { prompt = "made inside a step" })) end
          end
          if job and job.meta == "closer" and polls >= 2 then
            c:close()
            closed_inside = c:stats() -- still open: the close waits for the step to end
          end
          return 0.05
        end,
      })
      local first = assert(c:submit(KLING, { prompt = "first [seconds=1]" }, { meta = "first" }))
      other = assert(c:submit(KLING, { prompt = "other [seconds=30]" }))
      assert(first:await(10))
      local _, oerr = other:await(10)
      assert.equal("cancelled", oerr.kind)
      assert(assert(extra):await(10))
      assert_clean(c)
      -- close from inside: deferred to the end of that step, then everything ends cancelled
      local closer = assert(c:submit(KLING, { prompt = "closer [seconds=30]" }, { meta = "closer" }))
      local bystander = assert(c:submit(KLING, { prompt = "bystander [seconds=30]" }))
      local _, cerr = closer:await(10)
      assert.equal("cancelled", cerr.kind)
      assert.is_table(closed_inside)
      assert.equal("cancelled", select(2, bystander:await(1)).kind)
      assert.equal(0, c:step(0)) -- closed: nothing to do
      local job, serr = c:submit(KLING, { prompt = "after close" })
      assert.is_nil(job)
      assert.equal("config", serr.kind)
    end)

  it("step and await inside poll_interval or the log hook are refused with an error saying what to do", function()
    local from_interval, from_log = {}, {}
    local c
    c = helper.client(m, {
      poll_interval = function(_, _, job)
        if #from_interval == 0 then
          from_interval[1] = select(2, pcall(c.step, c, 0))
          from_interval[2] = select(2, pcall(job.await, job, 1))
          from_interval[3] = select(2, pcall(c.credits, c))
        end
        return 0.05
      end,
      log = function(_, event)
        if event == "accepted" and #from_log == 0 then
          from_log[1] = select(2, pcall(c.step, c, 0))
          from_log[2] = select(2, pcall(c.sleep, c, 0.01))
        end
      end,
    })
    assert(assert(c:submit(KLING, { prompt = "misuse" })):await(10))
    assert.matches("called from inside step .*step again from the code that called step", from_interval[1])
    assert.matches("cannot wait from inside client:step.*wait from the code that calls step", from_interval[2])
    assert.matches("cannot wait from inside client:step", from_interval[3])
    assert.matches("called from inside step", from_log[1])
    assert.matches("cannot wait from inside client:step", from_log[2])
    c:step(0.2)
    assert_clean(c)
    c:close()
  end)

  it("the log hook may cancel and close: cancel at once, close at the end of the step", function()
    local c, victim
    c = helper.client(m, {
      log = function(_, event, f)
        if event == "accepted" and victim and f.task_id ~= victim.id and not victim.done then victim:cancel() end
        if event == "done" and f.state == "success" then c:close() end
      end,
    })
    victim = assert(c:submit(KLING, { prompt = "victim [seconds=30]" }))
    local quick = assert(c:submit(KLING, { prompt = "quick" }))
    local slow = assert(c:submit(KLING, { prompt = "slow [seconds=30]" }))
    assert(quick:await(10))
    assert.equal("cancelled", select(2, victim:await(1)).kind)
    assert.equal("cancelled", select(2, slow:await(1)).kind) -- the close came right after quick's done event
    assert.is_true(c._closed)
  end)

  it("a finaliser that cancels a job runs inside the step: the job ends cancelled, nothing is left", function()
    local c, target
    local armed = false
    c = helper.client(m, {
      poll_interval = function()
        if armed then
          armed = false
          collectgarbage() -- the finaliser below runs here, inside the step
          collectgarbage()
        end
        return 0.05
      end,
    })
    target = assert(c:submit(KLING, { prompt = "collected [seconds=30]" }))
    local runner = assert(c:submit(KLING, { prompt = "runner [seconds=1]" }))
    do
      local _ = with_finaliser(function() target:cancel() end)
    end
    armed = true
    assert(runner:await(10))
    assert.equal("cancelled", select(2, target:await(1)).kind)
    c:step(0.1)
    assert_clean(c)
    c:close()
  end)

  -- Under LuaJIT a pairs loop compiled as a trace, run inside a finaliser
  -- over fields of other types than it was compiled for, never ended: the
  -- trace left at its loop head and was entered again at once, and LuaJIT
  -- compiles nothing while a finaliser runs (once a CI hang of the spec
  -- above, in the loop of Error.new). Run in a child with a time limit.
  it("regression: cancel, submit, job and close in a finaliser end after the same calls with other types "
    .. "(LuaJIT: was a loop that never ended)", function()
    local script = ([[
package.path, package.cpath = %q, %q
local modkie = require "modkie"
local c = modkie.new({ base_url = %q, api_key = "k" })
for i = 1, 300 do -- the walks of these calls' tables compiled for numbers and plain strings
  modkie.Error.new("network", "retried", { attempt = i, retryable = true })
  assert(c:submit("kling/kling-3-0", { prompt = "p" .. i, duration = 5 }, { meta = i, deadline = 60 }))
end
local job, other = assert(c:job("task_in_finaliser")), assert(c:job("task_closed_in_finaliser"))
local with_finaliser = require "spec.support.finaliser"
local made, refused
do local _ = with_finaliser(function()
  job:cancel()
  made = assert(c:submit("kling/kling-3-0", { prompt = "in a finaliser", duration = 10 },
    { meta = { "a table" }, deadline = false }))
  refused = select(2, c:submit("kling/kling-3-0", { prompt = true, [1] = "x" }))
end) end
collectgarbage() collectgarbage()
do local _ = with_finaliser(function() c:close() end) end
collectgarbage() collectgarbage()
io.stdout:write(job.state, " ", tostring(job.error and job.error.task_id), " ", other.state, " ", made.state, " ",
  refused.kind, "\n")
]]):format(package.path, package.cpath, m.url)
    local code, text = run_child(script, 10)
    assert.is_not.equal(124, code, "a finaliser's cancel, submit or close never ended")
    assert.equal("cancelled task_in_finaliser cancelled cancelled validation\n", text)
  end)

  -- Lua inside a step: lua.c's Ctrl-C hook raises "interrupted!" at the next
  -- call, here the call of the step's own body (the C engine no longer runs
  -- any Lua of its own: JSON is read in C). `action` runs in the hook, inside
  -- the step, `times` times (default once).
  local function inside_next_step(engine, action, times)
    local step, entered, left = engine.step, false, times or 1
    debug.sethook(function()
      local info = debug.getinfo(2, "f")
      if not info then return end
      if info.func == step then
        entered = true
      elseif entered then
        entered = false
        left = left - 1
        if left <= 0 then debug.sethook() end
        action()
      end
    end, "c")
  end

  local function interrupt() error("interrupted!") end

  local function step_until_raise(c, seconds)
    local give_up = helper.now() + seconds
    while helper.now() < give_up do
      local ok, err = pcall(c.step, c, 0.05)
      if not ok then return err end
    end
    debug.sethook()
    error("the step never raised")
  end

  for _, size in ipairs({ 100, 100000 }) do
    it(("regression: a deadline that passes after Lua raised inside a step ends the job (%d-byte answers; "
      .. "was a lost deadline, or a read of a freed body)"):format(size), function()
      local c = helper.client(m, { poll_interval = 0.05 })
      local prompt = "held [seconds=30] " .. ("x"):rep(size)
      local job = assert(c:submit(KLING, { prompt = prompt }, { deadline = 1.5, validate = false }))
      assert(job:accepted(10))
      inside_next_step(c._engine, interrupt)
      assert.matches("interrupted!", step_until_raise(c, 5))
      helper.sleep(1.7) -- past the deadline, without a step
      local res, err = job:await(5)
      assert.is_nil(res)
      assert.equal("deadline", err.kind)
      c:step(0.1)
      assert_clean(c)
      c:close()
    end)
  end

  it("a step that raised loses nothing: the job's answers are read by the next steps", function()
    local c = helper.client(m, { poll_interval = 0.05 })
    local job = assert(c:submit(KLING, { prompt = "read later" }))
    inside_next_step(c._engine, interrupt)
    assert.matches("interrupted!", step_until_raise(c, 5))
    local res = assert(job:await(10))
    assert.equal("success", res.state)
    assert.truthy(res.id)
    assert_clean(c)
    c:close()
  end)

  -- Any Lua error out of a step (out of memory; an error in a finaliser,
  -- which Lua 5.1-5.3 and LuaJIT pass on from the allocation that ran it; a
  -- hook): shown with lua.c's Ctrl-C, twice in a row.
  it("regression: a Lua error that escapes a step leaves neither the engine marked as stepping nor a job lost",
    function()
    local core = require "modkie.core"
    local cjson = require "cjson.safe"
    local e = core.new({ base_url = m.url, api_key = "k", submit_rate = false, poll_rate = false,
      poll_interval = 0.05 })
    local h = e:submit(cjson.encode({ model = KLING, input = { prompt = "escape" } }), 30)
    inside_next_step(e, interrupt, 2)
    local give_up, errors = helper.now() + 5, {}
    while #errors < 2 and helper.now() < give_up do
      local ok, err = pcall(e.step, e, 0.05)
      if not ok then errors[#errors + 1] = err end
    end
    assert.equal(2, #errors)
    assert.matches("interrupted!", errors[1])
    assert.matches("interrupted!", errors[2]) -- not "step called from inside step"
    local seen = {}
    while not seen.done and helper.now() < give_up + 10 do
      for _, ev in ipairs(e:step(0.1) or {}) do
        assert.equal(h, ev.h)
        seen[ev.type] = ev
      end
    end
    assert.truthy(seen.accepted, "the createTask answer was lost")
    assert.equal("success", seen.done.state)
    assert.equal(0, e:stats().live)
    e:close() -- and close is not refused
    assert.is_true(e:closed())
  end)

  it("close inside a step of modkie.core is done when the step ends", function()
    local core = require "modkie.core"
    local cjson = require "cjson.safe"
    local e = core.new({ base_url = m.url, api_key = "k", submit_rate = false, poll_rate = false,
      poll_interval = 0.05 })
    e:submit(cjson.encode({ model = KLING, input = { prompt = "closing" } }), 30)
    inside_next_step(e, function()
      e:close()
      assert.is_false(e:closed(), "closed at once inside the step")
    end)
    local give_up = helper.now() + 5
    while not e:closed() and helper.now() < give_up do e:step(0.05) end
    assert.is_true(e:closed())
  end)
end)

describe("numbers crossing into C", function()
  local m
  setup(function() m = helper.mock({ "--job-seconds", "0.1" }) end)
  teardown(function() m.stop() end)

  it("regression: a handle that is NaN, infinite, negative or a fraction finds nothing (was a cast to uint64_t)",
    function()
      local c = helper.client(m)
      local job = assert(c:submit(KLING, { prompt = "first op, slot 0" }))
      local e = c._engine
      for _, h in ipairs({ 0 / 0, math.huge, -math.huge, -1, 0.5, 2 ^ 60 }) do
        assert.is_false(e:cancel(h), tostring(h))
      end
      assert(job:await(10))
      c:close()
    end)

  it("regression: step, timers and deadlines take any number of seconds (3e6, inf, NaN, negative)", function()
    local c = helper.client(m)
    local job = assert(c:submit(KLING, { prompt = "long step" }, { deadline = 1e300 }))
    assert.is_number(c:step(3e6)) -- returns once something happened
    assert.is_number(c:step(0 / 0))
    assert.is_number(c:step(-5))
    assert(job:await(math.huge))
    local e = c._engine
    for _, s in ipairs({ 3e6, math.huge, 0 / 0, -1 }) do e:cancel(e:timer(s)) end
    e:timer(0.1)
    assert.is_number(c:step(1e300)) -- waits for the timer, not for ever
    assert_clean(c)
    c:close()
  end)

  -- An idle engine with a timer 3e6 s away: the poll() wait in milliseconds
  -- was (int)(3e9), undefined (UBSan under `make asan`; INT_MIN on x86-64, an
  -- endless wait). Now it waits an hour at a time. Run in a child (it waits),
  -- with the same LUA_CPATH and LD_PRELOAD: under `make asan` a sanitizer
  -- report ends the child at once, with a code other than timeout's 124.
  it("regression: a step of 3e6 s on an idle engine waits, with no undefined cast", function()
    local script = ("package.path, package.cpath = %q, %q "
      .. "local e = require('modkie.core').new{ base_url = %q, api_key = 'k' } "
      .. "e:timer(3e6) io.stdout:write('stepping\\n') io.stdout:flush() e:step(3e6) os.exit(7)")
      :format(package.path, package.cpath, m.url)
    local code, text = run_child(script, 3)
    assert.matches("^stepping\n", text)
    assert.equal(124, code, "the step did not wait (or a sanitizer stopped it): " .. text)
  end)

  it("refuses a poll interval that is not a finite number of seconds up to 1e6", function()
    for _, v in ipairs({ math.huge, 1e7, -1, 0 / 0 }) do
      local ok, msg = pcall(modkie.new, { base_url = m.url, api_key = "k", poll_interval = v })
      assert.is_false(ok, tostring(v))
      assert.matches("poll_interval", msg)
    end
    -- a function returning one: the default schedule and a warning
    local warned
    local c = helper.client(m, {
      poll_interval = function() return math.huge end,
      log = function(_, event, f) if event == "warning" then warned = f.message end end,
    })
    assert(assert(c:submit(KLING, { prompt = "inf interval" })):await(10))
    assert.matches("from 0 to 1e6", warned)
    c:close()
  end)
end)

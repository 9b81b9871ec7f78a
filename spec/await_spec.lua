-- Waiting: coroutines, blocking, foreign coroutines, timeouts, deadlines, cancel.
local helper = require "spec.helper"
local modkie = require "modkie"

local KLING = "kling/kling-3-0"

describe("await", function()
  local m, client
  setup(function() m = helper.mock({ "--job-seconds", "0.3" }) end)
  teardown(function() m.stop() end)
  before_each(function() client = helper.client(m) end)
  after_each(function() client:close() end)

  it("yields inside client:run coroutines: the shorter job's coroutine finishes first", function()
    local order = {}
    client:run(function()
      client:go(function()
        local res = assert(assert(client:submit(KLING, { prompt = "long [seconds=0.8]" })):await(10))
        order[#order + 1] = "long " .. res.state
      end)
      client:go(function()
        local res = assert(assert(client:submit(KLING, { prompt = "short [seconds=0.1]" })):await(10))
        order[#order + 1] = "short " .. res.state
      end)
    end)
    assert.same({ "short success", "long success" }, order)
  end)

  it("passes arguments to go and keeps a coroutine's plain yields going", function()
    local got = {}
    client:run(function(a, b)
      got[#got + 1] = a .. b
      coroutine.yield() -- a plain yield: resumed on the next step
      got[#got + 1] = "after yield"
    end, "x", "y")
    assert.same({ "xy", "after yield" }, got)
  end)

  it("raises a coroutine's error from run, with its traceback", function()
    assert.has_error(function()
      client:run(function() error("boom in a job coroutine") end)
    end)
    local ok, msg = pcall(client.run, client, function() error("second boom") end)
    assert.is_false(ok)
    assert.matches("second boom", msg)
    assert.matches("stack traceback", msg)
  end)

  it("sleeps in curl_multi_poll while only polls are pending: no busy loop", function()
    local c = helper.client(m, { poll_interval = 0.25 })
    local job = assert(c:submit(KLING, { prompt = "idle [seconds=1]" }))
    local before = c:stats().wakeups
    assert(job:await(10))
    local wakeups = c:stats().wakeups - before
    -- about four polls of 250 ms each: a busy loop would wake thousands of times
    assert.is_true(wakeups < 40, "woke " .. wakeups .. " times")
    c:close()
  end)

  it("blocks on the main thread and in a coroutine without a wait option", function()
    local job = assert(client:submit(KLING, { prompt = "plain" }))
    local co = coroutine.create(function() return job:await(10) end)
    local ok, res = coroutine.resume(co)
    assert.is_true(ok)
    assert.equal("success", res.state)
    assert.equal("dead", coroutine.status(co))
  end)

  it("uses the wait option in a foreign coroutine: the host resumes it each frame", function()
    local frames = 0
    local c = helper.client(m, { wait = function() coroutine.yield("frame") end })
    local job = assert(c:submit(KLING, { prompt = "game" }))
    local co = coroutine.create(function() return job:await(10) end)
    local ok, res = coroutine.resume(co)
    while coroutine.status(co) == "suspended" do
      assert.equal("frame", res)
      frames = frames + 1
      helper.sleep(0.01)
      ok, res = coroutine.resume(co)
    end
    assert.is_true(ok)
    assert.equal("success", res.state)
    assert.is_true(frames > 0)
    c:close()
  end)

  it("refuses to wait from inside step and from another client's coroutine", function()
    local job = assert(client:submit(KLING, { prompt = "x" }))
    local err, own, _
    local c = helper.client(m, { log = function()
      if own and not err then _, err = pcall(own.await, own, 1) end
    end })
    own = assert(c:submit(KLING, { prompt = "y" }))
    assert(own:await(10))
    assert.matches("cannot wait from inside client:step", err)
    local other_err
    c:run(function() other_err = select(2, pcall(job.await, job, 1)) end)
    assert.matches("run by another modkie client", other_err)
    c:close()
  end)

  it("gives way to a single Ctrl-C while it blocks", function()
    local lua = os.getenv("MODKIE_TEST_LUA") or "lua5.4"
    local script = ("package.path, package.cpath = %q, %q "
      .. "local c = require('modkie').new{ base_url = %q, api_key = 'k', poll_interval = 30 } "
      .. "assert(c:submit('kling/kling-3-0', { prompt = 'long [seconds=60]' })):await()")
      :format(package.path, package.cpath, m.url)
    local log = os.tmpname()
    -- one SIGINT, then up to 5 s for the process to end: it must not need a second one
    local sh = ([[%s -e %s >/dev/null 2>%s & p=$!; sleep 0.5; kill -INT $p
      for i in $(seq 50); do kill -0 $p 2>/dev/null || break; sleep 0.1; done
      if kill -0 $p 2>/dev/null; then kill -9 $p; echo still-running; else wait $p; echo exit=$?; fi]])
      :format(lua, helper.shell_quote(script), log)
    local out = assert(io.popen(sh)):read("*a")
    local stderr = helper.read_file(log)
    os.remove(log)
    assert.matches("exit=1", out)
    assert.matches("interrupted!", stderr)
  end)

  it("accepted() waits for the task id only, in a coroutine and blocking", function()
    local id, ended
    client:run(function()
      local job = assert(client:submit(KLING, { prompt = "accept me [seconds=0.5]" }))
      id = assert(job:accepted(10))
      ended = job.done
      assert(job:await(10))
    end)
    assert.matches("^task_", id)
    assert.is_false(ended)
    local job = assert(client:submit(KLING, { prompt = "accept me too [seconds=0.5]" }))
    local got = assert(job:accepted(10))
    assert.equal(job.id, got)
    assert.is_false(job.done)
    local refused = helper.client(m, { base_url = "http://127.0.0.1:" .. helper.held_port(finally), retries = 0 })
    local _, err = assert(refused:submit(KLING, { prompt = "never" })):accepted(10)
    assert.equal("network", err.kind)
    refused:close()
  end)

  it("times out with kind 'timeout' and the job keeps going", function()
    local job = assert(client:submit(KLING, { prompt = "slow [seconds=0.8]" }))
    local res, err = job:await(0.1)
    assert.is_nil(res)
    assert.equal("timeout", err.kind)
    assert.is_true(err.retryable)
    assert.is_false(job.done)
    res = assert(job:await(10))
    assert.equal("success", res.state)
  end)

  it("times out inside a coroutine too", function()
    local err, _
    client:run(function()
      local job = assert(client:submit(KLING, { prompt = "slow [seconds=0.6]" }))
      _, err = job:await(0.05)
      assert(job:await(10))
    end)
    assert.equal("timeout", err.kind)
  end)

  it("ends a job whose deadline passes with kind 'deadline' and stops polling", function()
    local job = assert(client:submit(KLING, { prompt = "forever [seconds=60]" }, { deadline = 0.3 }))
    local res, err = job:await(10)
    assert.is_nil(res)
    assert.equal("deadline", err.kind)
    assert.equal("error", job.state)
    assert.equal(job.id, err.task_id)
    local polls = m.stats().polls
    helper.sleep(0.2)
    client:step(0)
    assert.equal(polls, m.stats().polls)
  end)

  it("cancels: await returns kind 'cancelled', polling stops", function()
    local job = assert(client:submit(KLING, { prompt = "cancel me [seconds=60]" }))
    while not job.id do client:step(0.05) end
    assert.is_true(job:cancel())
    assert.is_false(job:cancel())
    local res, err = job:await(1)
    assert.is_nil(res)
    assert.equal("cancelled", err.kind)
    assert.equal("cancelled", job.state)
    local polls = m.stats().polls
    helper.sleep(0.2)
    client:step(0)
    assert.equal(polls, m.stats().polls)
  end)

  it("wakes a coroutine awaiting a job another coroutine cancels", function()
    local err, _
    client:run(function()
      local job = assert(client:submit(KLING, { prompt = "to cancel [seconds=60]" }))
      client:go(function() client:sleep(0.1); job:cancel() end)
      _, err = job:await(10)
    end)
    assert.equal("cancelled", err.kind)
  end)

  it("await_all aligns results and errors with the jobs", function()
    local jobs = {
      assert(client:submit(KLING, { prompt = "a" })),
      assert(client:submit(KLING, { prompt = "b [fail]" })),
      assert(client:submit(KLING, { prompt = "c [seconds=0.1]" })),
    }
    local results, errs = modkie.await_all(jobs, 10)
    assert.equal("success", results[1].state)
    assert.is_nil(results[2])
    assert.equal("failed", errs[2].kind)
    assert.equal(jobs[3].id, results[3].id)
    assert.is_nil(errs[1])
  end)

  it("await_any returns the first job to end", function()
    local slow = assert(client:submit(KLING, { prompt = "slow [seconds=1]" }))
    local fast = assert(client:submit(KLING, { prompt = "fast [seconds=0.05]" }))
    local job, res, err = modkie.await_any({ slow, fast }, 10)
    assert.equal(fast, job)
    assert.equal(fast.id, res.id)
    assert.is_nil(err)
    local none, _, terr = modkie.await_any({ slow }, 0.05)
    assert.is_nil(none)
    assert.equal("timeout", terr.kind)
  end)

  it("await_any works inside a coroutine", function()
    local winner
    client:run(function()
      local slow = assert(client:submit(KLING, { prompt = "slow [seconds=1]" }))
      local fast = assert(client:submit(KLING, { prompt = "fast [seconds=0.05]" }))
      winner = modkie.await_any({ slow, fast }, 10) == fast
      slow:cancel()
    end)
    assert.is_true(winner)
  end)

  it("await_all, await_any and completed refuse one job where a list goes, and a table keyed otherwise", function()
    local job = assert(client:submit(KLING, { prompt = "one job, not a list" }))
    for _, fname in ipairs({ "await_all", "await_any", "completed" }) do
      local function call() modkie[fname](job, 10) end -- (the error points at this line)
      local ok, msg = pcall(call)
      assert.is_false(ok, fname .. " took a job for a list")
      assert.equal(("%s:%d: bad argument #1 to '%s' (expects a list of jobs ({job1, job2}), got a modkie.Job; "
        .. "wrap it: modkie.%s({job}))"):format(debug.getinfo(call, "S").short_src,
        debug.getinfo(call, "S").linedefined, fname, fname), msg)
      ok, msg = pcall(modkie[fname], { first = job }, 10)
      assert.is_false(ok, fname .. " took a table keyed by name")
      assert.matches("bad argument #1 to '" .. fname .. "' (expects a list of jobs ({job1, job2}), got a table "
        .. "with no jobs[1]", msg, 1, true)
    end
    local results, errs = modkie.await_all({}, 1) -- an empty list is still a list
    assert.same({}, results)
    assert.same({}, errs)
    assert.is_nil(modkie.completed({})())
    results = modkie.await_all({ job }, 10)
    assert.equal("success", results[1].state)
  end)

  it("closing the client cancels its jobs and frees the engine", function()
    local c = helper.client(m)
    local job = assert(c:submit(KLING, { prompt = "x [seconds=60]" }))
    c:close()
    c:close()
    local _, err = job:await(1)
    assert.equal("cancelled", err.kind)
    local again, cerr = c:submit(KLING, { prompt = "y" })
    assert.is_nil(again)
    assert.equal("config", cerr.kind)
    assert.equal(0, c:step(0))
  end)

  -- to-be-closed variables are Lua 5.4's; compiled at run time, the syntax would not load on older Luas
  local it_54 = _VERSION == "Lua 5.4" and it or function() end
  it_54("closes on leaving a <close> scope in Lua 5.4", function()
    local job = assert(load([[
      local helper, m, KLING = ...
      local c <close> = helper.client(m)
      return assert(c:submit(KLING, { prompt = "scoped [seconds=60]" }))
    ]]))(helper, m, KLING)
    local _, err = job:await(1)
    assert.equal("cancelled", err.kind)
    assert.is_true(job.client._closed)
  end)
end)

describe("polling", function()
  local m
  setup(function() m = helper.mock({ "--job-seconds", "0.3" }) end)
  teardown(function() m.stop() end)

  it("follows the gateway's recommended schedule by default", function()
    local core = require "modkie.core"
    local cases = { { 0, 2, 3 }, { 29, 2, 3 }, { 30, 5, 10 }, { 119, 5, 10 }, { 120, 15, 30 }, { 3600, 15, 30 } }
    for _, case in ipairs(cases) do
      local lo, hi = core.default_interval(case[1], 0), core.default_interval(case[1], 0.999999)
      assert.near(case[2], lo, 1e-6)
      assert.near(case[3], hi, 1e-3)
    end
  end)

  it("calls a poll_interval function with elapsed seconds and polls so far", function()
    local calls = {}
    local client = helper.client(m, { poll_interval = function(elapsed, polls)
      calls[#calls + 1] = { elapsed, polls }
      return 0.02
    end })
    assert(assert(client:submit(KLING, { prompt = "x" })):await(10))
    assert.is_true(#calls >= 2)
    assert.equal(0, calls[1][2])
    for i = 2, #calls do
      assert.equal(i - 1, calls[i][2])
      assert.is_true(calls[i][1] >= calls[i - 1][1])
    end
    client:close()
  end)

  it("raises a failing poll_interval's error from step, loses no event, keeps the job going", function()
    local fail = true
    local client = helper.client(m, { poll_interval = function()
      if fail then error("oops in poll_interval") end
      return 0.02
    end })
    local job = assert(client:submit(KLING, { prompt = "x [seconds=0.2]" }))
    local ok, err
    repeat ok, err = pcall(client.step, client, 0.05) until not ok
    assert.matches("oops in poll_interval", err)
    -- poll_interval is asked between steps: step raises once every event of it was handled
    assert.is_string(job.id, "the accepted event of that step arrived")
    fail = false
    local res = assert(job:await(10))
    assert.equal(job.id, res.id)
    client:close()
  end)

  it("warns and polls on the default schedule when poll_interval returns nonsense", function()
    local warned
    local client = helper.client(m, {
      poll_interval = function() return "soon" end,
      log = function(_, event, f) if event == "warning" then warned = f.message end end,
    })
    local job = assert(client:submit(KLING, { prompt = "x" }))
    while not job.id do client:step(0.05) end
    assert.matches("poll_interval must return a number", warned)
    job:cancel()
    client:close()
  end)

  it("stretches intervals to the poll rate limit instead of provoking 429s", function()
    local limited = helper.mock({ "--job-seconds", "0.5", "--limits" })
    local client = helper.client(limited, { rate = { poll = { 10, 1 } }, poll_interval = 0 })
    finally(function() client:close(); limited.stop() end)
    local jobs = {}
    for i = 1, 8 do jobs[i] = assert(client:submit(KLING, { prompt = "limited " .. i })) end
    local results = modkie.await_all(jobs, 30)
    for i = 1, 8 do assert.equal("success", results[i].state) end
    assert.equal(0, limited.stats().rate_limited)
  end)
end)

describe("the log hook", function()
  it("gets structured events and never the API key", function()
    local m = helper.mock({ "--job-seconds", "0.1", "--api-key", "sk-canary-7f3a9" })
    local seen, events = {}, {}
    local client = helper.client(m, { api_key = "sk-canary-7f3a9", log = function(level, event, fields)
      -- every event, as text, to scan for the key
      events[event] = true
      seen[#seen + 1] = level .. " " .. event .. " " .. require("cjson").encode(fields)
    end })
    finally(function() client:close(); m.stop() end)
    assert(assert(client:submit(KLING, { prompt = "logged" })):await(10))
    local _, err = assert(client:submit(KLING, { prompt = "fails [fail]" })):await(10)
    local bad = helper.client(m, { api_key = "sk-canary-wrong", log = function(level, event, fields)
      seen[#seen + 1] = level .. " " .. event .. " " .. require("cjson").encode(fields)
    end })
    local _, aerr = assert(bad:submit(KLING, { prompt = "refused" })):await(10)
    bad:close()
    for _, e in ipairs({ "submit", "accepted", "state", "done" }) do assert.is_true(events[e], e) end
    local text = table.concat(seen, "\n") .. tostring(err) .. tostring(aerr)
    assert.not_matches("canary", text)
  end)
end)

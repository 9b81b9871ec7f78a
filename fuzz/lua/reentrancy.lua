--- Fuzz harness: Lua that runs inside a client's step and calls back into
-- it (issue 9's class). A real client, with the C core built into this
-- harness under ASan and UBSan, drives jobs against the emulator (started
-- once, on a free port, by this harness) over real sockets. The input is a
-- program: the jobs (quick, slow, failing, garbled, a >64 KiB answer;
-- deadlines), how the client is driven (blocking awaits, step loops, the
-- coroutine scheduler, a foreign coroutine with the `wait` option), and a
-- script of actions taken, one byte each, whenever Lua runs inside or around
-- a step: poll_interval, the log hook, finalisers, the wait function. An
-- action cancels a job (its own, another, all), submits, closes, steps,
-- awaits, raises, collects garbage (running finalisers that take actions in
-- turn), arms lua.c's Ctrl-C (a hook raising "interrupted!" at the next call
-- inside a step), or passes odd numbers (NaN, inf, negative) to step.
--
-- Properties, beyond no sanitizer report:
--  * errors out of step, await and run are only the ones the script raised
--    ("fuzz: raised", "interrupted!");
--  * inside a step, step and await are refused with the documented messages;
--  * after a step, the engine holds no more ops than the client knows of,
--    and no timer without an op (stats: timers <= 2 * live);
--  * every job is in a known state, and ended jobs carry a documented error
--    kind or a result; close leaves the engine closed.
-- Inputs are timing-dependent (a real server); each runs for at most ~1.5 s.
local F = require "fuzzutil"
local socket = require "socket"
local check, show = F.check, F.show

local root = debug.getinfo(1, "S").source:match("^@(.*)/fuzz/lua/[^/]*$") or "."
local modkie = require "modkie"
local KLING = "kling/kling-3-0"

-- The emulator: one for the whole run, killed at exit.
local mock_url
local function mock()
  if mock_url then return mock_url end
  local cmd = ("cd %q && exec lua5.4 bin/modkie mock --port 0 --job-seconds 0.05 2>/dev/null"):format(root)
  local pipe = assert(io.popen(cmd, "r"))
  local line = assert(pipe:read("*l"), "the emulator did not start")
  mock_url = assert(line:match("(http://[%w%.%-]+:%d+)"), line)
  local pid = line:match("pid=(%d+)")
  -- killed when the harness's Lua state closes (at exit)
  _G.__fuzz_mock = setmetatable({}, { __gc = function()
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    pipe:close()
  end })
  return mock_url
end

local KINDS = {}
for k in ("validation config auth credits rate_limit not_found server network timeout deadline failed protocol "
  .. "cancelled ambiguous"):gmatch("%S+") do KINDS[k] = true end
local STATES = { submitting = true, queued = true, running = true, success = true, failed = true, error = true,
  cancelled = true }

local PROMPTS = { "quick", "slow [seconds=0.4]", "fails [fail]", "garbled [fault=poll:badjson]",
  "outage [fault=poll:500x2]", "big " .. ("x"):rep(70000) }
local DEADLINES = { false, 0.3, 5 }
local INTERVALS = { 0, 0.01, 0.05, "x", 0 / 0, math.huge, -1, 0.02 }

local function allowed(err)
  local s = tostring(err)
  return s:find("fuzz: raised", 1, true) or s:find("interrupted!", 1, true)
end

return function(data)
  local pos = 0
  local function byte()
    pos = pos + 1
    return data:byte(pos) or 0
  end

  local c, jobs, engine_step = nil, {}, nil
  local depth = 0 -- > 0 while Lua runs inside c's step (poll_interval, log)
  local act -- forward

  local function some_job() return #jobs > 0 and jobs[byte() % #jobs + 1] or nil end

  -- lua.c's Ctrl-C: "interrupted!" raised at the next call inside a step of
  -- the client (the call of the step's body, once the engine's step is called)
  local function interrupt()
    local thread, entered = coroutine.running(), false
    debug.sethook(thread, function()
      local info = debug.getinfo(2, "f")
      if not info then return end
      if info.func == engine_step then
        entered = true
      elseif entered then
        debug.sethook(thread)
        error("interrupted!")
      end
    end, "c")
  end

  local function finaliser(fn)
    return setmetatable({}, { __gc = fn })
  end

  -- One action of the script, taken where Lua runs (`where`: "interval",
  -- "log", "gc", "wait"); `self` the job the callback is about, if any.
  act = function(where, self)
    local a = byte() % 14
    local inside = depth > 0
    if a == 1 and self then self:cancel()
    elseif a == 2 then local j = some_job(); if j then j:cancel() end
    elseif a == 3 then for _, j in ipairs(jobs) do j:cancel() end
    elseif a == 4 and #jobs < 8 then
      local j = c:submit(KLING, { prompt = PROMPTS[byte() % 3 + 1] })
      if j then jobs[#jobs + 1] = j end
    elseif a == 5 then c:close()
    elseif a == 6 then
      local ok, err = pcall(c.step, c, 0)
      if inside and where ~= "gc" then
        check(not ok and tostring(err):find("called from inside step", 1, true),
          "step inside a step (%s) was not refused: %s", where, show(err))
      elseif not ok then
        check(allowed(err), "step from %s raised %s", where, show(err))
      end
    elseif a == 7 and inside and where ~= "gc" then
      local j = some_job()
      if j and not j.done then
        local ok, err = pcall(j.await, j, 0.01)
        check(not ok and tostring(err):find("cannot wait from inside client:step", 1, true),
          "await inside a step (%s) was not refused: %s", where, show(err))
      end
    elseif a == 8 then error("fuzz: raised in " .. where)
    elseif a == 9 then collectgarbage()
    elseif a == 10 then interrupt()
    elseif a == 11 then
      -- numbers that are no handle, no number of seconds: nothing found, nothing undefined
      if not c._closed then
        for _, h in ipairs({ 0 / 0, math.huge, -1, 0.5 }) do check(not c._engine:cancel(h), "handle %s found", h) end
      end
      if not inside then for _, t in ipairs({ 0 / 0, -1, -math.huge }) do pcall(c.step, c, t) end end
    elseif a == 12 then
      -- a finaliser that acts when the collector gets to it, wherever that is
      local _ = finaliser(function() pcall(act, "gc") end)
    end
  end

  local function on_interval(_, _, job)
    depth = depth + 1
    local ok, err = pcall(act, "interval", job)
    depth = depth - 1
    if not ok then error(err, 0) end -- a raise in poll_interval: the step raises it
    local v = INTERVALS[byte() % #INTERVALS + 1]
    if v == "x" then return "not a number" end
    return v
  end

  local function on_log(_, event)
    if event == "submit" then return end -- logged from submit itself, outside any step
    depth = depth + 1
    local ok, err = pcall(act, "log")
    depth = depth - 1
    if not ok then error(err, 0) end -- swallowed by the client (a hook that raises is ignored)
  end

  local mode = byte() % 4
  local opts = { base_url = mock(), api_key = "fuzz-key-0123456789", rate = false, retries = 2, timeout = 2,
    poll_interval = on_interval, log = on_log }
  if mode == 3 then
    opts.wait = function()
      local ok, err = pcall(act, "wait")
      if not ok then error(err, 0) end
      coroutine.yield()
    end
  end
  c = modkie.new(opts)
  engine_step = c._engine.step
  for _ = 1, byte() % 4 + 1 do
    local deadline = DEADLINES[byte() % #DEADLINES + 1]
    local j = c:submit(KLING, { prompt = PROMPTS[byte() % #PROMPTS + 1] }, { deadline = deadline, validate = false })
    jobs[#jobs + 1] = assert(j)
  end
  for _ = 1, byte() % 3 do local _ = finaliser(function() pcall(act, "gc") end) end

  local give_up = socket.gettime() + 1.2
  local function all_done()
    for _, j in ipairs(jobs) do if not j.done then return false end end
    return true
  end
  local function guarded(fn, ...)
    local ok, err = pcall(fn, ...)
    if not ok then
      check(allowed(err), "raised out of the client: %s", show(err))
      -- a caller slow to go on after its Ctrl-C: deadlines pass meanwhile
      if byte() % 2 == 1 then socket.sleep(0.35) end
    end
    return ok
  end
  local function check_engine()
    if c._closed then return end
    local s = c:stats()
    local known = #c.scheduler:ops_list()
    check(s.timers <= 2 * s.live, "%d timers for %d live ops", s.timers, s.live)
    check(s.live <= known, "the engine holds %d ops, the client knows %d", s.live, known)
  end

  local driver = coroutine.create(function()
    while not all_done() and not c._closed and socket.gettime() < give_up do
      if mode == 0 then
        local j = some_job()
        if j then guarded(j.await, j, 0.1) end
      elseif mode == 1 then
        guarded(c.step, c, 0.05)
      elseif mode == 2 then
        guarded(c.run, c, function()
          for _, j in ipairs(jobs) do c:go(function() pcall(j.await, j, 0.3) end) end
        end)
      else
        local j = some_job()
        if j then guarded(j.await, j, 0.2) end
      end
      check_engine()
    end
  end)
  while coroutine.status(driver) == "suspended" and socket.gettime() < give_up + 1 do
    local ok, err = coroutine.resume(driver)
    if not ok then error(err, 0) end
  end
  debug.sethook(driver) -- a Ctrl-C armed and never fired

  for i, j in ipairs(jobs) do
    check(STATES[j.state], "job %d in state %s", i, show(j.state))
    if j.done and j.error then
      check(KINDS[j.error.kind], "job %d ended with kind %s", i, show(j.error.kind))
    elseif j.done and j.state == "success" then
      check(type(j.result) == "table", "job %d succeeded without a result", i)
    end
  end
  check_engine()
  c:close()
  check(c._engine:closed(), "close left the engine open")
  check(c:step(0) == 0, "a closed client has work")
  -- a client dropped without close is collected (its engine's __gc frees it)
  c, jobs = nil, {}
  collectgarbage()
  collectgarbage()
end

-- The fault suite: the real client against an emulator that misbehaves
-- (modkie mock --faults, see lua/modkie/mock/faults.lua). It checks what a
-- user running jobs unattended relies on:
--   * every job ends, with a result or a returned error of a documented kind,
--     and no Lua error escapes;
--   * no task is created twice (the emulator counts creates per prompt);
--   * retries carry at least 95% of the jobs through 20% faulty polls and
--     10% faulty creates;
--   * memory is flat across a second identical round, the engine drops every
--     operation (stats().live back to 0);
--   * jobs in flight survive the gateway going away for 10 s (stopped, then
--     restarted on the same port with --state).
-- The figures are printed so they can go in the issue note.
local helper = require "spec.helper"
local modkie = require "modkie"
local Error = require "modkie.error"

local KLING = "kling/kling-3-0"
local JOBS = 500
-- A seed whose first 500 create draws and 1200 poll draws hold every kind
-- (so the mix below really is all kinds), found by drawing from the
-- emulator's fault plan (modkie.rng) offline; any other seed is as valid,
-- maybe less mixed.
local SEED = "20261357"

-- 20% of polls and 10% of creates, every kind in the mix. Weights where a
-- fault is not retried by design: a create fault after the task exists is
-- `ambiguous` (2% in all), an oversized poll answer is `protocol` (0.3%).
local POLL_FAULTS = "poll=500:0.03,502:0.025,503:0.025,455:0.02,429:0.02,reset:0.02,stall:0.01,"
  .. "cut:0.02,badjson:0.015,html:0.012,huge:0.003"
local CREATE_FAULTS = "create=429:0.05,455:0.03,500:0.0025,502:0.0025,503:0.0025,reset:0.0025,"
  .. "stall:0.002,cut:0.0025,badjson:0.002,html:0.002,huge:0.0015"

-- A client timeout shorter than the stall, so a stall is a timeout; long
-- enough that a busy machine does not turn slow creates into ambiguous ones
-- (500 creates at once queue at the emulator: under the sanitizers, beside
-- other suites on two CPUs, the last answers came after more than 3 s).
local CLIENT = { timeout = 8, poll_interval = 0.2, deadline = 60 }
local STALL_SECONDS = "10"
-- Without a burst of 500 creates a shorter timeout is safe, and quicker; not
-- 1 s: an oversized answer (8 MiB and more) took longer than that to arrive
-- under the sanitizers on a busy machine, a timeout (retried) and not the cap.
local QUICK_CLIENT = { timeout = 3, poll_interval = 0.2, deadline = 60 }
local QUICK_STALL_SECONDS = "4"

-- Error kinds a job may end with here: documented, and not the caller's
-- own doing (timeout, cancelled) nor a setup mistake (config, auth, validation).
local JOB_KINDS = {}
for kind in pairs(Error.kinds) do JOB_KINDS[kind] = true end
for _, kind in ipairs { "timeout", "cancelled", "config", "auth", "validation" } do JOB_KINDS[kind] = nil end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

local function format_counts(t)
  local parts = {}
  for _, k in ipairs(sorted_keys(t)) do parts[#parts + 1] = ("%s=%d"):format(k, t[k]) end
  return #parts > 0 and table.concat(parts, " ") or "none"
end

local function sum(t)
  local n = 0
  for _, v in pairs(t) do n = n + v end
  return n
end

-- Check the jobs' outcomes against what the emulator saw. Returns a small
-- table of figures (no job objects, no emulator tables: memory is measured).
local function judge(jobs, prompts, results, errs, stats)
  local f = { jobs = #jobs, succeeded = 0, errors = {}, undocumented = {}, accepted = 0,
    ambiguous_created = 0, ambiguous_timeouts = 0, duplicates = 0, unseen = 0 }
  local by_prompt = stats.submits_by_prompt
  for i = 1, #jobs do
    local res, err = results[i], errs[i]
    if jobs[i].id then f.accepted = f.accepted + 1 end
    if res then
      f.succeeded = f.succeeded + 1
      assert.are.equal("success", res.state)
      assert.are.equal(jobs[i].id, res.id)
      assert.are.equal(1, #res.urls)
    elseif not (Error.is(err) and JOB_KINDS[err.kind]) then
      f.undocumented[#f.undocumented + 1] = tostring(err)
    else
      f.errors[err.kind] = (f.errors[err.kind] or 0) + 1
      if err.kind == "ambiguous" and by_prompt[prompts[i]] then
        f.ambiguous_created = f.ambiguous_created + 1
      end
      if err.kind == "ambiguous" and err.message:lower():find("timed out", 1, true) then
        f.ambiguous_timeouts = f.ambiguous_timeouts + 1
      end
    end
    -- an accepted job's task exists exactly once
    if jobs[i].id and by_prompt[prompts[i]] ~= 1 then f.unseen = f.unseen + 1 end
  end
  for _, n in pairs(by_prompt) do
    if n > 1 then f.duplicates = f.duplicates + (n - 1) end
  end
  f.tasks, f.polls, f.creates = stats.tasks, stats.polls, stats.create_requests
  f.faults = { create = {}, poll = {} }
  for endpoint, kinds in pairs(f.faults) do
    for k, n in pairs(stats.faults[endpoint] or {}) do kinds[k] = n end
  end
  return f
end

local function report(title, f)
  print(("\n[fault suite] %s%s"):format(title, f.seconds and (" (%.1f s)"):format(f.seconds) or ""))
  print(("  jobs %d, succeeded %d (%.1f%%), errors: %s"):format(f.jobs, f.succeeded,
    100 * f.succeeded / f.jobs, format_counts(f.errors)))
  print(("  faults injected: create %d of %d (%s)"):format(sum(f.faults.create), f.creates,
    format_counts(f.faults.create)))
  print(("                   poll %d of %d (%s)"):format(sum(f.faults.poll), f.polls, format_counts(f.faults.poll)))
  print(("  tasks created %d = accepted %d + ambiguous but created %d; duplicates %d; creates timed out %d"):format(
    f.tasks, f.accepted, f.ambiguous_created, f.duplicates, f.ambiguous_timeouts))
end

-- Submit `n` jobs through `client`, wait for all; returns the figures.
-- Everything runs inside pcall: a Lua error from the client fails the test.
local function run_round(client, m, n, tag)
  local figures
  local t0 = helper.now()
  local ok, err = pcall(function()
    local jobs, prompts = {}, {}
    for i = 1, n do
      prompts[i] = ("fault suite %s job %d"):format(tag, i)
      jobs[i] = assert(client:submit(KLING, { prompt = prompts[i] }))
    end
    local results, errs = modkie.await_all(jobs, 300)
    figures = judge(jobs, prompts, results, errs, m.stats())
    figures.seconds = helper.now() - t0
  end)
  assert(ok, "a Lua error escaped: " .. tostring(err))
  return figures
end

local function check_round(f)
  assert.are.same({}, f.undocumented)
  assert.are.equal(0, f.duplicates)
  assert.are.equal(0, f.unseen)
  assert.are.equal(f.accepted + f.ambiguous_created, f.tasks)
  -- creates a loaded machine answered after the client's timeout (beyond the
  -- stalls injected) are rightly ambiguous (below), not jobs the client failed:
  -- they count beside the successes, and they may be at most 5 % of the jobs
  -- (a fresh machine's CI run under ASan had 9 in a round of 500)
  local late = math.max(0, f.ambiguous_timeouts - (f.faults.create.stall or 0))
  assert.is_true(late <= 0.05 * f.jobs, ("%d creates timed out beyond the %d stalled"):format(late,
    f.faults.create.stall or 0))
  assert.is_true(f.succeeded + late >= 0.95 * f.jobs, ("only %d of %d jobs succeeded (and %d creates timed out "
    .. "under load)"):format(f.succeeded, f.jobs, late))
  -- the mix really happened: every kind, on both endpoints
  for _, endpoint in ipairs { "create", "poll" } do
    for _, kind in ipairs(require("modkie.mock.faults").KINDS) do
      assert.is_truthy(f.faults[endpoint][kind], ("no %s fault was injected on %s"):format(kind, endpoint))
    end
  end
  -- a create fault after the task exists is one ambiguous job: never
  -- retried. A stall is one the client's timeout ends; on a loaded machine
  -- (the sanitizers beside other suites, a fresh machine's CI run) a create
  -- answered later than the timeout is one too, rightly ambiguous: timed-out
  -- creates may outnumber the stalls, every other ambiguous job is a fault's.
  local after = 0
  for kind, count in pairs(f.faults.create) do
    if kind ~= "429" and kind ~= "455" and kind ~= "stall" then after = after + count end
  end
  assert.are.equal(after, (f.errors.ambiguous or 0) - f.ambiguous_timeouts)
  assert.is_true(f.ambiguous_timeouts >= (f.faults.create.stall or 0),
    ("%d stalled creates, %d timed out"):format(f.faults.create.stall or 0, f.ambiguous_timeouts))
end

describe("fault suite: 500 jobs, one client, 20% faulty polls and 10% faulty creates #slow", function()
  local m, client, dir, args, port, release
  local figures = {}

  setup(function()
    dir = helper.tmpdir()
    args = { "--job-seconds", "0.5", "--stall-seconds", STALL_SECONDS, "--retry-after", "1",
      "--credits", "1e12", "--state", dir .. "/state.jsonl" }
    local with_faults = { "--faults", POLL_FAULTS .. ";" .. CREATE_FAULTS, "--seed", SEED }
    for _, a in ipairs(args) do with_faults[#with_faults + 1] = a end
    -- held for the whole describe: during the outage no other process (the
    -- other Luas' runs go on at the same time) can take the stopped one's port
    port, release = helper.held_port()
    m = helper.mock_on(port, with_faults)
    client = helper.client(m, CLIENT)
  end)

  teardown(function()
    if client then client:close() end
    if m then m.stop() end
    if release then release() end
    helper.rmdir(dir)
  end)

  it("ends every job with a result or a documented error, creates no task twice, 95% succeed", function()
    local f = run_round(client, m, JOBS, "round 1")
    figures[1] = f
    report("round 1", f)
    check_round(f)
    assert.are.equal(0, client:stats().live)
  end)

  it("runs a second identical round with flat memory and no live engine operations", function()
    assert.is_truthy(figures[1], "needs round 1")
    m.request("POST", "/__mock/reset") -- same seed: the same faults again
    collectgarbage("collect")
    collectgarbage("collect")
    local before = collectgarbage("count")
    local f = run_round(client, m, JOBS, "round 1") -- the same prompts as round 1
    figures[2] = f
    collectgarbage("collect")
    collectgarbage("collect")
    local after = collectgarbage("count")
    report("round 2 (identical)", f)
    print(("  Lua memory before %.0f KiB, after %.0f KiB (%+.0f KiB); engine live ops %d"):format(
      before, after, after - before, client:stats().live))
    check_round(f)
    assert.are.equal(0, client:stats().live)
    assert.is_true(after - before < 256, ("Lua memory grew by %.0f KiB across a round"):format(after - before))
  end)

  it("carries jobs in flight through a 10 s outage (emulator stopped, restarted with --state)", function()
    m.request("POST", "/__mock/reset")
    local n = 100
    local jobs, prompts = {}, {}
    local ok, err = pcall(function()
      for i = 1, n do
        -- lengths from 2 to 12 s: some end while the gateway is away, some after
        prompts[i] = ("outage job %d [seconds=%d]"):format(i, 2 + (i % 11))
        -- room for the poll backoff (capped at 30 s) to wait out the outage
        jobs[i] = assert(client:submit(KLING, { prompt = prompts[i] }, { deadline = 120 }))
      end
      -- mid-run: every create answered, the jobs polling
      local function settled()
        for _, job in ipairs(jobs) do
          if not (job.id or job.done) then return false end
        end
        return true
      end
      local give_up = helper.now() + 60
      while not settled() and helper.now() < give_up do client:step(0.05) end
      assert.is_true(settled(), "the creates did not settle")
    end)
    assert(ok, "a Lua error escaped: " .. tostring(err))

    local in_flight = {}
    for i, job in ipairs(jobs) do
      if job.id and not job.done then in_flight[#in_flight + 1] = i end
    end
    m.stop()
    -- the client keeps working against a closed port for 10 s
    local back_at = helper.now() + 10
    ok, err = pcall(function()
      while helper.now() < back_at do client:step(0.1) end
    end)
    assert(ok, "a Lua error escaped during the outage: " .. tostring(err))
    -- a success answer on its way at the stop may still end its job; the
    -- outage itself must end none
    local ended_during, ended_badly = 0, {}
    for _, i in ipairs(in_flight) do
      if jobs[i].done then
        ended_during = ended_during + 1
        if jobs[i].state ~= "success" then ended_badly[#ended_badly + 1] = i .. ": " .. tostring(jobs[i].state) end
      end
    end
    -- back with its state, without faults: what is measured is the outage
    m = helper.mock_on(port, args)

    local results, errs
    local restarted = helper.now()
    ok, err = pcall(function() results, errs = modkie.await_all(jobs, 300) end)
    local recovery = helper.now() - restarted
    assert(ok, "a Lua error escaped: " .. tostring(err))
    local stats = m.stats()
    local f = judge(jobs, prompts, results, errs, stats)
    report("outage: stopped 10 s mid-run", f)
    local carried, lost = 0, {}
    for _, i in ipairs(in_flight) do
      if results[i] then carried = carried + 1 else lost[#lost + 1] = tostring(errs[i]) end
    end
    print(("  in flight at the stop %d, ended during the outage %d, succeeded after it %d"):format(
      #in_flight, ended_during, carried))
    print(("  all done %.1f s after the restart (poll backoff is capped at 30 s)"):format(recovery))
    -- most of them (on a slow machine the 2 s jobs may end before the last create is answered)
    assert.is_true(#in_flight > 0.5 * n, "the outage did not hit jobs in flight")
    assert.are.same({}, ended_badly)
    assert.are.same({}, lost)
    assert.are.same({}, f.undocumented)
    assert.are.equal(0, f.duplicates)
    assert.are.equal(0, f.unseen)
    assert.are.equal(f.accepted + f.ambiguous_created, f.tasks)
    assert.are.equal(0, client:stats().live)
  end)
end)

describe("fault suite: each fault kind alone, through the client", function()
  local m, client

  setup(function()
    -- Retry-After 0: the client retries at once, the kinds run quickly
    m = helper.mock { "--job-seconds", "0.3", "--stall-seconds", QUICK_STALL_SECONDS, "--retry-after", "0" }
    client = helper.client(m, QUICK_CLIENT)
  end)

  teardown(function()
    if client then client:close() end
    if m then m.stop() end
  end)

  -- Submit one job per prompt (all at once), wait for all: for each prompt
  -- { res, err, created = how many tasks the emulator made for it }.
  local function outcomes(prompts)
    local jobs = {}
    for i, p in ipairs(prompts) do
      local input = type(p) == "table" and p or { prompt = p }
      jobs[i] = assert(client:submit(KLING, input))
    end
    local results, errs = modkie.await_all(jobs, 60)
    local by_prompt = m.stats().submits_by_prompt
    local out = {}
    for i, p in ipairs(prompts) do
      out[i] = { res = results[i], err = errs[i], created = by_prompt[type(p) == "table" and p.prompt or p] }
    end
    return out
  end

  it("retries a create refused with 429 or 455: success, created once", function()
    local prompts = {}
    for i, kind in ipairs { "429", "455" } do prompts[i] = ("create %s [fault=create:%sx2]"):format(kind, kind) end
    for i, o in ipairs(outcomes(prompts)) do
      assert.is_truthy(o.res, prompts[i] .. ": " .. tostring(o.err))
      assert.are.equal(1, o.created, prompts[i])
    end
  end)

  it("never retries a create that failed after the task existed: ambiguous, created once", function()
    -- one at a time, so each create goes on a kept-alive connection, as most do
    for _, kind in ipairs { "500", "502", "503", "reset", "stall", "cut", "badjson", "html", "huge" } do
      local prompt = ("create %s [fault=create:%s]"):format(kind, kind)
      local o = outcomes({ prompt })[1]
      assert.is_nil(o.res, prompt .. ": reported success")
      assert.are.equal("ambiguous", o.err.kind, prompt .. ": " .. tostring(o.err))
      assert.are.equal(1, o.created, prompt .. ": the task was created " .. tostring(o.created) .. " times")
    end
  end)

  it("gives an ambiguous create's error the model and the input", function()
    local input = { prompt = "keep my input [fault=create:502]", aspect_ratio = "9:16", duration = 5 }
    local o = outcomes({ input })[1]
    assert.is_nil(o.res)
    assert.are.equal("ambiguous", o.err.kind)
    assert.are.equal(KLING, o.err.model)
    assert.are.same(input, o.err.input)
    assert.is_truthy(tostring(o.err):find("ambiguous", 1, true))
  end)

  it("rides out every poll fault but an oversized answer", function()
    local prompts = {}
    for i, kind in ipairs { "500", "502", "503", "455", "429", "reset", "stall", "cut", "badjson", "html" } do
      prompts[i] = ("poll %s [fault=poll:%sx2]"):format(kind, kind)
    end
    prompts[#prompts + 1] = "poll huge [fault=poll:huge]"
    local out = outcomes(prompts)
    for i = 1, #prompts - 1 do
      assert.is_truthy(out[i].res, prompts[i] .. ": " .. tostring(out[i].err))
      assert.are.equal(1, out[i].created)
    end
    -- over the 8 MiB cap: a protocol error, by design not retried
    assert.is_nil(out[#out].res)
    assert.are.equal("protocol", out[#out].err.kind)
  end)

  it("answers credits, download links and downloads under faults with a value or a documented error", function()
    local fm = helper.mock { "--job-seconds", "0", "--stall-seconds", QUICK_STALL_SECONDS, "--seed", SEED,
      "--retry-after", "0", "--faults", "credits=all:0.2;download_url=all:0.2;files=all:0.2",
      "--huge-bytes", "100000" }
    local c = helper.client(fm, QUICK_CLIENT)
    local dir = helper.tmpdir()
    local ok, err = pcall(function()
      local got = { credits = 0, links = 0, files = 0 }
      local errors = {}
      local function note(e)
        assert.is_true(Error.is(e) and JOB_KINDS[e.kind] ~= nil, tostring(e))
        errors[e.kind] = (errors[e.kind] or 0) + 1
      end
      for _ = 1, 10 do
        local n, e = c:credits()
        if n then assert.is_number(n); got.credits = got.credits + 1 else note(e) end
      end
      local job = assert(c:submit(KLING, { prompt = "files under faults [outputs=5]" }))
      local res = assert(job:await(30))
      for _, url in ipairs(res.urls) do
        local link, e = c:download_url(url)
        if link then assert.is_truthy(link:find(url, 1, true)); got.links = got.links + 1 else note(e) end
      end
      for i = 1, 4 do
        local paths, e = job:download(dir .. "/" .. i)
        if paths then got.files = got.files + #paths else note(e) end
      end
      print(("\n[fault suite] one-off calls under 20%% faults: credits %d/10, links %d/5, files %d/20; errors: %s")
        :format(got.credits, got.links, got.files, format_counts(errors)))
      assert.is_true(got.credits > 0 and got.links > 0 and got.files > 0)
      assert.are.equal(0, c:stats().live)
    end)
    c:close()
    fm.stop()
    helper.rmdir(dir)
    assert(ok, tostring(err))
  end)
end)

describe("fault suite: client bug reproductions", function()
  -- libcurl re-sends a request whose reused keep-alive connection died
  -- before any byte of the answer came back, POSTs included: a createTask
  -- the gateway processed, then lost the connection of, was sent again and
  -- the task created twice. Found by this suite; fixed in 163f7f7 (createTask
  -- gets a connection of its own). Kept as a regression test.
  it("regression: a createTask reset on a reused connection is not re-sent (no second task)", function()
    local m = helper.mock { "--job-seconds", "0" }
    local client = helper.client(m, { timeout = 5 })
    local prompt = "reset once [fault=create:reset]"
    local created
    local ok, err = pcall(function()
      assert(assert(client:submit(KLING, { prompt = "warm the connection up" })):await(10))
      local res, jerr = assert(client:submit(KLING, { prompt = prompt })):await(10)
      created = m.stats().submits_by_prompt[prompt]
      assert.is_nil(res, "createTask was retried after a reset and reported success")
      assert.are.equal("ambiguous", jerr.kind)
    end)
    client:close()
    m.stop()
    assert.are.equal(1, created, "the task was created " .. tostring(created) .. " times")
    assert(ok, tostring(err))
  end)

  -- A job's polls retry transient errors (5xx, 429, 455, network) until its
  -- deadline, and garbled answers `retries` times. But one attempt counter
  -- serves both: after `retries` transient errors in a row (an outage, a
  -- maintenance window), the first garbled answer ends the job with
  -- `protocol` at once, though the task runs fine on the gateway.
  it("regression: one garbled poll answer after `retries` transient errors does not end the job", function()
    local m = helper.mock { "--job-seconds", "0", "--retry-after", "0" }
    local client = helper.client(m, { timeout = 5, retries = 4 })
    local res, err
    local ok, lerr = pcall(function()
      -- 4 transient answers (= retries), then one invalid JSON, then fine
      local job = assert(client:submit(KLING, { prompt = "garbled after transient [fault=poll:503x4,poll:badjson]" }))
      res, err = job:await(30)
    end)
    client:close()
    m.stop()
    assert(ok, tostring(lerr))
    assert.is_truthy(res, "the job ended with: " .. tostring(err))
  end)
end)

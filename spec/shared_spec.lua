-- One account, several processes: rate.shared keeps the account's windows in
-- a store every client sees (a file on one host, Redis for several), and
-- carries on with local windows while the store is away. Each process is a
-- real client (spec/support/rate_worker.lua); the emulator enforces the
-- account's limits across all of them (--limits) and logs the time of every
-- request its limits counted, from which the windows are checked.
--
-- Creates are scaled 4x on both sides, so a run takes ~30 s instead of
-- ~2 min: 20 creates per 2.5 s (the gateway: per 10 s). Polls keep the
-- gateway's window, 10 per 1 s (each job is polled once a second): at a
-- window of a quarter second the margin a client keeps (~50 ms) is less than
-- a loaded test machine delays a process now and then, and the emulator
-- would stamp two windows' polls together. For the same reason the clients'
-- windows are 10 % longer than the emulator's (the emulator, one Lua
-- process, may take a few hundred ms to read a burst of 20 new connections).
-- Clients that did not share would still send 4x the limits at once. Tagged
-- #shared: `make test` runs them; `make test-all` beside the other Luas' specs.
local helper = require "spec.helper"
local redis = require "spec.redis"
local windows = require "spec.support.windows"
local cjson = require "cjson"
local socket = require "socket"

local LUA = os.getenv("MODKIE_TEST_LUA") or "lua5.4"
local CREATE, POLL = { 20, 2.5 }, { 10, 1 }
local LIMITS = ("create=%d/%g,poll=%d/%g"):format(CREATE[1], CREATE[2], POLL[1], POLL[2])
local SLACK = 1.1 -- the clients' windows, to the emulator's
local PROCESSES, JOBS = 4, 50

-- Start `n` worker processes at once; returns a function that waits for
-- them and returns their reports.
local function start_workers(m, n, jobs, store, clients)
  local pipes = {}
  for i = 1, n do
    local cmd = ("exec %s spec/support/rate_worker.lua %s %d %d/%g %d/%g %s %s 1 p%d 2>&1"):format(
      LUA, m.url, jobs, CREATE[1], CREATE[2] * SLACK, POLL[1], POLL[2] * SLACK, helper.shell_quote(store),
      clients or "-", i)
    pipes[i] = assert(io.popen(cmd, "r"))
  end
  return function()
    local reports = {}
    for i, p in ipairs(pipes) do
      local text = p:read("*a")
      p:close()
      local ok, report = pcall(cjson.decode, text:match("([^\n]*)\n?$"))
      assert(ok and type(report) == "table", "worker " .. i .. " said: " .. text)
      reports[i] = report
    end
    return reports
  end
end

-- What every run must show: every job done once, no 429, and never more
-- than the limit in any window, as the emulator saw the requests arrive.
local function check_run(m, reports, n, jobs)
  for i, r in ipairs(reports) do
    assert.same({}, r.errors, "worker " .. i)
    assert.equal(jobs, r.ok, "worker " .. i)
  end
  local stats = m.stats()
  local creates, _, create_refused = windows.arrivals(m, "create")
  local polls, _, poll_refused = windows.arrivals(m, "record")
  local most_creates, most_polls = windows.busiest(creates, CREATE[2]), windows.busiest(polls, POLL[2])
  local outages, local_grants = 0, 0
  for _, r in ipairs(reports) do
    outages, local_grants = outages + (r.store_outages or 0), local_grants + (r.local_grants or 0)
  end
  local seen = ("%d creates refused, %d polls refused; busiest windows %d creates, %d polls; store outages %d, "
    .. "local grants %d"):format(create_refused, poll_refused, most_creates, most_polls, outages, local_grants)
  assert.equal(0, stats.rate_limited, "answered 429: " .. seen)
  assert.equal(n * jobs, stats.creates, "a job was submitted twice, or lost")
  for prompt, count in pairs(stats.submits_by_prompt) do assert.equal(1, count, prompt) end
  assert.equal(n * jobs, #creates)
  assert.is_true(most_creates <= CREATE[1], most_creates .. " creates in one window")
  assert.is_true(most_polls <= POLL[1], most_polls .. " polls in one window")
  return most_creates, most_polls, #polls
end

local function total(reports, field)
  local sum = 0
  for _, r in ipairs(reports) do sum = sum + (r[field] or 0) end
  return sum
end

describe("an account's windows shared by processes #shared", function()
  local m, dir

  before_each(function()
    m = helper.mock({ "--job-seconds", "1", "--limits", LIMITS })
    dir = helper.tmpdir()
  end)

  after_each(function()
    m.stop()
    helper.rmdir(dir)
  end)

  it("4 processes with a file store: 0 answered 429, never more than the limits in any window", function()
    local t0 = socket.gettime()
    local reports = start_workers(m, PROCESSES, JOBS, "file:" .. dir .. "/windows")()
    local most_creates, most_polls, polls = check_run(m, reports, PROCESSES, JOBS)
    for _, r in ipairs(reports) do
      assert.equal("shared", r.store)
      assert.equal(0, r.local_grants)
    end
    print(("\n[shared] file: %d jobs in %.1f s, busiest windows %d creates / %d polls, %d polls"):format(
      PROCESSES * JOBS, socket.gettime() - t0, most_creates, most_polls, polls))
  end)

  describe("with Redis", function()
    local r
    before_each(function() r = redis.start() end)
    after_each(function() r.stop() end)

    it("4 processes: 0 answered 429, never more than the limits in any window", function()
      local reports = start_workers(m, PROCESSES, JOBS, r.url(3))()
      check_run(m, reports, PROCESSES, JOBS)
      for _, rep in ipairs(reports) do assert.equal(0, rep.local_grants) end
    end)

    it("killed mid-run and started again: no job lost, no error, no 429", function()
      local wait = start_workers(m, PROCESSES, JOBS, r.url(3), PROCESSES)
      -- once the run is well under way
      for _ = 1, 500 do
        if m.stats().creates >= 40 then break end
        socket.sleep(0.02)
      end
      r.kill9()
      socket.sleep(2)
      r.start()
      local reports = wait()
      check_run(m, reports, PROCESSES, JOBS)
      for i, rep in ipairs(reports) do
        assert.same({ "away", "back" }, rep.store_events, "worker " .. i)
        assert.equal("shared", rep.store)
      end
      assert.is_true(total(reports, "local_grants") > 0, "the processes carried on without the store")
    end)
  end)

  it("carries on at 1/N while a file store cannot be reached, and uses it once it can", function()
    -- the folder does not exist yet: the store is away from the start
    local path = dir .. "/later/windows"
    local wait = start_workers(m, 2, 20, "file:" .. path, 2)
    for _ = 1, 500 do
      if m.stats().creates >= 10 then break end
      socket.sleep(0.02)
    end
    assert(os.execute("mkdir -p " .. helper.shell_quote(dir .. "/later")))
    local reports = wait()
    check_run(m, reports, 2, 20)
    for i, rep in ipairs(reports) do
      assert.same({ "away", "back" }, rep.store_events, "worker " .. i)
      assert.is_true(rep.local_grants > 0, "worker " .. i)
      assert.is_true(rep.store_grants > 0, "worker " .. i)
    end
    assert.truthy(helper.read_file(path), "the store's file")
  end)
end)

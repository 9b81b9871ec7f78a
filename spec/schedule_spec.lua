-- The learning polling schedule (poll_interval = "learn") and the job handed
-- to a poll_interval function.
local helper = require "spec.helper"
local schedule = require "modkie.schedule"

describe("modkie.schedule", function()
  it("polls on the recommended schedule until it knows five durations of the model", function()
    local l = schedule.learner()
    for _ = 1, 4 do l:record("m", 200) end
    local wait = l:interval(10, 1, "m")
    assert.is_true(wait >= 2 and wait <= 3)
    l:record("m", 200)
    assert.near(0.9 * 200 - 10, l:interval(10, 1, "m"), 1e-9)
  end)

  it("keeps one early poll, and the recommended schedule once the usual time has passed", function()
    local l = schedule.learner({ m = { 100, 110, 120, 130, 140, 150 } })
    local early = l:interval(0, 0, "m")
    assert.is_true(early >= 2 and early <= 3, "the first poll catches a job that fails at once")
    assert.near(90 - 3, l:interval(3, 1, "m"), 1e-9)
    local late = l:interval(95, 2, "m")
    assert.is_true(late >= 5 and late <= 10)
    local other = l:interval(10, 1, "another/model")
    assert.is_true(other >= 2 and other <= 3)
  end)

  it("uses the 5th percentile of the last 100 durations, and ignores nonsense", function()
    local l = schedule.learner()
    for i = 1, 150 do l:record("m", i) end -- keeps 51..150
    l:record("m", -1)
    l:record("m", 0 / 0)
    l:record(nil, 5)
    assert.equal(100, #l:history().m)
    assert.near(0.9 * 55 - 1, l:interval(1, 1, "m"), 1e-9) -- the 5th of 51..150
  end)

  it("jitters from the client's seed, not from math.random", function()
    local function intervals(seed)
      local l, out = schedule.learner(nil, seed), {}
      for i = 1, 20 do
        math.randomseed(i) -- the process's math.random moves; the schedule does not follow it
        out[i] = l:interval(i, i, "m")
      end
      return out
    end
    local a = intervals(7)
    assert.same(a, intervals(7))
    assert.are_not.same(a, intervals(8))
    for _, w in ipairs(a) do assert.is_true(w >= 2 and w <= 3) end
  end)
end)

describe("poll_interval", function()
  local m
  setup(function() m = helper.mock({ "--job-seconds", "0.2" }) end)
  teardown(function() m.stop() end)

  it("hands a function the job as its third argument", function()
    local seen = {}
    local client = helper.client(m, { poll_interval = function(_, _, job)
      seen[#seen + 1] = job and job.meta
      return 0.02
    end })
    assert(assert(client:submit("kling/kling-3-0", { prompt = "x" }, { meta = "mine" })):await(10))
    assert.is_true(#seen >= 1)
    for _, meta in ipairs(seen) do assert.equal("mine", meta) end
    client:close()
  end)

  it("= \"learn\" learns each model's durations from the jobs that succeed", function()
    local client = helper.client(m, { poll_interval = "learn", poll_history = { ["kling/kling-3-0"] = { 0.1 } } })
    local jobs = {}
    for i = 1, 3 do jobs[i] = assert(client:submit("kling/kling-3-0", { prompt = "learn " .. i })) end
    require("modkie").await_all(jobs, 20)
    local history = client:poll_history()["kling/kling-3-0"]
    assert.equal(4, #history)
    for i = 2, 4 do assert.is_true(history[i] >= 0.15 and history[i] < 10, tostring(history[i])) end
    client:close()
  end)
end)

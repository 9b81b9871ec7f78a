-- Budget-aware polling, the default: when the account's polls are rationed,
-- each goes to the job most likely to have ended since it was last polled
-- (from what is known of its model's durations); without rationing the
-- gateway's recommended schedule; a job with a callback URL is polled only
-- as the fallback. Observed through the emulator's poll log
-- (/__mock/polls). The clients run with time_scale = 0.1 (every time of the
-- default schedule ten times shorter), so the specs stay short.
local helper = require "spec.helper"
local modkie = require "modkie"

local SCALE = 0.1
local SECRET = "whsec-budget-9Tz"

-- what a test starts is stopped when it ends, in reverse
local later, start = helper.cleanups(function(fn) finally(fn) end)

-- A client on the default schedule (no poll_interval), scaled.
local function client(m, opts)
  local o = { base_url = m.url, api_key = "test-key", time_scale = SCALE, deadline = 120 }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c = modkie.new(o)
  later(function() c:close() end)
  return c
end

-- The emulator's poll log: taskId -> { times }, and the whole list in order.
local function polls(m)
  local _, list = m.request("GET", "/__mock/polls")
  local by = {}
  for _, p in ipairs(list) do
    by[p.taskId] = by[p.taskId] or {}
    table.insert(by[p.taskId], p.t)
  end
  return by, list
end

local function history(seconds, n)
  local list = {}
  for i = 1, n or 10 do list[i] = seconds * (0.95 + 0.01 * i) end
  return list
end

describe("polling on the budget (the default)", function()
  it("keeps the gateway's recommended schedule while the polls are not rationed", function()
    local m = start { "--job-seconds", "60" }
    local c = client(m)
    local job = assert(c:submit("kling/kling-3-0", { prompt = "alone [seconds=5]" }))
    assert(job:await(30))
    local times = polls(m)[job.id]
    local created = job.result.created_at
    -- every 2-3 s for the first 30 s, then 5-10 s (scaled: 0.2-0.3 s, then 0.5-1 s); never sooner
    for i = 2, #times do
      local gap, age = times[i] - times[i - 1], times[i - 1] - created
      assert.is_true(gap >= 0.18, ("poll %d came %.3f s after the one before"):format(i, gap))
      if age > 3.1 then assert.is_true(gap >= 0.45, ("poll %d at %.2f s: %.3f s apart"):format(i, age, gap)) end
    end
    assert.is_true(#times <= 20, #times .. " polls for a 5 s job")
    assert.equal(0, c:stats().ranked_polls)
  end)

  it("polls first the job past its model's usual end, while young jobs that cannot have ended wait", function()
    local m = start { "--job-seconds", "60" }
    local c = client(m, { rate = { poll = { 2, 1 } },
      poll_history = { ["acme/fast"] = history(1.0), ["acme/slow"] = history(30) } })
    local young = {}
    for i = 1, 20 do
      young[i] = assert(c:submit("acme/slow", { prompt = "young " .. i .. " [seconds=60]" }, { validate = false }))
    end
    local old = assert(c:submit("acme/fast", { prompt = "old [seconds=1]" }, { validate = false }))
    local res = assert(old:await(60))
    local noticed = helper.now()
    local ended = res.completed_at
    assert.is_true(noticed - ended < 3, ("noticed %.2f s after its end"):format(noticed - ended))
    -- the emulator's log: few polls of the young jobs between its end and its notice
    local _, list = polls(m)
    local others = 0
    for _, p in ipairs(list) do
      if p.t > ended and p.t < noticed and p.taskId ~= old.id then others = others + 1 end
    end
    assert.is_true(others <= 4, others .. " polls of young jobs went before it")
    assert.is_true(c:stats().ranked_polls > 0, "the lane chose by rank")
    for _, j in ipairs(young) do j:cancel() end
  end)

  it("still notices a job that fails at once among rationed ones", function()
    local m = start { "--job-seconds", "60" }
    local c = client(m, { rate = { submit = { 100, 1 }, poll = { 2, 1 } },
      poll_history = { ["acme/slow"] = history(10) } })
    local others = {}
    for i = 1, 20 do
      others[i] = assert(c:submit("acme/slow", { prompt = "busy " .. i .. " [seconds=10]" }, { validate = false }))
    end
    local doomed = assert(c:submit("acme/slow", { prompt = "doomed [fail] [seconds=0.2]" }, { validate = false }))
    local _, err = doomed:await(120)
    assert.equal("failed", err and err.kind)
    assert.is_true(doomed.polls >= 1)
    for _, j in ipairs(others) do j:cancel() end
  end)

  it("learns each model's durations and hands them on through poll_history", function()
    local m = start { "--job-seconds", "0.3" }
    local c = client(m)
    local jobs = {}
    for i = 1, 3 do jobs[i] = assert(c:submit("kling/kling-3-0", { prompt = "learn " .. i })) end
    modkie.await_all(jobs, 30)
    local learned = c:poll_history()["kling/kling-3-0"]
    assert.equal(3, #learned)
    for _, s in ipairs(learned) do assert.is_true(s > 0.2 and s < 5, tostring(s)) end
    local warm = client(m, { poll_history = c:poll_history() })
    assert.same(learned, warm:poll_history()["kling/kling-3-0"])
  end)
end)

describe("a job with a callback URL", function()
  it("is polled only as the fallback: once its model's usual end and a margin have passed", function()
    local m = start { "--job-seconds", "60", "--webhook-secret", SECRET }
    local c = client(m, { listen = "127.0.0.1:0", webhook = { secret = SECRET, scheme = "kie" },
      poll_history = { ["kling/kling-3-0"] = history(1.0) } })
    local called = assert(c:submit("kling/kling-3-0", { prompt = "called back [seconds=0.5]" }))
    local lost = assert(c:submit("kling/kling-3-0", { prompt = "lost [seconds=0.5] [callback=drop]" }))
    assert(called:await(30))
    local res = assert(lost:await(30))
    assert.same({ 0, 1 }, { called.polls, lost.polls })
    -- usual end 1 s (the 95th percentile), margin max(10 s, 10 %) scaled: 1 s
    local first = polls(m)[lost.id][1]
    assert.is_true(first - res.created_at >= 1.9, ("first polled %.2f s after it began"):format(first - res.created_at))
    local counts = c:stats().callbacks
    assert.same({ 1, 0 }, { counts.delivered, counts.refused })
  end)
end)

-- Audit of polling through the public API, over real sockets: poll_interval
-- functions that misbehave, records that change in odd ways, adopted tasks
-- whose records come and go. Each test is named after what it found; each
-- failed before its fix.
local helper = require "spec.helper"
local cjson = require "cjson"
local modkie = require "modkie"

local KLING = "kling/kling-3-0"
local RECORD_INFO = "/api/v1/jobs/recordInfo"

local later, start = helper.cleanups(function(fn) finally(fn) end)

local function new_client(opts)
  local c = modkie.new(opts)
  later(function() c:close() end)
  return c
end

local function record(id, state, extra)
  local data = { taskId = id, model = KLING, state = state }
  if state == "success" then
    data.resultJson = cjson.encode({ resultUrls = { "https://cdn.example/" .. id .. ".mp4" } })
  end
  for k, v in pairs(extra or {}) do data[k] = v end
  return cjson.encode({ code = 200, msg = "success", data = data })
end
local RECORD_NULL = '{"code":422,"msg":"recordInfo is null","data":null}'

describe("a poll_interval function", function()
  -- It runs inside client:step. Lua 5.4's pcall lets a yield through, so a
  -- function that yielded (await called from a plain coroutine steps the
  -- client in that coroutine) suspended the step half done: the client
  -- stayed "inside step" for ever, every later await from anywhere raised
  -- "cannot wait from inside client:step", the other jobs' events of that
  -- step were never handed out.
  it("regression: that yields is an error raised from step, and the client goes on (was wedged inside step)", function()
    local m = start({ "--job-seconds", "0.3" })
    local c = new_client({ api_key = "k", base_url = m.url, poll_interval = function(_, _, job)
      if job.meta == "yielder" then coroutine.yield("from poll_interval") end
      return 0.05
    end })
    local yielder = assert(c:submit(KLING, { prompt = "yields" }, { meta = "yielder" }))
    local other = assert(c:submit(KLING, { prompt = "bystander" }))
    local co = coroutine.create(function() return yielder:await(10) end)
    local ok, err = coroutine.resume(co)
    assert.is_false(ok, "the yield went through the step: " .. tostring(err))
    assert.matches("poll_interval", tostring(err), 1, true)
    assert.matches("must not yield", tostring(err), 1, true)
    assert.equal("dead", coroutine.status(co))
    -- the client is not left inside a step: both jobs end, awaited from the main thread
    assert(other:await(10))
    local res = assert(yielder:await(10))
    assert.equal("success", res.state)
  end)

  it("regression: a log hook that yields inside a step does not suspend the step", function()
    local m = start({ "--job-seconds", "0.2" })
    local c = new_client({ api_key = "k", base_url = m.url, poll_interval = 0.05,
      log = function(_, event) if event == "state" or event == "done" then coroutine.yield(event) end end })
    local job = assert(c:submit(KLING, { prompt = "logged" }))
    local co = coroutine.create(function() return job:await(10) end)
    local ok, res = coroutine.resume(co)
    assert.is_true(ok, tostring(res))
    assert.equal("dead", coroutine.status(co), "the log hook's yield suspended the step")
    assert.equal("success", res.state)
    assert(assert(c:submit(KLING, { prompt = "after" })):await(10))
  end)
end)

describe("a record that was seen", function()
  -- record_grace is for a record not shown yet right after createTask. It
  -- was counted from the acceptance only: a job running longer than
  -- record_grace (60 s by default) whose poll was answered "recordInfo is
  -- null" once (a replica behind, a glitch) ended not_found at once, and
  -- stopped being polled, while the task ran on and was billed.
  it("regression: then missing once, after record_grace, is polled on (was not_found at once)", function()
    local m = start({ "--job-seconds", "60" })
    local id = "task_vanishes_once"
    local running = record(id, "generating")
    local answers = {}
    for i = 1, 8 do answers[i] = running end -- 8 polls 0.1 s apart: past the 0.3 s grace
    answers[#answers + 1] = RECORD_NULL
    answers[#answers + 1] = record(id, "success")
    m.replay(RECORD_INFO, id, answers)
    local c = new_client({ api_key = "k", base_url = m.url, poll_interval = 0.1, record_grace = 0.3 })
    local job = c:job(id, { model = KLING })
    local res, err = job:await(20)
    assert.is_nil(err and tostring(err))
    assert.equal("success", res.state)
    assert.equal(10, job.polls)
  end)

  it("then missing for good ends not_found record_grace after it was last seen, not never", function()
    local m = start({ "--job-seconds", "60" })
    local id = "task_vanishes"
    m.replay(RECORD_INFO, id, { record(id, "generating"), record(id, "generating"), RECORD_NULL })
    local c = new_client({ api_key = "k", base_url = m.url, poll_interval = 0.1, record_grace = 0.5, deadline = 60 })
    local job = c:job(id, { model = KLING })
    local res, err = job:await(30) -- generous: it ends about 0.7 s in
    assert.is_nil(res)
    assert.equal("not_found", err.kind)
    assert.matches(id, err.message, 1, true)
  end)
end)

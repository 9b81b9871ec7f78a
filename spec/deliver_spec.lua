-- Callbacks first: client:deliver ends the job a signed callback names, with
-- the callback's record read as a poll's would be, wakes its awaiters and
-- says what to answer; forged, repeated and late callbacks are refused or
-- change nothing, and are counted. Then the built-in listener
-- (listen = "host:port") with the emulator's real, signed callbacks.
local helper = require "spec.helper"
local cjson = require "cjson"
local socket = require "socket"
local modkie = require "modkie"
local webhook = require "modkie.webhook"

local SECRET = "whsec-deliver-3Kd"
local KLING = "kling/kling-3-0"

-- what a test starts is stopped when it ends, in reverse
local later, start = helper.cleanups(function(fn) finally(fn) end)

local function client(m, opts)
  local o = { webhook = { secret = SECRET, scheme = "kie" } }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c = helper.client(m, o)
  later(function() c:close() end)
  return c
end

-- A client on the default schedule (no helper defaults): polls are the fallback for callbacks.
local function default_client(m, opts)
  local o = { base_url = m.url, api_key = "test-key" }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c = modkie.new(o)
  later(function() c:close() end)
  return c
end

-- A Kie callback body for task `id` (the market callbacks' shape), and its signed headers.
local function kie_callback(id, fields)
  local data = { taskId = id, model = KLING, state = "success", createTime = 1700000000000,
    completeTime = 1700000012000, costTime = 12, consumeCredits = 35,
    resultJson = cjson.encode({ resultUrls = { "https://cdn.example/" .. id .. ".mp4" } }) }
  for k, v in pairs(fields or {}) do data[k] = v end
  local code = data.state == "fail" and 501 or 200
  local body = cjson.encode({ code = code, msg = code == 200 and "Playground task completed successfully."
    or "Playground task failed.", data = data })
  return webhook.sign { scheme = "kie", body = body, secret = SECRET }, body
end

local function running_job(c, prompt)
  local job = assert(c:submit(KLING, { prompt = prompt or "a long one [seconds=60]" }))
  assert(job:accepted(20))
  return job
end

describe("client:deliver", function()
  it("ends the job with the callback's record, wakes its awaiter, and answers 200", function()
    local m = start { "--job-seconds", "60" }
    local c = client(m, { poll_interval = 30 })
    local job = running_job(c)
    local got
    c:go(function() got = { job:await() } end)
    c:step(0)
    local headers, body = kie_callback(job.id)
    assert.equal(200, c:deliver(headers, body))
    c:step(0) -- the awaiter runs on the next step
    local res = assert(got[1], tostring(got[2]))
    assert.equal("success", job.state)
    assert.same({ job.id, { "https://cdn.example/" .. job.id .. ".mp4" }, 35, 12 },
      { res.id, res.urls, res.credits, res.cost_time })
    -- the same body read by the poll path's reader gives the same result
    local same = assert(require("modkie.record").read(cjson.decode(body), job))
    assert.same(same.urls, res.urls)
    assert.equal(0, job.polls)
    assert.equal(1, c:stats().callbacks.delivered)
  end)

  it("ends a failed job with the record's failCode and failMsg (Kie's 501 envelope)", function()
    local m = start { "--job-seconds", "60" }
    local c = client(m, { poll_interval = 30 })
    local job = running_job(c)
    local headers, body = kie_callback(job.id, { state = "fail", failCode = "500", failMsg = "Internal server error",
      resultJson = cjson.null })
    assert.equal(200, c:deliver(headers, body))
    local _, err = job:await(1)
    assert.same({ "failed", 500, "Internal server error", job.id }, { err.kind, err.code, err.message, err.task_id })
  end)

  it("refuses a forged, unsigned or stale callback with 401 and changes nothing", function()
    local m = start { "--job-seconds", "60" }
    local logged = {}
    local c = client(m, { poll_interval = 30, log = function(_, event, f)
      if event == "callback" then logged[#logged + 1] = f end
    end })
    local job = running_job(c)
    local _, body = kie_callback(job.id)
    local forged = webhook.sign { scheme = "kie", body = body, secret = "not-the-secret" }
    assert.equal(401, c:deliver(forged, body))
    assert.equal(401, c:deliver({}, body))
    local stale = webhook.sign { scheme = "kie", body = body, secret = SECRET, timestamp = os.time() - 3600 }
    assert.equal(401, c:deliver(stale, body))
    -- the modkie scheme's header when the client pins kie: refused, not checked the other way
    assert.equal(401, c:deliver(webhook.sign { scheme = "modkie", body = body, secret = SECRET }, body))
    assert.is_false(job.done)
    assert.equal(4, c:stats().callbacks.refused)
    assert.equal(0, c:stats().callbacks.delivered)
    for _, f in ipairs(logged) do
      assert.equal("refused", f.outcome)
      assert.is_nil(tostring(cjson.encode(f)):find(SECRET, 1, true), "the secret must never be logged")
    end
    assert.equal("signature", logged[1].reason)
    assert.equal("stale", logged[3].reason)
  end)

  it("takes a repeated callback as a repeat and a callback after a poll ended the job as late", function()
    local m = start { "--job-seconds", "0.3" }
    local c = client(m, { poll_interval = 0.05 })
    local polled = running_job(c, "quick")
    assert(polled:await(20)) -- a poll saw it end
    local headers, body = kie_callback(polled.id)
    assert.equal(200, c:deliver(headers, body))
    local called = running_job(c, "slow [seconds=60]")
    headers, body = kie_callback(called.id)
    assert.equal(200, c:deliver(headers, body))
    local first = called.result
    assert.equal(200, c:deliver(headers, body))
    assert.equal(first, called.result, "a repeat changes nothing")
    local counts = c:stats().callbacks
    assert.same({ 1, 1, 1 }, { counts.delivered, counts.duplicate, counts.late })
  end)

  it("answers 200 for a task it does not run, and for one that has not ended", function()
    local m = start { "--job-seconds", "60" }
    local c = client(m, { poll_interval = 30 })
    local job = running_job(c)
    assert.equal(200, c:deliver(kie_callback("task_someone_else")))
    local headers, body = kie_callback(job.id, { state = "generating", resultJson = "" })
    assert.equal(200, c:deliver(headers, body))
    assert.is_false(job.done)
    local counts = c:stats().callbacks
    assert.same({ 1, 1, 0 }, { counts.unknown, counts.pending, counts.delivered })
  end)

  it("keeps a callback that beat its task's createTask answer, and ends the job with it once known", function()
    local m = start { "--job-seconds", "60" }
    local c = client(m, { poll_interval = 30 })
    -- the gateway's callback can arrive before this client has read the
    -- createTask's answer; here the task is adopted after its callback came
    local id = "task_early_cb"
    assert.equal(200, c:deliver(kie_callback(id)))
    assert.equal(1, c:stats().callbacks.unknown)
    local job = assert(c:job(id))
    local res = assert(job:await(5))
    assert.same({ "success", { "https://cdn.example/" .. id .. ".mp4" } }, { job.state, res.urls })
    assert.equal(0, job.polls)
    assert.equal(1, c:stats().callbacks.delivered)
  end)

  it("answers 400 to a signed body that is not a callback of the contract", function()
    local m = start { "--job-seconds", "60" }
    local c = client(m, { poll_interval = 30, webhook = { secret = SECRET, scheme = "modkie" } })
    local job = running_job(c)
    for _, body in ipairs({ "not json", '{"code":200,"data":[]}', '{"code":200,"msg":"ok"}' }) do
      assert.equal(400, c:deliver(webhook.sign { scheme = "modkie", body = body, secret = SECRET }, body))
    end
    -- ModKie's own webhook shape ends the job (the body is signed)
    local body = cjson.encode({ event = "task.completed", taskId = job.id, state = "success",
      result = { resultUrls = { "https://cdn.example/m.mp4" } }, creditsCharged = 35 })
    assert.equal(200, c:deliver(webhook.sign { scheme = "modkie", body = body, secret = SECRET }, body))
    assert.same({ "https://cdn.example/m.mp4" }, assert(job:await(1)).urls)
    assert.same({ 3, 1 }, { c:stats().callbacks.malformed, c:stats().callbacks.delivered })
  end)

  it("is a programmer error without the webhook option, or with arguments of the wrong type", function()
    local m = start { "--job-seconds", "60" }
    local plain = helper.client(m)
    later(function() plain:close() end)
    assert.has_error(function() plain:deliver({}, "{}") end,
      "client:deliver needs the webhook option: modkie.new{ webhook = { secret = …, scheme = … } }")
    local c = client(m)
    assert.has_error(function() c:deliver("headers", "{}") end)
    assert.has_error(function() c:deliver({}, nil) end)
    assert.has_error(function() helper.client(m, { webhook = { secret = "" } }) end,
      "modkie.new: option 'webhook.secret' must be a non-empty string (or a list of them while rotating)")
    assert.has_error(function() helper.client(m, { webhook = { secret = "s", shceme = "kie" } }) end)
    assert.has_error(function() helper.client(m, { listen = "127.0.0.1:0" }) end)
  end)
end)

describe("the listener (listen = \"host:port\")", function()
  for _, dialect in ipairs({ "kie", "modkie" }) do
    it("ends jobs with the emulator's signed callbacks, with no poll (" .. dialect .. ")", function()
      local m = start { "--dialect", dialect, "--job-seconds", "0.5", "--webhook-secret", SECRET }
      local c = default_client(m, { listen = "127.0.0.1:0", webhook = { secret = SECRET, scheme = dialect } })
      assert.matches("^http://127%.0%.0%.1:%d+/$", c.callback_url)
      local jobs = {}
      for i = 1, 4 do jobs[i] = assert(c:submit(KLING, { prompt = "called back " .. i })) end
      jobs[5] = assert(c:submit(KLING, { prompt = "twice [callback=duplicate]" }))
      local results, errs = modkie.await_all(jobs, 30)
      for i = 1, 5 do
        assert(results[i], tostring(errs[i]))
        assert.equal(0, jobs[i].polls, "a callback job is polled only as the fallback")
        assert.equal(jobs[i].id, results[i].id)
      end
      local deadline = helper.now() + 10
      while c:stats().callbacks.duplicate < 1 and helper.now() < deadline do c:step(0.05) end
      local counts = c:stats().callbacks
      assert.same({ 5, 1, 0 }, { counts.delivered, counts.duplicate, counts.refused })
      assert.equal(0, c:stats().polls)
    end)
  end

  it("answers a forged POST 401, a GET 405 and an oversized body 413, without blocking the client", function()
    local m = start { "--job-seconds", "60" }
    local c = client(m, { listen = "127.0.0.1:0" })
    local port = tonumber(c.callback_url:match(":(%d+)/$"))
    -- a raw request on a socket of its own, the client stepping while it waits for the status line
    local function status_of(head, body)
      local sock = assert(socket.connect("127.0.0.1", port))
      sock:settimeout(0)
      local out, at = head .. "\r\n\r\n" .. (body or ""), 1
      local line, buf = nil, ""
      local deadline = helper.now() + 20
      while not line and helper.now() < deadline do
        if at <= #out then
          local last, _, partial = sock:send(out, at)
          at = (last or partial or at - 1) + 1
        end
        c:step(0.01)
        local data, err, part = sock:receive(4096)
        buf = buf .. (data or part or "")
        line = buf:match("^HTTP/1%.%d (%d%d%d)")
        if err == "closed" then break end
      end
      sock:close()
      return tonumber(line)
    end
    local forged = '{"data":{"taskId":"t"}}'
    assert.equal(401, status_of("POST / HTTP/1.1\r\nHost: x\r\nX-Webhook-Timestamp: 1\r\n"
      .. "X-Webhook-Signature: AAAA\r\nContent-Length: " .. #forged, forged))
    assert.equal(405, status_of("GET / HTTP/1.1\r\nHost: x"))
    assert.equal(413, status_of("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " .. (1024 * 1024 + 1)))
    assert.equal(1, c:stats().callbacks.refused)
  end)

  it("refuses an address it cannot listen on, naming the option", function()
    local m = start { "--job-seconds", "60" }
    assert.has_error(function() helper.client(m, { listen = "nowhere", webhook = { secret = SECRET } }) end,
      "modkie.core: listen: 'nowhere' is not host:port (e.g. 127.0.0.1:8080)")
    assert.has_error(function() helper.client(m, { listen = "203.0.113.9:8080", webhook = { secret = SECRET } }) end,
      "modkie.core: listen: cannot listen on 203.0.113.9:8080 (in use, or not an address of this machine)")
  end)
end)

-- The emulator's callbacks, end to end: a job submitted with callback_url,
-- the emulator POSTs its final record to a receiver in this process, the
-- receiver's request goes through modkie.webhook.verify and .parse, and the
-- reading is what job:await() gives.
local helper = require "spec.helper"
local cjson = require "cjson"
local webhook = require "modkie.webhook"

local SECRET = "whsec-callback-7Qp"
local KLING = "kling/kling-3-0"

-- what a test starts is stopped when it ends, in reverse
local later, start = helper.cleanups(function(fn) finally(fn) end)

local function receiver(statuses)
  local r = helper.receiver(statuses)
  later(r.close)
  return r
end

local function client(m)
  local c = helper.client(m)
  later(function() c:close() end)
  return c
end

-- The fields await and parse must agree on (raw differs: the callback carries
-- more; ModKie's webhook carries no times).
local function comparable(res, dialect)
  local t = { id = res.id, model = res.model, urls = res.urls, output = res.output, credits = res.credits }
  if dialect == "kie" then
    t.created_at, t.completed_at, t.cost_time = res.created_at, res.completed_at, res.cost_time
  end
  return t
end

describe("emulator callbacks", function()
  for _, dialect in ipairs({ "kie", "modkie" }) do
    describe(dialect .. " dialect", function()
      it("POSTs the final record, signed, and verify + parse read what await read", function()
        local m = start { "--dialect", dialect, "--job-seconds", "1", "--webhook-secret", SECRET }
        local r = receiver()
        local c = client(m)
        local job = assert(c:submit(KLING, { prompt = "called back [outputs=2]" },
          { callback_url = r.url .. "/hook?from=modkie" }))
        local res = assert(job:await(20))
        assert.is_true(r.wait(1, c), "no callback came")
        local req = r.requests[1]
        assert.equal("/hook", req.path)
        assert.equal("application/json", req.headers["content-type"])
        local ok, info = webhook.verify { headers = req.headers, body = req.body, secret = SECRET, scheme = dialect }
        assert(ok, tostring(info))
        assert.equal(res.id, info.task_id)
        local doc = cjson.decode(req.body)
        if dialect == "kie" then
          assert.matches("^%d+$", req.headers["x-webhook-timestamp"])
          assert.same({ 200, "Playground task completed successfully.", "success" },
            { doc.code, doc.msg, doc.data.state })
          assert.equal(35, doc.data.consumeCredits) -- the callback examples' fields
          assert.equal(1, doc.data.costTime) -- seconds, as the callback examples give it
          assert.is_number(doc.data.remainedCredits)
        else
          assert.matches("^sha256=%x+$", req.headers["x-modkie-signature"])
          assert.same({ "task.completed", "success", 35 }, { doc.event, doc.state, doc.creditsCharged })
          assert.matches("^%d%d%d%d%-%d%d%-%d%dT", doc.timestamp)
        end
        local pres = assert(webhook.parse(req.body))
        assert.same(comparable(res, dialect), comparable(pres, dialect))
        -- a changed body is refused (ModKie signs the body; Kie the id and time only)
        local tampered = req.body:gsub("0%.mp4", "9.mp4")
        local vok, verr = webhook.verify { headers = req.headers, body = tampered, secret = SECRET, scheme = dialect }
        if dialect == "modkie" then
          assert.is_nil(vok)
          assert.equal("signature", verr.reason)
        else
          assert.is_false(info.body_signed)
        end
      end)

      it("POSTs a failed job's record (kie: in the 501 envelope) and parse reads it as await did", function()
        local m = start { "--dialect", dialect, "--job-seconds", "0.2", "--webhook-secret", SECRET }
        local r = receiver()
        local c = client(m)
        local job = assert(c:submit(KLING, { prompt = "doomed [fail=500]" }, { callback_url = r.url .. "/cb" }))
        local _, err = job:await(20)
        assert.equal("failed", err.kind)
        assert.is_true(r.wait(1, c), "no callback came")
        local req = r.requests[1]
        assert(webhook.verify { headers = req.headers, body = req.body, secret = SECRET, scheme = dialect })
        local doc = cjson.decode(req.body)
        local _, perr = webhook.parse(req.body)
        if dialect == "kie" then
          assert.same({ 501, "Playground task failed.", "500", "Internal server error" },
            { doc.code, doc.msg, doc.data.failCode, doc.data.failMsg })
          assert.is_nil(doc.data.resultJson)
          for _, k in ipairs({ "kind", "code", "message", "task_id", "retryable" }) do
            assert.same(err[k], perr[k], k)
          end
        else -- ModKie's webhook carries failMsg, no failCode
          assert.same({ "fail", "Internal server error" }, { doc.state, doc.failMsg })
          assert.same({ "failed", "Internal server error", job.id, true },
            { perr.kind, perr.message, perr.task_id, perr.retryable })
        end
      end)
    end)
  end

  it("retries a callback answered non-2xx, with backoff, until a 2xx", function()
    local m = start { "--job-seconds", "0", "--callback-backoff", "0.1" }
    local r = receiver({ 500, 503, 200 })
    local c = client(m)
    local job = assert(c:submit(KLING, { prompt = "insistent" }, { callback_url = r.url .. "/cb" }))
    assert(job:await(20))
    assert.is_true(r.wait(3, c), "3 tries expected, got " .. #r.requests)
    for i = 2, 3 do assert.equal(r.requests[1].body, r.requests[i].body) end
    local stats
    for _ = 1, 50 do -- the last answer reaches the emulator's counters a moment after the receiver saw it
      stats = m.stats().callbacks
      if stats.delivered == 1 then break end
      helper.sleep(0.05)
    end
    assert.same({ sent = 3, delivered = 1, failed = 2, retried = 2, gave_up = 0 },
      { sent = stats.sent, delivered = stats.delivered, failed = stats.failed, retried = stats.retried,
        gave_up = stats.gave_up })
    -- no signature without --webhook-secret
    assert.is_nil(r.requests[1].headers["x-webhook-signature"])
    assert.is_nil(r.requests[1].headers["x-modkie-signature"])
  end)

  it("gives up after --callback-retries when nobody listens", function()
    local m = start { "--job-seconds", "0", "--callback-backoff", "0.05", "--callback-retries", "2" }
    local c = client(m)
    local port = helper.held_port(later)
    local job = assert(c:submit(KLING, { prompt = "nobody home" },
      { callback_url = "http://127.0.0.1:" .. port .. "/cb" }))
    assert(job:await(20))
    local stats
    for _ = 1, 100 do
      stats = m.stats().callbacks
      if stats.gave_up == 1 then break end
      helper.sleep(0.05)
    end
    assert.same({ 3, 0, 1 }, { stats.sent, stats.delivered, stats.gave_up })
  end)

  it("drops, delays and duplicates callbacks on [callback=…]", function()
    local m = start { "--job-seconds", "0.2" }
    local r = receiver()
    local c = client(m)
    local jobs = {}
    for _, p in ipairs({ "[callback=drop]", "[callback=delay:1]", "[callback=duplicate]" }) do
      jobs[p] = assert(c:submit(KLING, { prompt = "scripted " .. p }, { callback_url = r.url .. "/cb" }))
    end
    local plain = assert(c:submit(KLING, { prompt = "plain" }, { callback_url = r.url .. "/cb" }))
    for _, j in pairs(jobs) do assert(j:await(20)) end
    assert(plain:await(20))
    assert.is_true(r.wait(4, c), "4 callbacks expected, got " .. #r.requests)
    r.wait(5, c, 1) -- a fifth (the dropped one) would come now: it must not
    local ids = {}
    for i, req in ipairs(r.requests) do ids[i] = cjson.decode(req.body).data.taskId end
    local count = {}
    for _, id in ipairs(ids) do count[id] = (count[id] or 0) + 1 end
    assert.is_nil(count[jobs["[callback=drop]"].id])
    assert.equal(2, count[jobs["[callback=duplicate]"].id])
    assert.equal(1, count[plain.id])
    assert.equal(jobs["[callback=delay:1]"].id, ids[#ids]) -- ended with the others, called back last
    assert.equal(1, m.stats().callbacks.dropped)
    -- a mistyped directive is refused, naming it
    local _, err = assert(c:submit(KLING, { prompt = "x [callback=sometimes]" })):await(20)
    assert.same({ "validation", 422 }, { err.kind, err.code })
    assert.matches("[callback=sometimes]", err.message, 1, true)
  end)
end)

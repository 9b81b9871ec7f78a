-- Documented gateway answers that modkie once misread (issue 10), each read
-- the way a user should see it, on the poll path (a client polling the
-- emulator, which replays the documented body verbatim) and, for callback
-- bodies, through modkie.webhook.parse: one reading for both.
local helper = require "spec.helper"
local webhook = require "modkie.webhook"

local RECORD_INFO = "/api/v1/jobs/recordInfo"

-- docs.kie.ai/market/common/get-task-detail, the 422 example
local RECORD_NULL = '{"code":422,"msg":"recordInfo is null","data":null}'

-- docs.kie.ai market model pages (Qwen image-edit): the callbacks, the same
-- JSON recordInfo answers
local QWEN_SUCCESS = [[{
  "code": 200,
  "data": {
    "completeTime": 1755599644000,
    "consumeCredits": 100,
    "costTime": 8,
    "createTime": 1755599634000,
    "model": "qwen/image-edit",
    "param": "{\"callBackUrl\":\"https://your-domain.com/api/callback\",\"model\":\"qwen/image-edit\"}",
    "remainedCredits": 2510330,
    "resultJson": "{\"resultUrls\":[\"https://example.com/generated-image.jpg\"]}",
    "state": "success",
    "taskId": "e989621f54392584b05867f87b160672",
    "updateTime": 1755599644000
  },
  "msg": "Playground task completed successfully."
}]]
local QWEN_FAILURE = [[{
  "code": 501,
  "data": {
    "completeTime": 1755597081000,
    "consumeCredits": 0,
    "costTime": 0,
    "createTime": 1755596341000,
    "failCode": "500",
    "failMsg": "Internal server error",
    "model": "qwen/image-edit",
    "param": "{\"callBackUrl\":\"https://your-domain.com/api/callback\",\"model\":\"qwen/image-edit\"}",
    "remainedCredits": 2510430,
    "state": "fail",
    "taskId": "bd3a37c523149e4adf45a3ddb5faf1a8",
    "updateTime": 1755597097000
  },
  "msg": "Playground task failed."
}]]
-- the Get Task Details reference: costTime in milliseconds
local REFERENCE_SUCCESS = [[{"code":200,"msg":"success","data":{"taskId":"task_12345678",
"model":"grok-imagine/text-to-image","state":"success","param":"{}",
"resultJson":"{\"resultUrls\":[\"https://example.com/generated-content.jpg\"]}","failCode":"","failMsg":"",
"costTime":15000,"completeTime":1698765432000,"createTime":1698765400000,"updateTime":1698765432000}}]]

local function generating(progress)
  return ([[{"code":200,"msg":"success","data":{"taskId":"task_sora_1","model":"sora-2-text-to-video",
"state":"generating","param":"{}","resultJson":"","failCode":"","failMsg":"","createTime":1698765400000,
"updateTime":%d,"progress":%d}}]]):format(1698765400000 + progress * 100, progress)
end
local SORA_SUCCESS = [[{"code":200,"msg":"success","data":{"taskId":"task_sora_1","model":"sora-2-text-to-video",
"state":"success","param":"{}","resultJson":"{\"resultUrls\":[\"https://example.com/v.mp4\"]}","failCode":"",
"failMsg":"","costTime":15000,"createTime":1698765400000,"completeTime":1698765432000,"updateTime":1698765432000}}]]

describe("documented answers, read right", function()
  local m
  setup(function() m = helper.mock({ "--job-seconds", "0" }) end)
  teardown(function() m.stop() end)

  local function client(opts)
    opts = opts or {}
    if opts.retries == nil then opts.retries = 0 end
    return helper.client(m, opts)
  end

  describe("1. 'recordInfo is null' right after createTask", function()
    it("keeps polling through the grace window and takes the record once it is there", function()
      m.replay(RECORD_INFO, "task_12345678", { RECORD_NULL, RECORD_NULL, REFERENCE_SUCCESS })
      local c = client()
      finally(function() c:close() end)
      local res, err = c:job("task_12345678"):await(10)
      assert.is_nil(err)
      assert.equal("task_12345678", res.id)
      assert.same({ "https://example.com/generated-content.jpg" }, res.urls)
    end)

    it("ends not_found naming the task once the window has passed", function()
      m.replay(RECORD_INFO, "task_never", { RECORD_NULL })
      local c = client({ record_grace = 0.3 })
      finally(function() c:close() end)
      local job = c:job("task_never")
      local res, err = job:await(10)
      assert.is_nil(res)
      assert.equal("not_found", err.kind)
      assert.equal("task_never", err.task_id)
      assert.matches("task_never", err.message, 1, true)
      assert.matches("recordInfo is null", err.message, 1, true)
      assert.is_true(job.polls >= 2, "polled " .. job.polls .. " times")
    end)
  end)

  describe("2. costTime", function()
    it("is seconds in the callbacks (it agrees with completeTime - createTime), ms in the reference", function()
      assert.equal(8, assert(webhook.parse(QWEN_SUCCESS)).cost_time)
      assert.equal(15, assert(webhook.parse(REFERENCE_SUCCESS)).cost_time)
      m.replay(RECORD_INFO, "e989621f54392584b05867f87b160672", { QWEN_SUCCESS })
      m.replay(RECORD_INFO, "task_12345678", { REFERENCE_SUCCESS })
      local c = client()
      finally(function() c:close() end)
      assert.equal(8, assert(c:job("e989621f54392584b05867f87b160672"):await(10)).cost_time)
      assert.equal(15, assert(c:job("task_12345678"):await(10)).cost_time)
    end)
  end)

  describe("3. consumeCredits", function()
    it("is the job's credits, on both paths", function()
      assert.equal(100, assert(webhook.parse(QWEN_SUCCESS)).credits)
      m.replay(RECORD_INFO, "e989621f54392584b05867f87b160672", { QWEN_SUCCESS })
      local c = client()
      finally(function() c:close() end)
      assert.equal(100, assert(c:job("e989621f54392584b05867f87b160672"):await(10)).credits)
    end)
  end)

  describe("4. 455 maintenance", function()
    local MAINTENANCE = '{"code":455,"msg":"Service Unavailable - System is currently undergoing maintenance",'
      .. '"data":null}'
    it("is kind server, retryable, with the gateway's message", function()
      m.replay(RECORD_INFO, "task_m", { MAINTENANCE })
      m.replay("/api/v1/chat/credit", nil, { MAINTENANCE })
      local c = client()
      finally(function() c:close() end)
      for _, call in ipairs({ function() return c:record("task_m") end, function() return c:credits() end }) do
        local res, err = call()
        assert.is_nil(res)
        assert.equal("server", err.kind)
        assert.equal(455, err.code)
        assert.is_true(err.retryable)
        assert.matches("undergoing maintenance", err.message, 1, true)
      end
    end)

    it("is waited out by a job, which goes on when the gateway is back", function()
      m.replay(RECORD_INFO, "task_12345678", { MAINTENANCE, MAINTENANCE, REFERENCE_SUCCESS })
      local c = client({ retries = 4 })
      finally(function() c:close() end)
      assert.equal("task_12345678", assert(c:job("task_12345678"):await(20)).id)
    end)
  end)

  describe("5. a fail record in a code 501 envelope", function()
    it("keeps the record's failCode and failMsg, retryable, the same on both paths", function()
      local _, perr = webhook.parse(QWEN_FAILURE)
      m.replay(RECORD_INFO, "bd3a37c523149e4adf45a3ddb5faf1a8", { QWEN_FAILURE })
      local c = client()
      finally(function() c:close() end)
      local job = c:job("bd3a37c523149e4adf45a3ddb5faf1a8")
      local res, err = job:await(10)
      assert.is_nil(res)
      assert.equal("failed", job.state)
      for _, e in ipairs({ perr, err }) do
        assert.equal("failed", e.kind)
        assert.equal(500, e.code)
        assert.equal("Internal server error", e.message)
        assert.equal("bd3a37c523149e4adf45a3ddb5faf1a8", e.task_id)
        assert.equal("fail", e.server_state)
        assert.is_true(e.retryable)
      end
    end)
  end)

  describe("6. progress and updateTime", function()
    it("show on the job and in the state log events", function()
      m.replay(RECORD_INFO, "task_sora_1", { generating(10), generating(45), generating(45), SORA_SUCCESS })
      local events, seen = {}, {}
      local c = client({ log = function(_, event, f) if event == "state" then events[#events + 1] = f end end })
      finally(function() c:close() end)
      local job = c:job("task_sora_1")
      while not job.done do
        c:step(0.05)
        if job.progress then seen[#seen + 1] = job.progress end
      end
      assert.equal("task_sora_1", assert(job:await()).id)
      assert.same({ 10, 45 }, { events[1].progress, events[2].progress })
      assert.equal(2, #events) -- an unchanged poll makes no event
      assert.equal("generating", events[2].server_state)
      assert.equal(1698765404.5, events[2].updated_at)
      assert.equal(10, seen[1])
      assert.equal(100, job.progress) -- it ended well
      assert.equal(1698765432, job.updated_at)
    end)

    it("show in the CLI's progress line on a terminal", function()
      m.replay(RECORD_INFO, "task_sora_1", { generating(45), generating(45), generating(45), SORA_SUCCESS })
      local cmd = ("env MODKIE_API_KEY=k lua5.4 bin/modkie wait task_sora_1 --base-url %s --poll-interval 0.3")
        :format(m.url)
      -- script(1) gives the CLI a terminal, as a user would have
      local p = io.popen("script -qec " .. helper.shell_quote(cmd) .. " /dev/null 2>&1")
      local out = p:read("*a")
      p:close()
      assert.matches("task_sora_1: generating 45%", out, 1, true)
    end)
  end)
end)

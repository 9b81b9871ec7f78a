-- Defects an outside review's probes found (issues 9, 10 and 14 re-tried on
-- a later main), each as a user meets it: a client talking to the emulator
-- over real sockets, the emulator replaying the hostile or odd answer.
local helper = require "spec.helper"
local modkie = require "modkie"
local cjson = require "cjson"

local KLING = "kling/kling-3-0"
local RECORD_INFO = "/api/v1/jobs/recordInfo"

describe("the outside review's probes", function()
  local m
  setup(function() m = helper.mock({ "--job-seconds", "0.2" }) end)
  teardown(function() m.stop() end)

  -- every character of s as a JSON \u escape: the same text to a JSON reader
  local function json_escaped(s)
    return (s:gsub(".", function(ch) return ("\\u%04x"):format(ch:byte()) end))
  end

  it("regression (r9_echo): the key echoed with JSON \\u escapes is redacted, not decoded into the error", function()
    local key = ("sk-CANARY-%d-esc-KEY"):format(os.time())
    local logs = {}
    local c = helper.client(m, { api_key = key, retries = 0, log = function(level, event, fields)
      local parts = { level, event }
      for k, v in pairs(fields) do parts[#parts + 1] = k .. "=" .. tostring(v) end
      logs[#logs + 1] = table.concat(parts, " ")
    end })
    m.replay("/api/v1/chat/credit", nil, { '{"code":500,"msg":"echo ' .. json_escaped("Bearer " .. key) .. '"}' })
    m.replay(RECORD_INFO, "task_esc", { '{"code":200,"msg":"success","data":{"taskId":"task_esc","state":"fail",'
      .. '"failCode":"500","failMsg":"proxy saw ' .. json_escaped(key) .. '"}}' })
    local _, e1 = c:credits()
    local _, e2 = assert(c:job("task_esc")):await(10)
    c:close()
    local seen = { tostring(e1), tostring(e1.message), tostring(e2), tostring(e2.message) }
    for _, l in ipairs(logs) do seen[#seen + 1] = l end
    local all = table.concat(seen, "\n")
    assert.equal("server", e1.kind)
    assert.equal("failed", e2.kind)
    assert.matches("[redacted]", e1.message, 1, true)
    assert.matches("[redacted]", e2.message, 1, true)
    assert(not all:find(key, 1, true), "the key is in: " .. all)
  end)

  it("regression (r10_readings): another task's record is never taken as this job's result", function()
    m.replay(RECORD_INFO, "task_mine", { cjson.encode{ code = 200, msg = "success", data = { taskId = "task_other",
      state = "success", resultJson = cjson.encode{ resultUrls = { "http://x.invalid/other.mp4" } } } } })
    local c = helper.client(m, { retries = 0 })
    local job = assert(c:job("task_mine"))
    local res, err = job:await(10)
    c:close()
    assert.is_nil(res)
    assert.equal("protocol", err.kind)
    assert.equal("task_mine", err.task_id)
    assert.equal("task_mine", job.id)
    assert.matches("record of another task (task_other), not of task_mine", err.message, 1, true)
  end)

  it("regression (r9_numbers, r9_await): a job's deadline of 0, < 0 or NaN and a NaN timeout are refused", function()
    local c = helper.client(m)
    for _, d in ipairs({ 0, -1, 0 / 0, true }) do
      local ok, msg = pcall(c.submit, c, KLING, { prompt = "x" }, { deadline = d })
      assert.is_false(ok)
      assert.matches("submit: option 'deadline' must be a number of seconds > 0, or false", msg, 1, true)
      ok, msg = pcall(c.job, c, "task_x", { deadline = d })
      assert.is_false(ok)
      assert.matches("job: option 'deadline' must be", msg, 1, true)
    end
    -- the wait that used to last until the job ended (NaN compared false with every time)
    local job = assert(c:submit(KLING, { prompt = "[seconds=30] nan wait" }, { deadline = false }))
    for _, f in ipairs({ "await", "accepted" }) do
      local ok, msg = pcall(job[f], job, 0 / 0)
      assert.is_false(ok)
      assert.matches("bad argument #1 to '" .. f .. "' (number expected, got NaN)", msg, 1, true)
    end
    local ok, msg = pcall(modkie.await_all, { job }, 0 / 0)
    assert.is_false(ok)
    assert.matches("got NaN", msg, 1, true)
    job:cancel()
    -- a deadline that is a number of seconds still ends the job
    local _, err = assert(c:submit(KLING, { prompt = "[seconds=30] short" }, { deadline = 0.3 })):await(10)
    assert.equal("deadline", err.kind)
    c:close()
  end)

  it("regression (r9_urls): a base_url with a query, a fragment or user:password@ is refused, naming it", function()
    for _, url in ipairs({ m.url .. "?x=1", m.url .. "/#frag", (m.url:gsub("//", "//user:secret@")) }) do
      local ok, msg = pcall(modkie.new, { base_url = url, api_key = "k" })
      assert.is_false(ok)
      assert.matches("base_url must be the gateway's root URL, without a query (?), a fragment (#) or "
        .. "user:password@", msg, 1, true)
      assert(not msg:find("secret", 1, true), "the password is in: " .. msg)
    end
    -- //api/v1/ copied from the docs is the root, not a path under "/"
    local c = modkie.new{ base_url = m.url .. "//api/v1/", api_key = "k", rate = false }
    assert.equal(m.url, c.base_url)
    local res = assert(assert(c:submit(KLING, { prompt = "root" })):await(10))
    assert.equal("success", res.state)
    c:close()
  end)

  it("regression (r9_dl): a result link that is not http(s) fails at once as protocol, not a network retry", function()
    m.replay(RECORD_INFO, "task_dl", { cjson.encode{ code = 200, msg = "success", data = { taskId = "task_dl",
      state = "success", resultJson = cjson.encode{ resultUrls = { "file:///etc/passwd" } } } } })
    local c = helper.client(m, { retries = 3 })
    local job = assert(c:job("task_dl"))
    assert(job:await(10))
    local dir = helper.tmpdir()
    local paths, err = job:download(dir .. "/out")
    c:close()
    local leftover = io.open(dir .. "/out/task_dl-0", "rb") -- whatever its extension: nothing may be there
    helper.rmdir(dir)
    assert.is_nil(paths)
    assert.equal("protocol", err.kind)
    assert.is_false(err.retryable)
    assert.matches("only http and https", err.message, 1, true)
    assert.is_nil(leftover)
  end)

  it("regression (r14_paths): a rate.shared file path with a NUL is refused, not cut short at it", function()
    local ok, msg = pcall(modkie.new, { base_url = m.url, api_key = "k", rate = { shared = "file:/tmp/\0x" } })
    assert.is_false(ok)
    assert.matches("option 'rate.shared' must not contain control characters or NUL bytes", msg, 1, true)
  end)

  it("regression (r9_model): a model id that names no model is refused, naming `model`, even unvalidated", function()
    m.request("POST", "/__mock/reset")
    local c = helper.client(m)
    local bad = { [""] = "is empty", ["acme/\0x"] = "byte 0x00 at offset 5", ["acme/x\n"] = "byte 0x0A at offset 6",
      [" acme/x"] = "byte 0x20 at offset 0", [("a"):rep(257)] = "257 bytes long" }
    for model, why in pairs(bad) do
      for _, validate in ipairs({ true, false }) do
        local job, err = c:submit(model, { prompt = "x" }, { validate = validate })
        assert.is_nil(job)
        assert.equal("validation", err.kind)
        assert.equal("model", err.field)
        assert.matches(why, err.message, 1, true)
      end
    end
    assert(assert(c:submit("acme/not-registered", { prompt = "x" }, { validate = false })):await(10))
    c:close()
    assert.equal(1, m.stats().creates)
  end)

  it("regression (r9_failmsg): a failMsg of megabytes is cut in err.message, whole in err.record", function()
    local fail_msg = "over budget: " .. ("\226\130\172"):rep(700000) -- 2.1 MB of a 3-byte character
    m.replay(RECORD_INFO, "task_big_fail", { cjson.encode{ code = 200, msg = "success", data = {
      taskId = "task_big_fail", state = "fail", failCode = "500", failMsg = fail_msg } } })
    local c = helper.client(m)
    local res, err = assert(c:job("task_big_fail")):await(20)
    c:close()
    assert.is_nil(res)
    assert.equal("failed", err.kind)
    assert.is_true(#err.message < 4200, "message of " .. #err.message .. " bytes")
    assert.equal(fail_msg:sub(1, 13), err.message:sub(1, 13))
    assert.matches(" more bytes: err.record has the whole text)", err.message, 1, true)
    local kept = err.message:match("^(.-) %.%.%. %(")
    assert.equal(0, (#kept - 13) % 3, "cut inside a UTF-8 sequence")
    assert.equal(fail_msg, err.record.failMsg)
  end)

  it("regression (r14_store): a rate.shared file that can never be opened is refused, naming the option", function()
    local dir = helper.tmpdir()
    for _, path in ipairs({ dir, dir .. "/not-a-dir/x" }) do
      if path ~= dir then assert(io.open(dir .. "/not-a-dir", "w")):close() end
      local ok, msg = pcall(modkie.new, { base_url = m.url, api_key = "k", rate = { shared = "file:" .. path } })
      assert.is_false(ok)
      assert.matches("rate.shared: file:" .. path .. ": cannot be opened", msg, 1, true)
    end
    -- a folder that does not exist yet may come later: the store is away until then
    local c = modkie.new({ base_url = m.url, api_key = "k", rate = { shared = "file:" .. dir .. "/later/w" } })
    c:close()
    helper.rmdir(dir)
  end)
end)

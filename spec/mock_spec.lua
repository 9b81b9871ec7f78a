-- The gateway emulator (`modkie mock`), tested as a separate process over real
-- sockets: socket.http for API calls, raw TCP for the HTTP framing cases.
local helper = require "spec.helper"
local cjson = require "cjson"
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"

local LUA = os.getenv("MODKIE_TEST_LUA") or "lua5.4"
local KLING = "kling/kling-3-0"

-- start(args): an emulator that is stopped when the current test ends.
-- busted keeps one `finally` per test, so every emulator a test starts is in
-- one list: a test that starts two stops both (a popen left to the garbage
-- collector would wait there for a process nobody stopped).
local later, start = helper.cleanups(function(fn) finally(fn) end)

-- One API call. opts: key (false = no Authorization), body (table or string),
-- headers, base (another base URL). Returns status, decoded body, headers, raw text.
local function call(m, method, path, opts)
  opts = opts or {}
  local headers = {}
  if opts.key ~= false then headers.authorization = "Bearer " .. (opts.key or "test-key") end
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  local body = opts.body
  if type(body) == "table" then body = cjson.encode(body) end
  if body then
    headers["content-length"] = tostring(#body)
    headers["content-type"] = "application/json"
  end
  local out = {}
  local _, status, resp_headers = http.request {
    url = (opts.base or m.url) .. path, method = method, headers = headers,
    source = body and ltn12.source.string(body) or nil, sink = ltn12.sink.table(out),
  }
  local text = table.concat(out)
  local ok, decoded = pcall(cjson.decode, text)
  return status, ok and decoded or text, resp_headers, text
end

local function create(m, input, opts)
  opts = opts or {}
  opts.body = { model = opts.model or KLING, input = input }
  return call(m, "POST", "/api/v1/jobs/createTask", opts)
end

local function record(m, id, opts)
  return call(m, "GET", "/api/v1/jobs/recordInfo?taskId=" .. id, opts)
end

local function created_id(m, input, opts)
  local status, body = create(m, input, opts)
  assert.are.equal(200, status)
  assert.are.equal(200, body.code)
  assert.is_string(body.data.taskId)
  return body.data.taskId
end

local ENDED = { success = true, fail = true }

-- Poll until the task ends; returns the final record and the distinct states seen in order.
local function await(m, id, opts)
  local seen, deadline = {}, helper.now() + 15
  while helper.now() < deadline do
    local status, body = record(m, id, opts)
    assert.are.equal(200, status)
    local rec = body.data
    if seen[#seen] ~= rec.state then seen[#seen + 1] = rec.state end
    if ENDED[rec.state] then return rec, seen end
    helper.sleep(0.02)
  end
  error("task " .. id .. " did not end")
end

local function get_file(url, headers)
  local out = {}
  local _, status, h = http.request { url = url, sink = ltn12.sink.table(out), headers = headers }
  return status, table.concat(out), h
end

local function expected_bytes(id, n, size)
  local line = "modkie:" .. id .. ":" .. n .. "\n"
  return (string.rep(line, math.floor(size / #line) + 1):sub(1, size))
end

-- Raw TCP: connect, send, read one response.
local function connect(m)
  local c = assert(socket.connect("127.0.0.1", m.port))
  c:settimeout(5)
  return c
end

local function read_response(c)
  local line, err = c:receive("*l")
  if not line then return nil, err end
  local res = { line = line, status = tonumber(line:match("^HTTP/1%.%d (%d+) ")), headers = {} }
  while true do
    local h = assert(c:receive("*l"))
    if h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.*)$")
    res.headers[k:lower()] = v
  end
  local n = tonumber(res.headers["content-length"] or "0")
  res.body = n > 0 and assert(c:receive(n)) or ""
  return res
end

-- True when the server closed the connection (EOF) rather than leaving it open.
local function closed_by_server(c)
  local data, err = c:receive(1)
  return data == nil and err == "closed"
end

local function get_request(path, extra)
  return "GET " .. path .. " HTTP/1.1\r\nHost: x\r\n" .. (extra or "") .. "\r\n"
end

-- Run a shell command; returns its output (stdout+stderr) and exit code.
local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"EXIT=$?\""))
  local out = p:read("*a")
  p:close()
  local code = tonumber(out:match("EXIT=(%d+)%s*$"))
  return out:gsub("EXIT=%d+%s*$", ""), code
end

describe("modkie mock: process", function()
  it("prints one start line with URL, pid and dialect, and --port 0 picks a free port", function()
    local p = assert(io.popen("exec " .. LUA .. " bin/modkie mock --port 0 --dialect modkie 2>/dev/null"))
    local line = p:read("*l")
    local pid = line and tonumber(line:match(" pid=(%d+) "))
    finally(function()
      if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
      p:close()
    end)
    assert.is_truthy(line:match("^listening http://127%.0%.0%.1:%d+ pid=%d+ dialect=modkie$"), line)
    local port = tonumber(line:match(":(%d+) "))
    assert.is_true(port > 0)
    assert.are_not.equal(8089, port)
    local c = assert(socket.connect("127.0.0.1", port))
    c:close()
  end)

  it("serves from the pid it prints: killing that pid stops it", function()
    -- on a held port: once it is stopped, no other process can listen there
    local m = start { "--port", tostring(helper.held_port(later)) }
    local status = call(m, "GET", "/__mock/stats")
    assert.are.equal(200, status)
    m.stop()
    local c = socket.connect("127.0.0.1", m.port)
    if c then c:close() end
    assert.is_nil(c)
  end)

  it("answers --help with usage and exit code 0", function()
    local out, code = run(LUA .. " bin/modkie mock --help")
    assert.are.equal(0, code)
    assert.is_truthy(out:find("--job-seconds", 1, true))
  end)

  it("refuses a bad flag with a message naming it and exit code 2", function()
    local out, code = run(LUA .. " bin/modkie mock --bogus")
    assert.are.equal(2, code)
    assert.is_truthy(out:find("--bogus", 1, true))
    out, code = run(LUA .. " bin/modkie mock --port notaport")
    assert.are.equal(2, code)
    assert.is_truthy(out:find("--port", 1, true))
    out, code = run(LUA .. " bin/modkie mock --dialect xml")
    assert.are.equal(2, code)
    assert.is_truthy(out:find("--dialect", 1, true))
    out, code = run(LUA .. " bin/modkie mock --job-seconds")
    assert.are.equal(2, code)
    assert.is_truthy(out:find("--job-seconds", 1, true))
  end)
end)

describe("modkie mock: kie dialect", function()
  it("walks waiting, queuing, generating, success, with kie record types", function()
    local m = start()
    local id = created_id(m, { prompt = "a cat [seconds=2]", duration = 5, generate_audio = true })
    assert.is_truthy(id:match("^task_"))
    local status, body, headers = record(m, id)
    assert.are.equal(200, status)
    assert.is_truthy(headers["content-type"]:find("application/json", 1, true))
    assert.are.equal("success", body.msg)
    local running = body.data
    assert.are.equal("", running.resultJson)
    assert.are.equal("", running.failCode)
    assert.are.equal("", running.failMsg)
    assert.is_nil(running.completeTime)
    local rec, seen = await(m, id)
    assert.are.same({ "waiting", "queuing", "generating", "success" }, seen)
    assert.are.equal(id, rec.taskId)
    assert.are.equal(KLING, rec.model)
    assert.is_string(rec.param)
    assert.are.same({ model = KLING, input = { prompt = "a cat [seconds=2]", duration = 5, generate_audio = true } },
      cjson.decode(rec.param))
    assert.is_string(rec.resultJson)
    local result = cjson.decode(rec.resultJson)
    assert.are.equal(1, #result.resultUrls)
    assert.are.equal(m.url .. "/files/" .. id .. "/0.mp4", result.resultUrls[1])
    assert.are.equal("", rec.failCode)
    assert.are.equal("", rec.failMsg)
    assert.is_number(rec.createTime)
    assert.are.equal(2000, rec.costTime)
    assert.are.equal(rec.createTime + 2000, rec.completeTime)
    assert.is_true(math.abs(rec.createTime - helper.now() * 1000) < 10000)
    assert.are.equal(35, rec.creditsConsumed)
  end)

  it("ends [fail] jobs with a string failCode and no resultJson (the reference: only on success)", function()
    local m = start { "--job-seconds", "0.3" }
    local id = created_id(m, { prompt = "doomed [fail]" })
    local rec, seen = await(m, id)
    assert.are.equal("fail", rec.state)
    assert.are.equal("fail", seen[#seen])
    assert.are.equal("501", rec.failCode)
    assert.are.equal("generation failed", rec.failMsg)
    assert.is_nil(rec.resultJson)
    assert.are.equal(0, rec.creditsConsumed)
  end)

  it("gives [outputs=3] three distinct URLs and [text] a resultObject", function()
    local m = start { "--job-seconds", "0" }
    local id = created_id(m, { prompt = "three [outputs=3]" })
    local rec = await(m, id)
    local urls = cjson.decode(rec.resultJson).resultUrls
    assert.are.same({ m.url .. "/files/" .. id .. "/0.mp4", m.url .. "/files/" .. id .. "/1.mp4",
      m.url .. "/files/" .. id .. "/2.mp4" }, urls)
    local tid = created_id(m, { prompt = "write a haiku [text]" })
    local trec = await(m, tid)
    assert.are.equal("success", trec.state)
    local out = cjson.decode(trec.resultJson)
    assert.is_nil(out.resultUrls)
    assert.is_string(out.resultObject.text)
    assert.is_truthy(out.resultObject.text:find("write a haiku", 1, true))
  end)

  it("answers 401 as HTTP 200 with code 401, and checks --api-key", function()
    local m = start { "--api-key", "sekrit" }
    local status, body = call(m, "GET", "/api/v1/chat/credit", { key = false })
    assert.are.equal(200, status)
    assert.are.equal(401, body.code)
    assert.are.equal("You do not have access permissions", body.msg)
    assert.are.equal(cjson.null, body.data)
    status, body = call(m, "GET", "/api/v1/chat/credit", { key = "wrong" })
    assert.are.equal(200, status)
    assert.are.equal(401, body.code)
    status, body = call(m, "GET", "/api/v1/chat/credit", { headers = { authorization = "Basic c2Vrcml0" } })
    assert.are.equal(200, status)
    assert.are.equal(401, body.code)
    status, body = call(m, "GET", "/api/v1/chat/credit", { key = "sekrit" })
    assert.are.equal(200, status)
    assert.are.equal(200, body.code)
    assert.are.equal(10000, body.data)
  end)

  it("answers 402 when the balance is below the price", function()
    local m = start()
    local status, body = call(m, "POST", "/__mock/credits", { key = false, body = { key = "poor", balance = 20 } })
    assert.are.equal(200, status)
    assert.is_true(body.ok)
    status, body = create(m, { prompt = "expensive" }, { key = "poor" })
    assert.are.equal(200, status)
    assert.are.equal(402, body.code)
    assert.are.equal("insufficient credits", body.msg)
    -- another model costs 10: still affordable
    local _, ok = create(m, { prompt = "cheap" }, { key = "poor", model = "other/model" })
    assert.are.equal(200, ok.code)
    assert.are.equal(1, m.stats().creates)
    local _, credit = call(m, "GET", "/api/v1/chat/credit", { key = "poor" })
    assert.are.equal(20, credit.data)
  end)

  it("answers 422 naming the bad field", function()
    local m = start()
    local cases = {
      { "{not json", "JSON" },
      { cjson.encode { input = { prompt = "x" } }, "model" },
      { cjson.encode { model = "", input = { prompt = "x" } }, "model" },
      { cjson.encode { model = 7, input = { prompt = "x" } }, "model" },
      { cjson.encode { model = KLING }, "input" },
      { cjson.encode { model = KLING, input = "x" }, "input" },
      { cjson.encode { model = KLING, input = { 1, 2 } }, "input" },
      { cjson.encode { model = KLING, input = {} }, "prompt" },
      { cjson.encode { model = KLING, input = { prompt = "" } }, "prompt" },
      { cjson.encode { model = KLING, input = { prompt = 5 } }, "prompt" },
      { cjson.encode { model = KLING, input = { prompt = "x", aspect_ratio = "2:1" } }, "aspect_ratio" },
      { cjson.encode { model = KLING, input = { prompt = "x", resolution = "1080p" } }, "resolution" },
      { cjson.encode { model = KLING, input = { prompt = "x", duration = "5" } }, "duration" },
      { cjson.encode { model = KLING, input = { prompt = "x", generate_audio = "yes" } }, "generate_audio" },
      { cjson.encode { model = KLING, input = { prompt = "x" }, callBackUrl = 5 }, "callBackUrl" },
    }
    for _, case in ipairs(cases) do
      local status, body = call(m, "POST", "/api/v1/jobs/createTask", { body = case[1] })
      assert.are.equal(200, status)
      assert.are.equal(422, body.code, case[1])
      assert.is_truthy(body.msg:find(case[2], 1, true), body.msg .. " should name " .. case[2])
    end
    -- other models take any input object
    local _, ok = call(m, "POST", "/api/v1/jobs/createTask",
      { body = { model = "acme/x", input = { anything = { 1, 2 } } } })
    assert.are.equal(200, ok.code)
    local stats = m.stats()
    assert.are.equal(1, stats.creates)
    assert.are.equal(#cases + 1, stats.create_requests)
    local _, missing = call(m, "GET", "/api/v1/jobs/recordInfo")
    assert.are.equal(400, missing.code) -- the documented answer
    assert.are.equal("taskId parameter is required", missing.msg)
  end)

  it("answers 404 for an unknown task and an unknown path", function()
    local m = start()
    local status, body = record(m, "task_nope")
    assert.are.equal(200, status)
    assert.are.equal(404, body.code)
    assert.are.equal("Task not found", body.msg)
    status, body = call(m, "GET", "/api/v1/nothing/here")
    assert.are.equal(200, status)
    assert.are.equal(404, body.code)
  end)

  it("URL-decodes the taskId", function()
    local m = start { "--job-seconds", "5" }
    local id = created_id(m, { prompt = "x" })
    local encoded = id:gsub("_", "%%5F")
    local _, body = record(m, encoded)
    assert.are.equal(200, body.code)
    assert.are.equal(id, body.data.taskId)
  end)

  it("charges credits once, when a job succeeds, never for a failure", function()
    local m = start { "--credits", "1000" }
    local function balance()
      local _, body = call(m, "GET", "/api/v1/chat/credit")
      return body.data
    end
    local slow = created_id(m, { prompt = "slow [seconds=1.5]" })
    created_id(m, { prompt = "bad [fail] [seconds=0]" })
    created_id(m, { prompt = "other [seconds=0]" }, { model = "acme/other" })
    -- the slow one has not ended: only the other-model job (10) is charged
    assert.are.equal(990, balance())
    local rec = await(m, slow)
    assert.are.equal("success", rec.state)
    assert.are.equal(1000 - 35 - 10, balance())
    -- polling again does not charge again
    record(m, slow)
    assert.are.equal(1000 - 35 - 10, balance())
    local _, other_key = call(m, "GET", "/api/v1/chat/credit", { key = "other-key" })
    assert.are.equal(1000, other_key.data)
    assert.are.equal(4, m.stats().credit_requests)
  end)

  it("resets tasks, counters and balances on POST /__mock/reset", function()
    local m = start { "--job-seconds", "0" }
    local id = created_id(m, { prompt = "one" })
    await(m, id)
    local _, tasks = call(m, "GET", "/__mock/tasks", { key = false })
    assert.are.equal(1, #tasks)
    assert.are.equal(id, tasks[1].taskId)
    assert.are.equal("one", tasks[1].prompt)
    assert.is_number(tasks[1].created)
    assert.are.equal(1, tasks[1].polls)
    assert.are.same({ one = 1 }, m.stats().submits_by_prompt)
    local status = call(m, "POST", "/__mock/reset", { key = false })
    assert.are.equal(200, status)
    local stats = m.stats()
    assert.are.equal(0, stats.tasks)
    assert.are.equal(0, stats.creates)
    assert.are.same({}, stats.submits_by_prompt)
    local _, _, _, raw = call(m, "GET", "/__mock/tasks", { key = false })
    assert.are.equal("[]", raw)
    local _, credit = call(m, "GET", "/api/v1/chat/credit")
    assert.are.equal(10000, credit.data)
    local _, gone = record(m, id)
    assert.are.equal(404, gone.code)
  end)
end)

describe("modkie mock: modkie dialect", function()
  it("walks pending, processing, success, with object resultJson and null failCode", function()
    local m = start { "--dialect", "modkie" }
    local id = created_id(m, { prompt = "a dog [seconds=1]" })
    local _, running = record(m, id)
    assert.are.equal("success", running.message)
    assert.is_nil(running.msg)
    assert.are.equal(cjson.null, running.data.resultJson)
    assert.are.equal(cjson.null, running.data.failCode)
    local rec, seen = await(m, id)
    assert.are.same({ "pending", "processing", "success" }, seen)
    assert.is_table(rec.param)
    assert.are.equal("a dog [seconds=1]", rec.param.input.prompt)
    assert.is_table(rec.resultJson)
    assert.are.same({ m.url .. "/files/" .. id .. "/0.mp4" }, rec.resultJson.resultUrls)
    assert.are.equal(cjson.null, rec.failCode)
    assert.are.equal(cjson.null, rec.failMsg)
    assert.are.equal(35, rec.creditsCharged)
    assert.is_nil(rec.creditsConsumed)
    assert.are.equal(1000, rec.costTime)
  end)

  it("ends [fail] jobs with an integer failCode and null resultJson", function()
    local m = start { "--dialect", "modkie", "--job-seconds", "0" }
    local id = created_id(m, { prompt = "x [fail]" })
    local _, _, _, raw = record(m, id)
    assert.is_truthy(raw:find('"failCode":501', 1, true))
    local rec = await(m, id)
    assert.are.equal("fail", rec.state)
    assert.are.equal(501, rec.failCode)
    assert.are.equal("generation failed", rec.failMsg)
    assert.are.equal(cjson.null, rec.resultJson)
  end)

  it("gives [text] jobs a resultObject object", function()
    local m = start { "--dialect", "modkie", "--job-seconds", "0" }
    local id = created_id(m, { prompt = "poem [text]" })
    local rec = await(m, id)
    assert.is_string(rec.resultJson.resultObject.text)
    assert.is_nil(rec.resultJson.resultUrls)
  end)

  it("answers errors with HTTP status = code and a message key", function()
    local m = start { "--dialect", "modkie" }
    local status, body = call(m, "GET", "/api/v1/chat/credit", { key = false })
    assert.are.equal(401, status)
    assert.are.equal(401, body.code)
    assert.are.equal("You do not have access permissions", body.message)
    status, body = create(m, { prompt = "" })
    assert.are.equal(422, status)
    assert.is_truthy(body.message:find("prompt", 1, true))
    status, body = record(m, "task_missing")
    assert.are.equal(404, status)
    assert.are.equal("Task not found", body.message)
    call(m, "POST", "/__mock/credits", { key = false, body = { key = "test-key", balance = 0 } })
    status, body = create(m, { prompt = "x" })
    assert.are.equal(402, status)
    assert.are.equal("insufficient credits", body.message)
    status = call(m, "GET", "/nowhere")
    assert.are.equal(404, status)
  end)
end)

describe("modkie mock: the documented shapes", function()
  it("fails in the documented shapes: [fail=500], [fail=GENERATION_FAILED], [fail=null], either dialect", function()
    local m = start { "--job-seconds", "0" }
    local cases = {
      { "[fail=500]", "500", "Internal server error" },
      { "[fail=GENERATION_FAILED]", "GENERATION_FAILED", "The generation task failed." },
      { "[fail=null]", cjson.null, "generation failed" },
    }
    for _, c in ipairs(cases) do
      local rec = await(m, created_id(m, { prompt = "x " .. c[1] }))
      assert.are.same({ "fail", c[2], c[3] }, { rec.state, rec.failCode, rec.failMsg })
      assert.is_nil(rec.resultJson)
    end
    local mk = start { "--dialect", "modkie", "--job-seconds", "0" }
    local rec = await(mk, created_id(mk, { prompt = "x [fail=500]" }))
    assert.are.same({ 500, "Internal server error", cjson.null }, { rec.failCode, rec.failMsg, rec.resultJson })
  end)

  it("answers a failed record in the 501 envelope with [envelope=501]", function()
    local m = start { "--job-seconds", "0" }
    local status, body = record(m, created_id(m, { prompt = "x [fail=500] [envelope=501]" }))
    assert.are.equal(200, status) -- kie: the code is in the body
    assert.are.same({ 501, "Playground task failed.", "fail", "500" },
      { body.code, body.msg, body.data.state, body.data.failCode })
    local mk = start { "--dialect", "modkie", "--job-seconds", "0" }
    status, body = record(mk, created_id(mk, { prompt = "x [fail] [envelope=501]" }))
    assert.are.same({ 501, 501, "fail" }, { status, body.code, body.data.state })
  end)

  it("answers 'recordInfo is null' for a while after createTask: --record-delay and [record_delay=S]", function()
    for _, case in ipairs({ { { "--record-delay", "0.4" }, "late" }, { {}, "late [record_delay=0.4]" } }) do
      local args = { "--job-seconds", "0" }
      for _, a in ipairs(case[1]) do args[#args + 1] = a end
      local m = start(args)
      local id = created_id(m, { prompt = case[2] })
      local status, body = record(m, id)
      assert.are.equal(200, status)
      assert.are.same({ code = 422, msg = "recordInfo is null", data = cjson.null }, body)
      helper.sleep(0.5)
      assert.are.equal("success", select(2, record(m, id)).data.state)
    end
  end)

  it("gives progress on Sora 2 models and [progress], and updateTime on every record", function()
    local m = start { "--job-seconds", "1" }
    local sora = created_id(m, { prompt = "a boat" }, { model = "sora-2-text-to-video" })
    local kling = created_id(m, { prompt = "a boat" })
    local forced = created_id(m, { prompt = "a boat [progress]" })
    local seen = {}
    local rec
    repeat
      rec = select(2, record(m, sora)).data
      if rec.progress then seen[#seen + 1] = rec.progress end
      assert.is_number(rec.updateTime)
      helper.sleep(0.05)
    until rec.state == "success"
    assert.are.equal(100, seen[#seen])
    for i = 2, #seen do assert.is_true(seen[i] >= seen[i - 1]) end
    assert.is_true(#seen > 3)
    assert.are.equal(rec.completeTime, rec.updateTime)
    assert.is_nil(select(2, record(m, kling)).data.progress)
    assert.are.equal(100, select(2, record(m, forced)).data.progress)
  end)

  it("refuses models it does not know with --models, and knows more by name", function()
    local m = start { "--models", "acme/x,acme/y" }
    local status, body = create(m, { prompt = "x" }, { model = "acme/unknown" })
    assert.are.equal(200, status)
    assert.are.equal(422, body.code)
    assert.matches("acme/unknown", body.msg, 1, true)
    assert.are.equal(200, select(2, create(m, { prompt = "x" }, { model = "acme/x" })).code)
    assert.are.equal(200, select(2, create(m, { prompt = "x" })).code) -- registered in modkie
    assert.are.equal(0, m.stats().tasks - 2)
    local open = start()
    assert.are.equal(200, select(2, create(open, { prompt = "x" }, { model = "acme/unknown" })).code)
  end)

  it("charges fractional prices from fractional balances (--price, --credits)", function()
    local m = start { "--job-seconds", "0", "--credits", "4346.6", "--price", "kling/kling-3-0=1.23" }
    local rec = await(m, created_id(m, { prompt = "cheap" }))
    assert.are.equal(1.23, rec.creditsConsumed)
    local _, body = call(m, "GET", "/api/v1/chat/credit")
    assert.is_true(math.abs(body.data - 4345.37) < 1e-9, tostring(body.data))
  end)
end)

describe("modkie mock: files and download links", function()
  it("serves deterministic bytes with the right length and type, no auth needed", function()
    local m = start { "--job-seconds", "0" }
    local id = created_id(m, { prompt = "f [outputs=2]" })
    local rec = await(m, id)
    local urls = cjson.decode(rec.resultJson).resultUrls
    local status, bytes, headers = get_file(urls[2])
    assert.are.equal(200, status)
    assert.are.equal("video/mp4", headers["content-type"])
    assert.are.equal("16384", headers["content-length"])
    assert.are.equal(16384, #bytes)
    assert.are.equal(expected_bytes(id, 1, 16384), bytes)
    local _, again = get_file(urls[2] .. "?token=abc&expires=1")
    assert.are.equal(bytes, again)
    local _, first = get_file(urls[1])
    assert.are_not.equal(bytes, first)
    assert.are.equal(404, (get_file(m.url .. "/files/" .. id .. "/2.mp4")))
    assert.are.equal(404, (get_file(m.url .. "/files/task_unknown/0.mp4")))
    local sized = created_id(m, { prompt = "s [size=100] [ext=png]" })
    local srec = await(m, sized)
    local surl = cjson.decode(srec.resultJson).resultUrls[1]
    assert.is_truthy(surl:match("/0%.png$"))
    local s2, small, sh = get_file(surl)
    assert.are.equal(200, s2)
    assert.are.equal("image/png", sh["content-type"])
    assert.are.equal(expected_bytes(sized, 0, 100), small)
  end)

  it("does not serve files of running, failed or text jobs", function()
    local m = start { "--job-seconds", "5" }
    local id = created_id(m, { prompt = "running" })
    assert.are.equal(404, (get_file(m.url .. "/files/" .. id .. "/0.mp4")))
    local failed = created_id(m, { prompt = "x [fail] [seconds=0]" })
    assert.are.equal(404, (get_file(m.url .. "/files/" .. failed .. "/0.mp4")))
  end)

  it("counts file requests that carry an Authorization header", function()
    local m = start { "--job-seconds", "0" }
    local id = created_id(m, { prompt = "x" })
    local url = m.url .. "/files/" .. id .. "/0.mp4"
    get_file(url)
    get_file(url)
    local stats = m.stats()
    assert.are.equal(2, stats.files)
    assert.are.equal(0, stats.files_with_auth)
    get_file(url, { authorization = "Bearer test-key" })
    stats = m.stats()
    assert.are.equal(3, stats.files)
    assert.are.equal(1, stats.files_with_auth)
  end)

  it("signs file URLs with download-url and refuses foreign ones", function()
    local m = start { "--job-seconds", "0" }
    local id = created_id(m, { prompt = "x" })
    local url = m.url .. "/files/" .. id .. "/0.mp4"
    local status, body = call(m, "POST", "/api/v1/common/download-url", { body = { url = url } })
    assert.are.equal(200, status)
    assert.are.equal(200, body.code)
    local token, expires = body.data:match("^" .. url:gsub("%p", "%%%0") .. "%?token=(%w+)&expires=(%d+)$")
    assert.is_truthy(token, body.data)
    assert.is_true(tonumber(expires) > os.time())
    assert.are.equal(200, (get_file(body.data)))
    for _, bad in ipairs { "http://elsewhere.example/files/" .. id .. "/0.mp4",
      m.url .. "/files/" .. id .. "/9.mp4", m.url .. "/files/task_none/0.mp4" } do
      local _, refused = call(m, "POST", "/api/v1/common/download-url", { body = { url = bad } })
      assert.are.equal(422, refused.code, bad)
      assert.is_truthy(refused.msg:find("url", 1, true))
    end
    local _, missing = call(m, "POST", "/api/v1/common/download-url", { body = {} })
    assert.are.equal(422, missing.code)
    assert.are.equal(5, m.stats().download_url_requests)
  end)

  it("uses --files-base for result URLs, served by the same server", function()
    -- a fixed port is needed to name it in --files-base: one held for the test
    local port = helper.held_port(later)
    local m = start { "--port", tostring(port), "--job-seconds", "0",
      "--files-base", "http://localhost:" .. port .. "/" }
    assert.are.equal(port, m.port)
    local id = created_id(m, { prompt = "x" })
    local rec = await(m, id)
    local url = cjson.decode(rec.resultJson).resultUrls[1]
    assert.are.equal("http://localhost:" .. port .. "/files/" .. id .. "/0.mp4", url)
    -- fetch it by address: a minimal machine may have no /etc/hosts to say what localhost is
    local status, bytes = get_file((url:gsub("//localhost:", "//127.0.0.1:")))
    assert.are.equal(200, status)
    assert.are.equal(16384, #bytes)
    local _, body = call(m, "POST", "/api/v1/common/download-url", { body = { url = url } })
    assert.are.equal(200, body.code)
  end)
end)

describe("modkie mock: --limits", function()
  it("allows 10 recordInfo per second per key, then 429 with Retry-After", function()
    local m = start { "--limits", "--job-seconds", "30" }
    local id = created_id(m, { prompt = "x" })
    for _ = 1, 10 do
      local _, body = record(m, id)
      assert.are.equal(200, body.code)
    end
    local status, body, headers = record(m, id)
    assert.are.equal(200, status) -- kie dialect: the code is in the body
    assert.are.equal(429, body.code)
    assert.are.equal("rate limited", body.msg)
    local retry = tonumber(headers["retry-after"])
    assert.is_truthy(retry)
    assert.is_true(retry >= 1)
    -- another key has its own window
    local _, other = record(m, id, { key = "other" })
    assert.are.equal(200, other.code)
    assert.are.equal(1, m.stats().rate_limited)
  end)

  it("allows 20 createTask per 10 s; a refused create creates nothing", function()
    local m = start { "--limits", "--dialect", "modkie" }
    for i = 1, 20 do
      local status = create(m, { prompt = "p" .. i })
      assert.are.equal(200, status)
    end
    local status, body, headers = create(m, { prompt = "one too many" })
    assert.are.equal(429, status)
    assert.are.equal(429, body.code)
    assert.is_true(tonumber(headers["retry-after"]) >= 1)
    local stats = m.stats()
    assert.are.equal(20, stats.creates)
    assert.are.equal(20, stats.tasks)
    assert.are.equal(21, stats.create_requests)
    assert.is_nil(stats.submits_by_prompt["one too many"])
  end)

  it("does not limit without --limits", function()
    local m = start { "--job-seconds", "30" }
    local id = created_id(m, { prompt = "x" })
    for _ = 1, 25 do
      local _, body = record(m, id)
      assert.are.equal(200, body.code)
    end
    assert.are.equal(0, m.stats().rate_limited)
  end)
end)

describe("modkie mock: HTTP", function()
  local m
  setup(function() m = helper.mock() end)
  teardown(function() m.stop() end)

  it("keeps a connection alive across requests", function()
    local c = connect(m)
    finally(function() c:close() end)
    local before
    for i = 1, 5 do
      assert(c:send(get_request("/__mock/stats")))
      local res = assert(read_response(c))
      assert.are.equal(200, res.status)
      local stats = cjson.decode(res.body)
      before = before or stats.connections
      assert.are.equal(before, stats.connections, "request " .. i .. " used a new connection")
    end
    -- a POST with a body, then a GET, still on the same connection
    local body = '{"model":"acme/x","input":{"prompt":"ka"}}'
    assert(c:send("POST /api/v1/jobs/createTask HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
      .. "Content-Length: " .. #body .. "\r\n\r\n" .. body))
    local res = assert(read_response(c))
    assert.are.equal(200, cjson.decode(res.body).code)
    assert(c:send(get_request("/__mock/stats")))
    assert.are.equal(before, cjson.decode(assert(read_response(c)).body).connections)
  end)

  it("answers pipelined requests in order", function()
    local c = connect(m)
    finally(function() c:close() end)
    local body = '{"model":"acme/x","input":{"prompt":"piped"}}'
    assert(c:send(get_request("/api/v1/chat/credit", "Authorization: Bearer k\r\n")
      .. "POST /api/v1/jobs/createTask HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
      .. "Content-Length: " .. #body .. "\r\n\r\n" .. body
      .. get_request("/nowhere")
      .. get_request("/__mock/stats")))
    local credit = cjson.decode(assert(read_response(c)).body)
    assert.is_number(credit.data)
    local created = cjson.decode(assert(read_response(c)).body)
    assert.is_string(created.data.taskId)
    assert.are.equal(404, assert(read_response(c)).status)
    local stats = cjson.decode(assert(read_response(c)).body)
    assert.are.equal(1, stats.submits_by_prompt.piped)
  end)

  it("closes after Connection: close and after an HTTP/1.0 request", function()
    local c = connect(m)
    finally(function() c:close() end)
    assert(c:send(get_request("/__mock/stats", "Connection: close\r\n")))
    local res = assert(read_response(c))
    assert.are.equal(200, res.status)
    assert.are.equal("close", res.headers.connection)
    assert.is_true(closed_by_server(c))
    local c2 = connect(m)
    finally(function() c2:close() end)
    assert(c2:send("GET /__mock/stats HTTP/1.0\r\n\r\n"))
    res = assert(read_response(c2))
    assert.are.equal(200, res.status)
    assert.is_true(closed_by_server(c2))
    -- HTTP/1.0 with keep-alive stays open
    local c3 = connect(m)
    finally(function() c3:close() end)
    for _ = 1, 2 do
      assert(c3:send("GET /__mock/stats HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
      res = assert(read_response(c3))
      assert.are.equal("keep-alive", res.headers.connection)
    end
  end)

  it("answers malformed requests with 400 and a close, and lives on", function()
    local bad = {
      { "garbage\r\n\r\n", 400 },
      { "GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400 },
      { "POST /api/v1/jobs/createTask HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400 },
      { "POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400 },
      { "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400 },
      { "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 400 },
      { "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400 },
      { "POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501 },
      { "GET / HTTP/1.1\r\nX-Big: " .. string.rep("a", 20000) .. "\r\n\r\n", 431 },
      { "GET / HTTP/2.0\r\n\r\n", 505 },
    }
    for _, case in ipairs(bad) do
      local c = connect(m)
      finally(function() c:close() end)
      assert(c:send(case[1]))
      local res = assert(read_response(c))
      assert.are.equal(case[2], res.status, case[1]:sub(1, 40))
      assert.is_true(closed_by_server(c), case[1]:sub(1, 40))
    end
    local status = call(m, "GET", "/__mock/stats")
    assert.are.equal(200, status)
  end)

  it("accepts chunked request bodies, arriving in pieces, with extensions and trailers", function()
    local c = connect(m)
    finally(function() c:close() end)
    local body = '{"model":"kling/kling-3-0","input":{"prompt":"sent in chunks"}}'
    local pieces = { "POST /api/v1/jobs/createTask HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
      .. "Transfer-Encoding: chunked\r\n\r\n", ("%x;name=value\r\n"):format(10), body:sub(1, 10), "\r\n",
      ("%X\r\n"):format(#body - 10) .. body:sub(11, 30), body:sub(31) .. "\r\n0\r\n", "X-Check: 1\r\n\r\n" }
    for _, p in ipairs(pieces) do
      assert(c:send(p))
      helper.sleep(0.02)
    end
    local res = assert(read_response(c))
    assert.are.equal(200, res.status)
    local id = cjson.decode(res.body).data.taskId
    local _, tasks = m.request("GET", "/__mock/tasks")
    local prompts = {}
    for _, t in ipairs(tasks) do prompts[t.taskId] = t.prompt end
    assert.are.equal("sent in chunks", prompts[id])
    -- the connection stays usable for the next request
    assert(c:send(get_request("/__mock/stats")))
    assert.are.equal(200, assert(read_response(c)).status)
  end)

  it("survives a client that disconnects mid-request", function()
    -- Open connections as the server sees them, once it has noticed every
    -- close; a stats call counts its own connection, hence 1 when idle.
    local function open_when_settled()
      local open
      local deadline = helper.now() + 3
      repeat
        open = m.stats().open_connections
        if open == 1 then break end
        helper.sleep(0.05)
      until helper.now() > deadline
      return open
    end
    assert.are.equal(1, open_when_settled())
    for _, partial in ipairs { "GET /__mock/sta", "POST /api/v1/jobs/createTask HTTP/1.1\r\n"
      .. "Content-Length: 100\r\n\r\n{\"model\":" } do
      local c = connect(m)
      assert(c:send(partial))
      helper.sleep(0.05)
      c:close()
    end
    -- a client that sends a request and leaves before reading the answer
    local c = connect(m)
    assert(c:send(get_request("/__mock/stats")))
    c:close()
    assert.are.equal(1, open_when_settled())
    assert.are.equal(200, (call(m, "GET", "/__mock/stats")))
  end)

  it("reads a request that arrives byte by byte", function()
    local c = connect(m)
    finally(function() c:close() end)
    local body = '{"model":"acme/x","input":{"prompt":"slow"}}'
    local req = "POST /api/v1/jobs/createTask HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
      .. "Content-Length: " .. #body .. "\r\n\r\n" .. body
    for i = 1, #req, 7 do
      assert(c:send(req:sub(i, i + 6)))
      socket.sleep(0.002)
    end
    local res = assert(read_response(c))
    assert.are.equal(200, cjson.decode(res.body).code)
  end)

  it("writes a big answer to a slow reader in pieces", function()
    local _, created = call(m, "POST", "/api/v1/jobs/createTask",
      { body = { model = "acme/x", input = { prompt = "big [size=3000000] [seconds=0]" } } })
    local id = created.data.taskId
    local c = connect(m)
    finally(function() c:close() end)
    assert(c:send(get_request("/files/" .. id .. "/0.mp4") .. get_request("/__mock/stats")))
    local head = assert(c:receive("*l"))
    assert.are.equal("HTTP/1.1 200 OK", head)
    local length
    repeat
      local h = assert(c:receive("*l"))
      length = length or tonumber(h:match("^Content%-Length: (%d+)"))
    until h == ""
    assert.are.equal(3000000, length)
    local chunks, got = {}, 0
    while got < length do
      local piece = assert(c:receive(math.min(65536, length - got)))
      chunks[#chunks + 1] = piece
      got = got + #piece
      if #chunks % 8 == 0 then socket.sleep(0.005) end
    end
    assert.are.equal(expected_bytes(id, 0, 3000000), table.concat(chunks))
    -- the pipelined request behind it is answered too
    assert.are.equal(200, assert(read_response(c)).status)
  end)

  it("never sends 100 Continue and counts Expect headers", function()
    local before = m.stats().expect_headers
    local c = connect(m)
    finally(function() c:close() end)
    local body = '{"model":"acme/x","input":{"prompt":"expect"}}'
    assert(c:send("POST /api/v1/jobs/createTask HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
      .. "Expect: 100-continue\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body))
    local res = assert(read_response(c))
    assert.are.equal(200, res.status)
    assert.are.equal(200, cjson.decode(res.body).code)
    assert.are.equal(before + 1, m.stats().expect_headers)
  end)

  it("holds 300 simultaneous connections and answers each", function()
    local conns = {}
    finally(function() for _, c in ipairs(conns) do c:close() end end)
    for i = 1, 300 do conns[i] = connect(m) end
    for i, c in ipairs(conns) do assert(c:send(get_request("/__mock/stats?n=" .. i))) end
    for _, c in ipairs(conns) do
      local res = assert(read_response(c))
      assert.are.equal(200, res.status)
    end
    local stats = m.stats()
    assert.is_true(stats.max_open_connections >= 300)
    assert.is_true(stats.open_connections >= 300)
  end)
end)

describe("modkie mock: HTTP server in-process", function()
  -- A server whose handler answers by path, driven by step() while a
  -- client in this same process sends `request`; returns all bytes the
  -- client got until the server closed or `want` appeared.
  local function exchange(request, want)
    local server = require("modkie.mock.http").new {
      port = 0,
      handler = function(req)
        if req.path == "/boom" then error("kaboom") end
        if req.path == "/drop" then return { drop = true } end
        if req.path == "/cut" then return { status = 200, body = "0123456789", truncate = 4 } end
        if req.path == "/slow" then return { status = 200, body = "slow", delay = 0.2 } end
        if req.path == "/x" then return { status = 200, body = "x=[" .. tostring(req.headers.x) .. "]" } end
        return { status = 200, body = "fine:" .. req.path }
      end,
      on_error = function() end,
    }
    assert(server:listen())
    finally(function() server:close() end)
    local c = assert(socket.connect("127.0.0.1", server.port))
    finally(function() c:close() end)
    c:settimeout(0.01)
    assert(c:send(request))
    local got, closed = "", false
    local deadline = helper.now() + 3
    while helper.now() < deadline do
      server:step(0.01)
      local data, err, partial = c:receive(4096)
      got = got .. (data or partial or "")
      if err == "closed" then closed = true; break end
      if want and got:find(want, 1, true) then break end
    end
    return got, closed
  end

  it("answers 500 when the handler raises, and keeps serving", function()
    local got = exchange(get_request("/boom") .. get_request("/ok"), "fine:/ok")
    assert.is_truthy(got:find("^HTTP/1%.1 500 "), got)
    assert.is_truthy(got:find("HTTP/1.1 200 OK", 1, true), got)
  end)

  it("can close without answering, or cut a body short (for faults)", function()
    local got, closed = exchange(get_request("/drop") .. get_request("/ok"))
    assert.is_true(closed)
    assert.are.equal("", got)
    got, closed = exchange(get_request("/cut") .. get_request("/ok"))
    assert.is_true(closed)
    assert.is_truthy(got:find("Content-Length: 10\r\n", 1, true), got)
    assert.are.equal("0123", got:match("\r\n\r\n(.*)$"))
  end)

  -- fuzz finding mock_http/slow-header-blanks: a header pattern that
  -- backtracked over a run of blanks (0.6 s of CPU for this request), and a
  -- search for the end of the head from its start on every read (1.8 s for
  -- it byte by byte). The single-threaded emulator stalled meanwhile.
  it("regression: reads a header with 16,000 blanks inside in linear time, in one piece or byte by byte", function()
    local blanks = ("a" .. (" "):rep(16000) .. "b")
    local request = "GET /x HTTP/1.1\r\nX: \t " .. blanks .. " \t\r\n\r\n"
    local t0 = os.clock()
    local got = exchange(request, "]")
    assert.is_true(os.clock() - t0 < 0.2, "took " .. os.clock() - t0 .. " s of CPU")
    assert.are.equal("x=[" .. blanks .. "]", got:match("\r\n\r\n(.*)$"))
    -- byte by byte: a socket that hands the server one byte per read
    local seen
    local server = require("modkie.mock.http").new { handler = function(req)
      seen = req.headers.x
      return { status = 200, body = "ok" }
    end }
    local pos, sent = 0, {}
    local sock = {
      receive = function()
        pos = pos + 1
        if pos > #request then return nil, "closed", "" end
        return nil, "timeout", request:sub(pos, pos)
      end,
      send = function(_, data, i) sent[#sent + 1] = data:sub(i or 1); return #data end,
      close = function() return 1 end, setoption = function() return 1 end, shutdown = function() return 1 end,
    }
    local c = { sock = sock, inbuf = "", inparts = {}, inlen = 0, outq = {}, outhead = 1, outpos = 0, last = 0 }
    server.conns[sock] = c
    t0 = os.clock()
    for _ = 1, #request + 1 do
      if c.closed then break end
      server:read(c, 0)
    end
    assert.is_true(os.clock() - t0 < 0.2, "took " .. os.clock() - t0 .. " s of CPU byte by byte")
    assert.are.equal(blanks, seen)
    assert.matches("^HTTP/1.1 200 OK", table.concat(sent))
  end)

  it("holds a delayed answer and the pipelined ones behind it", function()
    local t0 = helper.now()
    local got = exchange(get_request("/slow") .. get_request("/after"), "fine:/after")
    assert.is_true(helper.now() - t0 >= 0.2)
    local slow_at, after_at = got:find("slow", 1, true), got:find("fine:/after", 1, true)
    assert.is_truthy(slow_at and after_at, got)
    assert.is_true(slow_at < after_at)
  end)
end)

-- Every body from the network is untrusted: wrong types in every field of the
-- envelope and of the record, missing fields, huge strings, deep nesting,
-- invalid UTF-8. A canned server (spec/support/canned_server.lua) says exactly
-- that over a real socket; each call must give a `protocol` error (or a
-- documented kind) or a sane value: never a crash, never a Lua error.
local canned = require "spec.support.canned"
local modkie = require "modkie"

local KLING = "kling/kling-3-0"
local ID = "task_u"
local GOOD = {
  createTask = '{"taskId":"' .. ID .. '"}',
  recordInfo = '{"taskId":"' .. ID .. '","state":"success",'
    .. '"resultJson":"{\\"resultUrls\\":[\\"https://cdn.example/u.mp4\\"]}"}',
  credit = "100",
  ["download-url"] = '"https://cdn.example/fresh.mp4"',
}
local ENDPOINTS = { "createTask", "recordInfo", "credit", "download-url" }

local function envelope(data) return '{"code":200,"msg":"success","data":' .. data .. "}" end
local function deep(n, leaf) return ("["):rep(n) .. (leaf or "1") .. ("]"):rep(n) end
local MB = 1024 * 1024

-- What each endpoint may give back: a protocol error, a documented kind, or a value that makes sense.
local function opt_number(v)
  return v == nil or (type(v) == "number" and v == v and v > -math.huge and v < math.huge)
end

local function sane_result(res)
  if type(res) ~= "table" or res.state ~= "success" or res.id ~= ID then return false, "id/state" end
  if type(res.urls) ~= "table" then return false, "urls" end
  for _, u in ipairs(res.urls) do if type(u) ~= "string" then return false, "url type" end end
  for _, k in ipairs({ "created_at", "completed_at", "cost_time", "credits" }) do
    if not opt_number(res[k]) then return false, k end
  end
  return true
end

local SANE = {
  createTask = sane_result,
  recordInfo = sane_result,
  record = function(rec) return type(rec) == "table" end, -- the raw record, as documented
  credit = function(n) return type(n) == "number" and n == n and n > -math.huge and n < math.huge end,
  ["download-url"] = function(v) return type(v) == "string" and v:match("^https?://") ~= nil end,
}
-- kinds an endpoint may answer garbage with, besides protocol
local KINDS = {
  createTask = { ambiguous = true, failed = true }, -- createTask was sent: a task may exist
  recordInfo = { failed = true },
}

describe("untrusted bodies", function()
  local s, client

  setup(function()
    s = canned.start()
    -- retries = 0: a garbled answer is final at once (the retry path has its own test)
    client = modkie.new{ base_url = s.url, api_key = "k", retries = 0, rate = false, poll_interval = 0.02,
      deadline = 10, timeout = 10 }
  end)
  teardown(function()
    client:close()
    s.stop()
  end)

  -- Run fn in pcall: a Lua error escaping is a failure of its own.
  local function safely(what, fn)
    local ok, a, b = pcall(fn)
    assert(ok, what .. ": a Lua error escaped: " .. tostring(a))
    return a, b
  end

  -- The outcome of one endpoint called once, given the body `text` for it
  -- (and good answers for the others).
  local function call(endpoint, text, status)
    for _, e in ipairs(ENDPOINTS) do s.answer(e, envelope(GOOD[e])) end
    s.answer(endpoint, text, status)
    local before = #s.requests()
    local res, err
    if endpoint == "createTask" then
      res, err = safely("submit", function()
        return assert(client:submit(KLING, { prompt = "untrusted" })):await(10)
      end)
    elseif endpoint == "recordInfo" then
      res, err = safely("await", function() return assert(client:job(ID)):await(10) end)
    elseif endpoint == "record" then
      s.answer("recordInfo", text, status)
      res, err = safely("record", function() return client:record(ID) end)
    elseif endpoint == "credit" then
      res, err = safely("credits", function() return client:credits() end)
    else
      res, err = safely("download_url", function() return client:download_url("https://cdn.example/u.mp4") end)
    end
    assert(#s.requests() > before, "the call never reached the server")
    return res, err
  end

  -- Assert the outcome is sane: a value that makes sense, or an error of an allowed kind.
  local function check(endpoint, what, res, err)
    local label = endpoint .. ", " .. what
    if res ~= nil then
      local ok, why = SANE[endpoint](res)
      assert(ok, label .. ": not a sane value (" .. tostring(why) .. "): " .. tostring(res))
      return
    end
    assert(modkie.Error.is(err), label .. ": neither a value nor a modkie.Error: " .. tostring(err))
    assert(err.kind == "protocol" or (KINDS[endpoint] or {})[err.kind], label .. ": kind " .. err.kind)
    assert.is_string(err.message)
    assert.is_string(tostring(err))
    return err
  end

  local function each(endpoints, what, text, status)
    for _, e in ipairs(endpoints) do check(e, what, call(e, text(e), status)) end
  end
  local ALL = { "createTask", "recordInfo", "record", "credit", "download-url" }
  local function good(e) return GOOD[e == "record" and "recordInfo" or e] end

  describe("the envelope", function()
    local CASES = {
      { "code as a numeric string", function(e) return '{"code":"200","msg":"success","data":' .. good(e) .. "}" end },
      { "code as a word", function(e) return '{"code":"ok","msg":"success","data":' .. good(e) .. "}" end },
      { "code as an array", function(e) return '{"code":[200],"msg":"success","data":' .. good(e) .. "}" end },
      { "code as an object", function(e) return '{"code":{"v":200},"msg":"success","data":' .. good(e) .. "}" end },
      { "code null", function(e) return '{"code":null,"msg":"success","data":' .. good(e) .. "}" end },
      { "code missing", function(e) return '{"msg":"success","data":' .. good(e) .. "}" end },
      { "code true", function(e) return '{"code":true,"msg":"success","data":' .. good(e) .. "}" end },
      { "code negative", function(e) return '{"code":-200,"msg":"success","data":' .. good(e) .. "}" end },
      { "code beyond any integer", function(e) return '{"code":1e300,"msg":"success","data":' .. good(e) .. "}" end },
      { "msg as a number", function(e) return '{"code":200,"msg":5,"data":' .. good(e) .. "}" end },
      { "msg as an object, message as an array", function(e)
        return '{"code":200,"msg":{"a":1},"message":[1],"data":' .. good(e) .. "}" end },
      { "data as a string", function() return envelope('"x"') end },
      { "data as a number", function() return envelope("42") end },
      { "data as an array", function() return envelope("[1,2,3]") end },
      { "data as an empty object", function() return envelope("{}") end },
      { "data true", function() return envelope("true") end },
      { "data null", function() return envelope("null") end },
      { "the envelope an array", function(e) return "[" .. good(e) .. "]" end },
      { "the envelope a string", function() return '"success"' end },
      { "the envelope null", function() return "null" end },
      { "an empty body", function() return "" end },
      { "an HTML page", function() return "<html><body>Bad Gateway</body></html>" end },
      { "JSON cut short", function(e) return envelope(good(e)):sub(1, 25) end },
      { "JSON with trailing garbage", function(e) return envelope(good(e)) .. "}}garbage" end },
      { "the body 10,000 levels deep", function() return deep(10000) end },
      { "data 10,000 levels deep", function() return envelope(deep(10000)) end },
      { "invalid UTF-8 in msg", function(e)
        return '{"code":200,"msg":"\255\254\192\128","data":' .. good(e) .. "}" end },
      { "a NUL and a lone surrogate in msg", function(e)
        return '{"code":200,"msg":"a\\u0000b\\ud800c","data":' .. good(e) .. "}" end },
    }
    for _, c in ipairs(CASES) do
      it(c[1] .. ": protocol or sane, from every endpoint", function() each(ALL, c[1], c[2]) end)
    end

    it("an error code with an odd msg still maps to its kind", function()
      local _, err = call("credit", '{"code":401,"msg":{"a":1},"data":null}')
      assert.equal("auth", err.kind)
      _, err = call("credit", '{"code":402,"msg":7}')
      assert.equal("credits", err.kind)
      _, err = call("credit", '{"code":"429","msg":"slow down"}')
      assert.equal("rate_limit", err.kind)
    end)

    it("a numeric-string code counts as the number; data of the wrong type is protocol", function()
      assert.equal(100, call("credit", '{"code":"200","msg":"success","data":100}'))
      local _, err = call("credit", envelope('"lots"'))
      assert.equal("protocol", err.kind)
      _, err = call("record", envelope("42"))
      assert.equal("protocol", err.kind)
      _, err = call("download-url", envelope("42"))
      assert.equal("protocol", err.kind)
    end)

    it("createTask answered 200 without a usable taskId is ambiguous: a task may have been created", function()
      for _, data in ipairs({ "null", "{}", '{"taskId":42}', '{"taskId":""}', '{"taskId":["t"]}', '"task_x"' }) do
        local _, err = call("createTask", envelope(data))
        assert.equal("ambiguous", err.kind, data)
        assert.equal(KLING, err.model)
      end
    end)

    it("a missing code is protocol, not success", function()
      local _, err = call("credit", '{"msg":"success","data":100}')
      assert.equal("protocol", err.kind)
      _, err = call("recordInfo", '{"data":' .. GOOD.recordInfo .. "}")
      assert.equal("protocol", err.kind)
    end)

    it("HTTP 200 with an empty body or HTML is protocol; over the size cap too", function()
      local _, err = call("credit", "")
      assert.equal("protocol", err.kind)
      _, err = call("credit", "<html>hi</html>", 200, "text/html")
      assert.equal("protocol", err.kind)
      _, err = call("credit", envelope("100") .. (" "):rep(9 * MB))
      assert.equal("protocol", err.kind)
      assert.matches("size cap", err.message)
      _, err = call("recordInfo", envelope(GOOD.recordInfo) .. (" "):rep(9 * MB))
      assert.equal("protocol", err.kind)
    end)

    it("a garbled answer is retried, then ends protocol", function()
      local retrying = modkie.new{ base_url = s.url, api_key = "k", retries = 2, rate = false, poll_interval = 0.02 }
      finally(function() retrying:close() end)
      s.answer("credit", "not json")
      local before = #s.requests()
      local n, err = safely("credits", function() return retrying:credits() end)
      assert.is_nil(n)
      assert.equal("protocol", err.kind)
      assert.equal(before + 3, #s.requests())
      s.answer("recordInfo", envelope('{"taskId":"task_u","state":7}'))
      before = #s.requests()
      local res, jerr = safely("await", function() return assert(retrying:job(ID)):await(10) end)
      assert.is_nil(res)
      assert.equal("protocol", jerr.kind)
      assert.matches("no state", jerr.message)
      assert.equal(before + 3, #s.requests())
    end)
  end)

  describe("the record", function()
    local function rec(fields)
      return function() return envelope("{" .. fields .. "}") end
    end
    local URL = [["resultJson":"{\"resultUrls\":[\"https://cdn.example/u.mp4\"]}"]]
    local CASES = {
      { "state as a number", rec('"taskId":"task_u","state":3,' .. URL) },
      { "state as an object", rec('"taskId":"task_u","state":{"s":"success"},' .. URL) },
      { "state as an array", rec('"taskId":"task_u","state":["success"],' .. URL) },
      { "state null", rec('"taskId":"task_u","state":null,' .. URL) },
      { "state missing", rec('"taskId":"task_u",' .. URL) },
      -- taskId of another type: see the regression spec below
      { "taskId null", rec('"taskId":null,"state":"success",' .. URL) },
      { "taskId missing", rec('"state":"success",' .. URL) },
      { "resultJson as a number", rec('"taskId":"task_u","state":"success","resultJson":12') },
      { "resultJson as an array",
        rec('"taskId":"task_u","state":"success","resultJson":["https://cdn.example/u.mp4"]') },
      { "resultJson invalid JSON", rec('"taskId":"task_u","state":"success","resultJson":"{\\"resultUrls\\":[\\"ht"') },
      { "resultJson JSON 10,000 levels deep", rec('"taskId":"task_u","state":"success","resultJson":"'
        .. deep(10000) .. '"') },
      { "resultJson true", rec('"taskId":"task_u","state":"success","resultJson":true') },
      { "resultUrls of every type", rec('"taskId":"task_u","state":"success","resultJson":{"resultUrls":'
        .. '["https://cdn.example/a.mp4",1,{},[],null,true,""]}') },
      { "resultUrls as an object", rec('"taskId":"task_u","state":"success","resultJson":{"resultUrls":{"a":"b"}}') },
      { "resultUrls as a number", rec('"taskId":"task_u","state":"success","resultJson":{"resultUrls":5}') },
      { "createTime as a string", rec('"taskId":"task_u","state":"success","createTime":"yesterday",' .. URL) },
      { "createTime as an object", rec('"taskId":"task_u","state":"success","createTime":{"t":1},' .. URL) },
      { "completeTime huge", rec('"taskId":"task_u","state":"success","completeTime":1e308,' .. URL) },
      { "costTime as a string", rec('"taskId":"task_u","state":"success","costTime":"8s",' .. URL) },
      { "creditsConsumed as a string", rec('"taskId":"task_u","state":"success","creditsConsumed":"35",' .. URL) },
      { "creditsConsumed as a word", rec('"taskId":"task_u","state":"success","creditsConsumed":"lots",' .. URL) },
      { "creditsConsumed as an array", rec('"taskId":"task_u","state":"success","creditsConsumed":[35],' .. URL) },
      { "model as an object", rec('"taskId":"task_u","state":"success","model":{"m":1},' .. URL) },
      { "failCode as an object", rec('"taskId":"task_u","state":"fail","failCode":{"c":500},"failMsg":"boom"') },
      { "failCode as an array, failMsg as a number",
        rec('"taskId":"task_u","state":"fail","failCode":[1],"failMsg":9') },
      { "failCode true, failMsg an object", rec('"taskId":"task_u","state":"fail","failCode":true,"failMsg":{}') },
      { "a field 10,000 levels deep",
        rec('"taskId":"task_u","state":"success","extra":' .. deep(10000) .. "," .. URL) },
      { "invalid UTF-8 in every string", rec('"taskId":"task_u","state":"success","model":"\255",'
        .. '"resultJson":"{\\"resultUrls\\":[\\"https://cdn.example/\255\254.mp4\\"]}","failMsg":"\192\128"') },
    }
    for _, c in ipairs(CASES) do
      it(c[1] .. ": protocol or sane, through await and client:record", function()
        each({ "recordInfo", "record" }, c[1], c[2])
      end)
    end

    it("a failed record gives kind 'failed' with a string message whatever the types", function()
      for _, fields in ipairs({ '"failCode":{"c":500},"failMsg":"boom"', '"failCode":[1],"failMsg":9',
        '"failCode":"E42","failMsg":null', '"failCode":501' }) do
        local res, err = call("recordInfo", envelope('{"taskId":"task_u","state":"fail",' .. fields .. "}"))
        assert.is_nil(res)
        assert.equal("failed", err.kind, fields)
        assert.is_string(err.message)
        assert.is_true(err.code == nil or type(err.code) == "number" or type(err.code) == "string")
      end
    end)

    it("resultUrls keep only the strings; odd numbers come out nil or numbers", function()
      local res = call("recordInfo", envelope('{"taskId":"task_u","state":"success","createTime":"yesterday",'
        .. '"creditsConsumed":"35","costTime":"8s","resultJson":{"resultUrls":["https://cdn.example/a.mp4",1,{},""]}}'))
      assert.same({ "https://cdn.example/a.mp4" }, res.urls)
      assert.is_nil(res.created_at)
      assert.is_nil(res.cost_time)
      assert.equal(35, res.credits)
    end)

    it("an unknown or garbled state is 'still running' until the deadline", function()
      local c = modkie.new{ base_url = s.url, api_key = "k", retries = 0, rate = false, poll_interval = 0.02,
        deadline = 0.5 }
      finally(function() c:close() end)
      for _, state in ipairs({ "teleporting", "\255\254", ("x"):rep(100000) }) do
        s.answer("recordInfo", envelope('{"taskId":"task_u","state":"' .. state .. '"}'))
        local before = #s.requests()
        local res, err = safely("await", function() return assert(c:job(ID)):await(10) end)
        assert.is_nil(res)
        assert.equal("deadline", err.kind)
        assert.is_true(#s.requests() > before + 1)
      end
    end)
  end)

  describe("huge strings (under the 8 MiB cap)", function()
    local big = ("a"):rep(6 * MB)

    it("a 6 MB result URL, failMsg, msg, padding field: sane values or errors", function()
      local res = call("recordInfo", envelope('{"taskId":"task_u","state":"success","resultJson":'
        .. '{"resultUrls":["https://cdn.example/' .. big .. '"]}}'))
      assert.equal(#big + 20, #res.urls[1])
      local _, err = call("recordInfo", envelope('{"taskId":"task_u","state":"fail","failMsg":"' .. big .. '"}'))
      assert.equal("failed", err.kind)
      _, err = call("credit", '{"code":500,"msg":"' .. big .. '"}')
      assert.equal("server", err.kind)
      assert.is_true(#err.message < 4096)
      assert.equal(100, call("credit", '{"code":200,"pad":"' .. big .. '","data":100}'))
      assert.equal("https://cdn.example/fresh.mp4",
        call("download-url", '{"code":200,"pad":"' .. big .. '","data":"https://cdn.example/fresh.mp4"}'))
    end)

    it("a 1 MB taskId from createTask: no crash, a value or an error", function()
      -- a client of its own: see the regression spec on what such a request leaves behind
      local c = modkie.new{ base_url = s.url, api_key = "k", retries = 0, rate = false, poll_interval = 0.02 }
      finally(function() c:close() end)
      s.answer("createTask", envelope('{"taskId":"task_' .. ("x"):rep(MB) .. '"}'))
      s.answer("recordInfo", envelope(GOOD.recordInfo))
      local res, err = safely("submit", function() return assert(c:submit(KLING, { prompt = "big id" })):await(10) end)
      assert.is_true(type(res) == "table" or modkie.Error.is(err))
    end)
  end)

  describe("regressions", function()
    -- Client:_call returns p.data; an envelope without `data` leaves it nil
    -- with no error, and credits/record/download_url pass that nil on as
    -- `nil, nil`.
    it("regression: an envelope without data: credits, record, download_url return nil, nil", function()
      for _, e in ipairs({ "credit", "record", "download-url" }) do
        local res, err = call(e, '{"code":200,"msg":"success"}')
        assert.is_nil(res)
        assert(modkie.Error.is(err), e .. " returned nil without an error")
        assert.equal("protocol", err.kind)
      end
    end)

    -- record.result takes `id = rec.taskId` whatever its type, ahead of the
    -- job's own id: a number (42.0 on 5.3+) or a table becomes result.id.
    it("regression: a record's taskId that is not a string becomes result.id, not the job's id", function()
      for _, v in ipairs({ "42", '{"id":"task_u"}', "[1]", "true" }) do
        local res, err = call("recordInfo", envelope('{"taskId":' .. v .. ',"state":"success"}'))
        assert(res, tostring(err))
        assert.equal(ID, res.id, v)
      end
    end)

    -- fuzz finding record/nan-numbers: lua-cjson reads nan, NaN, inf,
    -- -Infinity and 1e999; credits and cost_time came out NaN (or infinite),
    -- and with them a batch report's credit total.
    it("regression: NaN and infinite numbers in a record or a balance count as absent", function()
      local URL = [["resultJson":{"resultUrls":["https://cdn.example/u.mp4"]}]]
      local res, err = call("recordInfo", envelope('{"taskId":"task_u","state":"success","creditsConsumed":nan,'
        .. '"costTime":NaN,"createTime":inf,"completeTime":-Infinity,' .. URL .. "}"))
      assert(res, tostring(err))
      assert.same({}, { res.credits, res.cost_time, res.created_at, res.completed_at })
      res = call("recordInfo", envelope('{"taskId":"task_u","state":"success","creditsConsumed":1e999,'
        .. '"creditsCharged":-inf,"credits":35,"costTime":Infinity,"completeTime":1700000000000,' .. URL .. "}"))
      assert.equal(35, res.credits)
      assert.is_nil(res.cost_time)
      assert.equal(1700000000, res.completed_at)
      for _, v in ipairs({ "nan", "-inf", "1e999" }) do
        res, err = call("recordInfo", envelope('{"taskId":"task_u","state":"fail","failCode":' .. v .. "}"))
        assert.is_nil(res)
        assert.equal("failed", err.kind)
        assert.is_nil(err.code, v)
        res, err = call("credit", envelope(v))
        assert.is_nil(res, v)
        assert.equal("protocol", err.kind)
      end
    end)

    -- Client:download_url returns any non-empty string in data as the link.
    it("regression: download_url passes on a data string that is no URL ('x', 'file:///...')", function()
      for _, data in ipairs({ '"x"', '"file:///etc/passwd"', '" https://cdn.example/a.mp4"' }) do
        local res, err = call("download-url", envelope(data))
        assert(res == nil, data .. " came back as a download link: " .. tostring(res))
        assert.equal("protocol", err.kind)
      end
    end)

    -- A request over libcurl's 1 MiB request-size limit (here a recordInfo
    -- for a ~1.1 MB task id, which a gateway can hand out) fails with
    -- CURLE_OUT_OF_MEMORY after the connection is made. From then on that
    -- client's requests no longer time out: against a server that accepts and
    -- never answers, credits() with timeout = 1 waits forever (a fresh client
    -- times out after 1 s). Run in a child process so that the hang cannot
    -- hang the suite.
    it("after a request over libcurl's 1 MiB limit, the client's timeouts still fire", function()
      local script = [[
        local modkie = require "modkie"
        local socket = require "socket"
        local silent = assert(socket.bind("127.0.0.1", 0, 64)) -- accepts (in the kernel), never answers
        local _, port = silent:getsockname()
        local c = modkie.new{ base_url = "http://127.0.0.1:" .. port, api_key = "k", retries = 0, rate = false,
          timeout = 1 }
        -- the client (and its engine) refuse such an id; a download of such a
        -- URL leaves libcurl in the state its refusal of the request leaves it
        print("refused " .. tostring(not pcall(c.record, c, ("x"):rep(1100000))))
        local file = os.tmpname()
        local h = c._engine:download("http://127.0.0.1:" .. port .. "/" .. ("x"):rep(1100000), file)
        local err
        repeat
          for _, ev in ipairs(c._engine:step(1) or {}) do
            if ev.h == h then err = ev.error end
          end
        until err
        print("first " .. tostring(err and err.kind))
        io.stdout:flush()
        os.remove(file)
        local n, err2 = c:credits()
        print("second " .. tostring(n) .. " " .. tostring(err2 and err2.kind))
      ]]
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write(script)
      f:close()
      local q = require("spec.helper").shell_quote
      local p = assert(io.popen(("LUA_PATH=%s LUA_CPATH=%s timeout 15 %s %s 2>&1"):format(q(package.path),
        q(package.cpath), os.getenv("MODKIE_TEST_LUA") or "lua5.4", path)))
      local out = p:read("*a")
      p:close()
      os.remove(path)
      assert.matches("refused true", out, 1, true)
      assert.matches("first network", out)
      assert.matches("second nil network", out, 1, true)
    end)
  end)
end)

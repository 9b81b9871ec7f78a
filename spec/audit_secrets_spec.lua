-- An adversarial read of secret handling (the API key, credentials in a
-- URL): each test is a leak found by the audit, as a user meets it, against
-- real servers (the emulator, a callback POSTed to the client's listener).
-- spec/security_spec.lua and spec/outside_review_spec.lua hold what was
-- covered before; nothing here repeats them.
local helper = require "spec.helper"
local cjson = require "cjson"
local socket = require "socket"
local modkie = require "modkie"
local webhook = require "modkie.webhook"

local KLING = "kling/kling-3-0"
local SECRET = "whsec-audit-7Qp"

local later, start = helper.cleanups(function(fn) finally(fn) end)

local function unique()
  return ("%d%04d"):format(os.time() % 1000000, math.random(0, 9999))
end

-- A log hook that keeps every event as one line of text.
local function log_into(lines)
  return function(level, event, fields)
    local parts = { level, event }
    for k, v in pairs(fields) do parts[#parts + 1] = k .. "=" .. tostring(v) end
    lines[#lines + 1] = table.concat(parts, " ")
  end
end

-- Everything an error shows: tostring, and each field.
local function shown(err)
  local out = { tostring(err) }
  for k, v in pairs(err or {}) do
    out[#out + 1] = tostring(k) .. "=" .. (type(v) == "table" and cjson.encode(v) or tostring(v))
  end
  return table.concat(out, "\n")
end

-- A failed Kie callback of task `id` whose failMsg echoes `text`, and its signed headers.
local function failed_callback(id, text)
  local body = cjson.encode({ code = 501, msg = "Playground task failed.", data = {
    taskId = id, model = KLING, state = "fail", failCode = "500", failMsg = text,
    createTime = 1700000000000, completeTime = 1700000012000 } })
  return webhook.sign { scheme = "kie", body = body, secret = SECRET }, body
end

describe("audit: the API key in a callback", function()
  local key
  before_each(function()
    math.randomseed(os.time() + math.random(1, 1000))
    key = "sk-AUDIT-" .. unique() .. "-cb9"
  end)

  local function check(err, logs)
    local all = shown(err) .. "\n" .. table.concat(logs, "\n")
    assert.equal("failed", err.kind)
    assert.matches("[redacted]", err.message, 1, true)
    assert(not all:find(key, 1, true), "the key is in: " .. all)
    assert(not all:find(key:sub(10), 1, true), "part of the key is in: " .. all)
  end

  it("regression: a failMsg echoing the key, delivered with client:deliver, is redacted as a poll's is", function()
    local m = start { "--job-seconds", "60" }
    local logs = {}
    local c = helper.client(m, { api_key = key, poll_interval = 30, log = log_into(logs),
      webhook = { secret = SECRET, scheme = "kie" } })
    later(function() c:close() end)
    local job = assert(c:submit(KLING, { prompt = "echo in a callback" }))
    local id = assert(job:accepted(20))
    local headers, body = failed_callback(id, "upstream saw Authorization: Bearer " .. key .. " (key " .. key .. ")")
    assert.equal(200, c:deliver(headers, body))
    local res, err = job:await(5)
    assert.is_nil(res)
    check(err, logs)
    assert.equal(0, job.polls) -- the callback ended it, not a poll
  end)

  it("regression: the same through the listener (listen =), a callback POSTed over HTTP", function()
    local m = start { "--job-seconds", "60" }
    local logs = {}
    local c = helper.client(m, { api_key = key, poll_interval = 30, log = log_into(logs),
      listen = "127.0.0.1:0", webhook = { secret = SECRET, scheme = "kie" } })
    later(function() c:close() end)
    local job = assert(c:submit(KLING, { prompt = "echo in a callback, over HTTP" }))
    local id = assert(job:accepted(20))
    local headers, body = failed_callback(id, "proxy: Authorization=" .. key)
    local port = tonumber(c.callback_url:match(":(%d+)/$"))
    local head = { "POST / HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
      "Content-Length: " .. #body, "Connection: close" }
    for k, v in pairs(headers) do head[#head + 1] = k .. ": " .. v end
    local sock = assert(socket.connect("127.0.0.1", port))
    later(function() sock:close() end)
    sock:settimeout(0)
    local out, at = table.concat(head, "\r\n") .. "\r\n\r\n" .. body, 1
    local status, buf = nil, ""
    local deadline = helper.now() + 20
    while not status and helper.now() < deadline do
      if at <= #out then
        local last, _, partial = sock:send(out, at)
        at = (last or partial or at - 1) + 1
      end
      c:step(0.01)
      local data, _, part = sock:receive(4096)
      buf = buf .. (data or part or "")
      status = tonumber(buf:match("^HTTP/1%.%d (%d%d%d)"))
    end
    assert.equal(200, status)
    local res, err = job:await(5)
    assert.is_nil(res)
    check(err, logs)
  end)
end)

describe("audit: credentials in a base_url", function()
  it("regression: a refused base_url or upload_url never shows its user:password, whatever else is wrong", function()
    local cases = {
      { "base_url", "htps://user:pw-AUDIT-1@gw.example.com" },   -- a mistyped scheme
      { "base_url", "https://user:pw-AUDIT-2#x@gw.example.com" }, -- a # in the password
      { "base_url", "https://user:pw?AUDIT-3@gw.example.com" },   -- a ? in the password
      { "base_url", "https://user:pw@AUDIT-4@gw.example.com" },   -- an @ in the password
      { "upload_url", "ftp://user:pw-AUDIT-5@up.example.com" },
    }
    for _, case in ipairs(cases) do
      local opts = { api_key = "k", base_url = "https://gw.example.com" }
      opts[case[1]] = case[2]
      local ok, msg = pcall(modkie.new, opts)
      assert.is_false(ok, case[2])
      assert.matches(case[1], msg, 1, true) -- it still names the option
      assert(not msg:find("AUDIT", 1, true), "the password is in: " .. msg)
      assert(not msg:find("pw", 1, true), "the password is in: " .. msg)
    end
    -- and from the command line, MODKIE_BASE_URL
    local p = assert(io.popen("MODKIE_API_KEY=k MODKIE_BASE_URL='htps://user:pw-AUDIT-6@gw.example.com' "
      .. (os.getenv("MODKIE_TEST_LUA") or "lua5.4") .. " bin/modkie credits 2>&1"))
    local out = p:read("*a")
    p:close()
    assert.matches("base_url", out, 1, true)
    assert(not out:find("AUDIT", 1, true), "the password is in: " .. out)
  end)
end)

describe("audit: spellings of a key with / and \" or \\", function()
  local m
  setup(function() m = helper.mock({ "--job-seconds", "0.2" }) end)
  teardown(function() m.stop() end)

  -- The error a credits call gets when the gateway answers 401 with `msg_json` (a JSON string, as sent).
  local function refused_with(key, msg_json)
    local c = helper.client(m, { api_key = key, retries = 0 })
    m.replay("/api/v1/chat/credit", nil, { { status = 401, body = '{"code":401,"msg":' .. msg_json .. '}' } })
    local _, err = c:credits()
    c:close()
    assert.equal("auth", err.kind)
    return shown(err)
  end

  it("regression: the key as JSON encoders that leave / alone write it (Python, Go, Node) is redacted", function()
    local tail = unique()
    -- what json.dumps, encoding/json and JSON.stringify make of the key: \" and \\ escaped, / not
    for _, case in ipairs({
      { 'sk-AUDIT/' .. tail .. '"q', '"bad key sk-AUDIT/' .. tail .. '\\"q"' },
      { 'sk-AUDIT/' .. tail .. '\\q', '"bad key sk-AUDIT/' .. tail .. '\\\\q"' },
      -- and " as \u0022 (PHP's JSON_HEX_QUOT), / as it is
      { 'sk-AUDIT/' .. tail .. '"q', '"bad key sk-AUDIT/' .. tail .. '\\u0022q"' },
    }) do
      local key, msg = case[1], case[2]
      assert.equal("bad key " .. key, cjson.decode(msg)) -- the same text to a JSON reader
      local all = refused_with(key, msg)
      assert.matches("[redacted]", all, 1, true)
      assert(not all:find(key, 1, true), "the key is in: " .. all)
      assert(not all:find(tail, 1, true), "part of the key is in: " .. all)
    end
  end)

  it("regression: the key percent-encoded with / kept (Python's quote, a URL path) is redacted", function()
    local tail = unique()
    local key = "sk-AUDIT+" .. tail .. "/ab="
    for _, hex in ipairs({ "%02X", "%02x" }) do
      local spelled = key:gsub("[^%w%-._~/]", function(ch) return ("%%" .. hex):format(ch:byte()) end)
      local all = refused_with(key, '"GET /v1/files?key=' .. spelled .. ' refused"')
      assert.matches("[redacted]", all, 1, true)
      assert(not all:find(tail, 1, true), "part of the key is in: " .. all)
    end
  end)
end)

describe("audit: a newcomer's first hour", function()
  it("regression: job:download with a mistyped option is an error naming it, not a silent default", function()
    local m = start { "--job-seconds", "0.2" }
    local c = helper.client(m)
    later(function() c:close() end)
    local dir = helper.tmpdir()
    later(function() helper.rmdir(dir) end)
    local job = assert(c:submit(KLING, { prompt = "download me" }))
    assert(job:await(20))
    local ok, msg = pcall(job.download, job, dir, { nmae = function(n) return "clip-" .. n .. ".mp4" end })
    assert.is_false(ok, "the typo was taken")
    assert.matches("download: unknown option 'nmae' (did you mean 'name'?)", msg, 1, true)
    ok, msg = pcall(job.download, job, dir, { timeout = "5" })
    assert.is_false(ok)
    assert.matches("download: option 'timeout' must be a number", msg, 1, true)
    -- the options it takes still work
    local paths = assert(job:download(dir, { name = function(n) return "clip-" .. n .. ".mp4" end, timeout = 20 }))
    assert.equal(dir .. "/clip-1.mp4", paths[1])
  end)
end)

describe("audit: the command line's first minutes", function()
  local H = require "spec.batch_helper"
  it("regression: a mistyped --version or --help before any command is named with a suggestion", function()
    for typo, meant in pairs({ ["--verison"] = "--version", ["--hlep"] = "--help", ["-version"] = "--version" }) do
      local r = H.cli({ typo })
      assert.equal(2, r.code)
      assert.matches("unknown command '" .. typo .. "' (did you mean '" .. meant .. "'?)", r.err, 1, true)
    end
    assert.matches("did you mean 'submit'", H.cli({ "sumbit" }).err, 1, true) -- commands as before
  end)
end)

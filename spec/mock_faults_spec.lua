-- The emulator's fault injection (--faults, [fault=…] triggers, --seed),
-- --state restart survival and --limits numbers, tested as a separate
-- process over raw TCP: faults break HTTP, so no HTTP library in between.
local helper = require "spec.helper"
local cjson = require "cjson"
local socket = require "socket"

local LUA = os.getenv("MODKIE_TEST_LUA") or "lua5.4"
local KLING = "kling/kling-3-0"

-- Emulators started by the current test, stopped when it ends (busted keeps
-- one `finally` per test, so they are kept here).
local started = {}
local function start(args)
  local m = helper.mock(args)
  started[#started + 1] = m
  return m
end
after_each(function()
  for _, m in ipairs(started) do m.stop() end
  started = {}
end)

-- One request on a fresh connection. Returns a table:
--   status, headers (lower-case names), body (what arrived of it),
--   length (Content-Length), complete (the whole body arrived),
--   closed (the server closed the connection), err (a read error before
--   any status line: "closed", "connection reset by peer", "timeout")
local function exchange(m, method, path, opts)
  opts = opts or {}
  local c = assert(socket.connect("127.0.0.1", m.port))
  c:settimeout(opts.timeout or 10)
  local body = opts.body
  if type(body) == "table" then body = cjson.encode(body) end
  local lines = { method .. " " .. path .. " HTTP/1.1", "Host: x" }
  if opts.key ~= false then lines[#lines + 1] = "Authorization: Bearer " .. (opts.key or "test-key") end
  if body then
    lines[#lines + 1] = "Content-Type: application/json"
    lines[#lines + 1] = "Content-Length: " .. #body
  end
  assert(c:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")))
  local res = { headers = {} }
  local line, err = c:receive("*l")
  if not line then
    c:close()
    res.err = err
    return res
  end
  res.status = tonumber(line:match("^HTTP/1%.%d (%d+) "))
  while true do
    local h = assert(c:receive("*l"))
    if h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.*)$")
    res.headers[k:lower()] = v
  end
  res.length = tonumber(res.headers["content-length"] or "0")
  local data, rerr, partial = "", nil, nil
  if res.length > 0 then data, rerr, partial = c:receive(res.length) end -- receive(0) would wait
  res.body = data or partial or ""
  res.complete = data ~= nil
  if not data then res.closed = rerr == "closed" end
  c:close()
  local ok, decoded = pcall(cjson.decode, res.body)
  if ok then res.json = decoded end
  return res
end

-- The API code of an answer, or its HTTP status when it has no JSON body (a proxy's 502, 503).
local function code_of(res)
  return res.json and res.json.code or res.status
end

local function create(m, prompt, opts)
  opts = opts or {}
  opts.body = { model = KLING, input = { prompt = prompt } }
  return exchange(m, "POST", "/api/v1/jobs/createTask", opts)
end

local function poll(m, id, opts)
  return exchange(m, "GET", "/api/v1/jobs/recordInfo?taskId=" .. id, opts)
end

-- A create that must succeed: the task id.
local function created_id(m, prompt)
  local res = create(m, prompt)
  assert.are.equal(200, res.status)
  assert.are.equal(200, res.json.code, res.body)
  return res.json.data.taskId
end

-- Run a shell command; returns its output (stdout+stderr) and exit code.
local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"EXIT=$?\""))
  local out = p:read("*a")
  p:close()
  local code = tonumber(out:match("EXIT=(%d+)%s*$"))
  return out:gsub("EXIT=%d+%s*$", ""), code
end

local function tasks_of(m)
  local _, list = m.request("GET", "/__mock/tasks")
  return list
end

describe("modkie mock --faults: SPEC", function()
  local faults = require "modkie.mock.faults"

  it("parses endpoints, kinds and fractions, spaces allowed", function()
    local spec = assert(faults.parse_spec(" poll = 500:0.1 , reset:0.05 ; create=429:0.05;"))
    assert.are.same({ { "500", 0.1 }, { "reset", 0.05 } }, spec.poll)
    assert.are.same({ { "429", 0.05 } }, spec.create)
    assert.is_nil(spec.credits)
  end)

  it("spreads 'all' evenly over every kind", function()
    local spec = assert(faults.parse_spec("files=all:0.22"))
    assert.are.equal(#faults.KINDS, #spec.files)
    local sum = 0
    for _, e in ipairs(spec.files) do
      assert.is_true(math.abs(e[2] - 0.02) < 1e-12)
      sum = sum + e[2]
    end
    assert.is_true(math.abs(sum - 0.22) < 1e-12)
  end)

  it("refuses a bad SPEC with a message naming the bad part", function()
    local cases = {
      { "pol=500:0.1", "'pol' is not an endpoint" },
      { "poll=501:0.1", "'501' is not a fault kind" },
      { "poll=500", "'500' in 'poll=500' is not KIND:FRACTION" },
      { "poll=500:x", "fraction 'x' of poll:500" },
      { "poll=500:1.5", "fraction '1.5' of poll:500" },
      { "poll=500:0.6,reset:0.6", "add up to 1.2" },
      { "poll=500:0.1,500:0.1", "kind '500' is given twice" },
      { "poll=500:0.1;poll=502:0.1", "endpoint 'poll' is given twice" },
      { "poll 500:0.1", "is not ENDPOINT=KIND:FRACTION" },
      { " ; ", "names no endpoint" },
    }
    for _, case in ipairs(cases) do
      local spec, err = faults.parse_spec(case[1])
      assert.is_nil(spec, case[1])
      assert.is_truthy(err:find(case[2], 1, true), case[1] .. " -> " .. tostring(err))
    end
  end)

  it("makes the CLI exit 2 naming the part, and prints the seed on start", function()
    local out, code = run(LUA .. " bin/modkie mock --faults 'poll=500:0.1;craete=429:0.1'")
    assert.are.equal(2, code)
    assert.is_truthy(out:find("--faults", 1, true), out)
    assert.is_truthy(out:find("'craete'", 1, true), out)
    out, code = run(LUA .. " bin/modkie mock --seed -3")
    assert.are.equal(2, code)
    assert.is_truthy(out:find("--seed", 1, true), out)
    local m = start { "--faults", "poll=500:0.1", "--seed", "42" }
    local stats = m.stats()
    assert.are.equal(42, stats.fault_seed)
  end)
end)

describe("modkie mock: fault triggers in the prompt", function()
  it("answers create:429 and create:455 instead of creating: nothing is created", function()
    for _, kind in ipairs { "429", "455" } do
      local m = start { "--retry-after", "2" }
      local prompt = "a cat [fault=create:" .. kind .. "x2]"
      for _ = 1, 2 do
        local res = create(m, prompt)
        assert.are.equal(200, res.status) -- kie: errors as HTTP 200 + code
        assert.are.equal(tonumber(kind), res.json.code)
        assert.are.equal("2", res.headers["retry-after"])
      end
      assert.are.equal(0, m.stats().tasks)
      local id = created_id(m, prompt) -- the third try goes through
      assert.is_string(id)
      local stats = m.stats()
      assert.are.equal(1, stats.tasks)
      assert.are.equal(1, stats.submits_by_prompt[prompt])
      assert.are.equal(2, stats.faults.create[kind])
    end
  end)

  it("answers 500, 502, 503 after creating: the task exists, its id is lost", function()
    for _, kind in ipairs { "500", "502", "503" } do
      local m = start()
      local prompt = "a dog [fault=create:" .. kind .. "]"
      local res = create(m, prompt)
      if kind == "500" then -- the gateway's own answer: kie says it in the body
        assert.are.equal(200, res.status)
        assert.are.equal(500, res.json.code)
        assert.are.equal(cjson.null, res.json.data)
      else -- a proxy's: a real status, an HTML page (502) or nothing (503)
        assert.are.equal(tonumber(kind), res.status)
        assert.is_nil(res.json)
        if kind == "502" then assert.matches("<html>", res.body, 1, true) else assert.are.equal("", res.body) end
      end
      assert.are.equal(kind == "503" and "1" or nil, res.headers["retry-after"])
      local stats = m.stats()
      assert.are.equal(1, stats.tasks)
      assert.are.equal(1, stats.submits_by_prompt[prompt])
      assert.are.equal(1, stats.faults.create[kind])
    end
  end)

  it("answers error kinds with the HTTP status in the modkie dialect", function()
    local m = start { "--dialect", "modkie" }
    local res = create(m, "x [fault=create:500]")
    assert.are.equal(500, res.status)
    assert.are.equal(500, res.json.code)
    assert.is_string(res.json.message)
    res = create(m, "y [fault=create:429]")
    assert.are.equal(429, res.status)
    assert.are.equal("1", res.headers["retry-after"])
  end)

  it("resets the connection without a response, after creating", function()
    local m = start()
    local res = create(m, "reset me [fault=create:reset]")
    assert.is_nil(res.status)
    assert.is_truthy(res.err == "closed" or res.err:find("reset"), res.err)
    assert.are.equal(1, m.stats().tasks)
    assert.are.equal(1, m.stats().faults.create.reset)
  end)

  it("stalls an answer --stall-seconds, then sends the real one", function()
    local m = start { "--stall-seconds", "1" }
    local res = create(m, "slow [fault=create:stall]", { timeout = 0.1 })
    assert.are.equal("timeout", res.err) -- nothing came at first
    res = create(m, "slow two [fault=create:stall]", { timeout = 10 })
    assert.are.equal(200, res.status)
    assert.is_string(res.json.data.taskId)
    assert.are.equal(2, m.stats().tasks)
  end)

  it("cuts a body short: Content-Length promises more, then the server closes", function()
    local m = start()
    local id = created_id(m, "cut [fault=poll:cut]")
    local res = poll(m, id)
    assert.are.equal(200, res.status)
    assert.is_false(res.complete)
    assert.is_true(res.closed)
    assert.is_true(#res.body < res.length)
    assert.is_true(#res.body > 0)
    res = poll(m, id) -- x1: the next poll is whole
    assert.is_true(res.complete)
    assert.are.equal(id, res.json.data.taskId)
  end)

  it("sends invalid JSON with HTTP 200 for badjson", function()
    local m = start()
    local id = created_id(m, "bad [fault=poll:badjson]")
    local res = poll(m, id)
    assert.are.equal(200, res.status)
    assert.is_true(res.complete)
    assert.is_truthy(res.headers["content-type"]:find("application/json", 1, true))
    assert.is_nil(res.json)
    assert.is_false(pcall(cjson.decode, res.body))
  end)

  it("sends a proxy's HTML 502 page for html", function()
    local m = start()
    local id = created_id(m, "proxy [fault=poll:html]")
    local res = poll(m, id)
    assert.are.equal(502, res.status)
    assert.is_truthy(res.headers["content-type"]:find("text/html", 1, true))
    assert.is_truthy(res.body:find("<html>", 1, true))
    assert.is_nil(res.json)
  end)

  it("pads a huge answer past 8 MiB by default, still the same JSON", function()
    local m = start()
    local id = created_id(m, "big [fault=poll:huge]")
    local res = poll(m, id)
    assert.are.equal(200, res.status)
    assert.is_true(res.complete)
    assert.is_true(#res.body > 8 * 1024 * 1024)
    assert.are.equal(id, res.json.data.taskId)
  end)

  it("pads by --huge-bytes when given", function()
    local m = start { "--huge-bytes", "1000" }
    local id = created_id(m, "big [fault=poll:huge]")
    local res = poll(m, id)
    assert.are.equal(1000, #res.body:match("^ *"))
    assert.are.equal(id, res.json.data.taskId)
  end)

  it("gives the first N polls of the task KIND with xN, in order with several", function()
    local m = start()
    local id = created_id(m, "flaky [fault=poll:503x3,poll:429]")
    local codes = {}
    for i = 1, 5 do codes[i] = code_of(poll(m, id)) end
    assert.are.same({ 503, 503, 503, 429, 200 }, codes)
    local stats = m.stats()
    assert.are.equal(3, stats.faults.poll["503"])
    assert.are.equal(1, stats.faults.poll["429"])
    -- another task without the directive is not touched
    local other = created_id(m, "steady")
    assert.are.equal(200, poll(m, other).json.code)
  end)

  it("faults the files and download-url requests of the task", function()
    local m = start { "--job-seconds", "0" }
    local id = created_id(m, "pic [fault=files:503x1,download_url:500]")
    local rec = poll(m, id).json.data
    local url = cjson.decode(rec.resultJson).resultUrls[1]
    local path = url:match("^http://[^/]+(/.*)$")
    local res = exchange(m, "GET", path)
    assert.are.equal(503, res.status) -- /files: a real status in every dialect
    assert.are.equal("1", res.headers["retry-after"])
    res = exchange(m, "GET", path)
    assert.are.equal(200, res.status)
    res = exchange(m, "POST", "/api/v1/common/download-url", { body = { url = url } })
    assert.are.equal(500, res.json.code)
    res = exchange(m, "POST", "/api/v1/common/download-url", { body = { url = url } })
    assert.are.equal(200, res.json.code)
    local stats = m.stats()
    assert.are.equal(1, stats.faults.files["503"])
    assert.are.equal(1, stats.faults.download_url["500"])
  end)

  it("refuses a mistyped fault directive with 422 naming it, creating nothing", function()
    local m = start()
    local res = create(m, "oops [fault=pol:503]")
    assert.are.equal(422, res.json.code)
    assert.is_truthy(res.json.msg:find("[fault=pol:503]", 1, true), res.json.msg)
    res = create(m, "oops [fault=poll:5O3x2]")
    assert.are.equal(422, res.json.code)
    assert.is_truthy(res.json.msg:find("'5O3'", 1, true), res.json.msg)
    assert.are.equal(0, m.stats().tasks)
  end)
end)

describe("modkie mock --faults: random faults", function()
  -- The status codes (or "reset", "cut") of `n` polls of one task.
  local function outcomes(m, id, n)
    local out = {}
    for i = 1, n do
      local res = poll(m, id)
      if not res.status then out[i] = "reset"
      elseif not res.complete then out[i] = "cut"
      else out[i] = res.json and res.json.code or res.status end
    end
    return out
  end

  it("replaces about the given fraction, and counts each by endpoint and kind", function()
    local m = start { "--faults", "poll=503:0.3,reset:0.1,cut:0.1", "--seed", "7" }
    local id = created_id(m, "counted")
    local got = outcomes(m, id, 200)
    local seen = { [503] = 0, reset = 0, cut = 0, [200] = 0 }
    for _, o in ipairs(got) do seen[o] = seen[o] + 1 end
    local stats = m.stats()
    assert.are.equal(seen[503], stats.faults.poll["503"])
    assert.are.equal(seen.reset, stats.faults.poll.reset)
    assert.are.equal(seen.cut, stats.faults.poll.cut)
    assert.are.equal(200, seen[503] + seen.reset + seen.cut + seen[200])
    -- 50% faulty: far from none and from all (a binomial 200 draws wide)
    assert.is_true(seen[200] > 60 and seen[200] < 140, tostring(seen[200]))
    assert.is_true(seen[503] > 0 and seen.reset > 0 and seen.cut > 0)
    assert.is_nil(next(stats.faults.create)) -- create has no faults in the SPEC
  end)

  it("replays the same faults for the same seed, other faults for another", function()
    local args = { "--faults", "poll=500:0.2,502:0.2,reset:0.1", "--seed", "1234" }
    local a, b = start(args), start(args)
    local c = start { "--faults", "poll=500:0.2,502:0.2,reset:0.1", "--seed", "99" }
    local ra = outcomes(a, created_id(a, "one"), 40)
    local rb = outcomes(b, created_id(b, "one"), 40)
    local rc = outcomes(c, created_id(c, "one"), 40)
    assert.are.same(ra, rb)
    assert.are_not.same(ra, rc)
    -- a reset of the gateway starts the draws over
    a.request("POST", "/__mock/reset")
    assert.are.same(ra, outcomes(a, created_id(a, "two"), 40))
  end)

  it("draws per endpoint: creates in between do not move the poll faults", function()
    local args = { "--faults", "poll=500:0.3;create=500:0.3", "--seed", "5" }
    local a, b = start(args), start(args)
    local ida, idb = created_id(a, "p"), created_id(b, "p")
    local ra, rb = {}, {}
    for i = 1, 30 do
      ra[i] = poll(a, ida).json.code
      create(b, "extra " .. i) -- only b sees creates between its polls
      rb[i] = poll(b, idb).json.code
    end
    assert.are.same(ra, rb)
  end)

  it("faults every credit request with credits=KIND:1, and the rest stay clean", function()
    local m = start { "--faults", "credits=455:1" }
    for _ = 1, 3 do
      local res = exchange(m, "GET", "/api/v1/chat/credit")
      assert.are.equal(455, res.json.code)
      assert.are.equal("1", res.headers["retry-after"])
    end
    assert.are.equal(3, m.stats().faults.credits["455"])
    local id = created_id(m, "fine")
    assert.are.equal(200, poll(m, id).json.code)
  end)

  it("creates the task for every kind but 429 and 455 (submits_by_prompt tells)", function()
    local m = start { "--faults", "create=all:1", "--stall-seconds", "0", "--huge-bytes", "10" }
    local n = 110
    for i = 1, n do create(m, "p" .. i) end
    local stats = m.stats()
    local before = (stats.faults.create["429"] or 0) + (stats.faults.create["455"] or 0)
    local total = 0
    for _, count in pairs(stats.faults.create) do total = total + count end
    assert.are.equal(n, total)
    assert.is_true(before > 0)
    assert.are.equal(n - before, stats.tasks)
    for _, count in pairs(stats.submits_by_prompt) do assert.are.equal(1, count) end
  end)
end)

describe("modkie mock --limits SPEC", function()
  it("takes custom numbers; the other limit keeps its default", function()
    local m = start { "--limits", "create=2/60" }
    created_id(m, "one")
    local id = created_id(m, "two")
    local res = create(m, "three")
    assert.are.equal(429, res.json.code)
    assert.is_truthy(tonumber(res.headers["retry-after"]) >= 1)
    -- poll keeps 10 per second
    local codes = {}
    for i = 1, 11 do codes[i] = poll(m, id).json.code end
    assert.are.equal(200, codes[10])
    assert.are.equal(429, codes[11])
  end)

  it("is still the documented default when bare, even before another flag", function()
    local m = start { "--limits", "--job-seconds", "1" }
    local id = created_id(m, "x")
    local last
    for _ = 1, 11 do last = poll(m, id).json.code end
    assert.are.equal(429, last)
  end)

  it("refuses a bad SPEC naming it", function()
    for _, case in ipairs { { "create=0/10", "create=0/10" }, { "polls=1/1", "'polls'" },
      { "create=5", "create=5" }, { "create=1/1,create=2/1", "given twice" } } do
      local out, code = run(LUA .. " bin/modkie mock --limits '" .. case[1] .. "'")
      assert.are.equal(2, code)
      assert.is_truthy(out:find("--limits", 1, true), out)
      assert.is_truthy(out:find(case[2], 1, true), out)
    end
  end)
end)

describe("modkie mock --state", function()
  -- A state file in a fresh folder, and a port held for the test (between a
  -- stop and the restart no other process, e.g. the other Luas' runs going
  -- on at the same time, can take it): both go when the test ends.
  local function state_file()
    local dir = helper.tmpdir()
    local port, release = helper.held_port()
    finally(function() release(); helper.rmdir(dir) end)
    return dir .. "/state.jsonl", port
  end

  it("keeps tasks, balances and counters across a stop and restart on the same port", function()
    local file, port = state_file()
    local m = start { "--port", tostring(port), "--state", file, "--job-seconds", "0.5" }
    local quick = created_id(m, "quick one")
    local slow = created_id(m, "slow one [seconds=600]")
    local flaky = created_id(m, "flaky [seconds=600] [fault=poll:503x3]")
    assert.are.equal(503, code_of(poll(m, flaky)))
    m.request("POST", "/__mock/credits", cjson.encode { key = "other-key", balance = 77 })
    assert.are.equal("waiting", poll(m, slow).json.data.state)
    helper.sleep(0.5) -- let the counters reach the file
    m.stop()

    helper.sleep(0.6) -- "quick one" ends while the gateway is down
    local m2 = start { "--port", tostring(port), "--state", file }
    assert.are.equal(port, m2.port)
    local ids = {}
    for _, t in ipairs(tasks_of(m2)) do ids[#ids + 1] = t.taskId end
    assert.are.same({ quick, slow, flaky }, ids)
    local rec = poll(m2, quick).json.data
    assert.are.equal("success", rec.state) -- its timeline ran on wall-clock time
    assert.are.equal(35, rec.creditsConsumed)
    assert.are.equal("waiting", poll(m2, slow).json.data.state) -- 600 s: still at its start
    -- the trigger goes on where it stopped: 2 more 503s, then fine
    local codes = {}
    for i = 1, 3 do codes[i] = code_of(poll(m2, flaky)) end
    assert.are.same({ 503, 503, 200 }, codes)
    local stats = m2.stats()
    assert.are.equal(3, stats.tasks)
    assert.are.equal(3, stats.creates)
    assert.are.equal(1, stats.submits_by_prompt["quick one"])
    assert.is_true(stats.polls >= 6)
    assert.are.equal(3, stats.faults.poll["503"]) -- 1 before the stop, 2 after
    -- balances: the quick job charged once, the other key's balance kept
    local res = exchange(m2, "GET", "/api/v1/chat/credit")
    assert.are.equal(10000 - 35, res.json.data)
    res = exchange(m2, "GET", "/api/v1/chat/credit", { key = "other-key" })
    assert.are.equal(77, res.json.data)
    -- new ids do not collide with the old ones
    local fresh = created_id(m2, "after restart")
    for _, old in ipairs(ids) do assert.are_not.equal(old, fresh) end
  end)

  it("loses no created task to kill -9", function()
    local file, port = state_file()
    local m = start { "--port", tostring(port), "--state", file }
    local ids = {}
    for i = 1, 20 do ids[i] = created_id(m, "job " .. i) end
    helper.kill9(m) -- straight after the last answer, no time to save
    local m2 = start { "--port", tostring(m.port), "--state", file }
    local stats = m2.stats()
    assert.are.equal(20, stats.tasks)
    assert.are.equal(20, stats.creates)
    for i = 1, 20 do
      assert.are.equal(1, stats.submits_by_prompt["job " .. i])
      assert.are.equal(200, poll(m2, ids[i]).json.code)
    end
  end)

  it("charges a job once, though it ended before a restart and is read after", function()
    local file, port = state_file()
    local m = start { "--port", tostring(port), "--state", file, "--job-seconds", "0" }
    created_id(m, "a")
    assert.are.equal(10000 - 35, exchange(m, "GET", "/api/v1/chat/credit").json.data)
    m.stop()
    local m2 = start { "--port", tostring(m.port), "--state", file }
    assert.are.equal(10000 - 35, exchange(m2, "GET", "/api/v1/chat/credit").json.data)
    m2.stop()
    local m3 = start { "--port", tostring(m.port), "--state", file }
    assert.are.equal(10000 - 35, exchange(m3, "GET", "/api/v1/chat/credit").json.data)
  end)

  it("starts over on POST /__mock/reset, also in the file", function()
    local file, port = state_file()
    local m = start { "--port", tostring(port), "--state", file }
    created_id(m, "gone")
    m.request("POST", "/__mock/reset")
    m.stop()
    local m2 = start { "--port", tostring(m.port), "--state", file }
    assert.are.equal(0, m2.stats().tasks)
  end)

  it("ignores a torn last line (a kill mid-write)", function()
    local file, port = state_file()
    local m = start { "--port", tostring(port), "--state", file }
    local id = created_id(m, "whole")
    m.stop()
    local f = assert(io.open(file, "ab"))
    f:write('{"t":{"id":"task_torn_9","model":"x","pro')
    f:close()
    local m2 = start { "--port", tostring(m.port), "--state", file }
    assert.are.equal(1, m2.stats().tasks)
    assert.are.equal(200, poll(m2, id).json.code)
  end)

  it("refuses to start on a file that is not its state, and leaves it alone", function()
    local file = state_file()
    local f = assert(io.open(file, "wb"))
    f:write("precious,csv,data\n")
    f:close()
    local out, code = run(LUA .. " bin/modkie mock --port 0 --state " .. helper.shell_quote(file))
    assert.are.equal(1, code)
    assert.is_truthy(out:find("not a modkie mock state file", 1, true), out)
    assert.are.equal("precious,csv,data\n", helper.read_file(file))
  end)
end)

-- modkie inside nginx: examples/openresty/nginx.conf on Debian's nginx with
-- its Lua module (LuaJIT), against the emulator. Run by `make test-openresty`
-- (part of `make test-all`), which builds the C module for LuaJIT first.
local helper = require "spec.helper"
local socket = require "socket"
local cjson = require "cjson"
local core = require "modkie.core"

local SECRET = "whsec-test-1"

-- A raw HTTP/1.0 request on its own connection; returns the socket (the
-- answer is read later) and the time it was sent.
local function send(port, method, path, headers, body)
  local c = assert(socket.connect("127.0.0.1", port))
  local lines = { ("%s %s HTTP/1.0"):format(method, path), "Host: 127.0.0.1" }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  if body then lines[#lines + 1] = "Content-Length: " .. #body end
  assert(c:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")))
  return c, socket.gettime()
end

-- Read a whole HTTP/1.0 answer: status, headers (lower-case names), body.
local function answer(c, timeout)
  c:settimeout(timeout or 30)
  local text, err, partial = c:receive("*a")
  c:close()
  text = text or partial
  assert(text and text ~= "", "no answer: " .. tostring(err))
  local head, body = text:match("^(.-)\r\n\r\n(.*)$")
  local status = tonumber(head:match("^HTTP/%d%.%d (%d+)"))
  local headers = {}
  for k, v in head:gmatch("\r\n([^:]+):%s*([^\r\n]*)") do headers[k:lower()] = v end
  return status, headers, body
end

local function request(port, method, path, headers, body)
  return answer((send(port, method, path, headers, body)))
end

local function hex(s)
  return (s:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end))
end

-- examples/openresty/run.sh against emulator `m`, with `workers` workers
-- (and MODKIE_RATE_STORE = `store`): { port, stop() } once nginx listens.
local function start_example(m, workers, store, scheme)
  local port, release = helper.held_port()
  local prefix = helper.tmpdir()
  local cmd = ("PREFIX=%s WORKERS=%d MODKIE_WEBHOOK_SECRET=%s MODKIE_WEBHOOK_SCHEME=%s MODKIE_RATE_STORE=%s "
    .. "examples/openresty/run.sh %d %s >%s/run.log 2>&1 &"):format(prefix, workers, SECRET, scheme or "modkie",
    helper.shell_quote(store or ""), port, m.url, prefix)
  assert(os.execute(cmd))
  local n = { port = port }
  function n.stop()
    local pid = helper.read_file(prefix .. "/logs/nginx.pid")
    if pid then os.execute("kill " .. pid:match("%d+")) end
    socket.sleep(0.1)
    release()
    helper.rmdir(prefix)
  end
  for _ = 1, 100 do
    local c = socket.connect("127.0.0.1", port)
    if c then c:close() return n end
    socket.sleep(0.05)
  end
  release()
  error("nginx did not start: " .. tostring(helper.read_file(prefix .. "/run.log"))
    .. tostring(helper.read_file(prefix .. "/logs/error.log")))
end

describe("OpenResty #openresty", function()
  local m, server, port

  setup(function()
    -- ModKie's dialect, signing its callbacks the way the example's /callback checks
    m = helper.mock({ "--job-seconds", "2", "--dialect", "modkie", "--webhook-secret", SECRET })
    server = start_example(m, 1)
    port = server.port
  end)

  teardown(function()
    server.stop()
    m.stop()
  end)

  it("awaits a job inside a request while the worker keeps answering others", function()
    local job = send(port, "GET", "/generate?prompt=a+red+fox")
    local latencies, max = {}, 0
    for i = 1, 40 do
      local c, sent = send(port, "GET", "/ping")
      local status, _, body = answer(c, 5)
      latencies[i] = socket.gettime() - sent
      if latencies[i] > max then max = latencies[i] end
      assert.equal(200, status)
      assert.same({ pong = true }, cjson.decode(body))
      socket.sleep(0.02)
    end
    -- every ping was answered while the job was still waiting (the job takes 2 s):
    -- had await blocked the one worker, no ping could have come back before it
    job:settimeout(0)
    local early, err = job:receive(1)
    assert.is_nil(early)
    assert.equal("timeout", err)
    local status, _, body = answer(job, 30)
    assert.equal(200, status)
    local res = cjson.decode(body)
    assert.matches("^task_", res.id)
    assert.equal(1, #res.urls)
    table.sort(latencies)
    print(("\n[openresty] 40 pings during one await: p50 %.2f ms, max %.2f ms (one worker)")
      :format(latencies[20] * 1000, max * 1000))
  end)

  it("serves many awaiting requests at once from one worker", function()
    local jobs = {}
    for i = 1, 10 do jobs[i] = send(port, "GET", "/generate?prompt=many+" .. i) end
    local ids = {}
    for i = 1, 10 do
      local status, _, body = answer(jobs[i], 30)
      assert.equal(200, status)
      ids[cjson.decode(body).id] = true
    end
    local n = 0
    for _ in pairs(ids) do n = n + 1 end
    assert.equal(10, n)
  end)

  it("says why await cannot run in a phase that cannot yield, instead of blocking", function()
    local status, headers = request(port, "GET", "/wrong-phase")
    assert.equal(200, status)
    assert.matches("cannot wait in nginx's 'header_filter' phase", headers["x-await-error"])
  end)

  it("answers the gateway's callback with client:deliver's status: 401 when it is not signed", function()
    local record = cjson.encode({ code = 200, msg = "success", data = {
      taskId = "task_cb_1", model = "kling/kling-3-0", state = "success",
      resultJson = cjson.encode({ resultUrls = { "https://cdn.example/v.mp4" } }),
    } })
    local sig = "sha256=" .. hex(core.hmac_sha256(SECRET, record))
    local status, _, body = request(port, "POST", "/callback",
      { ["Content-Type"] = "application/json", ["X-ModKie-Signature"] = sig }, record)
    assert.equal(200, status, body) -- genuine, of a task no worker waits for: nothing to do, but no retry either
    local tampered = record:gsub("v%.mp4", "w.mp4")
    status = request(port, "POST", "/callback",
      { ["Content-Type"] = "application/json", ["X-ModKie-Signature"] = sig }, tampered)
    assert.equal(401, status)
    status = request(port, "POST", "/callback", { ["Content-Type"] = "application/json" }, record)
    assert.equal(401, status)
  end)

  it("ends a job with the emulator's signed callback through client:deliver, not by polling", function()
    local status, _, body = request(port, "GET", "/generate-callback?prompt=called+back")
    assert.equal(200, status, body)
    local res = cjson.decode(body)
    assert.equal("callback", res.via)
    assert.equal(0, res.polls) -- the callback came first: no poll was needed
    assert.matches("^task_", res.id)
    assert.equal(1, #res.urls)
    assert.equal(35, res.credits)
    -- a failed job ends the same way, with the record's failure
    status, _, body = request(port, "GET", "/generate-callback?prompt=doomed+%5Bfail%3D500%5D")
    assert.equal(502, status, body)
    res = cjson.decode(body)
    assert.same({ "callback", "failed", "Internal server error" }, { res.via, res.error, res.message })
    local stats = m.stats().callbacks
    assert.equal(2, stats.delivered)
    assert.equal(0, stats.failed)
  end)
end)

-- The gateway's limits are per account: four workers, one client each, must
-- share them: one lua_shared_dict for the workers (the example's default),
-- or Redis (MODKIE_RATE_STORE), as for workers on several hosts.
local function four_workers(store_name, store)
  describe("OpenResty: four workers sharing the account's windows through " .. store_name .. " #openresty", function()
    local m, server, r

    setup(function()
      -- the gateway's 20 creates / 10 s, 10 polls / s; Kie's dialect, its callbacks signed
      m = helper.mock({ "--job-seconds", "2", "--limits", "--webhook-secret", SECRET })
      if store == "redis" then r = require("spec.redis").start() end
      server = start_example(m, 4, r and r.url(7), "kie")
    end)

    teardown(function()
      server.stop()
      m.stop()
      if r then r.stop() end
    end)

    it("answers concurrent requests, each submitting and awaiting a job, with no 429 from the gateway", function()
      local n = 40 -- twice the create window: half of them wait for the next one
      local conns = {}
      for i = 1, n do
        conns[i] = send(server.port, "GET", "/generate?prompt=shared+" .. store_name:gsub(" ", "+") .. "+" .. i)
      end
      local ids, workers = {}, {}
      for i = 1, n do
        local status, _, body = answer(conns[i], 120)
        assert.equal(200, status, body)
        local res = cjson.decode(body)
        ids[res.id] = true
        workers[res.worker] = true
      end
      local distinct, served_by = 0, 0
      for _ in pairs(ids) do distinct = distinct + 1 end
      for _ in pairs(workers) do served_by = served_by + 1 end
      assert.equal(n, distinct)
      assert.is_true(served_by >= 2, "the requests reached one worker only")
      local stats = m.stats()
      assert.equal(0, stats.rate_limited)
      assert.equal(n, stats.creates)
      print(("\n[openresty] %d requests over %d workers sharing %s: 0 answered 429"):format(n, served_by, store_name))
    end)

    it("ends each job with its callback, whichever worker the callback reaches", function()
      local n = 16
      local conns = {}
      for i = 1, n do conns[i] = send(server.port, "GET", "/generate-callback?prompt=called+back+" .. i) end
      local picked_up = 0
      for i = 1, n do
        local status, _, body = answer(conns[i], 120)
        assert.equal(200, status, body)
        local res = cjson.decode(body)
        assert.same({ "callback", 0 }, { res.via, res.polls })
        if res.picked_up > picked_up then picked_up = res.picked_up end
      end
      -- callbacks land on any of the four workers: most reached another than the one waiting, which took
      -- them from the shared dict
      assert.is_true(picked_up >= 1, "no callback was handed between workers")
      assert.equal(0, m.stats().rate_limited)
    end)
  end)
end

four_workers("one shared dict", nil)
four_workers("Redis", "redis")

-- Audit of the callback path through the public API, over real sockets:
-- the built-in listener (listen =) taking signed callbacks from raw HTTP
-- clients and from the emulator, while the client steps as a host would.
-- Each test is named after what it found; each failed before its fix.
local helper = require "spec.helper"
local canned = require "spec.support.canned"
local cjson = require "cjson"
local socket = require "socket"
local modkie = require "modkie"
local webhook = require "modkie.webhook"

local SECRET = "whsec-audit-cb-9Qz"
local KLING = "kling/kling-3-0"

local later, start = helper.cleanups(function(fn) finally(fn) end)

local function new_client(opts)
  local c = modkie.new(opts)
  later(function() c:close() end)
  return c
end

-- A Kie callback body for task `id` and its signed headers.
local function kie_callback(id, fields)
  local data = { taskId = id, model = KLING, state = "success",
    resultJson = cjson.encode({ resultUrls = { "https://cdn.example/" .. id .. ".mp4" } }) }
  for k, v in pairs(fields or {}) do data[k] = v end
  local code = data.state == "fail" and 501 or 200
  local body = cjson.encode({ code = code, msg = code == 200 and "success" or "Playground task failed.", data = data })
  return webhook.sign { scheme = "kie", body = body, secret = SECRET }, body
end

local function request_text(headers, body, path)
  local lines = { ("POST %s HTTP/1.1"):format(path or "/"), "Host: x", "Content-Type: application/json",
    "Connection: close", "Content-Length: " .. #body }
  for k, v in pairs(headers) do lines[#lines + 1] = k .. ": " .. v end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. body
end

-- Send every request of `reqs` at once on its own connection to the
-- listener at host:port, stepping client `c` meanwhile as a host's loop
-- would; returns the HTTP status of each (nil: none came within `timeout`).
local function post_all(c, host, port, reqs, timeout)
  local conns = {}
  for i, text in ipairs(reqs) do
    local s = assert(host:find(":", 1, true) and socket.tcp6() or socket.tcp4())
    s:settimeout(0)
    s:connect(host, port)
    conns[i] = { s = s, text = text, at = 1, buf = "" }
  end
  local left, deadline = #conns, helper.now() + (timeout or 10)
  while left > 0 and helper.now() < deadline do
    c:step(0.005)
    for _, x in ipairs(conns) do
      if not x.done then
        if x.at <= #x.text then
          local last, err, partial = x.s:send(x.text, x.at)
          x.at = (last or partial or x.at - 1) + 1
          if err and err ~= "timeout" then x.done, left = true, left - 1 end
        end
        if not x.done then
          local data, err, part = x.s:receive(4096)
          x.buf = x.buf .. (data or part or "")
          x.status = tonumber(x.buf:match("^HTTP/1%.%d (%d%d%d)"))
          if x.status or err == "closed" then x.done, left = true, left - 1 end
        end
      end
    end
  end
  local out = {}
  for i, x in ipairs(conns) do
    out[i] = x.status
    x.s:close()
  end
  return out
end

describe("audit: the callback listener", function()
  it("regression: a burst of more callbacks than its 64 connections is answered whole, none left hanging",
    function()
      -- libmicrohttpd takes its listening socket out of its epoll set at the
      -- connection limit and puts it back only on a later MHD_run; nothing woke
      -- the listener for that, so the 65th callback onwards sat in the backlog
      -- unanswered (until the sender gave up) even with every slot free again
      local m = start { "--job-seconds", "60" }
      local c = new_client { base_url = m.url, api_key = "test-key", listen = "127.0.0.1:0",
        webhook = { secret = SECRET, scheme = "kie" } }
      local port = c._engine:listening()
      local reqs = {}
      for i = 1, 150 do reqs[i] = request_text(kie_callback("task_burst_" .. i)) end
      local statuses = post_all(c, "127.0.0.1", port, reqs, 10)
      local answered = 0
      for i = 1, #reqs do if statuses[i] == 200 then answered = answered + 1 end end
      assert.equal(150, answered, "callbacks answered 200 of 150")
      assert.equal(150, c:stats().callbacks.unknown)
    end)

  it("regression: listen = \"[::]:port\" takes the callbacks sent to the callback_url it makes (IPv4)", function()
    -- "[::]" was listened on IPv6 only (libmicrohttpd sets IPV6_V6ONLY), while
    -- the callback_url made for it is http://127.0.0.1:port/: every callback refused
    local m = start { "--job-seconds", "0.3", "--webhook-secret", SECRET }
    local c = new_client { base_url = m.url, api_key = "test-key", listen = "[::]:0",
      webhook = { secret = SECRET, scheme = "kie" } }
    assert.matches("^http://127%.0%.0%.1:%d+/$", c.callback_url)
    local job = assert(c:submit(KLING, { prompt = "called back over IPv4 to [::]" }))
    local res, err = job:await(15)
    assert(res, tostring(err))
    assert.equal(0, job.polls, "ended by its callback, not by a poll")
    assert.equal(1, c:stats().callbacks.delivered)
    -- and IPv6 still reaches it
    local port = c._engine:listening()
    local st = post_all(c, "::1", port, { request_text(kie_callback("task_v6")) }, 5)
    assert.equal(200, st[1])
  end)

  it("regression: an unbracketed IPv6 listen address (\"::1:port\") makes a callback_url that is a URL", function()
    -- it was http://::1:PORT/, which no HTTP client can parse: callbacks never came
    local m = start { "--job-seconds", "0.3", "--webhook-secret", SECRET }
    local c = new_client { base_url = m.url, api_key = "test-key", listen = "::1:0",
      webhook = { secret = SECRET, scheme = "kie" } }
    assert.matches("^http://%[::1%]:%d+/$", c.callback_url)
    local job = assert(c:submit(KLING, { prompt = "called back to ::1" }))
    local res, err = job:await(15)
    assert(res, tostring(err))
    assert.equal(0, job.polls)
  end)

  it("regression: a callback that beats the createTask answer, then replayed with another body, ends the job with "
    .. "the first", function()
    -- webhooks.md: with the Kie scheme (body unsigned) only the first callback
    -- of a task counts, so a body changed and replayed within the tolerance
    -- changes nothing. A callback kept because it came before the task id was
    -- known was overwritten by every later one: the replay won.
    local s = canned.start()
    later(s.stop)
    local id = "task_early_race"
    s.answer("createTask", cjson.encode({ code = 200, msg = "success", data = { taskId = id } }), 200, nil, nil,
      { delay = 1.5 }) -- the gateway is slow to answer; its callback is not
    local c = new_client { base_url = s.url, api_key = "test-key", listen = "127.0.0.1:0",
      webhook = { secret = SECRET, scheme = "kie" }, rate = false }
    local port = c._engine:listening()
    local job = assert(c:submit(KLING, { prompt = "raced" }))
    local deadline = helper.now() + 5
    while #s.requests() == 0 and helper.now() < deadline do c:step(0.02) end
    assert.is_nil(job.id, "the createTask answer is still on its way")
    local headers, genuine = kie_callback(id)
    local forged = cjson.encode({ code = 501, msg = "Playground task failed.",
      data = { taskId = id, state = "fail", failCode = "500", failMsg = "forged" } })
    local st = post_all(c, "127.0.0.1", port, { request_text(headers, genuine) }, 5)
    assert.equal(200, st[1])
    st = post_all(c, "127.0.0.1", port, { request_text(headers, forged) }, 5) -- the same signed headers
    assert.equal(200, st[1])
    assert.equal(2, c:stats().callbacks.unknown)
    local res, err = job:await(10)
    assert(res, "the replayed body ended the job: " .. tostring(err))
    assert.same({ "https://cdn.example/" .. id .. ".mp4" }, res.urls)
    assert.equal(1, c:stats().callbacks.delivered)
  end)

  it("regression: a signed record whose code contradicts its final state is answered 400 (malformed), not 200 "
    .. "as a task not ended yet", function()
    -- webhooks.md: 200 "pending" is for a task that has not ended; 400 for a
    -- signed body that is not a callback of the contract. A record saying
    -- state "success" in a code-500 envelope is the latter (the reader calls
    -- it a contradiction), but was counted "pending" and answered 200
    local m = start { "--job-seconds", "60" }
    local c = new_client { base_url = m.url, api_key = "test-key", listen = "127.0.0.1:0",
      webhook = { secret = SECRET, scheme = "kie" }, rate = false }
    local port = c._engine:listening()
    local job = assert(c:submit(KLING, { prompt = "contradicted [seconds=60]" }))
    assert(job:accepted(10))
    local body = cjson.encode({ code = 500, msg = "Internal error", data = { taskId = job.id, state = "success",
      resultJson = cjson.encode({ resultUrls = { "https://cdn.example/x.mp4" } }) } })
    local headers = webhook.sign { scheme = "kie", body = body, secret = SECRET }
    local st = post_all(c, "127.0.0.1", port, { request_text(headers, body) }, 5)
    assert.equal(400, st[1])
    assert.is_false(job.done)
    assert.same({ 1, 0 }, { c:stats().callbacks.malformed, c:stats().callbacks.pending })
    -- a task that has not ended is still 200 "pending"
    local _, running = kie_callback(job.id, { state = "generating", resultJson = "" })
    headers = webhook.sign { scheme = "kie", body = running, secret = SECRET }
    st = post_all(c, "127.0.0.1", port, { request_text(headers, running) }, 5)
    assert.equal(200, st[1])
    assert.equal(1, c:stats().callbacks.pending)
    assert.is_false(job.done)
  end)
end)

describe("audit: callbacks shared between workers (webhook.shared)", function()
  -- An OpenResty shared dict's semantics, in process: add keeps what is there.
  local function dict()
    local t = {}
    local d = {}
    function d.get(_, k) return t[k] end
    function d.set(_, k, v) t[k] = v return true end
    function d.add(_, k, v)
      if t[k] ~= nil then return false, "exists" end
      t[k] = v
      return true
    end
    function d.incr(_, k, by, init)
      t[k] = (t[k] or init or 0) + by
      return t[k]
    end
    function d.delete(_, k) t[k] = nil end
    return d, t
  end

  it("regression: a task's first callback is the one kept for another worker, not a later replay", function()
    local d, t = dict()
    local c = new_client({ base_url = "http://127.0.0.1:9", api_key = "k", rate = false,
      webhook = { secret = SECRET, scheme = "kie", shared = d } })
    local headers, first = kie_callback("task_shared_1")
    assert.equal(200, c:deliver(headers, first))
    local _, later_body = kie_callback("task_shared_1", { state = "fail", failMsg = "replayed" })
    assert.equal(200, c:deliver(headers, later_body)) -- the same signed headers (the Kie scheme signs no body)
    assert.equal(first, t["modkie:callback:task_shared_1"])
    assert.equal(2, c:stats().callbacks.relayed)
  end)
end)

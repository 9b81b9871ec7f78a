--- Test helper: start the gateway emulator (`bin/modkie mock`) as its own
-- process on a free port, talk to its control endpoints, stop it.
local cjson = require "cjson"
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"

local helper = {}

local LUA = os.getenv("MODKIE_TEST_LUA") or "lua5.4"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Start an emulator. `args` is a list of extra CLI arguments.
-- Returns a table: url, port, pid, stop(), stats(), get(path), post(path, body).
function helper.mock(args)
  local cmd = { "exec", LUA, "bin/modkie", "mock", "--port", "0" }
  for _, a in ipairs(args or {}) do cmd[#cmd + 1] = shell_quote(a) end
  local log = os.tmpname()
  local pipe = assert(io.popen(table.concat(cmd, " ") .. " 2>" .. log, "r"))
  local line = pipe:read("*l")
  if not line then
    local f = io.open(log); local text = f and f:read("*a") or ""; if f then f:close() end
    pipe:close()
    error("emulator did not start: " .. text)
  end
  local url = assert(line:match("(http://[%w%.%-]+:%d+)"), "no URL in: " .. line)
  local pid = assert(tonumber(line:match("pid=(%d+)")), "no pid in: " .. line)
  local m = { url = url, port = tonumber(url:match(":(%d+)$")), pid = pid, log = log }

  function m.request(method, path, body)
    local out = {}
    local _, status = http.request{
      url = url .. path, method = method, sink = ltn12.sink.table(out),
      source = body and ltn12.source.string(body) or nil,
      headers = body and { ["content-length"] = #body, ["content-type"] = "application/json" } or nil,
    }
    local text = table.concat(out)
    local ok, decoded = pcall(cjson.decode, text)
    return status, ok and decoded or text
  end
  function m.stats() local _, body = m.request("GET", "/__mock/stats"); return body end
  --- Make the emulator answer requests to `path` (for recordInfo: of task
  -- `task_id`) with `answers` verbatim, in order, the last one repeated:
  -- each a body string, or { status =, body =, headers = }.
  function m.replay(path, task_id, answers)
    local list = {}
    for i, a in ipairs(answers) do list[i] = type(a) == "string" and { body = a } or a end
    local status, body = m.request("POST", "/__mock/replay",
      cjson.encode({ path = path, taskId = task_id, answers = list }))
    assert(status == 200, "replay refused: " .. tostring(type(body) == "table" and body.error or body))
  end
  function m.stop()
    if m.stopped then return end
    m.stopped = true
    os.execute("kill " .. pid .. " 2>/dev/null")
    pipe:close()
    os.remove(log)
  end
  return m
end

--- Sleep without a busy loop.
function helper.sleep(s) socket.sleep(s) end

--- Wall-clock seconds with sub-second precision.
helper.now = socket.gettime

--- Step `clients` (5 ms at a time, each in turn) until every job of `jobs`
-- has ended or `seconds` pass.
function helper.step_until_done(clients, jobs, seconds)
  local deadline = helper.now() + seconds
  local function left()
    for _, j in ipairs(jobs) do if not j.done then return true end end
    return false
  end
  while left() and helper.now() < deadline do
    for _, c in ipairs(clients) do c:step(0.005) end
  end
end

--- A fresh empty directory; removed with helper.rmdir.
function helper.tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p " .. shell_quote(p)))
  return p
end

function helper.rmdir(p) os.execute("rm -rf " .. shell_quote(p)) end

--- The bytes of file `p`, or nil when it cannot be opened.
function helper.read_file(p)
  local f = io.open(p, "rb"); if not f then return nil end
  local s = f:read("*a"); f:close(); return s
end

--- Write `text` to file `p`, replacing it.
function helper.write_file(p, text)
  local f = assert(io.open(p, "wb"))
  f:write(text)
  f:close()
end

--- A TCP port on 127.0.0.1, held bound but not listening until released.
-- Connecting to it is refused (ECONNREFUSED, as when nothing is bound), and
-- the kernel gives it to no other socket binding port 0, as it may a port
-- only found free: the other Luas' runs of the suite go on at the same time
-- and start their emulators and callback receivers that way. A server told
-- to listen there (the emulator, redis-server, nginx, chromedriver: all bind
-- with SO_REUSEADDR, as the hold does) can while it is held, and again after
-- a restart, with no one able to take the port in between.
-- `later(fn)`, if given, is called with the release (busted's `finally`,
-- or helper.cleanups' `later`). Returns the port and the release.
function helper.held_port(later)
  local hold = assert(socket.tcp4())
  assert(hold:setoption("reuseaddr", true))
  assert(hold:bind("127.0.0.1", 0))
  local _, port = hold:getsockname()
  local function release() hold:close() end
  if later then later(release) end
  return tonumber(port), release
end

helper.shell_quote = shell_quote



--- A client for emulator `m`, polling fast so specs stay quick.
function helper.client(m, opts)
  local modkie = require "modkie"
  local o = { base_url = m.url, api_key = "test-key", poll_interval = 0.05, rate = false }
  for k, v in pairs(opts or {}) do o[k] = v end
  if o.api_key == false then o.api_key = nil end
  return modkie.new(o)
end

--- Bytes the emulator serves for output n (from 0) of a task: fetched straight from it.
function helper.file_bytes(m, task_id, n, ext)
  local _, body = m.request("GET", ("/files/%s/%d.%s"):format(task_id, n, ext or "mp4"))
  return body
end

--- Start an emulator on a given port (e.g. again on the port of one stopped
-- before); `args` as for helper.mock.
function helper.mock_on(port, args)
  local a = { "--port", tostring(port) }
  for _, v in ipairs(args or {}) do a[#a + 1] = v end
  return helper.mock(a)
end

--- A callback receiver in this process: the emulator's own HTTP server
-- (modkie.mock.http) on a free port, keeping every request it gets and
-- answering with `statuses` in order (the last one repeated; default 200).
-- Returns { url, requests = { {headers =, body =, path =, at =}, … },
-- step(t), wait(n, client, timeout) -> true once n requests came, close() }.
function helper.receiver(statuses)
  local server_http = require "modkie.mock.http"
  statuses = statuses or { 200 }
  local r = { requests = {} }
  local server = server_http.new { host = "127.0.0.1", port = 0, handler = function(req)
    r.requests[#r.requests + 1] = { headers = req.headers, body = req.body, path = req.path, at = socket.gettime() }
    local status = statuses[math.min(#r.requests, #statuses)]
    return { status = status, headers = { ["Content-Type"] = "text/plain" }, body = "ok" }
  end }
  assert(server:listen())
  r.url = "http://127.0.0.1:" .. server.port
  function r.step(t) server:step(t or 0) end
  --- Serve until `n` requests came (driving `client` too, if given), or `timeout` seconds.
  function r.wait(n, client, timeout)
    local deadline = socket.gettime() + (timeout or 20)
    while #r.requests < n and socket.gettime() < deadline do
      server:step(0.02)
      if client then client:step(0) end
    end
    return #r.requests >= n
  end
  function r.close() server:close() end
  return r
end

--- Kill emulator `m` with SIGKILL (kill -9): it gets no chance to save anything.
function helper.kill9(m)
  if m.stopped then return end
  os.execute("kill -9 " .. m.pid .. " 2>/dev/null")
  m.stop()
end
--- Cleanups of one test, undone in reverse when it ends. busted keeps one
-- `finally` per test and binds it in the spec file, so the spec hands it in:
--   local later, start = helper.cleanups(function(fn) finally(fn) end)
-- `later(fn)` runs fn when the test ends; `start(args)` is helper.mock(args),
-- stopped when the test ends.
function helper.cleanups(finally)
  local undo = {}
  local function later(fn)
    undo[#undo + 1] = fn
    finally(function()
      for i = #undo, 1, -1 do undo[i]() end
      undo = {}
    end)
  end
  local function start(args)
    local m = helper.mock(args)
    later(m.stop)
    return m
  end
  return later, start
end

return helper

-- bench/exchange.lua: the Lua contenders of the exchange benchmark (bench/run.lua
-- starts them, one process per run; bench/exchange.c is the raw C baseline).
-- W exchanges with C in flight: even ones POST download-url with the body in
-- BODY_FILE, odd ones GET recordInfo; each answer decoded and a field read
-- (data, a link; data.state). (A one-off createTask does not exist in modkie:
-- a create is always a job's, on a connection of its own; see modkie-jobs.)
--
--   lua5.4 bench/exchange.lua modkie    URL BODY_FILE W C [CA_FILE]   (also luajit)
--   lua5.1 bench/exchange.lua lua-http  URL BODY_FILE W C [CA_FILE]   (Debian packages lua-http for 5.1 only)
--   lua5.4 bench/exchange.lua socket.http URL BODY_FILE W 1 [CA_FILE] (sequential; https through LuaSec)
--   lua5.4 bench/exchange.lua modkie-jobs URL BODY_FILE W C [CA_FILE] (W / 2 jobs: createTask + one poll each)
--   lua5.4 bench/exchange.lua modkie-jobs-sockets URL BODY_FILE W C [CA_FILE] (the same, after client:fds())
--   lua5.4 bench/exchange.lua modkie-engine-jobs URL BODY_FILE W C (the same jobs through the C engine alone)
--   lua5.4 bench/exchange.lua modkie-polls URL BODY_FILE W C [CA_FILE] (C adopted jobs polled, W polls in all)
--   lua5.4 bench/exchange.lua modkie-polls-sockets URL BODY_FILE W C [CA_FILE] (the same, after client:fds())
--
-- Prints one line: exchanges= errors= wall= cpu= rss_kb=  (cpu: os.clock(),
-- the process's user + system time, around the run; rss_kb: peak, VmHWM).
-- Prints numbers; never fails on them.
local CLIENT, URL, BODY_FILE = arg[1], arg[2], arg[3]
local W, C, CA_FILE = tonumber(arg[4]), tonumber(arg[5]), arg[6]
assert(CLIENT and URL and BODY_FILE and W and C, "usage: exchange.lua CLIENT URL BODY_FILE W C [CA_FILE]")

local LINK = "/api/v1/common/download-url"
local RECORD = "/api/v1/jobs/recordInfo?taskId=task_bench_1"

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function peak_kb()
  local f = io.open("/proc/self/status")
  if not f then return -1 end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)")) or -1
end

local BODY = slurp(BODY_FILE)
local now -- a monotonic clock in seconds

-- The answer is the contract's envelope with the field of its kind.
local function good(data, post)
  if post then return type(data) == "string" and data ~= "" end
  if type(data) ~= "table" then return false end
  local v = data.state
  return type(v) == "string" and v ~= ""
end

local contenders = {}

-- Run C coroutines of `worker` on a modkie client until all end, then close
-- it. Returns wall and CPU seconds.
local function run_workers(client, worker)
  local cpu0, t0 = os.clock(), now()
  client:run(function()
    for _ = 1, C do client:go(worker) end
  end)
  local wall, cpu = now() - t0, os.clock() - cpu0
  client:close()
  return wall, cpu
end

-- modkie: C coroutines run by client:go, each making exchanges one after
-- another with client:_call (the engine path of client:record/credits: one
-- libcurl multi handle, keep-alive, HTTP/2 multiplexing, cjson inside step).
function contenders.modkie()
  local modkie = require "modkie"
  local core = require "modkie.core"
  now = core.now
  local client = modkie.new{ base_url = URL, api_key = "bench", rate = false, retries = 0,
    max_connections = C, ca_file = CA_FILE }
  local next_i, errors = 0, 0
  local function worker()
    while next_i < W do
      local i = next_i
      next_i = next_i + 1
      local post = i % 2 == 0
      local data = post and client:_call("download-url", BODY) or client:_call("recordInfo", "task_bench_1")
      if not good(data, post) then errors = errors + 1 end
    end
  end
  local wall, cpu = run_workers(client, worker)
  return W, errors, wall, cpu
end

-- A client for jobs polled at once (poll_interval = 0), C connections, no rate limits.
local function polling_client()
  local modkie = require "modkie"
  now = require("modkie.core").now
  return modkie.new{ base_url = URL, api_key = "bench", rate = false, retries = 0, poll_interval = 0,
    max_connections = C, ca_file = CA_FILE }
end

-- modkie jobs: W / 2 jobs, each a createTask (on a connection of its own, by
-- design) and a recordInfo (nginx's record says "success": one poll), C in
-- flight, polled at once (poll_interval = 0). What the fresh connection per
-- createTask costs, next to the exchanges above.
local function whole_jobs(sockets)
  local client = polling_client()
  if sockets then client:fds() end -- as a host's event loop would: libcurl's socket interface from here on
  local jobs, next_i, errors = math.floor(W / 2), 0, 0
  local input = { prompt = BODY }
  local function worker()
    while next_i < jobs do
      next_i = next_i + 1
      local res = client:submit("kling/kling-3-0", input, { validate = false }):await()
      if not (res and res.state == "success") then errors = errors + 1 end
    end
  end
  local wall, cpu = run_workers(client, worker)
  return jobs * 2, errors, wall, cpu
end
contenders["modkie-jobs"] = function() return whole_jobs(false) end

-- modkie's engine alone (a measurement of where the time goes, not an API):
-- the same whole jobs with no Job, no scheduler, no coroutine, no option
-- check, driven straight through the client's C engine, which the client
-- layer sits on. What is left is what any Lua binding of this engine pays
-- per job: the body encoded by lua-cjson, the engine's work, and the event
-- and result tables (the result with its raw record) built in Lua memory.
contenders["modkie-engine-jobs"] = function()
  local json = require "modkie.json"
  local client = polling_client()
  local engine = client._engine
  local jobs, sent, ended, errors = math.floor(W / 2), 0, 0, 0
  local input = { prompt = BODY }
  local function submit()
    sent = sent + 1
    engine:submit(json.encode({ model = "kling/kling-3-0", input = input }), 0, false, "kling/kling-3-0", false)
  end
  local cpu0, t0 = os.clock(), now()
  for _ = 1, math.min(C, jobs) do submit() end
  while ended < jobs do
    local events = engine:step(1) or {}
    for i = 1, #events do
      local ev = events[i]
      if ev.type == "done" then
        ended = ended + 1
        if not (ev.result and ev.result.state == "success") then errors = errors + 1 end
        if sent < jobs then submit() end
      end
    end
  end
  local wall, cpu = now() - t0, os.clock() - cpu0
  client:close()
  return jobs * 2, errors, wall, cpu
end
-- the same, the client switched to libcurl's socket interface first (what
-- client:fds() does for a host's own loop: docs/embedding.md)
contenders["modkie-jobs-sockets"] = function() return whole_jobs(true) end

-- modkie polls: C jobs adopted with client:job (a task whose record stays
-- "generating": task_bench_gen), polled back to back (poll_interval = 0)
-- until W polls went out in all; the client is stepped from the main thread.
-- The raw C half is `exchange ... polls`: GETs of the same record.
local function adopted_polls(sockets)
  local client = polling_client()
  if sockets then client:fds() end -- libcurl's socket interface from here on, as for a host's loop
  local jobs = {}
  local cpu0, t0 = os.clock(), now()
  for i = 1, C do jobs[i] = assert(client:job("task_bench_gen", { model = "kling/kling-3-0" })) end
  -- counted every 2 ms (a stats table per step would be the bench's own cost)
  local check = 0
  repeat
    client:step(0.002)
    local t = now()
    if t >= check then
      check = t + 0.002
      if client:stats().polls >= W then break end
    end
  until false
  local wall, cpu = now() - t0, os.clock() - cpu0
  local polls, errors = client:stats().polls, 0
  for _, job in ipairs(jobs) do
    if job.done then errors = errors + 1 end -- a job that stays "generating" never ends
  end
  client:close()
  return polls, errors, wall, cpu
end
contenders["modkie-polls"] = function() return adopted_polls(false) end
contenders["modkie-polls-sockets"] = function() return adopted_polls(true) end

-- lua-http (cqueues): its request:go() opens a connection per request, so
-- this uses its connection objects directly, the fastest way it offers:
-- over HTTP/1.1 one keep-alive connection per worker, over HTTP/2 one
-- connection whose streams the C workers share.
contenders["lua-http"] = function()
  local cqueues = require "cqueues"
  local http_client = require "http.client"
  local http_headers = require "http.headers"
  local cjson = require "cjson"
  now = cqueues.monotime
  local scheme, host, port = URL:match("^(https?)://([^:/]+):(%d+)")
  local tls = scheme == "https"
  local ctx
  if tls then
    local http_tls = require "http.tls"
    local x509 = require "openssl.x509"
    ctx = http_tls.new_client_context()
    ctx:getStore():add(x509.new(slurp(CA_FILE)))
  end
  local function connect()
    local conn = assert(http_client.connect{ host = host, port = tonumber(port), tls = tls, ctx = ctx,
      version = tls and 2 or 1.1 })
    assert(conn:connect(10))
    return conn
  end
  local authority = host .. ":" .. port
  local function request(conn, post)
    local h = http_headers.new()
    h:append(":method", post and "POST" or "GET")
    h:append(":scheme", scheme)
    h:append(":authority", authority)
    h:append(":path", post and LINK or RECORD)
    h:append("authorization", "Bearer bench")
    h:append("accept", "application/json")
    if post then
      h:append("content-type", "application/json")
      h:append("content-length", tostring(#BODY))
    end
    local stream = assert(conn:new_stream())
    assert(stream:write_headers(h, not post))
    if post then assert(stream:write_chunk(BODY, true)) end
    local rh = assert(stream:get_headers())
    local body = assert(stream:get_body_as_string())
    stream:shutdown()
    local ok, doc = pcall(cjson.decode, body)
    return rh:get(":status") == "200" and ok and type(doc) == "table" and good(doc.data, post)
  end
  local next_i, errors = 0, 0
  local cq = cqueues.new()
  local cpu0, t0 = os.clock(), now()
  local shared = tls and connect() or nil
  for _ = 1, C do
    cq:wrap(function()
      local conn = shared or connect()
      while next_i < W do
        local i = next_i
        next_i = next_i + 1
        if not request(conn, i % 2 == 0) then errors = errors + 1 end
      end
      if not shared then conn:close() end
    end)
  end
  assert(cq:loop())
  local wall, cpu = now() - t0, os.clock() - cpu0
  if shared then shared:close() end
  return W, errors, wall, cpu
end

-- LuaSocket's socket.http (LuaSec's ssl.https for https): one exchange at a
-- time, a new connection for each (it sends "Connection: close").
contenders["socket.http"] = function()
  local socket = require "socket"
  local ltn12 = require "ltn12"
  local cjson = require "cjson"
  local https = URL:match("^https:")
  local http = https and require "ssl.https" or require "socket.http"
  now = socket.gettime
  local errors = 0
  local cpu0, t0 = os.clock(), now()
  for i = 0, W - 1 do
    local post = i % 2 == 0
    local out = {}
    local _, status = http.request{
      url = URL .. (post and LINK or RECORD), method = post and "POST" or "GET",
      sink = ltn12.sink.table(out), source = post and ltn12.source.string(BODY) or nil,
      headers = { authorization = "Bearer bench", accept = "application/json",
        ["content-type"] = post and "application/json" or nil, ["content-length"] = post and #BODY or nil },
      cafile = CA_FILE, verify = https and "peer" or nil, protocol = https and "tlsv1_2" or nil,
    }
    local ok, doc = pcall(cjson.decode, table.concat(out))
    if not (status == 200 and ok and type(doc) == "table" and good(doc.data, post)) then errors = errors + 1 end
  end
  return W, errors, now() - t0, os.clock() - cpu0
end

local run = assert(contenders[CLIENT], "unknown client " .. tostring(CLIENT))
local n, errors, wall, cpu = run()
io.write(("exchanges=%d errors=%d wall=%.6f cpu=%.6f rss_kb=%d\n"):format(n, errors, wall, cpu, peak_kb()))

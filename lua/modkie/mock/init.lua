--- `modkie mock`: the gateway emulator, a real local HTTP/1.1 server that
-- speaks the wire contract (docs/design.md §1) in the kie or modkie dialect.
--   modkie.mock.http      the non-blocking server (sockets, framing, keep-alive)
--   modkie.mock.gateway   the API: tasks, timelines, credits, dialects, stats
--   modkie.mock.faults    fault injection (--faults, [fault=…] triggers)
--   modkie.mock.state     --state FILE: tasks and balances survive a restart
--   modkie.mock.callbacks signed callbacks to a job's callBackUrl
--   modkie.mock.directives, .files, .ledger, .media, .ratelimit   its parts
-- (JSON is modkie.json, the seeded draws modkie.rng, flags modkie.cli.args.)
-- Reuse in-process: `local m = mock.new(opts); m.listen(); m.step(0)`.
-- @module modkie.mock

local socket = require "socket"
local args = require "modkie.cli.args"
local http = require "modkie.mock.http"
local Gateway = require "modkie.mock.gateway"
local faults = require "modkie.mock.faults"
local State = require "modkie.mock.state"

local mock = {}

mock.USAGE = [[
usage: modkie mock [options]

Run the gateway emulator: a local HTTP server speaking the jobs API.

options:
  --port N            port to listen on (default 8089; 0 = any free port)
  --host H            address to listen on (default 127.0.0.1)
  --dialect D         kie (default) or modkie: envelope, error and record style
  --job-seconds S     how long a job takes, may be fractional or 0 (default 8)
  --api-key KEY       accept only this key (default: any non-empty key)
  --credits N         starting balance of every key (default 10000)
  --files-base URL    base of result URLs (default http://HOST:PORT)
  --limits [SPEC]     enforce rate limits per key (429 + Retry-After); bare:
                      20 creates / 10 s and 10 polls / 1 s; SPEC changes
                      them, e.g. create=5/1,poll=100/1 (requests/seconds)
  --faults SPEC       replace a fraction of answers by faults, e.g.
                      poll=500:0.1,reset:0.05;create=429:0.05 (see below)
  --seed N            seed of the fault draws (default: from the clock; the
                      start line shows it): same seed, same requests, same faults
  --retry-after S     Retry-After of injected 429, 455, 503 (default 1)
  --stall-seconds S   how long a stall holds its answer (default 35)
  --huge-bytes N      padding of a huge answer (default 9437184, > 8 MiB)
  --webhook-secret S  sign callbacks with S in the dialect's scheme (kie:
                      X-Webhook-Timestamp + X-Webhook-Signature; modkie:
                      X-ModKie-Signature); without it they go unsigned
  --callback-retries N  retries of a callback answered non-2xx (default 3)
  --callback-backoff S  seconds before the first retry, doubling (default 1;
                      the gateway documents 1, 5 and 15 minutes)
  --record-delay S    recordInfo answers 422 "recordInfo is null" for S
                      seconds after createTask (default 0)
  --models [LIST]     refuse models modkie does not register with 422; LIST
                      (comma-separated ids) are known too
  --price SPEC        credits a successful job costs, e.g.
                      kling/kling-3-0=1.23,acme/x=0.5 (fractions allowed;
                      default 35 for kling/kling-3-0, else 10)
  --state FILE        keep tasks, balances and counters in FILE: loaded on
                      start, written as they change; tasks and balances
                      survive kill -9, counters may lag by 0.2 s
  --max-connections N open connections kept at most (default 900, max 1000)
  --upload-ttl S      seconds an uploaded file lives (default 86400: 24 h);
                      then its URL answers 404 and a createTask naming it 422
  --max-upload N      largest upload request body in bytes (default 104857600)
  --media             serve playable media: each .mp4 output a short H.264
                      clip (the input's aspect_ratio and duration, at most
                      10 s), each .png a PNG image; default: patterned bytes
  --verbose           access log on stderr
  --help              this text

Prints one line on start: "listening http://HOST:PORT pid=PID dialect=D",
followed by " seed=N" when --faults is given.

Faults: SPEC is ENDPOINT=KIND:FRACTION[,KIND:FRACTION…][;ENDPOINT=…] with
endpoints create, poll, credits, download_url, files and kinds 500, 455, 429
(error answers in the dialect's style), 502 (HTTP 502, an HTML page) and 503
(HTTP 503, empty body, Retry-After) as a proxy sends them, reset (connection
reset, no answer), stall (answer
held --stall-seconds), cut (body cut short), badjson (200 + invalid JSON),
html (502 HTML page), huge (answer padded past 8 MiB), all (the fraction
spread over every kind). 429 and 455 answer instead of the endpoint; the
other kinds after it ran: such a create fault creates the task and loses
its id. Stats count injected faults per endpoint and kind.

Prompt directives script a job: [fail] [fail=500|GENERATION_FAILED|null]
[envelope=501] [seconds=N] [outputs=N] [text] [size=BYTES] [ext=png]
[progress] [record_delay=S] [callback=drop|duplicate|delay:S]
[fault=ENDPOINT:KIND] [fault=ENDPOINT:KINDxN] (the first N requests of that
endpoint for this job get KIND; several separated by commas).

Callbacks: a createTask with callBackUrl gets a POST there when the task
ends: kie {"code":200|501,"msg":…,"data":{record}}, modkie
{"event":"task.completed",…}; retried with backoff until a 2xx.

Uploads: POST /api/file-stream-upload (multipart: file, uploadPath,
fileName), /api/file-base64-upload and /api/file-url-upload (JSON); the file
is served at its downloadUrl (GET /tempfile/...) until it expires.

Control endpoints (no auth): GET /__mock/stats, GET /__mock/tasks,
GET /__mock/uploads, POST /__mock/uploads/expire (every upload expires now),
GET /__mock/limits (with --limits: the time of every request the limits
counted, per key, admitted or refused), GET /__mock/polls (every
recordInfo of a known task, in order: [{"t","taskId"}]), POST /__mock/reset,
POST /__mock/credits {"key","balance"},
POST /__mock/replay {"path","taskId"?,"answers":[{"status"?,"body","headers"?}]}
(the next requests to path, for recordInfo of that task, get these answers
verbatim, the last one repeated).
]]

local function number_flag(min, max, integer)
  return function(value)
    local n = tonumber(value)
    if not n or n ~= n or n < min or n > max or (integer and n ~= math.floor(n)) then
      return nil, string.format("must be %s from %s to %s", integer and "an integer" or "a number",
        tostring(min), tostring(max))
    end
    return n
  end
end

-- `--limits create=20/10,poll=10/1`: { create = {20, 10}, poll = {10, 1} }.
local function parse_limits(v)
  local out = {}
  for item in (v .. ","):gmatch("([^,]*),") do
    local name, n, per = item:match("^%s*([%w_]+)%s*=%s*(%d+)%s*/%s*([%d%.]+)%s*$")
    if not name then return nil, "part '" .. item .. "' is not NAME=REQUESTS/SECONDS" end
    if not Gateway.DEFAULT_LIMITS[name] then return nil, "'" .. name .. "' is not a limit (create, poll)" end
    if out[name] then return nil, "'" .. name .. "' is given twice" end
    n, per = tonumber(n), tonumber(per)
    if not (n >= 1 and per and per > 0) then
      return nil, "'" .. item .. "' needs at least 1 request per more than 0 seconds"
    end
    out[name] = { n, per }
  end
  return out
end

-- `--price a=1.5,b=2`: { a = 1.5, b = 2 }.
local function parse_prices(v)
  local out = {}
  for item in (v .. ","):gmatch("([^,]*),") do
    local model, n = item:match("^%s*(%S+)%s*=%s*([%d%.]+)%s*$")
    n = tonumber(n)
    if not model or not n then return nil, "part '" .. item .. "' is not MODEL=CREDITS" end
    out[model] = n
  end
  return out
end

local function list_of(v)
  local out = {}
  for id in v:gmatch("[^,%s]+") do out[#out + 1] = id end
  return out
end

local function nonempty(v)
  if v == "" then return nil, "must not be empty" end
  return v
end

-- The flags, for modkie.cli.args: `value` checks and converts a flag's text.
local FLAGS = {
  port = { value = number_flag(0, 65535, true) },
  host = { value = nonempty },
  dialect = { value = function(v)
    if not Gateway.DIALECTS[v] then return nil, "must be kie or modkie" end
    return v
  end },
  ["job-seconds"] = { value = number_flag(0, 1e9) },
  ["api-key"] = { value = nonempty },
  credits = { value = number_flag(0, 1e15) },
  ["files-base"] = { value = function(v)
    if not v:match("^https?://[^/]+") then return nil, "must be an http:// or https:// URL" end
    return (v:gsub("/+$", ""))
  end },
  ["max-connections"] = { value = number_flag(1, http.MAX_CONNECTIONS_LIMIT, true) },
  limits = { value = parse_limits, optional = true },
  faults = { value = faults.parse_spec },
  seed = { value = number_flag(0, 2 ^ 53, true) },
  ["webhook-secret"] = { value = nonempty },
  ["callback-retries"] = { value = number_flag(0, 100, true) },
  ["callback-backoff"] = { value = number_flag(0, 86400) },
  ["record-delay"] = { value = number_flag(0, 86400) },
  ["upload-ttl"] = { value = number_flag(0, 1e9) },
  ["max-upload"] = { value = number_flag(1, 1e12, true) },
  models = { value = list_of, optional = true },
  price = { key = "prices", value = parse_prices },
  ["retry-after"] = { value = number_flag(0, 86400, true) },
  ["stall-seconds"] = { value = number_flag(0, 86400) },
  ["huge-bytes"] = { value = number_flag(1, 1024 * 1024 * 1024, true) },
  state = { value = nonempty },
  verbose = {}, media = {}, help = {},
}

--- Parse the CLI arguments: options table, or nil and a message naming the
-- flag. A flag given twice takes the last value.
function mock.parse_args(argv)
  return args.parse(argv, { flags = FLAGS, last_wins = true,
    defaults = { port = 8089, host = "127.0.0.1", dialect = "kie" } })
end

--- The pid of this process (the one that serves).
function mock.pid()
  local f = io.open("/proc/self/stat", "r")
  if f then
    local stat = f:read("*l") or ""
    f:close()
    local pid = tonumber(stat:match("^(%d+)"))
    if pid then return pid end
  end
  -- No /proc: a shell's parent is the process that started it, i.e. us.
  local p = io.popen("echo $PPID")
  if p then
    local pid = tonumber(p:read("*l") or "")
    p:close()
    return pid
  end
end

local function base_url(host, port)
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  return "http://" .. host .. ":" .. string.format("%d", port)
end

--- Make an emulator (not listening yet): { server, gateway, faults, listen(),
-- step(t), run(), close(), url }.
-- opts: as parse_args returns (host, port, dialect, job_seconds, api_key,
-- credits, files_base, limits, verbose, max_connections, faults, seed,
-- retry_after, stall_seconds, huge_bytes, state, media, webhook_secret,
-- callback_retries, callback_backoff, record_delay, models, prices, upload_ttl, max_upload).
function mock.new(opts)
  local m = {}
  local log
  if opts.verbose then log = function(line) io.stderr:write(line, "\n") end end
  -- Always a plan: prompt triggers work without --faults.
  local plan = faults.new {
    spec = opts.faults, seed = opts.seed, retry_after = opts.retry_after,
    stall_seconds = opts.stall_seconds, huge_bytes = opts.huge_bytes,
  }
  m.faults = plan
  m.gateway = Gateway.new {
    dialect = opts.dialect, job_seconds = opts.job_seconds, api_key = opts.api_key,
    credits = opts.credits, files_base = opts.files_base, limits = opts.limits,
    faults = plan, media = opts.media, webhook_secret = opts.webhook_secret,
    callback_retries = opts.callback_retries, callback_backoff = opts.callback_backoff,
    record_delay = opts.record_delay, models = opts.models, prices = opts.prices, log = log,
    upload_ttl = opts.upload_ttl, max_upload = opts.max_upload,
    intercept = function(name, ctx, gw, proceed) return plan:intercept(name, ctx, gw, proceed) end,
  }
  m.server = http.new {
    host = opts.host or "127.0.0.1", port = opts.port or 0,
    max_connections = opts.max_connections, log = log, io = m.gateway.callbacks,
    handler = function(req) return m.gateway:handle(req) end,
    -- upload requests carry files: their own cap (--max-upload)
    max_body_for = function(path)
      if path:match("^/api/file%-[%w%-]+%-upload$") then return m.gateway.uploads.max_bytes end
    end,
  }
  m.gateway.net = m.server.stats
  m.gateway.on_reset = function() m.server:reset_stats() end
  -- Listen, after loading --state (nothing is served before it is loaded).
  function m.listen()
    if opts.state and not m.state then
      local state, err = State.open(opts.state, m.gateway)
      if not state then return nil, err end
      m.state = state
    end
    local ok, err = m.server:listen()
    if not ok then return nil, err end
    m.url = base_url(m.server.host, m.server.port)
    m.gateway.own_base = m.url
    return true
  end
  local function tick(now)
    if m.state then m.state:tick(now) end
  end
  function m.step(timeout)
    m.server:step(timeout or 0)
    tick(socket.gettime())
  end
  function m.run() m.server:run(m.state and 0.2 or nil, tick) end
  function m.close()
    m.server:close()
    if m.state then m.state:close() end
  end
  return m
end

--- Entry point of `modkie mock`: returns an exit code.
function mock.main(argv)
  local opts, err = mock.parse_args(argv or {})
  if not opts then
    io.stderr:write("modkie mock: ", err, "\nRun 'modkie mock --help' for the options.\n")
    return 2
  end
  if opts.help then
    io.stdout:write(mock.USAGE)
    return 0
  end
  if opts.webhook_secret then -- signing is HMAC-SHA256 in modkie's C core
    local ok, why = pcall(require, "modkie.webhook")
    if not ok then
      io.stderr:write("modkie mock: --webhook-secret needs modkie's C core (run make): ", tostring(why), "\n")
      return 1
    end
  end
  local m = mock.new(opts)
  local ok, listen_err = m.listen()
  if not ok then
    io.stderr:write("modkie mock: cannot start on ", opts.host, ":", tostring(opts.port), ": ",
      tostring(listen_err), "\n")
    return 1
  end
  io.stdout:write(string.format("listening %s pid=%s dialect=%s%s\n", m.url,
    tostring(mock.pid() or "?"), opts.dialect,
    opts.faults and string.format(" seed=%d", m.faults.seed) or ""))
  io.stdout:flush()
  m.run()
  return 0
end

return mock

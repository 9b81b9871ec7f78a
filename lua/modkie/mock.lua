--- `modkie mock`: the gateway emulator, a real local HTTP/1.1 server that
-- speaks the wire contract (DESIGN.md §1) in the kie or modkie dialect.
--   modkie.mock.http      the non-blocking server (sockets, framing, keep-alive)
--   modkie.mock.gateway   the API: tasks, timelines, credits, dialects, stats
--   modkie.mock.directives, .files, .ledger, .ratelimit, .json   its parts
-- Reuse in-process: `local m = mock.new(opts); m.listen(); m.step(0)`.
-- @module modkie.mock

local http = require "modkie.mock.http"
local Gateway = require "modkie.mock.gateway"

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
  --limits            enforce 20 creates / 10 s and 10 polls / 1 s per key (429)
  --max-connections N open connections kept at most (default 900, max 1000)
  --verbose           access log on stderr
  --help              this text

Prints one line on start: "listening http://HOST:PORT pid=PID dialect=D".
Prompt directives script a job: [fail] [seconds=N] [outputs=N] [text]
[size=BYTES] [ext=png]. Control endpoints (no auth): GET /__mock/stats,
GET /__mock/tasks, POST /__mock/reset, POST /__mock/credits {"key","balance"}.
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

local FLAGS = {
  port = { key = "port", parse = number_flag(0, 65535, true) },
  host = { key = "host", parse = function(v) if v == "" then return nil, "must not be empty" end return v end },
  dialect = { key = "dialect", parse = function(v)
    if not Gateway.DIALECTS[v] then return nil, "must be kie or modkie" end
    return v
  end },
  ["job-seconds"] = { key = "job_seconds", parse = number_flag(0, 1e9) },
  ["api-key"] = { key = "api_key", parse = function(v)
    if v == "" then return nil, "must not be empty" end
    return v
  end },
  credits = { key = "credits", parse = number_flag(0, 1e15) },
  ["files-base"] = { key = "files_base", parse = function(v)
    if not v:match("^https?://[^/]+") then return nil, "must be an http:// or https:// URL" end
    return (v:gsub("/+$", ""))
  end },
  ["max-connections"] = { key = "max_connections",
    parse = number_flag(1, http.MAX_CONNECTIONS_LIMIT, true) },
  limits = { key = "limits", switch = true },
  verbose = { key = "verbose", switch = true },
  help = { key = "help", switch = true },
}

--- Parse the CLI arguments: options table, or nil and a message naming the flag.
function mock.parse_args(args)
  local opts = { port = 8089, host = "127.0.0.1", dialect = "kie" }
  local i = 1
  while i <= #args do
    local arg = args[i]
    local name, inline = arg:match("^%-%-([%w%-]+)=(.*)$")
    if not name then name = arg:match("^%-%-([%w%-]+)$") end
    if arg == "-h" then name = "help" end
    local flag = name and FLAGS[name]
    if not flag then
      if arg:sub(1, 1) == "-" then return nil, "unknown option '" .. arg .. "'" end
      return nil, "unexpected argument '" .. arg .. "'"
    end
    if flag.switch then
      if inline then return nil, "--" .. name .. " takes no value" end
      opts[flag.key] = true
    else
      local value = inline
      if value == nil then
        i = i + 1
        value = args[i]
        if value == nil then return nil, "--" .. name .. " needs a value" end
      end
      local parsed, why = flag.parse(value)
      if parsed == nil then return nil, "--" .. name .. " " .. why .. ", got '" .. value .. "'" end
      opts[flag.key] = parsed
    end
    i = i + 1
  end
  return opts
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

--- Make an emulator (not listening yet): { server, gateway, listen(), step(t), run(), close(), url }.
-- opts: as parse_args returns (host, port, dialect, job_seconds, api_key,
-- credits, files_base, limits, verbose, max_connections).
function mock.new(opts)
  local m = {}
  local log
  if opts.verbose then log = function(line) io.stderr:write(line, "\n") end end
  m.gateway = Gateway.new {
    dialect = opts.dialect, job_seconds = opts.job_seconds, api_key = opts.api_key,
    credits = opts.credits, files_base = opts.files_base, limits = opts.limits,
  }
  m.server = http.new {
    host = opts.host or "127.0.0.1", port = opts.port or 0,
    max_connections = opts.max_connections, log = log,
    handler = function(req) return m.gateway:handle(req) end,
  }
  m.gateway.net = m.server.stats
  m.gateway.on_reset = function() m.server:reset_stats() end
  function m.listen()
    local ok, err = m.server:listen()
    if not ok then return nil, err end
    m.url = base_url(m.server.host, m.server.port)
    m.gateway.own_base = m.url
    return true
  end
  function m.step(timeout) m.server:step(timeout or 0) end
  function m.run() m.server:run() end
  function m.close() m.server:close() end
  return m
end

--- Entry point of `modkie mock`: returns an exit code.
function mock.main(args)
  local opts, err = mock.parse_args(args or {})
  if not opts then
    io.stderr:write("modkie mock: ", err, "\nRun 'modkie mock --help' for the options.\n")
    return 2
  end
  if opts.help then
    io.stdout:write(mock.USAGE)
    return 0
  end
  local m = mock.new(opts)
  local ok, listen_err = m.listen()
  if not ok then
    io.stderr:write("modkie mock: cannot listen on ", opts.host, ":", tostring(opts.port), ": ",
      tostring(listen_err), "\n")
    return 1
  end
  io.stdout:write(string.format("listening %s pid=%s dialect=%s\n", m.url,
    tostring(mock.pid() or "?"), opts.dialect))
  io.stdout:flush()
  m.run()
  return 0
end

return mock

-- bench/run.lua: `make bench`. Every benchmark of bench/ in one run, modkie
-- side by side with its baselines on the same server and workload; prints
-- the tables and writes them, with the machine, the versions and the
-- commands, to bench/RESULTS.md.
--
--   make bench                      (builds what it needs, then runs this)
--   BENCH_ROUNDS=5 make bench       rounds of the exchange matrix (median kept; default 3, and 7 for the
--                                   polling and whole-jobs table)
--   BENCH_QUICK=1 make bench        small sizes, one round: a smoke run, minutes -> seconds
--   BENCH_QUIET_WAIT=300 make bench wait up to 300 s for a 1-minute load average under 0.5 first
--   BENCH_ONLY=work | serve         only the polling and whole jobs table; or only nginx, for profiling
--   BENCH_ONLY=full                 only the full-load run (its table, and its plot beside RESULTS.md)
--   BENCH_RESULTS=path              where the note goes (default bench/RESULTS.md); the SVG plots
--                                   (bench/plot.lua) go into the same folder
--
-- Exchange level: a private nginx (worker_processes 1) answers fixed
-- createTask / recordInfo JSON over HTTP/1.1 and over HTTPS + HTTP/2; each
-- contender makes W exchanges with C in flight (bench/exchange.c, the raw C
-- baseline; bench/exchange.lua, the Lua contenders). Job level: the emulator,
-- jobs of 30-300 s scaled down, polled on several schedules
-- (bench/polling.lua). Scale: 10,000 jobs in one client (bench/scale.lua).
-- One account, several processes: N processes x jobs on one key, with each
-- process's own windows and with a shared store (bench/shared.lua).
-- Then the older benches (jobs.lua, frame.lua, batch.lua), verbatim.
-- A benchmark prints numbers: this never fails on them.
local socket = require "socket"
package.path = "bench/?.lua;" .. package.path
local plot = require "plot"

local QUICK = os.getenv("BENCH_QUICK") ~= nil and os.getenv("BENCH_QUICK") ~= ""
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS")) or (QUICK and 1 or 3)
-- the polling and whole-jobs table: short runs, so more rounds (their ratios
-- moved by 0.1 between two runs of 3 rounds on a shared 2-CPU machine)
local WORK_ROUNDS = tonumber(os.getenv("BENCH_ROUNDS")) or (QUICK and 1 or 7)
local OUT = os.getenv("BENCH_RESULTS") or "bench/RESULTS.md"
local QUIET_WAIT = tonumber(os.getenv("BENCH_QUIET_WAIT")) or 0
local T0 = socket.gettime() -- reset after BENCH_QUIET_WAIT

-- ---------------------------------------------------------------- helpers

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local s = p:read("a")
  p:close()
  return (s:gsub("%s+$", ""))
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function tmpdir()
  return sh("mktemp -d /tmp/modkie-bench.XXXXXX")
end

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function kv(line)
  local t = {}
  for k, v in (line or ""):gmatch("([%w_]+)=(%S+)") do t[k] = tonumber(v) or v end
  return t
end

local function median(xs)
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  if #s == 0 then return nil end
  if #s % 2 == 1 then return s[(#s + 1) // 2] end
  return (s[#s // 2] + s[#s // 2 + 1]) / 2
end

local function quantile(xs, q)
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  if #s == 0 then return nil end
  return s[math.max(1, math.ceil(#s * q))]
end

local function mean(xs)
  local sum = 0
  for _, x in ipairs(xs) do sum = sum + x end
  return #xs > 0 and sum / #xs or nil
end

local function fmt(x, f)
  if x == nil then return "–" end
  return (f or "%.1f"):format(x)
end

local function load1()
  return tonumber((read_file("/proc/loadavg") or ""):match("^(%S+)"))
end

local note = {}   -- the lines of RESULTS.md
local function say(s)
  s = s or ""
  io.write(s, "\n")
  io.stdout:flush()
  note[#note + 1] = s
end

local function progress(s)
  io.stderr:write(("[bench %5.0fs] %s\n"):format(socket.gettime() - T0, s))
end

local function table_md(header, rows)
  local out = { "| " .. table.concat(header, " | ") .. " |" }
  local sep = {}
  for i = 1, #header do sep[i] = i == 1 and "---" or "---:" end
  out[#out + 1] = "|" .. table.concat(sep, "|") .. "|"
  for _, r in ipairs(rows) do out[#out + 1] = "| " .. table.concat(r, " | ") .. " |" end
  return table.concat(out, "\n")
end

-- Servers on CPU 0, clients on CPU 1, when there are two CPUs and taskset.
local PIN_SERVER, PIN_CLIENT = "", ""
local NPROC = tonumber(sh("nproc")) or 1
if NPROC >= 2 and sh("command -v taskset") ~= "" then
  PIN_SERVER, PIN_CLIENT = "taskset -c 0 ", "taskset -c 1 "
end

local LUA_PATH = "LUA_PATH='lua/?.lua;lua/?/init.lua;;' "
local ENV54 = LUA_PATH .. "LUA_CPATH='build/lua5.4/?.so;;' "
local ENVJIT = LUA_PATH .. "LUA_CPATH='build/luajit/?.so;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;' "
local ENV51 = "LUA_PATH=';;' LUA_CPATH=';;' "

local commands = {} -- what ran, for the note
local function remember(what, cmd)
  if not commands[what] then
    commands[what] = true
    commands[#commands + 1] = ("%s:\n    %s"):format(what, cmd)
  end
end

--- Start the emulator on a free port; returns url, pid, handle.
local function start_emulator(args)
  local cmd = ("exec env %s%slua5.4 bin/modkie mock --port 0 --credits 1e12 %s"):format(ENV54, PIN_SERVER, args)
  local p = assert(io.popen(cmd))
  local line = assert(p:read("l"), "the emulator did not start")
  return line:match("(http://[%d.]+:%d+)"), line:match("pid=(%d+)"), p
end

local function stop_emulator(pid, p)
  os.execute("kill " .. pid)
  p:close()
end

-- ---------------------------------------------------------------- the machine

local waited = 0
if QUIET_WAIT > 0 then
  local until_t = socket.gettime() + QUIET_WAIT
  while (load1() or 0) >= 0.5 and socket.gettime() < until_t do
    progress(("load %.2f: waiting for a quiet machine"):format(load1() or -1))
    socket.sleep(10)
  end
  waited = socket.gettime() - T0
  T0 = socket.gettime() -- the run's own time starts here
end

local function pkg(name)
  local v = sh("dpkg-query -W -f='${Version}' " .. name .. " 2>/dev/null")
  return v ~= "" and v or "?"
end

local load_start = read_file("/proc/loadavg"):match("^(%S+ %S+ %S+)")
local machine = {
  ("- CPU: %s, %d cores; %s"):format(
    (read_file("/proc/cpuinfo") or ""):match("model name%s*:%s*([^\n]+)") or "?", NPROC,
    sh("uname -srm")),
  ("- memory: %.1f GiB"):format((tonumber((read_file("/proc/meminfo") or ""):match("MemTotal:%s*(%d+)")) or 0)
    / 1048576),
  ("- load average at start: %s%s%s"):format(load_start,
    waited > 0 and (" (after waiting %.0f s for one under 0.5)"):format(waited) or "",
    PIN_SERVER ~= "" and "; servers pinned to CPU 0, clients to CPU 1 (taskset)" or "; not pinned"),
  ("- %s; %s"):format(sh("lua5.4 -v"), sh("luajit -v"):match("^(LuaJIT %S+)") or "LuaJIT ?"),
  ("- %s (%s)"):format(sh("lua5.1 -v 2>&1"):match("^(Lua %S+)") or "Lua 5.1", "lua-http and cqueues run here"),
  ("- %s"):format(sh(ENV54 .. [[lua5.4 -e 'io.write(require("modkie.core").curl_version)']])),
  ("- nginx %s (Debian nginx-light %s); OpenSSL %s"):format(sh("nginx -v"):match("nginx/(%S+)") or "?",
    pkg("nginx-light"), pkg("libssl3")),
  ("- Debian packages: libcjson1 %s, lua-cjson %s, lua-http %s, lua-cqueues %s, lua-socket %s, lua-sec %s, "
    .. "luajit2 %s"):format(pkg("libcjson1"), pkg("lua-cjson"), pkg("lua-http"), pkg("lua-cqueues"),
    pkg("lua-socket"), pkg("lua-sec"), pkg("luajit2")),
  ("- modkie %s (git %s), C core and bench/exchange.c built with %s, -O2"):format(
    sh(ENV54 .. [[lua5.4 -e 'io.write(require("modkie").VERSION)']]), sh("git rev-parse --short HEAD"),
    sh("gcc --version"):match("^([^\n]+)")),
}

-- ---------------------------------------------------------------- exchange level

local RECORD = [[{"code":200,"msg":"success","data":{"taskId":"task_bench_1","model":"kling/kling-3-0",]]
  .. [["state":"success","param":"{\"model\":\"kling/kling-3-0\",\"input\":{\"prompt\":\"a red fox at dawn\"}}",]]
  .. [["resultJson":"{\"resultUrls\":[\"https://files.example/task_bench_1-0.mp4\"]}","failCode":"",]]
  .. [["failMsg":"","costTime":92000,"completeTime":1700000092000,"createTime":1700000000000,]]
  .. [["creditsConsumed":80}}]]
local CREATE = [[{"code":200,"msg":"success","data":{"taskId":"task_bench_1"}}]]
local LINK = [[{"code":200,"msg":"success","data":"https://files.example/task_bench_1-0.mp4?sig=bench"}]]
-- the record of a task that stays "generating" (the adopted jobs' polls)
local GENERATING = [[{"code":200,"msg":"success","data":{"taskId":"task_bench_gen","model":"kling/kling-3-0",]]
  .. [["state":"generating","param":"{\"model\":\"kling/kling-3-0\",\"input\":{\"prompt\":\"a red fox at dawn\"}}",]]
  .. [["resultJson":"","failCode":"","failMsg":"","costTime":0,"completeTime":null,"createTime":1700000000000,]]
  .. [["updateTime":1700000001000}}]]

-- nginx's single-quoted strings: \ and ' escaped
local function ngx_quote(s)
  return "'" .. s:gsub("\\", "\\\\"):gsub("'", "\\'") .. "'"
end

local function start_nginx()
  local n = { prefix = tmpdir(), h1 = free_port(), h2 = free_port() }
  local p = n.prefix
  assert(os.execute(("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
    .. "-addext subjectAltName=IP:127.0.0.1 -keyout %s/key.pem -out %s/cert.pem >/dev/null 2>&1"):format(p, p)),
    "openssl could not make a certificate")
  n.cert = p .. "/cert.pem"
  n.log = p .. "/access.log"
  -- createTask reads the request body before answering (echo module): with
  -- `return`, nginx answers first and resets the HTTP/2 stream whose body it
  -- did not read, which libcurl 7.88 reports as an error.
  write_file(p .. "/nginx.conf", ([[
load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;
worker_processes 1;
daemon on;
pid %s/nginx.pid;
error_log %s/error.log;
events { worker_connections 4096; }
http {
  log_format conn '$connection $status';
  access_log %s conn buffer=64k flush=50ms;
  client_body_temp_path %s;
  proxy_temp_path %s;
  fastcgi_temp_path %s;
  uwsgi_temp_path %s;
  scgi_temp_path %s;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  http2_max_concurrent_streams 1024;
  default_type application/json;
  server {
    listen 127.0.0.1:%d;
    listen 127.0.0.1:%d ssl http2;
    ssl_certificate %s/cert.pem;
    ssl_certificate_key %s/key.pem;
    location = /api/v1/jobs/createTask { echo_read_request_body; echo -n %s; }
    location = /api/v1/common/download-url { echo_read_request_body; echo -n %s; }
    location = /api/v1/jobs/recordInfo { return 200 $record; }
  }
  map $arg_taskId $record {
    default %s;
    task_bench_gen %s;
  }
}
]]):format(p, p, n.log, p, p, p, p, p, n.h1, n.h2, p, p, ngx_quote(CREATE), ngx_quote(LINK), ngx_quote(RECORD),
    ngx_quote(GENERATING)))
  assert(os.execute(("%snginx -p %s -c %s/nginx.conf -e %s/error.log"):format(PIN_SERVER, p, p, p)),
    "nginx did not start")
  for _ = 1, 100 do
    local c = socket.connect("127.0.0.1", n.h1)
    if c then c:close() break end
    socket.sleep(0.02)
  end
  socket.sleep(0.1)
  n.offset = #(read_file(n.log) or "")
  return n
end

local function stop_nginx(n)
  local pid = read_file(n.prefix .. "/nginx.pid")
  if pid then os.execute("kill " .. pid:match("%d+")) end
  socket.sleep(0.1)
  os.execute("rm -rf '" .. n.prefix .. "'")
end

--- The access log's lines since the last call: requests, distinct $connection, non-200.
local function server_side(n)
  socket.sleep(0.2) -- the log's buffer is flushed every 50 ms
  local s = read_file(n.log) or ""
  local new = s:sub(n.offset + 1)
  n.offset = #s
  local conns, nconn, requests, bad = {}, 0, 0, 0
  for c, status in new:gmatch("(%d+) (%d+)\n") do
    requests = requests + 1
    if status ~= "200" then bad = bad + 1 end
    if not conns[c] then conns[c], nconn = true, nconn + 1 end
  end
  return { requests = requests, connections = nconn, bad = bad }
end

local PROTOCOLS = {
  { key = "h1", title = "HTTP/1.1 (plain)" },
  { key = "h2", title = "HTTPS + HTTP/2" },
}
local CS = { 1, 16, 256 }

-- Contenders: how to run one, how many exchanges (by C), which C, which rounds.
local CONTENDERS = {
  { key = "c", name = "raw C: libcurl multi + epoll", w = 10000, w1 = 4000,
    cmd = function(url, body, w, c, ca)
      return ("%sbuild/bench/exchange %s %s %d %d socket %s"):format(PIN_CLIENT, url, body, w, c, ca or "")
    end },
  { key = "cpoll", name = "raw C: curl_multi_poll loop", w = 10000, w1 = 4000, first_round = true,
    cmd = function(url, body, w, c, ca)
      return ("%sbuild/bench/exchange %s %s %d %d poll %s"):format(PIN_CLIENT, url, body, w, c, ca or "")
    end },
  { key = "m54", name = "modkie, Lua 5.4", w = 10000, w1 = 1000,
    cmd = function(url, body, w, c, ca)
      return ("%s%slua5.4 bench/exchange.lua modkie %s %s %d %d %s"):format(ENV54, PIN_CLIENT, url, body, w, c,
        ca or "")
    end },
  { key = "mjit", name = "modkie, LuaJIT", w = 10000, w1 = 1000,
    cmd = function(url, body, w, c, ca)
      return ("%s%sluajit bench/exchange.lua modkie %s %s %d %d %s"):format(ENVJIT, PIN_CLIENT, url, body, w, c,
        ca or "")
    end },
  { key = "lh", name = "lua-http (Lua 5.1, cqueues)", w = 3000, w1 = 2000,
    cmd = function(url, body, w, c, ca)
      return ("%s%slua5.1 bench/exchange.lua lua-http %s %s %d %d %s"):format(ENV51, PIN_CLIENT, url, body, w, c,
        ca or "")
    end },
  { key = "ls", name = "socket.http (Lua 5.4, sequential)", w = 2000, only_c = 1, first_round = true,
    w_h2 = 40, name_h2 = "socket.http + LuaSec (HTTPS/1.1, sequential)",
    cmd = function(url, body, w, c, ca)
      return ("%s%slua5.4 bench/exchange.lua socket.http %s %s %d %d %s"):format(ENV54, PIN_CLIENT, url, body, w, c,
        ca or "")
    end },
}

-- BENCH_VARIANTS: the core with bench/patches/ applied (make bench-variants), beside the shipped one
if (os.getenv("BENCH_VARIANTS") or "") ~= "" then
  local patches = {}
  for name in sh("ls bench/patches/*.patch 2>/dev/null"):gmatch("[^\n]+") do
    patches[#patches + 1] = name:match("([^/]+)%.patch$"):match("^(%d+)")
  end
  for i = 1, #patches do
    local dir = ("build/variants/p%d"):format(i)
    if read_file(dir .. "/modkie/core.so") then
      local env = LUA_PATH .. ("LUA_CPATH='%s/?.so;;' "):format(dir)
      local name = ("modkie, Lua 5.4, core + patches %s (not shipped)"):format(table.concat(patches, "+", 1, i))
      table.insert(CONTENDERS, 4 + i, { key = "v" .. i, name = name, w = 10000, w1 = 4000,
        cmd = function(url, body, w, c, ca)
          return ("%s%slua5.4 bench/exchange.lua modkie %s %s %d %d %s"):format(env, PIN_CLIENT, url, body, w, c,
            ca or "")
        end })
    end
  end
end

local function exchanges_for(ct, proto, c)
  if ct.only_c and c ~= ct.only_c then return nil end
  local w = (proto == "h2" and ct.w_h2) or (c == 1 and ct.w1) or ct.w
  if QUICK then w = math.max((proto == "h2" and ct.w_h2) and 10 or 200, w // 10) end
  return w
end

-- BENCH_ONLY=work: only the "polling and whole jobs" table (printed, RESULTS.md left as it is);
-- BENCH_ONLY=serve: start the exchange level's nginx, print its URLs, stop it on Enter (for profiling by hand)
local ONLY = os.getenv("BENCH_ONLY") or ""

-- Polling and whole jobs against raw C: the two kinds of work a client of
-- the gateway does most, through modkie's public API (bench/exchange.lua)
-- and by raw C on a curl_multi_poll loop (bench/exchange.c), over HTTP/1.1,
-- interleaved round by round. `per`: exchanges per unit (a job is two).
-- `raw_json`: raw C doing the JSON work modkie does too (whole jobs: each
-- body encoded from the job's input, the output URLs read), measured beside
-- the plain raw C half (a prebuilt body, the state read).
local WORK = {
  { key = "polls", name = "polling adopted jobs (a task that stays \"generating\"), per poll", w = 20000, per = 1,
    raw = "polls", modkie = "modkie-polls",
    how = "`client:job(id)` × C, `poll_interval = 0`, the client stepped from the main thread; raw C: C kept-alive "
      .. "handles GETting the same record, each answer parsed with cJSON and its state read" },
  { key = "jobs", name = "whole jobs (submit + await: createTask, one poll that says success), per job", w = 4000,
    per = 2, raw = "jobs", raw_json = "jobs-json", modkie = "modkie-jobs", engine = "modkie-engine-jobs",
    how = "`client:submit(model, input):await()` in C coroutines of `client:go`, `poll_interval = 0`; raw C: "
      .. "POST createTask with CURLOPT_FRESH_CONNECT (as modkie sends a create), taskId read, then GET its record "
      .. "and read its state; raw C + JSON: the same, with each create's body encoded from the job's input by "
      .. "cJSON (modkie encodes it with lua-cjson) and the output URLs read from resultJson (modkie's result has "
      .. "them); modkie's engine alone: the same jobs driven straight through the client's C engine (no Job, "
      .. "scheduler, coroutine or option check: bench/exchange.lua, modkie-engine-jobs), what any Lua binding of it "
      .. "pays per job" },
}
local WORK_CS = { 16, 256 }
local work = {} -- work[key][c] = { raw = { runs }, raw_json = …, engine = …, modkie = … }

local function work_level(n, body)
  local url = "http://127.0.0.1:" .. n.h1
  for _, wk in ipairs(WORK) do
    work[wk.key] = {}
    for _, c in ipairs(WORK_CS) do
      work[wk.key][c] = { raw = { runs = {} }, raw_json = { runs = {} }, engine = { runs = {} },
        modkie = { runs = {} } }
    end
  end
  for round = 1, WORK_ROUNDS do
    for _, wk in ipairs(WORK) do
      for _, c in ipairs(WORK_CS) do
        local w = QUICK and wk.w // 10 or wk.w
        local cmds = {
          raw = ("%sbuild/bench/exchange %s %s %d %d %s"):format(PIN_CLIENT, url, body, w, c, wk.raw),
          raw_json = wk.raw_json and ("%sbuild/bench/exchange %s %s %d %d %s"):format(PIN_CLIENT, url, body, w, c,
            wk.raw_json),
          engine = wk.engine and ("%s%slua5.4 bench/exchange.lua %s %s %s %d %d"):format(ENV54, PIN_CLIENT, wk.engine,
            url, body, w, c),
          modkie = ("%s%slua5.4 bench/exchange.lua %s %s %s %d %d"):format(ENV54, PIN_CLIENT, wk.modkie, url, body,
            w, c),
        }
        local names = { raw = "raw C (curl_multi_poll loop)", raw_json = "raw C + the same JSON work",
          engine = "modkie's engine alone, Lua 5.4", modkie = "modkie, Lua 5.4" }
        for _, who in ipairs({ "raw", "raw_json", "engine", "modkie" }) do
          local cmd = cmds[who]
          if cmd then
            remember(("%s, %s"):format(wk.key, names[who]),
              cmd:gsub("127%.0%.0%.1:%d+", "127.0.0.1:PORT"):gsub(n.prefix, "PREFIX"))
            progress(("round %d/%d %s C=%d %s, W=%d"):format(round, WORK_ROUNDS, wk.key, c, who, w))
            local line = sh(cmd)
            local r = kv(line:match("exchanges=[^\n]*"))
            local srv = server_side(n)
            if r.exchanges then
              r.server = srv
              local runs = work[wk.key][c][who].runs
              runs[#runs + 1] = r
            else
              progress("  failed: " .. line:sub(1, 300))
            end
          end
        end
      end
    end
  end
end

-- The median of a contender's runs: CPU µs per unit, units per second, errors.
local function work_summary(slot, per)
  if not slot or #slot.runs == 0 then return nil end
  local cpu, rate, errors = {}, {}, 0
  for _, r in ipairs(slot.runs) do
    local units = r.exchanges / per
    cpu[#cpu + 1] = r.cpu / units * 1e6
    rate[#rate + 1] = units / r.wall
    errors = errors + r.errors + r.server.bad
  end
  return { cpu = median(cpu), rate = median(rate), errors = errors, runs = #slot.runs,
    units = slot.runs[1].exchanges // per, per_run = cpu }
end

-- modkie against a baseline, round by round: the rounds interleave, so each
-- pair shares the machine's state of the moment (a slow minute slows both).
-- The median of the pairs' ratios and their range, e.g. "1.18× (1.15–1.21)".
local function paired(m, base)
  local ratios = {}
  for i = 1, math.min(#m.per_run, #base.per_run) do ratios[i] = m.per_run[i] / base.per_run[i] end
  table.sort(ratios)
  return median(ratios), ratios[1], ratios[#ratios]
end

local function paired_ratio(m, base)
  if not (m and base) then return "–" end
  local mid, lo, hi = paired(m, base)
  if lo == hi then return ("%.2f×"):format(mid) end
  return ("%.2f× (%.2f–%.2f)"):format(mid, lo, hi)
end

local function work_table()
  local rows = {}
  for _, wk in ipairs(WORK) do
    for _, c in ipairs(WORK_CS) do
      local slot = work[wk.key] and work[wk.key][c]
      local raw, m = slot and work_summary(slot.raw, wk.per), slot and work_summary(slot.modkie, wk.per)
      local rj = slot and work_summary(slot.raw_json, wk.per)
      local en = slot and work_summary(slot.engine, wk.per)
      if raw or m then
        rows[#rows + 1] = { wk.name, tostring(c), fmt(raw and raw.units, "%d"), fmt(raw and raw.cpu, "%.1f"),
          fmt(rj and rj.cpu, "%.1f"), fmt(m and m.cpu, "%.1f"), paired_ratio(m, raw),
          paired_ratio(m, rj), fmt(en and en.cpu, "%.1f"), paired_ratio(en, raw), fmt(raw and raw.rate, "%.0f"),
          fmt(m and m.rate, "%.0f"),
          tostring((raw and raw.errors or 0) + (rj and rj.errors or 0) + (en and en.errors or 0)
            + (m and m.errors or 0)) }
      end
    end
  end
  say(table_md({ "work", "C", "units", "raw C: CPU µs per unit", "raw C + same JSON work: µs",
    "modkie: CPU µs per unit", "× raw C (range)", "× raw C + JSON (range)", "modkie's engine alone: µs",
    "engine alone × raw C (range)", "raw C units/s", "modkie units/s", "errors" }, rows))
  say()
  for _, wk in ipairs(WORK) do say(("- %s: %s."):format(wk.key == "polls" and "Polling" or "Whole jobs", wk.how)) end
  say()
end

local exch = {} -- exch[proto][c][key] = { runs = {...} }
local function exchange_level()
  progress("exchange level: starting nginx")
  local n = start_nginx()
  local body = n.prefix .. "/body.json"
  local frame = [[{"model":"kling/kling-3-0","input":{"prompt":"","aspect_ratio":"16:9","duration":5}}]]
  write_file(body, frame:gsub('"prompt":""', '"prompt":"' .. ("a"):rep(1024 - #frame) .. '"'))
  if ONLY == "serve" then -- for profiling by hand: the servers of this bench until Enter
    io.write(("h1=http://127.0.0.1:%d h2=https://127.0.0.1:%d body=%s ca=%s\n"):format(n.h1, n.h2, body, n.cert))
    io.stdout:flush()
    io.read("l")
    stop_nginx(n)
    os.exit(0)
  end
  if ONLY == "work" then
    work_level(n, body)
    stop_nginx(n)
    return
  end
  for _, proto in ipairs(PROTOCOLS) do
    exch[proto.key] = {}
    for _, c in ipairs(CS) do exch[proto.key][c] = {} end
  end
  for round = 1, ROUNDS do
    for _, proto in ipairs(PROTOCOLS) do
      local url = proto.key == "h1" and ("http://127.0.0.1:" .. n.h1) or ("https://127.0.0.1:" .. n.h2)
      local ca = proto.key == "h2" and n.cert or nil
      for _, c in ipairs(CS) do
        for _, ct in ipairs(CONTENDERS) do
          local w = exchanges_for(ct, proto.key, c)
          if w and (round == 1 or not ct.first_round) then
            local cmd = ct.cmd(url, body, w, c, ca)
            remember(ct.name, cmd:gsub("127%.0%.0%.1:%d+", "127.0.0.1:PORT"):gsub(n.prefix, "PREFIX"))
            progress(("round %d/%d %s C=%d %s, W=%d"):format(round, ROUNDS, proto.key, c, ct.name, w))
            local line = sh(cmd)
            local r = kv(line:match("exchanges=[^\n]*"))
            local srv = server_side(n)
            if r.exchanges then
              r.server = srv
              local slot = exch[proto.key][c][ct.key] or { runs = {} }
              exch[proto.key][c][ct.key] = slot
              slot.runs[#slot.runs + 1] = r
            else
              progress("  failed: " .. line:sub(1, 300))
            end
          end
        end
      end
    end
  end
  work_level(n, body)
  -- jobs through nginx: what a createTask on a connection of its own costs
  for _, proto in ipairs(PROTOCOLS) do
    local url = proto.key == "h1" and ("http://127.0.0.1:" .. n.h1) or ("https://127.0.0.1:" .. n.h2)
    local ca = proto.key == "h2" and n.cert or ""
    local w = QUICK and 400 or 4000
    local cmd = ("%s%slua5.4 bench/exchange.lua modkie-jobs %s %s %d 16 %s"):format(ENV54, PIN_CLIENT, url, body, w,
      ca)
    remember("modkie jobs through nginx", cmd:gsub("127%.0%.0%.1:%d+", "127.0.0.1:PORT"):gsub(n.prefix, "PREFIX"))
    progress(("jobs through nginx, %s, %d jobs"):format(proto.key, w // 2))
    local r = kv(sh(cmd):match("exchanges=[^\n]*"))
    r.server = server_side(n)
    exch[proto.key].jobs = r.exchanges and r or nil
  end
  stop_nginx(n)
end

-- The median run's figures of a contender.
local function summary(slot)
  if not slot then return nil end
  local rate, cpu, rss, conns, errors = {}, {}, {}, {}, 0
  for _, r in ipairs(slot.runs) do
    rate[#rate + 1] = r.exchanges / r.wall
    cpu[#cpu + 1] = r.cpu / r.exchanges * 1e6
    rss[#rss + 1] = r.rss_kb / 1024
    conns[#conns + 1] = r.server.connections
    errors = errors + r.errors + r.server.bad + math.abs(r.server.requests - r.exchanges)
  end
  table.sort(conns)
  local c = conns[1] == conns[#conns] and tostring(conns[1]) or (conns[1] .. "–" .. conns[#conns])
  return { rate = median(rate), cpu = median(cpu), rss = median(rss), conns = c, conns_max = conns[#conns],
    errors = errors, runs = #slot.runs, w = slot.runs[1].exchanges }
end

local function ratio(a, b)
  if not a or not b or b == 0 then return nil end
  return a / b
end

local function jobs_table()
  local rows = {}
  for _, proto in ipairs(PROTOCOLS) do
    local r = exch[proto.key].jobs
    local m = summary(exch[proto.key][16].m54)
    if r then
      local jobs_n = r.exchanges // 2
      rows[#rows + 1] = { proto.title, tostring(jobs_n), fmt(jobs_n / r.wall, "%.0f"),
        fmt(r.cpu / jobs_n * 1e6, "%.0f"), fmt(m and m.cpu * 2, "%.0f"), tostring(r.server.connections),
        tostring(r.errors + r.server.bad) }
    end
  end
  say(table_md({ "protocol", "jobs", "jobs/s", "client CPU µs per job", "two `_call` exchanges, µs",
    "connections", "errors" }, rows))
  say()
end

local function exchange_tables()
  for _, proto in ipairs(PROTOCOLS) do
    say(("### %s"):format(proto.title))
    say()
    local rows = {}
    for _, c in ipairs(CS) do
      local base = summary(exch[proto.key][c].c)
      for _, ct in ipairs(CONTENDERS) do
        local s = summary(exch[proto.key][c][ct.key])
        if s then
          local name = proto.key == "h2" and ct.name_h2 or ct.name
          rows[#rows + 1] = {
            name, tostring(c), tostring(s.w), fmt(s.rate, "%.0f"), fmt(ratio(s.rate, base and base.rate), "%.2f"),
            fmt(s.cpu, "%.1f"), fmt(ratio(s.cpu, base and base.cpu), "%.2f"), fmt(s.rss, "%.1f"),
            fmt(ratio(s.rss, base and base.rss), "%.2f"), s.conns, tostring(s.errors),
          }
        end
      end
    end
    say(table_md({ "client", "C", "W", "exch/s", "× raw C", "CPU µs/exch", "× raw C", "peak RSS MiB", "× raw C",
      "connections", "errors" }, rows))
    say()
  end
end

-- ---------------------------------------------------------------- job level

local FACTOR = QUICK and 0.02 or 0.1
local MODELS = { -- a spread of 30-300 s overall, each model with its own typical duration
  { name = "bench/fast", lo = 30, hi = 90 },
  { name = "bench/medium", lo = 90, hi = 180 },
  { name = "bench/slow", lo = 180, hi = 300 },
}
local PER_MODEL = QUICK and 8 or 20
local ARRIVALS = 120 -- seconds (unscaled) over which the jobs arrive
local WARM = 10      -- durations per model the warm "learn" schedule starts with (poll_history)
local SCHEDULES = {
  { key = "default", name = "modkie default (2–3 s, 5–10 s, 15–30 s, jittered)" },
  { key = "fixed=0.5", name = "fixed 0.5 s (replicate-js)" },
  { key = "fixed=2", name = "fixed 2 s" },
  { key = "fixed=10", name = "fixed 10 s" },
  { key = "learn", name = "`poll_interval = \"learn\"`, cold (learns during the run)" },
  { key = "learn-warm", name = "`\"learn\"`, warm (`poll_history`: 10 earlier durations per model)" },
}

local jobs = {} -- jobs[schedule] = { {duration, polls, delay, informed}, ... }; procs[schedule] = cpu, requests
local job_meta = {}
local function job_level()
  progress("job level: starting the emulator")
  local url, pid, p = start_emulator("--job-seconds 1")
  local dir = tmpdir()
  local plan = dir .. "/plan.txt"
  math.randomseed(6)
  local lines = {}
  for _, m in ipairs(MODELS) do
    for _ = 1, PER_MODEL do
      lines[#lines + 1] = ("%s %.4f %.4f"):format(m.name, math.random() * ARRIVALS * FACTOR,
        (m.lo + math.random() * (m.hi - m.lo)) * FACTOR)
    end
  end
  for _, m in ipairs(MODELS) do -- the warm schedule's history: earlier jobs of the same models
    for _ = 1, WARM do lines[#lines + 1] = ("warm %s %.4f"):format(m.name, m.lo + math.random() * (m.hi - m.lo)) end
  end
  write_file(plan, table.concat(lines, "\n") .. "\n")
  local start = socket.gettime() + 1.5
  local procs = {}
  for _, s in ipairs(SCHEDULES) do
    jobs[s.key] = {}
    job_meta[s.key] = { cpu = 0, requests = 0, errors = 0 }
    local cmd = ("%s%slua5.4 bench/polling.lua %s %s %s %g %.3f"):format(ENV54, PIN_CLIENT, url, plan, s.key,
      FACTOR, start)
    remember("job level, one process per schedule (" .. s.key .. ")",
      cmd:gsub("127%.0%.0%.1:%d+", "127.0.0.1:PORT"):gsub(dir, "DIR"):gsub("%d+%.%d%d%d$", "START"))
    procs[#procs + 1] = { s = s.key, p = assert(io.popen(cmd .. " 2>&1")) }
  end
  progress(("job level: %d processes, jobs of %g-%g s at x%g, arrivals over %g s"):format(#procs, 30 * FACTOR,
    300 * FACTOR, FACTOR, ARRIVALS * FACTOR))
  for _, pr in ipairs(procs) do
    local out = pr.p:read("a")
    pr.p:close()
    for line in out:gmatch("[^\n]+") do
      local t = kv(line)
      if line:match("^job ") then
        local list = jobs[pr.s]
        list[#list + 1] = { duration = t.duration / FACTOR, polls = t.polls, delay = t.delay / FACTOR,
          informed = t.informed == 1 }
      elseif line:match("^proc ") then
        job_meta[pr.s].cpu = job_meta[pr.s].cpu + t.cpu
        job_meta[pr.s].requests = job_meta[pr.s].requests + t.requests
      else
        job_meta[pr.s].errors = job_meta[pr.s].errors + 1
        progress("  " .. pr.s .. ": " .. line:sub(1, 200))
      end
    end
  end
  stop_emulator(pid, p)
  os.execute("rm -rf '" .. dir .. "'")
end

local function job_figures(list)
  local polls, delays, rel = {}, {}, {}
  for i, j in ipairs(list) do
    polls[i], delays[i], rel[i] = j.polls, j.delay, j.delay / j.duration
  end
  return { n = #list, polls = mean(polls), delay = median(delays), p90 = quantile(delays, 0.9),
    rel = median(rel), rel90 = quantile(rel, 0.9) }
end

local function job_tables()
  local base = job_figures(jobs["fixed=2"])
  local rows = {}
  local function row(name, list, key)
    local f = job_figures(list)
    if f.n == 0 then return end
    rows[#rows + 1] = { name, tostring(f.n), fmt(f.polls, "%.1f"), fmt(ratio(f.polls, base.polls), "%.2f"),
      fmt(f.delay, "%.2f"), fmt(f.p90, "%.2f"), fmt(f.rel and f.rel * 100, "%.1f %%"),
      fmt(f.rel90 and f.rel90 * 100, "%.1f %%"), key and tostring(job_meta[key].requests) or "" }
  end
  for _, s in ipairs(SCHEDULES) do row(s.name, jobs[s.key], s.key) end
  local informed = {}
  for _, j in ipairs(jobs.learn) do if j.informed then informed[#informed + 1] = j end end
  row("`\"learn\"`, cold: only its jobs submitted once 5 of their model had ended", informed)
  say(table_md({ "schedule", "jobs", "polls/job", "× fixed 2 s", "notice delay p50 s", "p90 s",
    "delay / duration p50", "p90", "requests" }, rows))
  say()
end

-- ---------------------------------------------------------------- scale

local scale
local function scale_level()
  progress("scale: starting the emulator")
  local url, pid, p = start_emulator("--job-seconds 3600")
  -- a second one enforcing the gateway's poll limit (10 per s; creates free)
  local lurl, lpid, lp = start_emulator("--job-seconds 3600 --limits create=1000000/1")
  local n = QUICK and 2000 or 10000
  local cmd = ("%s%slua5.4 bench/scale.lua %s %d 5 %d 20000 %s"):format(ENV54, PIN_CLIENT, url, n, QUICK and 5 or 10,
    lurl)
  remember("scale", cmd:gsub("127%.0%.0%.1:%d+", "127.0.0.1:PORT"))
  progress(("scale: %d jobs"):format(n))
  local out = sh(cmd)
  scale = kv(out:match("jobs=[^\n]*"))
  if not scale.jobs then progress("  failed: " .. out:sub(1, 300)) end
  stop_emulator(pid, p)
  stop_emulator(lpid, lp)
end

local function scale_table()
  local s = scale
  if not s or not s.jobs then
    say("(the scale run failed)")
    return
  end
  local beyond = (s.rss_end_kb - s.rss0_kb) - (s.lua_end_kb - s.lua0_kb)
  local peak_beyond = (s.hwm_kb - s.rss0_kb) - (s.lua_end_kb - s.lua0_kb)
  s.beyond_mib, s.peak_beyond_mib = beyond / 1024, peak_beyond / 1024
  s.cpu_poll_us = s.poll_cpu / math.max(1, s.polls) * 1e6
  local rows = {
    { "jobs in flight in one client", tostring(s.jobs), "" },
    { "submit: createTask until every task id is in (each on a connection of its own)",
      fmt(s.accept_wall, "%.2f s"), fmt(s.accept_cpu / s.creates * 1e6, "%.0f µs client CPU per create") },
    { "polling: every job every 5 s", fmt(s.polls / s.poll_wall, "%.0f polls/s"),
      fmt(s.cpu_poll_us, "%.1f µs client CPU per poll") },
    { "Lua state's own data (collectgarbage 'count') with the jobs", fmt((s.lua_end_kb - s.lua0_kb) / 1024, "%.1f MiB"),
      fmt((s.lua_end_kb - s.lua0_kb) * 1024 / s.jobs, "%.0f B per job") },
    { "RSS growth beyond the Lua state, after polling", fmt(s.beyond_mib, "%.1f MiB"),
      fmt(beyond * 1024 / s.jobs, "%.0f B per job") },
    { "peak RSS beyond the Lua state (VmHWM)", fmt(s.peak_beyond_mib, "%.1f MiB"),
      ("process peak %.1f MiB"):format(s.hwm_kb / 1024) },
    { "step(0) with nothing ready, " .. s.jobs .. " jobs waiting", fmt(s.step_p50, "p50 %.2f µs"),
      fmt(s.step_p99, "p99 %.2f µs") .. fmt(s.step_max, ", max %.0f µs") },
    { "default poll rate limit (10 per s), every job wanting a poll every 5 s: polls/s",
      s.limited_polls and s.limited_polls >= 0 and fmt(s.limited_polls / s.limited_wall, "%.2f polls/s") or "not run",
      s.limited_429 and s.limited_429 >= 0 and (s.limited_429 .. " answered 429 by an emulator enforcing 10 per s")
        or "" },
  }
  say(table_md({ "figure", "value", "" }, rows))
  say()
end

-- ---------------------------------------------------------------- one account, several processes

local shared_runs = {}
local function shared_level()
  local n, per = 4, QUICK and 10 or 25
  local cmd = ("%slua5.4 bench/shared.lua %d %d 4"):format(ENV54, n, per)
  remember("one account, several processes", cmd)
  progress(("shared: %d processes x %d jobs on one key: own windows, a file, Redis"):format(n, per))
  local out = sh(cmd)
  for line in out:gmatch("store=[^\n]*") do shared_runs[#shared_runs + 1] = kv(line) end
  if #shared_runs == 0 then progress("  failed: " .. out:sub(1, 300)) end
end

local function shared_table()
  local names = { ["local"] = "each process its own (no store)", file = "shared: `file:`",
    redis = "shared: `redis://`" }
  if #shared_runs == 0 then
    say("(the run failed)")
    say()
    return
  end
  local rows = {}
  for _, r in ipairs(shared_runs) do
    rows[#rows + 1] = { names[r.store] or r.store, ("%d of %d"):format(r.ok, r.processes * r.jobs), tostring(r.failed),
      tostring(r.answered_429), ("%d + %d"):format(r.creates_sent, r.polls_sent),
      ("%d of %d"):format(r.busiest_creates, r.create_limit), ("%d of %d"):format(r.busiest_polls, r.poll_limit),
      ("%.1f (%g)"):format(r.creates_per_s, r.create_rate_limit),
      ("%.1f (%g)"):format(r.polls_per_s, r.poll_rate_limit),
      fmt(r.seconds, "%.1f s") }
  end
  say(table_md({ "windows", "jobs done", "failed", "answered 429", "creates + polls sent",
    "busiest create window (sent / limit)", "busiest poll window", "creates admitted per s (sustained limit)",
    "polls admitted per s", "time to finish" }, rows))
  say()
end

-- ---------------------------------------------------------------- full load

-- The account's full load (issue 15): the emulator enforcing the gateway's
-- limits, jobs arriving at the full create rate (2 a second), 30-300 s
-- (uniform overall: three models of 90 s ranges, each job's model drawn at
-- random), about 300 in flight; ten times faster than life, every time
-- scaled alike (the windows, the durations, the schedules). One process per
-- schedule, all at once, each with a key of its own (the limits are per key).
-- BENCH_FULL_FACTOR=1 runs it at life's pace (10 minutes); BENCH_FULL_SCHEDULES
-- (comma-separated keys) runs some of the schedules; BENCH_FULL_LIMITS=FILE
-- writes what the emulator's limiter saw (/__mock/limits) for bench/limits.lua.
local FULL_FACTOR = tonumber(os.getenv("BENCH_FULL_FACTOR")) or 0.1
local FULL_JOBS = QUICK and 120 or 600
local FULL_RATE = 2 -- jobs per second (unscaled): the create limit, 20 per 10 s
local FULL_MODELS = { { "full/short", 30, 120 }, { "full/mid", 120, 210 }, { "full/long", 210, 300 } }
local FULL_SECRET = "whsec-bench-full"
local FULL_SCHEDULES = {
  { key = "default", name = "modkie default (ranked when rationed)" },
  { key = "learn", name = "`poll_interval = \"learn\"`, cold" },
  { key = "fixed=2", name = "fixed 2 s, first come first served (a naive poller, same limiter)" },
  { key = "fixed=10", name = "fixed 10 s" },
  { key = "callbacks", name = "callbacks (10 % dropped by the emulator), polls the fallback" },
}
local wanted = os.getenv("BENCH_FULL_SCHEDULES") or ""
if wanted ~= "" then
  local keep = {}
  for _, s in ipairs(FULL_SCHEDULES) do
    if ("," .. wanted .. ","):find("," .. s.key .. ",", 1, true) then keep[#keep + 1] = s end
  end
  FULL_SCHEDULES = keep
end
local full, full_meta = {}, {}
local function full_load()
  progress("full load: starting the emulator")
  local url, pid, p = start_emulator(("--job-seconds 1 --limits create=20/%g,poll=10/%g --webhook-secret %s")
    :format(10 * FULL_FACTOR, FULL_FACTOR, FULL_SECRET))
  local dir = tmpdir()
  local plan = dir .. "/plan.txt"
  math.randomseed(15)
  local lines = {}
  for i = 1, FULL_JOBS do
    local m = FULL_MODELS[math.random(#FULL_MODELS)]
    lines[i] = ("%s %.4f %.4f %d"):format(m[1], (i - 1) / FULL_RATE * FULL_FACTOR,
      (m[2] + math.random() * (m[3] - m[2])) * FULL_FACTOR, i % 10 == 0 and 1 or 0)
  end
  write_file(plan, table.concat(lines, "\n") .. "\n")
  local start = socket.gettime() + 1.5
  local procs = {}
  for _, s in ipairs(FULL_SCHEDULES) do
    full[s.key], full_meta[s.key] = {}, { errors = 0, rate_limited = 0, ranked = 0 }
    local cmd = ("%s%slua5.4 bench/fullload.lua %s key-%s %s %s %g %.3f %s"):format(ENV54, PIN_CLIENT, url,
      s.key:gsub("=", ""), plan, s.key, FULL_FACTOR, start, FULL_SECRET)
    remember("full load, one process per schedule (" .. s.key .. ")",
      cmd:gsub("127%.0%.0%.1:%d+", "127.0.0.1:PORT"):gsub(dir, "DIR"):gsub("%d+%.%d%d%d ", "START "))
    procs[#procs + 1] = { s = s.key, p = assert(io.popen(cmd .. " 2>&1")) }
  end
  progress(("full load: %d processes, %d jobs each at %g/s, %g-%g s at x%g"):format(#procs, FULL_JOBS,
    FULL_RATE / FULL_FACTOR, 30 * FULL_FACTOR, 300 * FULL_FACTOR, FULL_FACTOR))
  for _, pr in ipairs(procs) do
    local out = pr.p:read("a")
    pr.p:close()
    for line in out:gmatch("[^\n]+") do
      local t = kv(line)
      if line:match("^job ") then
        local list = full[pr.s]
        list[#list + 1] = { duration = t.duration / FULL_FACTOR, polls = t.polls, delay = t.delay / FULL_FACTOR,
          dropped = t.dropped == 1 }
      elseif line:match("^proc ") then
        full_meta[pr.s].rate_limited, full_meta[pr.s].ranked = t.rate_limited, t.ranked
      else
        full_meta[pr.s].errors = full_meta[pr.s].errors + 1
        progress("  " .. pr.s .. ": " .. line:sub(1, 200))
      end
    end
  end
  local limits_file = os.getenv("BENCH_FULL_LIMITS") or ""
  if limits_file ~= "" then
    os.execute(("curl -s %s/__mock/limits > '%s'"):format(url, limits_file))
  end
  stop_emulator(pid, p)
  os.execute("rm -rf '" .. dir .. "'")
end

local function full_figures(key)
  local f = job_figures(full[key] or {})
  f.rate_limited = full_meta[key] and full_meta[key].rate_limited
  return f
end

local function full_table()
  local base = full_figures("fixed=2")
  local rows = {}
  for _, s in ipairs(FULL_SCHEDULES) do
    local f = full_figures(s.key)
    if f.n > 0 then
      rows[#rows + 1] = { s.name, ("%d of %d"):format(f.n, FULL_JOBS), fmt(f.polls, "%.2f"), fmt(f.delay, "%.1f"),
        fmt(f.p90, "%.1f"), fmt(f.rel and f.rel * 100, "%.1f %%"), fmt(f.rel90 and f.rel90 * 100, "%.1f %%"),
        fmt(ratio(f.delay, base.delay), "%.2f"), fmt(ratio(f.p90, base.p90), "%.2f"), tostring(f.rate_limited) }
    end
  end
  say(table_md({ "schedule", "jobs noticed", "polls/job", "notice delay p50 s", "p90 s", "delay / duration p50",
    "p90", "p50 × fixed 2 s", "p90 × fixed 2 s", "answered 429" }, rows))
  say()
end

-- ---------------------------------------------------------------- the older benches

local legacy = {}
local function legacy_benches()
  local list = {
    { "bench/jobs.lua 200 64", "jobs/s through the emulator, modkie vs socket.http (200 jobs)" },
    { "bench/frame.lua 1000 20000", "update() cost with 1000 jobs waiting" },
    { "bench/batch.lua 10000 200", "a 10,000-row batch with a journal, and its resume" },
  }
  if QUICK then list = { { "bench/frame.lua 1000 5000", "update() cost with 1000 jobs waiting" } } end
  for _, b in ipairs(list) do
    local cmd = ("%s%slua5.4 %s"):format(ENV54, PIN_CLIENT, b[1])
    remember(b[1], cmd)
    progress(b[1])
    legacy[#legacy + 1] = { title = b[2], cmd = b[1], out = sh(cmd) }
  end
end

-- ---------------------------------------------------------------- targets

-- What limits each figure, from profiling (perf, strace -c, and builds of the
-- core with one change at a time; bench/RESULTS.md's "Profiling" section).
local CAUSES = {
  cpu = "The core's per-answer work in Lua: an event table per answer, cjson building each answer as Lua "
    .. "tables and the collector freeing them (~12 % of modkie's perf samples; libc's malloc/free another few "
    .. "%). Both clients make the same system calls per exchange and spend about the same time in libcurl; "
    .. "driving the engine directly, without the client's coroutines, costs the same, and so do builds "
    .. "without the per-transfer curl_easy_reset and setopt. The 1 ms timer stall and the extra HTTP/2 "
    .. "connections that made this 1.3–1.6× are fixed (FINDINGS.md 1 and 2).",
  work_polls = "A poll that changes nothing runs no Lua: per poll modkie runs 124-128 K user instructions at "
    .. "C = 16 whichever way it drives libcurl (its own loop, or the socket interface a host's loop needs), raw "
    .. "C 117 K (callgrind); the kernel's share (loopback TCP) is the same for both. FINDINGS.md 8.",
  work_jobs = "Per job at C = 16 modkie runs 374 K user instructions, raw C + JSON 280 K and raw C 246 K "
    .. "(callgrind, 2026-12-07). modkie's engine alone (the column beside: no Job, scheduler or coroutine) runs "
    .. "323 K: libcurl as raw C's, the answers judged in C, the body encoded by lua-cjson and the result handed "
    .. "over as Lua tables of the documented shape (the raw record 9.7 K of it); the Lua client layer is the "
    .. "other 52 K (submit's checks, the job, its await, dispatch). The engine alone is itself over 1.15× raw C: "
    .. "the target needs a job whose result is not Lua tables built per job, a change of the contract. The "
    .. "kernel's loopback TCP (a connection per create) is half the CPU, the same for both, and varies ±20 % "
    .. "from run to run. FINDINGS.md 8.",
  streams = "libcurl allows 100 streams per HTTP/2 connection unless CURLMOPT_MAX_CONCURRENT_STREAMS says "
    .. "otherwise, and the server's own SETTINGS_MAX_CONCURRENT_STREAMS caps it too; beyond that each waiting "
    .. "transfer opens a connection of its own (FINDINGS.md 2).",
  polls = function(x)
    return ("The default schedule polls every 2–3 s for a job's first 30 s and every 5–10 s until 2 minutes, "
      .. "whatever the model: in a 30–300 s spread most of those polls come before any job can end. "
      .. "`poll_interval = \"learn\"` skips them once it knows the model: %s polls per job warm, with about the "
      .. "same notice delay."):format(fmt(x.learned_polls, "%.1f"))
  end,
  delay = "Between 2 and 5 minutes the default polls every 15–30 s: a job ending there waits half an interval "
    .. "on average.",
  rss = "Per job: the C op (URL, task id, timers in a heap), the Lua Job table with its input, and libcurl's "
    .. "buffers for the connections in use.",
  throughput = function(x)
    if x.c == 1 then
      return ("One exchange at a time is a round trip through loopback and one nginx worker: the raw C client "
        .. "itself reaches only %s× %s's throughput here, so 3× is out of any client's reach at C = 1; modkie "
        .. "gets %s of the raw C client's rate."):format(fmt(x.raw_vs, "%.2f"), x.who, fmt(x.m_vs_raw, "%.2f×"))
    end
    return ("The server is the limit: one nginx worker on a core of its own. The raw C client itself reaches "
      .. "only %s× %s's throughput here, so no client can show 3× over one that gets within a third of the "
      .. "server's ceiling; modkie gets %s of the raw C client's rate, the difference being its CPU per "
      .. "exchange."):format(fmt(x.raw_vs, "%.2f"), x.who, fmt(x.m_vs_raw, "%.2f×"))
  end,
  h1conns = "libcurl opens a connection per concurrent request and keeps each alive.",
  full = "The account's 10 polls a second for ~330 jobs in flight: each job can be polled about every 35 s. "
    .. "The default ranks waiting jobs by p × dt (priority.c) from what it learned of each model's durations; "
    .. "what is left is the uncertainty within a model's range (jobs of one model end anywhere in 90 s).",
  full429 = "The client's window is the gateway's plus 2 % and 10 ms, and counts each request from when it "
    .. "went on the wire, later by what its round trip lost beyond the usual one; the emulator counts a "
    .. "request when it reads it. A 429 left means a request was read later than its answer shows "
    .. "(docs/scale.md, \"Counted as the gateway counts\"; bench/limits.lua shows the tightest windows).",
  callbacks = "A callback ends its job the moment the emulator posts it (the listener on the client's loop); "
    .. "the 10 % dropped are polled once their model's usual end and a margin have passed.",
}

local function cause_text(cause, x)
  if type(cause) == "function" then return cause(x or {}) end
  return cause
end

local function target_rows()
  local t = {}
  local function add(figure, measured, target, worse_if_above, cause, unit, x)
    if not measured then return end
    local miss = worse_if_above and measured / target or target / measured
    t[#t + 1] = { figure = figure, measured = measured, target = target, miss = miss, cause = cause,
      text = cause_text(cause, x), unit = unit or "", above = worse_if_above }
  end
  for _, proto in ipairs(PROTOCOLS) do
    local cap = proto.key == "h1" and 1.15 or 1.3
    for _, c in ipairs({ 16, 256 }) do
      local base, m = summary(exch[proto.key][c].c), summary(exch[proto.key][c].m54)
      if base and m then
        add(("modkie CPU per exchange, %s, C = %d, × raw C"):format(proto.key == "h1" and "HTTP/1.1" or "HTTP/2", c),
          m.cpu / base.cpu, cap, true, CAUSES.cpu, "×")
      end
    end
    for _, c in ipairs(CS) do
      local lh, m, raw = summary(exch[proto.key][c].lh), summary(exch[proto.key][c].m54), summary(exch[proto.key][c].c)
      if lh and m then
        add(("modkie throughput, %s, C = %d, × lua-http"):format(proto.key, c), m.rate / lh.rate, 3, false,
          CAUSES.throughput, "×", { c = c, who = "lua-http", raw_vs = raw and raw.rate / lh.rate,
            m_vs_raw = raw and m.rate / raw.rate })
      end
      local m54 = summary(exch[proto.key][c].m54)
      if m54 then
        if proto.key == "h1" then
          add(("modkie connections, HTTP/1.1, C = %d"):format(c), m54.conns_max, c, true, CAUSES.h1conns, "")
        else
          add(("modkie connections, HTTP/2, C = %d"):format(c), m54.conns_max, 1, true, CAUSES.streams, "")
        end
      end
    end
    local ls, m1, raw1 = summary(exch[proto.key][1].ls), summary(exch[proto.key][1].m54), summary(exch[proto.key][1].c)
    if ls and m1 then
      add(("modkie throughput, %s, C = 1, × socket.http"):format(proto.key), m1.rate / ls.rate, 3, false,
        CAUSES.throughput, "×", { c = 1, who = "socket.http", raw_vs = raw1 and raw1.rate / ls.rate,
          m_vs_raw = raw1 and m1.rate / raw1.rate })
      -- socket.http has no concurrency: its one sequential rate is what a
      -- user of it gets at any C, so modkie's rate at C is set against it
      for _, c in ipairs({ 16, 256 }) do
        local mc = summary(exch[proto.key][c].m54)
        if mc then
          add(("modkie throughput, %s, C = %d, × socket.http (sequential)"):format(proto.key, c), mc.rate / ls.rate,
            3, false, CAUSES.throughput, "×", { c = c, who = "socket.http" })
        end
      end
    end
  end
  for _, wk in ipairs(WORK) do
    for _, c in ipairs(WORK_CS) do
      local slot = work[wk.key] and work[wk.key][c]
      local raw, m = slot and work_summary(slot.raw, wk.per), slot and work_summary(slot.modkie, wk.per)
      local rj = slot and work_summary(slot.raw_json, wk.per)
      if raw and m then
        add(("modkie CPU per %s, C = %d, × raw C (curl_multi_poll)"):format(
          wk.key == "polls" and "poll of adopted jobs" or "whole job", c), (paired(m, raw)), 1.15, true,
          CAUSES["work_" .. wk.key], "×")
      end
      if rj and m then
        add(("modkie CPU per whole job, C = %d, × raw C doing the same JSON work"):format(c), (paired(m, rj)), 1.15,
          true, CAUSES.work_jobs, "×")
      end
    end
  end
  if jobs.default and #jobs.default > 0 then
    local d, f2 = job_figures(jobs.default), job_figures(jobs["fixed=2"])
    local warm = jobs["learn-warm"] and #jobs["learn-warm"] > 0 and job_figures(jobs["learn-warm"])
    add("default schedule's polls per job, × fixed 2 s", d.polls / f2.polls, 1 / 3, true, CAUSES.polls, "×",
      { learned_polls = warm and warm.polls })
    add("default schedule's median notice delay / job duration", d.rel, 0.10, true, CAUSES.delay, "")
  end
  local fd, f2, fc = full_figures("default"), full_figures("fixed=2"), full_figures("callbacks")
  if fd.n > 0 and f2.n > 0 then
    add("full load: the default's notice delay p50, × fixed 2 s", fd.delay / f2.delay, 0.7, true, CAUSES.full, "×")
    add("full load: the default's notice delay p90, × fixed 2 s", fd.p90 / f2.p90, 0.7, true, CAUSES.full, "×")
    add("full load: the default's answers 429 (+1)", (fd.rate_limited or 0) + 1, 1, true, CAUSES.full429, "")
  end
  if fc.n > 0 then
    add("full load, callbacks: notice delay p90, s", fc.p90, 2, true, CAUSES.callbacks, "")
    add("full load, callbacks: polls per job", fc.polls, 1, true, CAUSES.callbacks, "")
    add("full load, callbacks: jobs noticed (10 % of callbacks dropped)", fc.n, FULL_JOBS, false, CAUSES.callbacks, "")
  end
  if scale and scale.peak_beyond_mib then
    add("10,000 jobs: peak RSS beyond the Lua state, MiB", scale.peak_beyond_mib, 64, true, CAUSES.rss, "MiB")
  end
  table.sort(t, function(a, b) return a.miss > b.miss end)
  return t
end

local function targets_section()
  local t = target_rows()
  local rows = {}
  for _, r in ipairs(t) do
    local v = r.unit == "×" and ("%.2f×"):format(r.measured) or r.unit == "MiB" and ("%.1f"):format(r.measured)
      or (r.target < 1 and r.unit == "" and r.measured < 1) and ("%.1f %%"):format(r.measured * 100)
      or ("%g"):format(r.measured)
    local goal = r.unit == "×" and ("%s %.2f×"):format(r.above and "≤" or "≥", r.target)
      or (r.target < 1 and r.unit == "") and ("≤ %.0f %%"):format(r.target * 100)
      or ("%s %g"):format(r.above and "≤" or "≥", r.target)
    rows[#rows + 1] = { r.figure, goal, v, r.miss > 1.0001 and ("missed by %.2f×"):format(r.miss) or "met" }
  end
  say(table_md({ "target", "goal", "measured", "" }, rows))
  say()
  say("The three figures furthest from their targets (the furthest of each cause), and what limits them:")
  say()
  local seen, n = {}, 0
  for i = 1, #t do
    -- a count that equals its target exactly (connections) has no margin to rank
    local exact = t[i].miss == 1
    if n < 3 and not seen[t[i].cause] and not exact then
      seen[t[i].cause], n = true, n + 1
      say(("%d. **%s**: %s against %s%s. %s"):format(n, t[i].figure, rows[i][3], rows[i][2],
        t[i].miss > 1.0001 and "" or " (met: the closest of the rest)", t[i].text))
      say()
    end
  end
end

-- ---------------------------------------------------------------- plots

local PLOT_DIR = OUT:match("^(.*)/[^/]*$") or "."
local SHORT = { c = "raw C (epoll)", cpoll = "raw C (multi_poll)", m54 = "modkie 5.4", mjit = "modkie LuaJIT",
  lh = "lua-http", ls = "socket.http" }

--- The delay samples (seconds) of a run's jobs (`runs[key]`), one per
-- schedule, named as in its table: what plot.cdf takes.
local function samples_of(schedules, runs)
  local samples = {}
  for _, s in ipairs(schedules) do
    local values = {}
    for _, j in ipairs(runs[s.key] or {}) do values[#values + 1] = j.delay end
    if #values > 0 then samples[#samples + 1] = { name = s.name:gsub("`", ""), values = values } end
  end
  return samples
end

local function delay_samples() return samples_of(SCHEDULES, jobs) end
local function full_samples() return samples_of(FULL_SCHEDULES, full) end

-- Writes the SVGs beside the note, and plots.json (what they are drawn
-- from: `lua5.4 bench/plot.lua bench/plots.json` draws them again); returns
-- their names, for the note's links.
local function write_plots()
  local names = { cpu = "cpu-per-exchange.svg", cdf = "notice-delay-cdf.svg", polls = "polls-per-job.svg",
    full = "full-load-notice-delay-cdf.svg" }
  local groups, series, seen = {}, {}, {}
  for _, proto in ipairs(PROTOCOLS) do
    for _, c in ipairs(CS) do
      local g = { label = ("%s, C = %d"):format(proto.key == "h1" and "HTTP/1.1" or "HTTP/2", c), values = {} }
      for _, ct in ipairs(CONTENDERS) do
        local sm = summary(exch[proto.key][c][ct.key])
        local name = SHORT[ct.key] or ct.name
        if sm then
          g.values[name] = sm.cpu
          if not seen[name] then seen[name] = true series[#series + 1] = name end
        end
      end
      groups[#groups + 1] = g
    end
  end
  local bars = {}
  for _, sch in ipairs(SCHEDULES) do
    local list = jobs[sch.key] or {}
    if #list > 0 then bars[#bars + 1] = { name = sch.name:gsub("`", ""), value = job_figures(list).polls } end
  end
  local list = {
    { file = names.cpu, kind = "bars", spec = { title = "Client CPU per exchange (lower is better)",
      subtitle = "µs of user + system time per createTask or recordInfo exchange, median of the rounds; "
        .. "socket.http is sequential (C = 1 only)", unit = "CPU µs per exchange", groups = groups,
      series = series } },
    { file = names.cdf, kind = "cdf", spec = {
      title = "Notice delay: from a job's end on the server to await returning",
      subtitle = ("%d jobs of 30–300 s per schedule, all in flight at once (job-level run, scaled to real time)")
        :format(#MODELS * PER_MODEL), xlabel = "seconds", samples = delay_samples() } },
    { file = names.polls, kind = "hbars", spec = { title = "recordInfo polls per job (mean)",
      subtitle = "the same jobs, one schedule per client", unit = "polls per job", bars = bars } },
    { file = names.full, kind = "cdf", spec = {
      title = "Notice delay at the account's full load (10 polls/s, 2 jobs/s, 30–300 s)",
      subtitle = ("%d jobs per schedule, about 330 in flight; scaled to real time"):format(FULL_JOBS),
      xlabel = "seconds", samples = full_samples() } },
  }
  plot.draw_all(list, PLOT_DIR)
  write_file(PLOT_DIR .. "/plots.json", require("cjson").encode(list) .. "\n")
  return names
end

-- ---------------------------------------------------------------- run everything

if ONLY == "full" then -- the full-load run alone: its table and its plot (RESULTS.md left as it is)
  full_load()
  full_table()
  plot.draw_all({ { file = "full-load-notice-delay-cdf.svg", kind = "cdf", spec = {
    title = "Notice delay at the account's full load", xlabel = "seconds", samples = full_samples() } } }, PLOT_DIR)
  os.exit(0)
end
exchange_level()
if ONLY == "work" then
  work_table()
  os.exit(0)
end
job_level()
full_load()
scale_level()
shared_level()
legacy_benches()
local load_end = read_file("/proc/loadavg"):match("^(%S+ %S+ %S+)")
local plots = write_plots()
progress("wrote the plots: " .. plots.cpu .. ", " .. plots.cdf .. ", " .. plots.polls .. ", " .. plots.full)

say("# modkie benchmarks")
say()
say(("Written by `make bench` (bench/run.lua) on %s, in %.0f s%s. A benchmark prints numbers: none of this "
  .. "fails a build. Ratios (×) are to the raw C client in the same run; each exchange figure is the median of "
  .. "%d round%s (rounds interleave every contender)."):format(os.date("!%Y-%m-%d %H:%M UTC"), socket.gettime() - T0,
  QUICK and ", BENCH_QUICK (small sizes: not the figures to quote)" or "", ROUNDS, ROUNDS == 1 and "" or "s"))
say()
say("What limits each figure, the profiles behind it and the proposed fixes: [FINDINGS.md](FINDINGS.md) "
  .. "(written by hand; `BENCH_VARIANTS=1 make bench` measures the core with bench/patches/ applied beside the "
  .. "shipped one).")
say()
say("## Machine and versions")
say()
for _, l in ipairs(machine) do say(l) end
say(("- load average at the end: %s"):format(load_end))
say()
say("## Targets")
say()
targets_section()
say("## Exchange level")
say()
say("W exchanges with C in flight against one nginx worker on loopback: even ones `POST "
  .. "/api/v1/common/download-url` with a 1 KiB JSON body, odd ones `GET /api/v1/jobs/recordInfo`; every answer "
  .. "decoded and a field read (`data`, a link; `data.state`). CPU is the client process's user + system time "
  .. "around the run (clock() / CLOCK_PROCESS_CPUTIME_ID), peak RSS its VmHWM, connections counted at the server "
  .. "(distinct `$connection` in the access log), errors any answer that was not 200 with the field. modkie "
  .. "runs `client:_call` (the engine path of `client:record`, `client:credits` and `client:download_url`: "
  .. "libcurl multi, keep-alive, "
  .. "HTTP/2 multiplexing, cjson inside `step`), `max_connections = C`, `rate = false`, from C coroutines of "
  .. "`client:go`. lua-http runs on Lua 5.1 (Debian packages it for 5.1 and 5.2 only) over its connection "
  .. "objects — its `request:go()` opens a connection per request — one keep-alive connection per worker over "
  .. "HTTP/1.1, one shared connection over HTTP/2. socket.http is sequential with a connection per request "
  .. "(LuaSec's ssl.https, HTTP/1.1 over TLS, for the HTTPS row). nginx allows 1024 streams per HTTP/2 connection "
  .. "and a million requests per connection.")
say()
exchange_tables()
say(("![CPU per exchange, per contender and C](%s)"):format(plots.cpu))
say()
say("### What a job's own connection costs")
say()
say("A job's `createTask` is not sent on a reused connection: modkie gives each its own connection "
  .. "(CURLOPT_FRESH_CONNECT), so libcurl can never silently re-send a create on a connection that died and "
  .. "create (and bill) a second task; libcurl 7.88 has no other way to forbid that re-send. The tables above use "
  .. "`_call`, which reuses connections. Here the same nginx runs whole jobs through `client:submit` / `await` "
  .. "(16 in flight, `poll_interval = 0`; nginx's record says `success`, so a job is one createTask and one "
  .. "poll), next to what two `_call` exchanges cost at C = 16 in the same run. Over HTTPS every job pays a TLS "
  .. "connection of its own (libcurl sets up a new OpenSSL context and handshake for it: most of the CPU is in "
  .. "libcrypto and malloc); polls, the calls a job makes most of, stay on the kept-alive connection.")
say()
jobs_table()
say("### Polling and whole jobs, against raw C")
say()
say("The two kinds of work a client of the gateway does most, over HTTP/1.1 on loopback against the same nginx, "
  .. "C at once, through modkie's public API against raw C doing the same with libcurl multi (a "
  .. "`curl_multi_poll` loop, bench/exchange.c), interleaved round by round; client CPU (user + system) per "
  .. "poll or per job, the median of the rounds; each ratio is the median of the rounds' own ratios (a round "
  .. "runs every contender back to back, so a slow minute slows both sides of a pair), with their range. Whole "
  .. "jobs have a second baseline: raw C doing the JSON work modkie does too (each body encoded from the job's "
  .. "input, the output URLs read).")
say()
work_table()
say("## Job level")
say()
say(("The emulator, %d jobs (%d per model) of %s, durations uniform in each model's range "
  .. "(30–300 s overall), arriving at random over %d s; run %g× faster than life, every schedule scaled by the "
  .. "same factor (it sees elapsed / %g and its answer is multiplied by %g), so polls and delays are what an "
  .. "unscaled run would show. The notice delay is from the job's end on the server (`completeTime`) to "
  .. "`await` returning. Every schedule sees the same jobs, all at once, one client (one process) per schedule. "
  .. "`\"learn\"` is modkie.schedule's learner, what `poll_interval = \"learn\"` runs, scaled like the others: "
  .. "once it knows 5 durations of a model it polls a job once early, then not before 0.9 × the 5th percentile "
  .. "of the model's last 100 durations, then on the default schedule."):format(
  #MODELS * PER_MODEL, PER_MODEL, table.concat((function()
    local names = {}
    for i, m in ipairs(MODELS) do names[i] = ("%s (%d–%d s)"):format(m.name, m.lo, m.hi) end
    return names
  end)(), ", "), ARRIVALS, 1 / FACTOR, FACTOR, FACTOR))
say()
job_tables()
say(("![Notice delay, CDF per schedule](%s)"):format(plots.cdf))
say()
say(("![Polls per job, per schedule](%s)"):format(plots.polls))
say()
say("## Full load")
say()
say(("The account's full load: the emulator enforcing the gateway's limits (20 createTask per 10 s, 10 "
  .. "recordInfo per s, per key), %d jobs arriving at the full create rate (%g a second), durations 30–300 s "
  .. "uniform (three models, %s, each job's drawn at random), so about 330 in flight; ten times faster than "
  .. "life with every time scaled alike (the emulator's windows and durations, each client's windows, and "
  .. "its schedule: the default through `time_scale`, the others seeing elapsed / 10 and their answers × "
  .. "0.1), delays here scaled back. One client (one process, a key of its own) per schedule, all at once, "
  .. "the same jobs. The callbacks row: every job with a callback URL to the client's own listener "
  .. "(`listen`), signed by the emulator (Kie's scheme), every 10th job's callback dropped "
  .. "(`[callback=drop]`), polls the fallback. The notice delay is from the job's end on the server "
  .. "(`completeTime`) to `await` returning; \"answered 429\" what the client was answered (its "
  .. "`stats().rate_limited`)."):format(FULL_JOBS, FULL_RATE, table.concat((function()
    local names = {}
    for i, m in ipairs(FULL_MODELS) do names[i] = ("%d–%d s"):format(m[2], m[3]) end
    return names
  end)(), ", ")))
say()
full_table()
say(("![Notice delay at full load, CDF per schedule](%s)"):format(plots.full))
say()
say("## Scale")
say()
say("One client, jobs submitted at once (rate limits off) to the emulator, whose jobs do not end while we "
  .. "measure; then every job polled every 5 s; then every next poll 10 minutes away and `step(0)` timed "
  .. "20,000 times with nothing ready.")
say()
scale_table()
say("## One account, several processes")
say()
say(("%d processes on one API key, %d jobs each submitted at once, against a fresh emulator for each row "
  .. "that enforces the account's limits across all its clients and logs every request they counted; the "
  .. "create windows scaled 4× shorter on both sides (20 creates per 2.5 s), polls at the gateway's 10 per s "
  .. "(jobs of 1 s polled every second). Each process is `spec/support/rate_worker.lua`, with `rate.clients = "
  .. "4`. \"Busiest "
  .. "window\" counts every request that reached the emulator in any window, refused or not; \"admitted per s\" "
  .. "is what it let through over the whole run (a window also lets a burst through at the start, so a short "
  .. "run can pass the sustained rate). See docs/scale.md."):format(
  shared_runs[1] and shared_runs[1].processes or 4, shared_runs[1] and shared_runs[1].jobs or 0))
say()
shared_table()
if #legacy > 0 then
  say("## The older benches")
  say()
  for _, l in ipairs(legacy) do
    say(("`%s`: %s"):format(l.cmd, l.title))
    say()
    say("```")
    say(l.out)
    say("```")
    say()
  end
end
say("## Commands")
say()
say("`make bench` builds the C core for Lua 5.4 and LuaJIT and bench/exchange.c, starts nginx (a private prefix, a "
  .. "self-signed certificate from the openssl CLI) and the emulator on free ports, and runs, from the "
  .. "repository's root:")
say()
say("```")
for _, c in ipairs(commands) do say(c) end
say("```")
write_file(OUT, table.concat(note, "\n") .. "\n")
progress("wrote " .. OUT)

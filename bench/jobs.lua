-- bench/jobs.lua: how many jobs per second one client drives through the
-- emulator, and the client's CPU per HTTP exchange; side by side with a
-- baseline in the same run: the same jobs through LuaSocket's socket.http,
-- one request at a time (what a plain Lua script would do).
--
--   make all && LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/lua5.4/?.so;;' \
--     lua5.4 bench/jobs.lua [jobs=1000] [concurrency=64]
--
-- Prints numbers; never fails on them.
local modkie = require "modkie"
local core = require "modkie.core"
local cjson = require "cjson"
local http = require "socket.http"
local ltn12 = require "ltn12"

local JOBS = tonumber(arg[1]) or 1000
local CONCURRENCY = tonumber(arg[2]) or 64
local JOB_SECONDS = 0.05 -- each job takes this long in the emulator: about two polls each

local here = (arg[0]:match("^(.*)/[^/]+$") or ".") .. "/.."
local mock = assert(io.popen("exec lua5.4 " .. here .. "/bin/modkie mock --port 0 --credits 1e12 --job-seconds "
  .. JOB_SECONDS))
local line = assert(mock:read("*l"), "the emulator did not start")
local url, pid = line:match("(http://[%d.]+:%d+)"), line:match("pid=(%d+)")

local function stats()
  local out = {}
  http.request{ url = url .. "/__mock/stats", sink = ltn12.sink.table(out) }
  return cjson.decode(table.concat(out))
end

-- modkie: every job in flight at once (up to CONCURRENCY), rate limits off.
local function run_modkie()
  local client = modkie.new{ base_url = url, api_key = "bench", rate = false, poll_interval = 0.02,
    max_connections = 16 }
  local before = stats().requests
  local cpu0, t0 = os.clock(), core.now()
  local next_row, done = 1, 0
  client:run(function()
    for _ = 1, CONCURRENCY do
      client:go(function()
        while next_row <= JOBS do
          next_row = next_row + 1
          assert(assert(client:submit("kling/kling-3-0", { prompt = "bench" })):await(60))
          done = done + 1
        end
      end)
    end
  end)
  local wall, cpu = core.now() - t0, os.clock() - cpu0
  local exchanges = client:stats().requests
  client:close()
  assert(done == JOBS)
  return { wall = wall, cpu = cpu, exchanges = exchanges, server_requests = stats().requests - before - 1 }
end

-- baseline: socket.http, one exchange at a time, a new connection each.
local function run_luasocket()
  local cpu0, t0 = os.clock(), core.now()
  local exchanges = 0
  local function call(method, path, body)
    local out = {}
    local _, status = http.request{
      url = url .. path, method = method, sink = ltn12.sink.table(out),
      source = body and ltn12.source.string(body) or nil,
      headers = { authorization = "Bearer bench", ["content-type"] = "application/json",
        ["content-length"] = body and #body or nil },
    }
    exchanges = exchanges + 1
    assert(status == 200, status)
    return cjson.decode(table.concat(out))
  end
  for _ = 1, JOBS do
    local created = call("POST", "/api/v1/jobs/createTask",
      cjson.encode({ model = "kling/kling-3-0", input = { prompt = "bench" } }))
    local id = created.data.taskId
    repeat
      local rec = call("GET", "/api/v1/jobs/recordInfo?taskId=" .. id).data
      if rec.state ~= "success" then require("socket").sleep(0.02) end
    until rec.state == "success"
  end
  return { wall = core.now() - t0, cpu = os.clock() - cpu0, exchanges = exchanges }
end

local function report(name, r)
  print(("%-26s %8d %10.1f %11.2f %12d %14.1f"):format(name, JOBS, JOBS / r.wall, r.wall, r.exchanges,
    r.cpu / r.exchanges * 1e6))
end

print(("jobs: %d, job time in the emulator: %g s, modkie concurrency: %d, %s"):format(
  JOBS, JOB_SECONDS, CONCURRENCY, core.curl_version:match("^%S+")))
print(("%-26s %8s %10s %11s %12s %14s"):format("client", "jobs", "jobs/s", "wall s", "exchanges", "CPU us/exch"))
local m = run_modkie()
report("modkie (Lua 5.4)", m)
local b = run_luasocket()
report("socket.http, sequential", b)
print(("modkie: %.1fx the jobs/s, %.2fx the CPU per exchange of the baseline; emulator saw %d requests"):format(
  (JOBS / m.wall) / (JOBS / b.wall), (m.cpu / m.exchanges) / (b.cpu / b.exchanges), m.server_requests))

os.execute("kill " .. pid)
mock:close()

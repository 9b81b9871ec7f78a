-- bench/shared.lua: N processes x J jobs on one API key, each configuration
-- against a fresh emulator that enforces the account's limits across all its
-- clients (--limits) and logs every request they counted: each process with
-- its own windows ("local"), then the windows shared through a file, then
-- through Redis (redis-server on a free port). bench/run.lua starts it.
--
--   lua5.4 bench/shared.lua [processes=4] [jobs=25] [scale=4]
--
-- Time is scaled as in spec/shared_spec.lua: both sides' create windows
-- `scale`x shorter than the gateway's (20 creates per 10/scale s); polls keep
-- the gateway's 10 per 1 s; jobs take 1 s and are polled every second. Each process is
-- spec/support/rate_worker.lua. Prints one line of key=value per store:
-- 429s the emulator answered, the busiest window of requests sent (against
-- the limit), what it admitted per second over the run (the sustained limits
-- are 20 / (10/scale) creates and 10 polls per second; a window
-- also lets a burst of 20 through at the start), jobs done and failed, and the
-- time until the last process finished. Never fails on numbers.
package.path = "./?.lua;" .. package.path
local helper = require "spec.helper"
local redis = require "spec.redis"
local windows = require "spec.support.windows"
local cjson = require "cjson"
local socket = require "socket"

local PROCESSES = tonumber(arg[1]) or 4
local JOBS = tonumber(arg[2]) or 25
local SCALE = tonumber(arg[3]) or 4
local CREATE, POLL = { 20, 10 / SCALE }, { 10, 1 }

local function run(name, store)
  local m = helper.mock({ "--job-seconds", "1", "--credits", "1e12",
    "--limits", ("create=%d/%g,poll=%d/%g"):format(CREATE[1], CREATE[2], POLL[1], POLL[2]) })
  local t0 = socket.gettime()
  local pipes = {}
  for i = 1, PROCESSES do
    pipes[i] = assert(io.popen(("exec lua5.4 spec/support/rate_worker.lua %s %d %d/%g %d/%g %s %d 1 %s%d 2>&1")
      :format(m.url, JOBS, CREATE[1], CREATE[2], POLL[1], POLL[2], helper.shell_quote(store), PROCESSES, name, i)))
  end
  local ok, failed, slowest = 0, 0, 0
  for _, p in ipairs(pipes) do
    local text = p:read("a")
    p:close()
    local decoded, r = pcall(cjson.decode, text:match("([^\n]*)\n?$"))
    if decoded and type(r) == "table" then
      ok, failed, slowest = ok + r.ok, failed + #r.errors, math.max(slowest, r.seconds)
    else
      failed = failed + JOBS
      io.stderr:write("bench/shared.lua: a process said: ", text:sub(1, 300), "\n")
    end
  end
  local wall = socket.gettime() - t0
  local creates, created = windows.arrivals(m, "create")
  local polls, polled = windows.arrivals(m, "record")
  local stats = m.stats()
  m.stop()
  io.write(("store=%s processes=%d jobs=%d ok=%d failed=%d answered_429=%d creates_sent=%d polls_sent=%d "
    .. "busiest_creates=%d create_limit=%d busiest_polls=%d poll_limit=%d creates_per_s=%.2f "
    .. "create_rate_limit=%.2f polls_per_s=%.2f poll_rate_limit=%.2f seconds=%.2f wall=%.2f scale=%g\n"):format(
    name, PROCESSES, JOBS, ok, failed, stats.rate_limited, #creates, #polls,
    windows.busiest(creates, CREATE[2]), CREATE[1], windows.busiest(polls, POLL[2]), POLL[1],
    created / slowest, CREATE[1] / CREATE[2], polled / slowest, POLL[1] / POLL[2], slowest, wall, SCALE))
  io.stdout:flush()
end

local dir = helper.tmpdir()
run("local", "-")
run("file", "file:" .. dir .. "/windows")
local r = redis.start()
run("redis", r.url(0))
r.stop()
helper.rmdir(dir)

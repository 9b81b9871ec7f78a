-- bench/scale.lua: 10,000 jobs in flight in one client, against the emulator
-- (jobs that never end while we measure). bench/run.lua starts it.
--
--   lua5.4 bench/scale.lua URL [jobs=10000] [poll_seconds=5] [poll_window=10] [frames=20000] [LIMITED_URL]
--
-- 1. submit: every job submitted at once, until each has its task id. Each
--    createTask has a connection of its own (modkie's guard against a
--    silent re-send), so this is the cost of a create with its connect.
-- 2. polling: every job polled every poll_seconds (jittered by the engine's
--    timers only); client CPU per poll over poll_window seconds.
-- 3. idle: the jobs' next polls pushed 10 minutes out; step(0) timed frames
--    times with nothing ready (p50, p99, max).
-- 4. (with LIMITED_URL, an emulator enforcing the gateway's poll limit of
--    10 per s) the same number of jobs in a client with the default poll
--    rate: polls per second over poll_window, and the 429s the emulator gave.
-- Memory: VmRSS after the client is made (before any job) and at the end,
-- the peak (VmHWM), and the Lua state's own data (collectgarbage "count");
-- "beyond the Lua state" is the growth of RSS less the growth of the Lua heap.
-- Prints one line of key=value; never fails on numbers.
local modkie = require "modkie"
local core = require "modkie.core"

local URL = assert(arg[1], "usage: scale.lua URL [jobs] [poll_seconds] [poll_window] [frames]")
local JOBS = tonumber(arg[2]) or 10000
local POLL = tonumber(arg[3]) or 5
local WINDOW = tonumber(arg[4]) or 10
local FRAMES = tonumber(arg[5]) or 20000
local LIMITED_URL = arg[6]

local function status_kb(key)
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match(key .. ":%s*(%d+)"))
end

local function lua_kb()
  collectgarbage("collect")
  collectgarbage("collect")
  return collectgarbage("count")
end

local interval = POLL
local client = modkie.new{ base_url = URL, api_key = "bench", rate = false, deadline = false,
  poll_interval = function() return interval end }
local rss0, lua0 = status_kb("VmRSS"), lua_kb()

-- 1. submit
local jobs = {}
local cpu0, t0 = os.clock(), core.now()
for i = 1, JOBS do
  jobs[i] = assert(client:submit("kling/kling-3-0", { prompt = "scale " .. i, duration = 5 }))
end
local submitted_cpu = os.clock() - cpu0
for _, job in ipairs(jobs) do assert(job:accepted(120)) end
local accept_wall, accept_cpu = core.now() - t0, os.clock() - cpu0
local creates = client:stats().creates
local after_submit_rss, after_submit_lua = status_kb("VmRSS"), lua_kb()

-- 2. polling: every job polled every POLL seconds; measure a window once
-- the first round has spread out
local function run_for(seconds)
  local untill = core.now() + seconds
  while core.now() < untill do client:step(untill - core.now()) end
end
run_for(POLL)
local polls0, cpu1, t1 = client:stats().polls, os.clock(), core.now()
run_for(WINDOW)
local polls = client:stats().polls - polls0
local poll_cpu, poll_wall = os.clock() - cpu1, core.now() - t1

-- 3. idle: the next polls are 10 minutes away; let the polls in flight land
interval = 600
run_for(POLL + 2)
local stats = client:stats()
local times = {}
for i = 1, FRAMES do
  local s = core.now()
  client:step(0)
  times[i] = core.now() - s
end
table.sort(times)
local live = stats.live
local rss1, lua1 = status_kb("VmRSS"), lua_kb()
local hwm = status_kb("VmHWM")
client:close()

-- 4. the poll rate limit held with every job wanting a poll every POLL s
local limited_polls, limited_wall, limited_429 = -1, 0, -1
if LIMITED_URL then
  local http = require "socket.http"
  local function rate_limited()
    local body = assert(http.request(LIMITED_URL .. "/__mock/stats"))
    return tonumber(body:match('"rate_limited":(%d+)'))
  end
  client = modkie.new{ base_url = LIMITED_URL, api_key = "bench", deadline = false,
    rate = { submit = { JOBS, 1 } }, poll_interval = function() return POLL end }
  jobs = {}
  for i = 1, JOBS do jobs[i] = assert(client:submit("kling/kling-3-0", { prompt = "limited " .. i })) end
  for _, job in ipairs(jobs) do assert(job:accepted(120)) end
  run_for(POLL) -- every job now wants a poll
  local before = rate_limited()
  local p0, t2 = client:stats().polls, core.now()
  run_for(WINDOW)
  limited_polls, limited_wall = client:stats().polls - p0, core.now() - t2
  limited_429 = rate_limited() - before
  client:close()
end

io.write(("jobs=%d creates=%d submit_cpu=%.4f accept_wall=%.4f accept_cpu=%.4f polls=%d poll_cpu=%.4f poll_wall=%.4f "
  .. "live=%d in_flight=%d timers=%d step_p50=%.3f step_p99=%.3f step_max=%.3f "
  .. "rss0_kb=%d lua0_kb=%.0f rss_submit_kb=%d lua_submit_kb=%.0f rss_end_kb=%d lua_end_kb=%.0f hwm_kb=%d "
  .. "limited_polls=%d limited_wall=%.4f limited_429=%d\n"):format(
  JOBS, creates, submitted_cpu, accept_wall, accept_cpu, polls, poll_cpu, poll_wall,
  live, stats.in_flight, stats.timers, times[math.ceil(FRAMES * 0.5)] * 1e6, times[math.ceil(FRAMES * 0.99)] * 1e6,
  times[FRAMES] * 1e6, rss0, lua0, after_submit_rss, after_submit_lua, rss1, lua1, hwm,
  limited_polls, limited_wall, limited_429))

-- bench/frame.lua: what one client:update() costs a game's frame, with N jobs
-- in flight and nothing ready (every job waiting for its next poll); side by
-- side with the same client holding no job, and with an empty function call.
--
--   make all && LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/lua5.4/?.so;;' \
--     lua5.4 bench/frame.lua [jobs=1000] [frames=20000]
-- Prints numbers; never fails on them.
local modkie = require "modkie"
local core = require "modkie.core"

local JOBS = tonumber(arg[1]) or 1000
local FRAMES = tonumber(arg[2]) or 20000

local here = (arg[0]:match("^(.*)/[^/]+$") or ".") .. "/.."
local mock = assert(io.popen("exec lua5.4 " .. here .. "/bin/modkie mock --port 0 --credits 1e12 --job-seconds 3600"))
local line = assert(mock:read("*l"), "the emulator did not start")
local url, pid = line:match("(http://[%d.]+:%d+)"), line:match("pid=(%d+)")

local function measure(fn)
  local t = {}
  for i = 1, FRAMES do
    local t0 = core.now()
    fn()
    t[i] = core.now() - t0
  end
  table.sort(t)
  return t[math.ceil(FRAMES * 0.5)] * 1e6, t[math.ceil(FRAMES * 0.99)] * 1e6, t[FRAMES] * 1e6
end

-- polls every 10 minutes: while we measure, nothing comes due
local client = modkie.new{ base_url = url, api_key = "bench", rate = false, poll_interval = 600 }
local idle = { measure(function() client:update() end) }
local empty = { measure(function() end) }

local jobs = {}
for i = 1, JOBS do jobs[i] = assert(client:submit("kling/kling-3-0", { prompt = "frame " .. i })) end
for _, job in ipairs(jobs) do assert(job:accepted(60)) end
local busy = { measure(function() client:update() end) }
assert(client:stats().live == JOBS)

print(("frames: %d; %s"):format(FRAMES, core.curl_version:match("^%S+")))
print(("%-40s %10s %10s %10s"):format("per frame", "p50 us", "p99 us", "max us"))
print(("%-40s %10.2f %10.2f %10.2f"):format("empty Lua function call", empty[1], empty[2], empty[3]))
print(("%-40s %10.2f %10.2f %10.2f"):format("client:update(), no job", idle[1], idle[2], idle[3]))
print(("%-40s %10.2f %10.2f %10.2f"):format(("client:update(), %d jobs waiting"):format(JOBS),
  busy[1], busy[2], busy[3]))

client:close()
os.execute("kill " .. pid)
mock:close()

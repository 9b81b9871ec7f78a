-- 100 jobs driven by a libuv loop (Debian's lua-luv): the process sleeps in
-- epoll between polls, so its CPU time while the jobs wait stays near zero.
--   lua5.4 examples/luv.lua [gateway-url] [jobs]   (default: starts the emulator)
pcall(dofile, (arg and arg[0] or ""):gsub("[^/]*$", "") .. "checkout.lua") -- a checkout's build, if run from one
local uv = require "luv"
local modkie = require "modkie"

local url, jobs_n = arg[1], tonumber(arg[2]) or 100
local mock, mock_pid
if not url then
  local here = (arg[0]:match("^(.*)/[^/]+$") or ".") .. "/.."
  local bin = "modkie"
local f = io.open(here .. "/bin/modkie")
if f then f:close() bin = "lua5.4 " .. here .. "/bin/modkie" end
  mock = assert(io.popen("exec " .. bin .. " mock --port 0 --job-seconds 3"))
  local line = assert(mock:read("*l"), "the emulator did not start")
  url, mock_pid = line:match("(http://[%d.]+:%d+)"), line:match("pid=(%d+)")
end

local client = modkie.new{ base_url = url, api_key = os.getenv("MODKIE_API_KEY") or "demo", rate = false }
local driver = require("modkie.luv").attach(client, uv)

local done, failed = 0, 0
for i = 1, jobs_n do
  client:go(function()
    local res, err = assert(client:submit("kling/kling-3-0", { prompt = "uv job " .. i })):await()
    if res then done = done + 1 else failed = failed + 1; print(err) end
  end)
end
driver.sync()

local cpu0, t0 = os.clock(), uv.hrtime()
uv.run() -- returns once every job has ended: no handle is left active
local wall, cpu = (uv.hrtime() - t0) / 1e9, os.clock() - cpu0
driver.close()
uv.run() -- lets libuv finish closing the driver's handles before the process exits
client:close()
print(("%d jobs: %d succeeded, %d failed; wall %.2f s, CPU %.3f s (%.1f%% of the wall time)")
  :format(jobs_n, done, failed, wall, cpu, 100 * cpu / wall))
if mock then
  os.execute("kill " .. mock_pid)
  mock:close()
end

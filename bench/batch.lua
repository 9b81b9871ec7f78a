-- bench/batch.lua: a 10,000-row batch against the emulator, with a journal;
-- then the resume from that finished journal, in a fresh process.
-- Prints wall time, CPU, peak memory (VmHWM), requests and journal size.
--
--   make all && LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/lua5.4/?.so;;' \
--     /usr/bin/time -v lua5.4 bench/batch.lua [rows=10000] [concurrency=200] [job_seconds=0.2] [poll=0.1]
--
-- BENCH_KEEP=1 keeps the rows and the journal, and prints the command that
-- resumes from them (it sends nothing, so it needs no emulator).
-- Rate limits are off in the client (the emulator does not enforce them
-- without --limits); each job takes `job_seconds` in the emulator and is
-- polled every `poll` seconds. Prints numbers; never fails on them.
local modkie = require "modkie"
local core = require "modkie.core"

local here = (arg[0]:match("^(.*)/[^/]+$") or ".") .. "/.."

local function peak_kib()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)"))
end

local function size_of(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local n = f:seek("end")
  f:close()
  return n
end

local function rows_file(dir, n)
  local path = dir .. "/rows.csv"
  local f = assert(io.open(path, "wb"))
  f:write("product,color,setting,tagline,aspect_ratio,duration\n")
  local ratios = { "16:9", "9:16", "1:1", "4:3" }
  for i = 1, n do
    f:write(("product %d,color %d,\"on a table, in room %d\",%s,%s,%d\n"):format(
      i, i % 17, i % 101, i % 3 == 0 and "" or ("tagline " .. i), ratios[i % 4 + 1], 5 + i % 4))
  end
  f:close()
  return path
end

local TEMPLATE = [[
A {{color | lower}} {{product}} {{setting}}, filmed as a product shot.
{{#tagline}}It ends on the words "{{tagline | trim}}".{{/tagline}}
{{^tagline}}No text on screen.{{/tagline}}
]]

local function options(client, dir)
  return {
    client = client, model = "kling/kling-3-0", rows = dir .. "/rows.csv", template = TEMPLATE,
    journal = dir .. "/journal.jsonl",
  }
end

-- The resume, run as `lua5.4 bench/batch.lua --resume DIR URL`: a process of its own, so its peak memory is its own.
if arg[1] == "--resume" then
  local dir, url = arg[2], arg[3]
  local client = modkie.new{ base_url = url, api_key = "bench", rate = false }
  local cpu0, t0 = os.clock(), core.now()
  local report = assert(modkie.batch.run(options(client, dir)))
  local wall, cpu = core.now() - t0, os.clock() - cpu0
  io.write(("resume:  %d rows restored (%d skipped, %d succeeded) in %.2f s wall, %.2f s CPU; "
    .. "peak RSS %.1f MiB; requests sent %d\n"):format(report.total, report.skipped, report.succeeded, wall, cpu,
    (peak_kib() or 0) / 1024, client:stats().requests or -1))
  client:close()
  return
end

local ROWS = tonumber(arg[1]) or 10000
local CONCURRENCY = tonumber(arg[2]) or 200
local JOB_SECONDS = tonumber(arg[3]) or 0.2
local POLL = tonumber(arg[4]) or 0.1

local dir = os.tmpname()
os.remove(dir)
assert(core.mkdir(dir))
rows_file(dir, ROWS)

local mock = assert(io.popen("exec lua5.4 " .. here .. "/bin/modkie mock --port 0 --credits 1e12 --job-seconds "
  .. JOB_SECONDS))
local line = assert(mock:read("*l"), "the emulator did not start")
local url, pid = line:match("(http://[%d.]+:%d+)"), line:match("pid=(%d+)")

local client = modkie.new{ base_url = url, api_key = "bench", rate = false, poll_interval = POLL,
  max_connections = 16 }
local opts = options(client, dir)
opts.concurrency = CONCURRENCY
local cpu0, t0 = os.clock(), core.now()
local report = assert(modkie.batch.run(opts))
local wall, cpu = core.now() - t0, os.clock() - cpu0
local requests = client:stats().requests
client:close()

io.write(("batch:   %d rows, concurrency %d, jobs of %g s polled every %g s\n"):format(ROWS, CONCURRENCY,
  JOB_SECONDS, POLL))
io.write(("run:     %d succeeded, %d failed in %.2f s wall (%.0f rows/s), %.2f s CPU; peak RSS %.1f MiB; "
  .. "%d HTTP requests\n"):format(report.succeeded, report.failed, wall, ROWS / wall, cpu,
  (peak_kib() or 0) / 1024, requests or -1))
io.write(("journal: %.1f MiB, %d bytes per row\n"):format(size_of(opts.journal) / 1048576,
  math.floor(size_of(opts.journal) / ROWS)))

-- the resume from the finished journal, in a fresh process
local lua = os.getenv("LUA") or "lua5.4"
io.stdout:flush()
local resume = ("%s %s/bench/batch.lua --resume %s %s"):format(lua, here, dir, url)
os.execute(resume)

os.execute("kill " .. pid)
mock:close()
if os.getenv("BENCH_KEEP") then
  -- the resume sends nothing: measure it alone, e.g. with /usr/bin/time -v
  io.write(("kept %s; the resume again: %s\n"):format(dir, resume))
else
  os.execute("rm -rf '" .. dir .. "'")
end

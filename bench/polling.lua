-- bench/polling.lua: one contender of the job-level benchmark (bench/run.lua
-- starts one process per schedule and model, all at once, against one
-- emulator). Submits the jobs of MODEL from PLAN_FILE at their arrival
-- times, awaits each in a coroutine run by the client, and prints one line
-- per job: how many polls it took and its notice delay (from the job's end
-- on the server, the record's completeTime, to await returning).
--
--   lua5.4 bench/polling.lua URL PLAN_FILE SCHEDULE MODEL FACTOR START
--
-- Times are scaled: a job of 120 s runs 120 * FACTOR s in the emulator, and
-- every schedule is scaled by the same factor (it sees elapsed / FACTOR and
-- its answer is multiplied by FACTOR), so polls per job and delay / FACTOR
-- are what the unscaled run would show. SCHEDULE is one of:
--   default   modkie's schedule: core.default_interval, jittered
--   fixed=S   every S seconds (replicate-js polls every 0.5 s)
--   learned   the default schedule, but no poll before the model's usual
--             duration: 0.9 x the 5th percentile of its last 100 completed
--             jobs (once it has seen 5); a sketch of a schedule that learns
--   learned-warm  the same, starting with the plan's "warm" durations of the
--             model (what a long-running client would already have seen)
-- PLAN_FILE lines: "model arrival duration" (scaled seconds) and "warm model
-- duration" (unscaled seconds). START is the Unix time arrivals count from
-- (shared by every process of a run).
-- Prints numbers; never fails on them.
local modkie = require "modkie"
local core = require "modkie.core"
local socket = require "socket"

local URL, PLAN_FILE, SCHEDULE, MODEL = arg[1], arg[2], arg[3], arg[4]
local FACTOR, START = tonumber(arg[5]), tonumber(arg[6])
assert(URL and PLAN_FILE and SCHEDULE and MODEL and FACTOR and START,
  "usage: polling.lua URL PLAN_FILE SCHEDULE MODEL FACTOR START")

-- ---------------------------------------------------------------- schedules

local MIN_SAMPLES, WINDOW, MARGIN, QUANTILE = 5, 100, 0.9, 0.05

--- Durations (unscaled seconds) of the model's completed jobs, newest last.
local history = {}

--- Seconds before which the model's jobs have (almost) never ended, or nil
-- while too few have.
local function usual_start()
  if #history < MIN_SAMPLES then return nil end
  local sorted = {}
  for i = math.max(1, #history - WINDOW + 1), #history do sorted[#sorted + 1] = history[i] end
  table.sort(sorted)
  return MARGIN * sorted[math.max(1, math.floor(#sorted * QUANTILE + 0.5))]
end

local function default_schedule(elapsed)
  return core.default_interval(elapsed / FACTOR, math.random()) * FACTOR
end

local function learned_schedule(elapsed)
  local real, start = elapsed / FACTOR, usual_start()
  if start and real < start then return (start - real) * FACTOR end
  return core.default_interval(real, math.random()) * FACTOR
end

local poll_interval
if SCHEDULE == "default" then
  poll_interval = default_schedule
elseif SCHEDULE == "learned" or SCHEDULE == "learned-warm" then
  poll_interval = learned_schedule
else
  poll_interval = assert(tonumber(SCHEDULE:match("^fixed=(.+)$")), "unknown schedule " .. SCHEDULE) * FACTOR
end

-- ---------------------------------------------------------------- the jobs

local plan = {}
for line in io.lines(PLAN_FILE) do
  local model, arrival, duration = line:match("^(%S+) (%S+) (%S+)$")
  if model == MODEL then plan[#plan + 1] = { arrival = tonumber(arrival), duration = tonumber(duration) } end
  if model == "warm" and arrival == MODEL and SCHEDULE == "learned-warm" then
    history[#history + 1] = tonumber(duration)
  end
end

local client = modkie.new{ base_url = URL, api_key = "bench", rate = false, deadline = false,
  poll_interval = poll_interval, max_connections = 16 }
local lines = {}
local cpu0 = os.clock()

client:run(function()
  for i, p in ipairs(plan) do
    client:go(function()
      local wait = START + p.arrival - socket.gettime()
      if wait > 0 then client:sleep(wait) end
      local informed = usual_start() ~= nil
      local job = assert(client:submit(MODEL, { prompt = ("bench %s %d [seconds=%.3f]"):format(MODEL, i, p.duration) },
        { validate = false }))
      local res, err = job:await()
      local returned = socket.gettime()
      if not res then
        lines[#lines + 1] = ("error model=%s message=%s"):format(MODEL, tostring(err))
        return
      end
      local ended = res.raw.completeTime / 1000
      history[#history + 1] = res.raw.costTime / 1000 / FACTOR
      lines[#lines + 1] = ("job model=%s duration=%.4f polls=%d delay=%.4f informed=%d"):format(
        MODEL, p.duration, job.polls, returned - ended, informed and 1 or 0)
    end)
  end
end)

local stats = client:stats()
client:close()
io.write(table.concat(lines, "\n"), "\n")
io.write(("proc schedule=%s model=%s jobs=%d requests=%d cpu=%.4f\n"):format(SCHEDULE, MODEL, #plan, stats.requests,
  os.clock() - cpu0))

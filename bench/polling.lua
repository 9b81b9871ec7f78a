-- bench/polling.lua: one contender of the job-level benchmark (bench/run.lua
-- starts one process per schedule, all at once, against one emulator).
-- Submits the jobs of PLAN_FILE at their arrival times, awaits each in a
-- coroutine run by the client, and prints one line per job: how many polls
-- it took and its notice delay (from the job's end on the server, the
-- record's completeTime, to await returning).
--
--   lua5.4 bench/polling.lua URL PLAN_FILE SCHEDULE FACTOR START
--
-- Times are scaled: a job of 120 s runs 120 * FACTOR s in the emulator, and
-- every schedule is scaled by the same factor (it sees elapsed / FACTOR and
-- its answer is multiplied by FACTOR), so polls per job and delay / FACTOR
-- are what the unscaled run would show. SCHEDULE is one of:
--   default     modkie's default schedule: core.default_interval, jittered
--   fixed=S     every S seconds (replicate-js polls every 0.5 s)
--   learn       what poll_interval = "learn" does (modkie.schedule's learner,
--               fed the scaled-back duration of every job that succeeds)
--   learn-warm  the same, started with the plan's "warm" durations, as
--               poll_history = … would start it
-- PLAN_FILE lines: "model arrival duration" (scaled seconds) and "warm model
-- duration" (unscaled seconds). START is the Unix time arrivals count from
-- (shared by every process of a run). Prints numbers; never fails on them.
local modkie = require "modkie"
local core = require "modkie.core"
local schedule = require "modkie.schedule"
local socket = require "socket"

local URL, PLAN_FILE, SCHEDULE = arg[1], arg[2], arg[3]
local FACTOR, START = tonumber(arg[4]), tonumber(arg[5])
assert(URL and PLAN_FILE and SCHEDULE and FACTOR and START, "usage: polling.lua URL PLAN_FILE SCHEDULE FACTOR START")

local plan, warm = {}, {}
for line in io.lines(PLAN_FILE) do
  local a, b, c = line:match("^(%S+) (%S+) (%S+)$")
  if a == "warm" then
    warm[b] = warm[b] or {}
    table.insert(warm[b], tonumber(c))
  elseif a then
    plan[#plan + 1] = { model = a, arrival = tonumber(b), duration = tonumber(c) }
  end
end

-- ---------------------------------------------------------------- schedules

local learner -- modkie.schedule's learner, for learn and learn-warm
local poll_interval
if SCHEDULE == "default" then
  poll_interval = function(elapsed)
    return core.default_interval(elapsed / FACTOR, math.random()) * FACTOR
  end
elseif SCHEDULE == "learn" or SCHEDULE == "learn-warm" then
  learner = schedule.learner(SCHEDULE == "learn-warm" and warm or nil)
  -- the client hands the job over as the third argument
  poll_interval = function(elapsed, polls, job)
    return learner:interval(elapsed / FACTOR, polls, job and job.model) * FACTOR
  end
else
  poll_interval = assert(tonumber(SCHEDULE:match("^fixed=(.+)$")), "unknown schedule " .. SCHEDULE) * FACTOR
end

--- Whether the learner knows enough of `model` to skip polls.
local function informed(model)
  local known = learner and learner:history()[model]
  return known ~= nil and #known >= 5
end

-- ---------------------------------------------------------------- the jobs

local client = modkie.new{ base_url = URL, api_key = "bench", rate = false, deadline = false,
  poll_interval = poll_interval, max_connections = 16 }
local lines = {}
local cpu0 = os.clock()

client:run(function()
  for i, p in ipairs(plan) do
    client:go(function()
      local wait = START + p.arrival - socket.gettime()
      if wait > 0 then client:sleep(wait) end
      local knew = informed(p.model)
      local job = assert(client:submit(p.model, { prompt = ("bench %d [seconds=%.3f]"):format(i, p.duration) },
        { validate = false }))
      local res, err = job:await()
      local returned = socket.gettime()
      if not res then
        lines[#lines + 1] = ("error model=%s message=%s"):format(p.model, tostring(err))
        return
      end
      if learner then learner:record(p.model, res.raw.costTime / 1000 / FACTOR) end
      lines[#lines + 1] = ("job model=%s duration=%.4f polls=%d delay=%.4f informed=%d"):format(
        p.model, p.duration, job.polls, returned - res.raw.completeTime / 1000, knew and 1 or 0)
    end)
  end
end)

local stats = client:stats()
client:close()
io.write(table.concat(lines, "\n"), "\n")
io.write(("proc schedule=%s jobs=%d requests=%d cpu=%.4f\n"):format(SCHEDULE, #plan, stats.requests,
  os.clock() - cpu0))

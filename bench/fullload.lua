-- bench/fullload.lua: one contender of the full-load run (bench/run.lua
-- starts one process per schedule, all at once, against one emulator that
-- enforces the gateway's limits per key; each process has a key of its own).
-- Submits the jobs of PLAN_FILE at their arrival times (the full create
-- rate), awaits each in a coroutine run by the client, and prints one line
-- per job: its polls, its notice delay (from the job's end on the server,
-- the record's completeTime, to await returning) and its duration.
--
--   lua5.4 bench/fullload.lua URL KEY PLAN_FILE SCHEDULE FACTOR START [SECRET]
--
-- Every time is scaled by FACTOR (0.1: ten times faster than life): the
-- plan's arrivals and durations, the rate windows (20 creates per 10 s, 10
-- polls per s, times FACTOR), and the schedules: the default through
-- `time_scale = FACTOR`, the others seeing elapsed / FACTOR and their
-- answers multiplied by FACTOR. So polls per job and delay / FACTOR are what
-- an unscaled run would show. SCHEDULE is one of
--   default     modkie's default: the gateway's schedule, ranked when polls are rationed
--   learn       poll_interval = "learn" (modkie.schedule's learner), cold
--   fixed=S     every S seconds, first come first served (a naive poller, same limiter)
--   callbacks   the default, every job with a callback URL: the client's own
--               listener (listen = "127.0.0.1:0") takes the emulator's signed
--               callbacks (SECRET) and polls are the fallback
-- PLAN_FILE lines: "model arrival duration drop" (scaled seconds; drop 1: the
-- emulator drops that job's callback). START is the Unix time arrivals count
-- from (shared by every process of a run). Prints numbers; never fails on them.
local modkie = require "modkie"
local schedule = require "modkie.schedule"
local socket = require "socket"

local URL, KEY, PLAN_FILE, SCHEDULE = arg[1], arg[2], arg[3], arg[4]
local FACTOR, START, SECRET = tonumber(arg[5]), tonumber(arg[6]), arg[7]
assert(URL and KEY and PLAN_FILE and SCHEDULE and FACTOR and START,
  "usage: fullload.lua URL KEY PLAN_FILE SCHEDULE FACTOR START [SECRET]")

local plan = {}
for line in io.lines(PLAN_FILE) do
  local model, arrival, duration, drop = line:match("^(%S+) (%S+) (%S+) (%d)$")
  if model then
    plan[#plan + 1] = { model = model, arrival = tonumber(arrival), duration = tonumber(duration), drop = drop == "1" }
  end
end

local learner -- "learn": modkie.schedule's learner, fed the scaled-back duration of every job that succeeds
local opts = {
  base_url = URL, api_key = KEY, deadline = false, max_connections = 16,
  rate = { submit = { 20, 10 * FACTOR }, poll = { 10, 1 * FACTOR } },
}
if SCHEDULE == "default" then
  opts.time_scale = FACTOR
elseif SCHEDULE == "callbacks" then
  opts.time_scale = FACTOR
  opts.listen = "127.0.0.1:0"
  opts.webhook = { secret = assert(SECRET, "callbacks needs the emulator's webhook secret"), scheme = "kie" }
elseif SCHEDULE == "learn" then
  learner = schedule.learner()
  opts.poll_interval = function(elapsed, polls, job)
    return learner:interval(elapsed / FACTOR, polls, job and job.model) * FACTOR
  end
else
  opts.poll_interval = assert(tonumber(SCHEDULE:match("^fixed=(.+)$")), "unknown schedule " .. SCHEDULE) * FACTOR
end

local client = modkie.new(opts)
local lines = {}
local cpu0 = os.clock()

client:run(function()
  for i, p in ipairs(plan) do
    client:go(function()
      local wait = START + p.arrival - socket.gettime()
      if wait > 0 then client:sleep(wait) end
      local prompt = ("full load %d [seconds=%.3f]%s"):format(i, p.duration, p.drop and " [callback=drop]" or "")
      local job = assert(client:submit(p.model, { prompt = prompt }, { validate = false }))
      local res, err = job:await()
      local returned = socket.gettime()
      if learner and res then learner:record(p.model, (res.completed_at - res.created_at) / FACTOR) end
      if not res then
        lines[#lines + 1] = ("error model=%s message=%s"):format(p.model, tostring(err):gsub("%s", "_"))
        return
      end
      lines[#lines + 1] = ("job model=%s duration=%.4f polls=%d delay=%.4f dropped=%d"):format(
        p.model, p.duration, job.polls, returned - res.raw.completeTime / 1000, p.drop and 1 or 0)
    end)
  end
end)

local stats = client:stats()
client:close()
io.write(table.concat(lines, "\n"), "\n")
io.write(("proc schedule=%s jobs=%d polls=%d ranked=%d rate_limited=%d delivered=%d cpu=%.4f\n"):format(SCHEDULE,
  #plan, stats.polls, stats.ranked_polls, stats.rate_limited, stats.callbacks.delivered, os.clock() - cpu0))

--- A polling schedule that learns how long each model's jobs take.
--
-- The gateway's recommended schedule polls a 3-minute job about 20 times,
-- most of them long before it can have ended. This one keeps, per model, the
-- durations of the last 100 jobs that succeeded; once it knows 5, a job of
-- that model is polled once early (to catch a job that fails at once), then
-- not again until 0.9 × the 5th percentile of those durations, then on the
-- recommended schedule. With `bench/polling.lua`'s mix of 30-300 s jobs it
-- polls about a fifth as often as the default for the same notice delay.
-- @module modkie.schedule

local core = require "modkie.core"
local rng = require "modkie.rng"

local schedule = {}

local KEEP = 100       -- durations kept per model
local MIN_KNOWN = 5    -- durations needed before they are trusted
local SHARE = 0.9      -- of the 5th percentile: the first poll after the early one

local Learner = {}
Learner.__index = Learner

--- A learner, optionally warm: `history` is `{ [model] = { seconds, … } }`
-- (as `Learner:history()` returns it). `seed` (the client's) seeds the
-- jitter, so a seeded client polls on the same schedule every run.
function schedule.learner(history, seed)
  if seed == nil then seed = math.floor(core.now() * 1e6) % 2147483563 end
  local self = setmetatable({ models = {}, rng = rng.new(seed, "schedule") }, Learner)
  for model, list in pairs(history or {}) do
    if type(model) == "string" and type(list) == "table" then
      for _, secs in ipairs(list) do self:record(model, secs) end
    end
  end
  return self
end

--- Remember that a job of `model` took `seconds` (from creation to its end).
function Learner:record(model, seconds)
  if type(model) ~= "string" or type(seconds) ~= "number" or not (seconds > 0 and seconds < math.huge) then
    return
  end
  local m = self.models[model]
  if not m then
    m = { n = 0, next = 1 }
    self.models[model] = m
  end
  m[m.next] = seconds
  m.next = m.next % KEEP + 1
  if m.n < KEEP then m.n = m.n + 1 end
  m.p5 = nil -- recomputed when next asked
end

local function p5(m)
  if not m.p5 then
    local sorted = {}
    for i = 1, m.n do sorted[i] = m[i] end
    table.sort(sorted)
    m.p5 = sorted[math.max(1, math.floor(m.n * 0.05 + 0.5))]
  end
  return m.p5
end

--- Seconds until a job's next poll: `elapsed` since it was accepted, `polls`
-- answered so far, `model` its model (nil: the recommended schedule),
-- `default` the recommended schedule's answer for it (the client passes the
-- engine's, jittered by its source seeded with `seed`; nil: drawn here).
function Learner:interval(elapsed, polls, model, default)
  local wait = default or core.default_interval(elapsed, self.rng:next())
  local m = model and self.models[model]
  if polls == 0 or not m or m.n < MIN_KNOWN then return wait end
  local until_usual = SHARE * p5(m) - elapsed
  return until_usual > wait and until_usual or wait
end

--- What was learned: `{ [model] = { seconds, … } }`, to start another client warm.
function Learner:history()
  local out = {}
  for model, m in pairs(self.models) do
    local list = {}
    for i = 1, m.n do list[i] = m[i] end
    out[model] = list
  end
  return out
end

return schedule

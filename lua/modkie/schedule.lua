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

local MIN_KNOWN = 5    -- durations needed before they are trusted
local SHARE = 0.9      -- of the 5th percentile: the first poll after the early one

local Learner = {}
Learner.__index = Learner

--- A learner, optionally warm: `history` is `{ [model] = { seconds, … } }`
-- (as `Learner:history()` returns it). `seed` (the client's) seeds the
-- jitter, so a seeded client polls on the same schedule every run. The
-- durations live in `durations` (a `core.durations` object: a client hands
-- over the one its engine ranks polls with), or in one of its own.
function schedule.learner(history, seed, durations)
  if seed == nil then seed = math.floor(core.now() * 1e6) % 2147483563 end
  local self = setmetatable({ known = durations or core.durations(), rng = rng.new(seed, "schedule") }, Learner)
  for model, list in pairs(history or {}) do
    if type(model) == "string" and type(list) == "table" then
      for _, secs in ipairs(list) do self:record(model, secs) end
    end
  end
  return self
end

--- Remember that a job of `model` took `seconds` (from creation to its end);
-- the last 100 per model are kept, nonsense is ignored.
function Learner:record(model, seconds)
  if type(model) ~= "string" or type(seconds) ~= "number" then return end
  self.known:add(model, seconds)
end

--- Seconds until a job's next poll: `elapsed` since it was accepted, `polls`
-- answered so far, `model` its model (nil: the recommended schedule),
-- `default` the recommended schedule's answer for it (the client passes the
-- engine's, jittered by its source seeded with `seed`; nil: drawn here).
function Learner:interval(elapsed, polls, model, default)
  local wait = default or core.default_interval(elapsed, self.rng:next())
  if polls == 0 or not model or self.known:known(model) < MIN_KNOWN then return wait end
  local until_usual = SHARE * self.known:quantile(model, 0.05) - elapsed
  return until_usual > wait and until_usual or wait
end

--- What was learned: `{ [model] = { seconds, … } }`, to start another client warm.
function Learner:history()
  return self.known:history()
end

return schedule

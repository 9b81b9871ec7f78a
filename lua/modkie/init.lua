--- modkie: a client for the ModKie gateway's Kie-compatible jobs API.
--
--     local modkie = require "modkie"
--     local client = modkie.new{ base_url = "http://127.0.0.1:8089", api_key = "test" }
--     local job = assert(client:submit("kling/kling-3-0", { prompt = "a red fox at dawn" }))
--     local res = assert(job:await())
--     print(res.id, res.urls[1])
--
-- @module modkie

local Client = require "modkie.client"
local core = require "modkie.core"
local Error = require "modkie.error"
local file = require "modkie.file"
local models = require "modkie.models"
local scheduler = require "modkie.scheduler"

local modkie = {
  VERSION = core.VERSION,
  Error = Error,
  models = models,
  Client = Client,
}

--- Make a client. See docs/design.md §3 and the README for the options.
-- @tparam[opt] table opts
-- @treturn modkie.Client
function modkie.new(opts)
  return Client.new(opts)
end

--- A local file (or bytes) for a job's input: `modkie.file("still.png")`,
-- `modkie.file{ data = bytes, name = "still.png", type = "image/png" }`.
-- Put it anywhere in an input (alone or in a list); `submit` uploads it
-- first and sends its URL in its place. See modkie.file.
-- @function file
modkie.file = file.new

--- Check `input` against model's schema: `true`, or `nil, err` with
-- `err.problems` listing every bad field. Unregistered models pass.
modkie.validate = models.validate

-- A list of jobs, or raise: one job or a table keyed otherwise would
-- iterate as an empty list and quietly give empty results. An empty list is
-- a list.
local function check_jobs(fname, jobs)
  Error.check(1, fname, jobs, "table")
  local got
  if type(jobs.await) == "function" then
    got = "a modkie.Job; wrap it: modkie." .. fname .. "({job})"
  elseif jobs[1] == nil and next(jobs) ~= nil then
    got = "a table with no jobs[1] (its keys are not 1, 2, …)"
  end
  if got then
    error(("bad argument #1 to '%s' (expects a list of jobs ({job1, job2}), got %s)"):format(fname, got), 3)
  end
  for i, job in ipairs(jobs) do
    if type(job) ~= "table" or type(job.await) ~= "function" then
      error(("bad argument #1 to '%s' (jobs[%d] is not a job)"):format(fname, i), 3)
    end
  end
end

--- Wait for every job. Results and errors are aligned with `jobs` by index.
-- @tparam table jobs
-- @tparam[opt] number timeout seconds for all of them together
-- @treturn table results (`results[i]` nil when job i did not succeed)
-- @treturn table errs (`errs[i]` the error of job i, if any)
function modkie.await_all(jobs, timeout)
  check_jobs("await_all", jobs)
  Error.check_wait(2, "await_all", timeout)
  local until_t = timeout and core.now() + timeout
  local results, errs = {}, {}
  for i, job in ipairs(jobs) do
    local left = until_t and math.max(0, until_t - core.now())
    results[i], errs[i] = job:await(left)
  end
  return results, errs
end

-- The index of the job of `jobs` that ended first among those `skip` does
-- not hold (by job), or nil.
local function first_ended(jobs, skip)
  local best
  for i, job in ipairs(jobs) do
    if job.done and not skip[job] and (not best or (job.ended_at or 0) < (jobs[best].ended_at or 0)) then
      best = i
    end
  end
  return best
end

-- Wait until a job of `jobs` not in `skip` has ended, or `until_t` passes.
local function wait_next(jobs, skip, until_t)
  if first_ended(jobs, skip) then return end
  local waiting, client, shared = {}, nil, true
  for _, job in ipairs(jobs) do
    if not skip[job] then
      waiting[#waiting + 1] = job
      client = client or job.client
      shared = shared and job.client == client
    end
  end
  if #waiting == 0 then return end
  if shared then
    client.scheduler:wait(waiting, until_t and math.max(0, until_t - core.now()))
    return
  end
  -- jobs of several clients: give each client a short turn
  while not first_ended(jobs, skip) and not (until_t and core.now() >= until_t) do
    for _, job in ipairs(waiting) do
      if not job.done then job.client.scheduler:wait({ job }, 0.02) end
    end
  end
end

-- For each list given to await_any, the jobs it already returned (weakly:
-- a list and its jobs are forgotten with the list).
local handed = setmetatable({}, { __mode = "k" })

--- Wait for the next of `jobs` to end. Each call returns a job it has not
-- returned before for this same list, the first to end among those (so a
-- loop calling it with one list sees every job once, in the order they
-- ended); when every job of the list was returned, it returns nil.
-- `modkie.completed` is the same as a `for` loop.
-- @tparam table jobs (of one client, or of several: then it polls each in turn)
-- @tparam[opt] number timeout seconds
-- @treturn modkie.Job|nil the job that ended (nil on timeout, or when none is left)
-- @treturn table|nil its result
-- @treturn modkie.Error|nil its error, or a "timeout" error
-- @treturn number|nil its index in `jobs`
function modkie.await_any(jobs, timeout)
  check_jobs("await_any", jobs)
  Error.check_wait(2, "await_any", timeout)
  if #jobs == 0 then error("bad argument #1 to 'await_any' (no jobs)", 2) end
  local skip = handed[jobs] or setmetatable({}, { __mode = "k" })
  handed[jobs] = skip
  local left = false
  for _, job in ipairs(jobs) do left = left or not skip[job] end
  if not left then return nil end
  wait_next(jobs, skip, timeout and core.now() + timeout)
  local i = first_ended(jobs, skip)
  if not i then return nil, nil, scheduler.timeout_error("await_any: no job", timeout) end
  local job = jobs[i]
  skip[job] = true
  local res, err = job:await()
  return job, res, err, i
end

--- Iterate over `jobs` as they end: `for job, res, err, i in
-- modkie.completed(jobs, timeout) do … end` gives each job once, the first
-- to end first, with its result or error and its index in `jobs`. When
-- `timeout` seconds (for all of them) pass, the jobs still running come
-- last, each with a "timeout" error (they keep going).
-- @tparam table jobs
-- @tparam[opt] number timeout seconds
-- @treturn function the iterator
function modkie.completed(jobs, timeout)
  check_jobs("completed", jobs)
  Error.check_wait(2, "completed", timeout)
  local list = {}
  for i, job in ipairs(jobs) do list[i] = job end
  local until_t = timeout and core.now() + timeout
  local skip, given = {}, 0
  return function()
    if given == #list then return nil end
    if not (until_t and core.now() >= until_t) then wait_next(list, skip, until_t) end
    local i = first_ended(list, skip)
    if not i then -- out of time: the rest, in list order
      for k, job in ipairs(list) do
        if not skip[job] then i = k break end
      end
      local job = list[i]
      skip[job], given = true, given + 1
      local what = "completed: job " .. (job.id or "(not yet accepted)")
      return job, nil, scheduler.timeout_error(what, timeout, job.id), i
    end
    local job = list[i]
    skip[job], given = true, given + 1
    local res, err = job:await()
    return job, res, err, i
  end
end

-- The batch, template and webhook layers load on first use: only these
-- names, and a module that fails to load raises its own error.
local lazy = {
  batch = "modkie.batch",
  template = "modkie.batch.template",
  rows = "modkie.batch.rows",
  webhook = "modkie.webhook",
}
setmetatable(modkie, {
  __index = function(t, k)
    local name = lazy[k]
    if not name then return nil end
    local mod = require(name)
    rawset(t, k, mod)
    return mod
  end,
})

return modkie

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
local models = require "modkie.models"
local wait = require "modkie.wait"

local modkie = {
  VERSION = core.VERSION,
  Error = Error,
  models = models,
  Client = Client,
}

--- Make a client. See DESIGN.md §3 and the README for the options.
-- @tparam[opt] table opts
-- @treturn modkie.Client
function modkie.new(opts)
  return Client.new(opts)
end

--- Check `input` against model's schema: `true`, or `nil, err` with
-- `err.problems` listing every bad field. Unregistered models pass.
modkie.validate = models.validate

local function check_jobs(fname, jobs)
  Error.check(1, fname, jobs, "table")
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
  Error.check(2, "await_all", timeout, "?number")
  local until_t = timeout and core.now() + timeout
  local results, errs = {}, {}
  for i, job in ipairs(jobs) do
    local left = until_t and math.max(0, until_t - core.now())
    results[i], errs[i] = job:await(left)
  end
  return results, errs
end

--- Wait for the first of `jobs` to end.
-- @tparam table jobs (of one client, or of several: then it polls each in turn)
-- @tparam[opt] number timeout seconds
-- @treturn modkie.Job|nil the job that ended (nil on timeout)
-- @treturn table|nil its result
-- @treturn modkie.Error|nil its error, or a "timeout" error
function modkie.await_any(jobs, timeout)
  check_jobs("await_any", jobs)
  Error.check(2, "await_any", timeout, "?number")
  if #jobs == 0 then error("bad argument #1 to 'await_any' (no jobs)", 2) end
  local function first_done()
    for _, job in ipairs(jobs) do
      if job.done then return job end
    end
  end
  local client, shared = jobs[1].client, true
  for _, job in ipairs(jobs) do shared = shared and job.client == client end
  if not first_done() then
    if shared then
      wait.any(client, jobs, timeout)
    else
      -- jobs of several clients: give each client a short turn
      local until_t = timeout and core.now() + timeout
      while not first_done() and not (until_t and core.now() >= until_t) do
        for _, job in ipairs(jobs) do
          if not job.done then wait.any(job.client, { job }, 0.02) end
        end
      end
    end
  end
  local job = first_done()
  if not job then return nil, nil, wait.timeout_error("await_any: no job", timeout) end
  return job, job:await()
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

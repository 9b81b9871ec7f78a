--- A generation job: made by `client:submit` or `client:job`.
--
-- Fields (read them, do not set them):
--   id            the gateway's taskId once createTask accepted it, nil before
--   state         "uploading" (its files go up first: no createTask yet) | "submitting" | "queued" |
--                 "running" | "success" | "failed" | "error" | "cancelled"
--   server_state  the gateway's own word for the state ("generating", "processing", …)
--   model, input, meta   as given to submit (`input` holds the files' URLs once they are uploaded)
--   uploads       the files it sent: `{ {field, path, size, type, sha256, url, expires_at, reused}, … }`
--   polls         recordInfo answers seen so far
--   done          true once the job has ended (then `result` or `error` is set)
--   held          true while a createTask submitted with `hold = true` waits for `job:send()`
--   sent          true once such a held createTask was let go (nil again when it came back: see bounced)
--   bounced       how many times a createTask let go came back answered that nothing was created
--                 (429, 455): each retry stops at the door again (`held`) and waits for `job:send()`
--   result, error once ended: what await returns
--   client        the client that runs the job
-- A job is a pending of its client's scheduler (modkie.scheduler): the
-- client makes it one, and finishes it when the job ends.
-- @classmod modkie.Job

local core = require "modkie.core"
local Error = require "modkie.error"
local options = require "modkie.options"
local scheduler = require "modkie.scheduler"

-- job:download's options: a typo must not pass silently
local DOWNLOAD_OPTIONS = { name = { ["function"] = true }, timeout = { number = true } }

local Job = {}
Job.__index = Job
Job.__name = "modkie.Job"

--- A job of `client` (not yet a pending: the client makes it one).
-- @param client the client that runs it
-- @tparam table port what the job asks of its client: `cancel(client, job)`, `send(client, job)`
-- @tparam[opt] string id the task id (an adopted task), nil until createTask accepts it
-- @tparam[opt] string model
-- @tparam[opt] table input
-- @param[opt] meta
-- @tparam string state its first state
-- Its other first fields (`uploads`, `callback_url`, `_hold`) the caller sets.
function Job.new(client, port, id, model, input, meta, state)
  -- Every field a job gets in its life is named here (nil until set), so
  -- that its table is made at its final size once, not grown three times.
  return setmetatable({ client = client, _port = port, polls = 0,
    id = id, model = model, input = input, meta = meta, state = state,
    uploads = nil, callback_url = nil, _hold = nil,
    server_state = nil, progress = nil, updated_at = nil, done = nil, waiters = nil, _h = nil,
    _accepted_at = nil, result = nil, error = nil, ended_at = nil }, Job)
end

function Job:__tostring()
  return ("modkie.Job(%s, %s, %s)"):format(self.model or "?", self.id or "no id yet", self.state)
end

--- Wait for the job to end.
-- @tparam[opt] number timeout seconds; nil waits until the job ends or its deadline passes
-- @treturn[1] table the result: `{ id, model, state = "success", urls, output, credits,
--   created_at, completed_at, cost_time, raw }`
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "failed", "deadline", "cancelled", …; or "timeout"
--   when `timeout` ran out (the job keeps going; await again later)
function Job:await(timeout)
  if getmetatable(self) ~= Job then Error.method(self, Job, "await", "job") end
  if timeout ~= nil then Error.check_wait(1, "await", timeout) end
  local sched = self.client.scheduler
  if not self.done and not (timeout == nil and sched:wait_here(self)) and not sched:wait({ self }, timeout) then
    return nil, scheduler.timeout_error("await: job " .. (self.id or "(not yet accepted)"), timeout, self.id)
  end
  if self.error then return nil, self.error end
  return self.result
end

--- Wait until the gateway has accepted the job (its `id` is known), not
-- for the job to end: e.g. to write the task id down before going on.
-- @tparam[opt] number timeout seconds
-- @treturn[1] string the task id
-- @treturn[2] nil
-- @treturn[2] modkie.Error why the job ended without an id, or "timeout"
function Job:accepted(timeout)
  Error.method(self, Job, "accepted", "job")
  Error.check_wait(1, "accepted", timeout)
  if not self.id and not self.done then
    local function accepted() return self.id ~= nil end
    if not self.client.scheduler:wait({ self }, timeout, accepted) then
      return nil, scheduler.timeout_error("accepted: createTask", timeout)
    end
  end
  if self.id then return self.id end
  return nil, self.error
end

--- The result if the job has ended, without waiting: `res` or `nil, err`;
-- `nil` alone while it runs.
function Job:poll()
  Error.method(self, Job, "poll", "job")
  if not self.done then return nil end
  if self.error then return nil, self.error end
  return self.result
end

--- Send a createTask held at the door (submitted with `hold = true`):
-- `job.held` said it has its rate token and a connection slot, and waits
-- for this call. Record whatever must be durable first: until now nothing
-- left the process.
-- @treturn boolean true when it went out, false when the job was not held
function Job:send()
  Error.method(self, Job, "send", "job")
  return self._port.send(self.client, self)
end

--- Stop the job now: no more polls; await returns `nil, err` with kind "cancelled".
-- The gateway has no cancel call: a task it accepted still runs (and bills) there.
-- @treturn boolean true when the job was still running
function Job:cancel()
  Error.method(self, Job, "cancel", "job")
  if self.done then return false end
  return self._port.cancel(self.client, self)
end

--- Download every output of a successful job into `dir` (created if missing).
-- Waits for the job first. Files are named `<id>-<n>.<ext>` (n from 1; the
-- extension from the URL when it is a plain one, else "bin"); each is written
-- to a temporary name and renamed when whole.
-- @tparam string dir
-- @tparam[opt] table opts `name = function(n, url) -> file name`, `timeout` seconds
-- @treturn[1] table the paths, in the order of `result.urls`
-- @treturn[2] nil
-- @treturn[2] modkie.Error
function Job:download(dir, opts)
  Error.method(self, Job, "download", "job")
  Error.check(1, "download", dir, "string")
  Error.check(2, "download", opts, "?table")
  opts = opts or {}
  options.check("download", opts, DOWNLOAD_OPTIONS)
  -- `timeout` bounds the whole call (README): the wait for the job, then the downloads
  local deadline = opts.timeout and core.now() + opts.timeout
  local res, err = self:await(opts.timeout)
  if not res then return nil, err end
  local prefix = tostring(res.id or self.id or "job")
  return require("modkie.download").files(self.client, res.urls, dir, {
    name = opts.name or function(n, url) return require("modkie.download").name(prefix, n, url) end,
    timeout = opts.timeout, deadline = deadline,
  })
end

return Job

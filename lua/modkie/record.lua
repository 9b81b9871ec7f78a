--- Read the gateway's answers about a task: the one reader behind both
-- `job:await()` (a job's last recordInfo answer, read by the C engine) and
-- `modkie.webhook.parse` (callbacks), so the same body reads the same way on
-- both paths. The reading itself is in C (`core.read_record`, src/lib/record.c,
-- which lists every shape it accepts: both dialects' states, resultJson as a
-- string or an object, failCode as a string or a number, costTime in seconds
-- or milliseconds, Kie's per-model callbacks); this module turns its errors
-- into `modkie.Error` objects and reads records already decoded into tables.
-- @module modkie.record

local core = require "modkie.core"
local Error = require "modkie.error"
local json = require "modkie.json"

local record = {}

local huge = math.huge

--- A number from a number or a numeric string, nil for anything else and
-- for NaN and infinities; a whole number as a Lua integer where the Lua has
-- them.
function record.number(v)
  v = tonumber(v)
  if not v or v ~= v or v == huge or v == -huge then return nil end
  if math.tointeger then return math.tointeger(v) or v end
  return v
end

local function error_of(t)
  local fields = {}
  for k, v in pairs(t) do if k ~= "kind" and k ~= "message" then fields[k] = v end end
  return Error.new(t.kind, t.message, fields)
end

-- JSON text for the reader: a body as it came, or a table encoded.
local function text_of(body)
  if type(body) == "string" then return body end
  return json.encode(body)
end

--- Read an answer that carries a task's record: a recordInfo answer or a
-- callback body (the JSON text, or a table decoded from it).
-- @param body string|table the envelope, or a bare record
-- @tparam[opt] table job the job it is about (its id and model fill in what the record lacks)
-- @treturn[1] table the result: `{ id, model, state = "success", urls, output, credits,
--   created_at, completed_at, updated_at, cost_time, progress, raw }`; times
--   in Unix seconds, `cost_time` in seconds
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "failed" (the job ran and failed: `code`,
--   `message`, `task_id`, `server_state`, `retryable`, `record`), or "protocol"
--   (not the contract, or a task not yet ended: then `err.server_state` says its state)
function record.read(body, job)
  local text = text_of(body)
  if not text then return nil, Error.new("protocol", "the body is not a JSON object") end
  local res, err = core.read_record(text, job and job.id, job and job.model)
  if res then return res end
  return nil, error_of(err)
end

--- The fields of a record, whatever its state, in the shape of a result
-- (`state` says where the task is): a running task's times, a record
-- kept in a journal.
-- @tparam table rec the record (recordInfo's `data`)
-- @tparam[opt] table job the job (for id and model when the record lacks them)
-- @treturn table
function record.result(rec, job)
  local text = json.encode({ data = rec })
  local res = text and core.read_record(text, job and job.id, job and job.model, true)
  return res or { id = job and job.id, model = job and job.model, urls = {}, raw = rec }
end

--- The error of a job that ran and failed: kind "failed", `code` from
-- failCode (a number when numeric), message from failMsg. Credits are charged
-- only on success, so such a job may be retried (`retryable = true`).
-- @tparam table rec a failed record
-- @tparam[opt] table job
-- @treturn modkie.Error
function record.failure(rec, job)
  local _, err = record.read({ data = rec }, job)
  if err and err.kind == "failed" then return err end
  return Error.new("failed", "the job failed", { task_id = job and job.id, retryable = true, record = rec })
end

return record

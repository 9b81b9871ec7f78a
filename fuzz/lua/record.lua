--- Fuzz harness: the record reader (C, src/lib/record.c) on arbitrary
-- bytes as a body (record.read: a recordInfo answer or a callback), and
-- record.result and record.failure on arbitrary decoded JSON, both as the
-- record itself (decoded with cjson.safe, depth 64) and as a Kie-style
-- `resultJson` string.
-- Properties (issue 5: every body is untrusted, wrong types give a sane
-- value, never a Lua error):
--  * nothing raises;
--  * a body reads as a result (state "success") or an error of kind "failed"
--    or "protocol", never anything else;
--  * result: `state` nil or a job state, `urls` a list of non-empty strings,
--    `credits`, `created_at`, `completed_at`, `cost_time` each nil or a finite
--    number (not NaN, not infinite), `id` and `model` nil or strings, `raw` a table;
--  * failure: a modkie.Error of kind "failed", retryable, message a string,
--    `code` nil, a finite number or a string, `task_id` nil or a string;
--  * read of a decoded table: a result as above, or an error of kind "failed"
--    or "protocol"; `progress` nil or within 0-100.
local record = require "modkie.record"
local Error = require "modkie.error"
local cjson = require("cjson.safe").new()
local F = require "fuzzutil"
local check, show = F.check, F.show

cjson.decode_max_depth(64)

local JOB = { id = "task_job", model = "kling/kling-3-0" }

local function finite(v)
  return type(v) == "number" and v == v and v > -math.huge and v < math.huge
end

local function number_or_nil(v, what)
  check(v == nil or finite(v), "%s is %s", what, show(v))
end

local function string_or_nil(v, what)
  check(v == nil or type(v) == "string", "%s is %s", what, show(v))
end

local STATES = { queued = true, running = true, success = true, failed = true }

local function check_result(res)
  check(type(res) == "table" and (res.state == nil or STATES[res.state]), "result %s", show(res))
  check(type(res.urls) == "table", "urls is %s", show(res.urls))
  local n = 0
  for k, u in pairs(res.urls) do
    n = n + 1
    check(math.type(k) == "integer" and type(u) == "string" and u ~= "", "urls[%s] = %s", show(k), show(u))
  end
  check(n == #res.urls, "urls has holes")
  number_or_nil(res.credits, "credits")
  number_or_nil(res.created_at, "created_at")
  number_or_nil(res.completed_at, "completed_at")
  number_or_nil(res.cost_time, "cost_time")
  number_or_nil(res.updated_at, "updated_at")
  check(res.progress == nil or (finite(res.progress) and res.progress >= 0 and res.progress <= 100),
    "progress is %s", show(res.progress))
  string_or_nil(res.id, "id")
  string_or_nil(res.model, "model")
  check(res.raw == nil or type(res.raw) == "table", "raw is %s", show(res.raw))
end

local function check_record(rec, job)
  check_result(record.result(rec, job))

  local err = record.failure(rec, job)
  F.check_error(err, "failed", "failure")
  check(Error.is(err) and err.retryable == true, "failure not retryable")
  check(err.code == nil or finite(err.code) or type(err.code) == "string", "code is %s", show(err.code))
  string_or_nil(err.task_id, "task_id")
end

return function(data)
  local res, rerr = record.read(data, JOB)
  if res then
    check(res.state == "success", "a body read as %s", show(res.state))
    check_result(res)
  else
    check(rerr.kind == "failed" or rerr.kind == "protocol", "a body read as an error of kind %s", show(rerr.kind))
    F.check_error(rerr, rerr.kind, "read")
  end
  local value = cjson.decode(data)
  if type(value) == "table" then
    check_record(value, JOB)
    check_record(value, nil)
    for _, job in ipairs({ JOB, false }) do
      local r, err = record.read(value, job or nil)
      if r then
        check(r.state == "success" and type(r.urls) == "table" and type(r.id) == "string", "read %s", show(r))
      else
        check(Error.is(err) and (err.kind == "failed" or err.kind == "protocol"), "read error %s", show(err))
      end
    end
  end
  check_record({ taskId = "task_1", state = "success", resultJson = data }, JOB)
end

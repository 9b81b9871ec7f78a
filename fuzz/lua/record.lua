--- Fuzz harness: record.result and record.failure on arbitrary decoded JSON,
-- both as the record itself (decoded as client.lua's engine decodes bodies:
-- cjson.safe, depth 64) and as a Kie-style `resultJson` string; record.read
-- (the one reader of polls and callbacks) on it as a whole answer, with and
-- without a job.
-- Properties (issue 5: every body is untrusted, wrong types give a sane
-- value, never a Lua error):
--  * nothing raises;
--  * result: state "success", `urls` a list of non-empty strings, `credits`,
--    `created_at`, `completed_at`, `cost_time` each nil or a finite number
--    (not NaN, not infinite), `id` and `model` nil or strings, `raw` the record;
--  * failure: a modkie.Error of kind "failed", retryable, message a string,
--    `code` nil, a finite number or a string, `task_id` nil or a string;
--  * read: a result as above, or an error of kind "failed" or "protocol";
--    `progress` nil or within 0-100.
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

local function check_record(rec, job)
  local res = record.result(rec, job)
  check(type(res) == "table" and res.state == "success", "result %s", show(res))
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
  check(res.raw == rec, "raw is not the record")

  local err = record.failure(rec, job)
  F.check_error(err, "failed", "failure")
  check(Error.is(err) and err.retryable == true, "failure not retryable")
  check(err.code == nil or finite(err.code) or type(err.code) == "string", "code is %s", show(err.code))
  string_or_nil(err.task_id, "task_id")
end

return function(data)
  local value = cjson.decode(data)
  if type(value) == "table" then
    check_record(value, JOB)
    check_record(value, nil)
    for _, job in ipairs({ JOB, false }) do
      local res, err = record.read(value, job or nil)
      if res then
        check(res.state == "success" and type(res.urls) == "table" and type(res.id) == "string", "read %s", show(res))
      else
        check(Error.is(err) and (err.kind == "failed" or err.kind == "protocol"), "read error %s", show(err))
      end
    end
  end
  check_record({ taskId = "task_1", state = "success", resultJson = data }, JOB)
end

--- Turn a recordInfo record, in either dialect, into modkie's one result shape.
--
-- Kie sends `resultJson` as a JSON string and states waiting/queuing/generating;
-- ModKie sends an object and pending/processing. `failCode` may be a string,
-- an integer, "" or null. Times arrive in Unix milliseconds.
-- @module modkie.record

local cjson = require "cjson.safe"
local Error = require "modkie.error"

local record = {}

local json = cjson.new()
json.decode_max_depth(64)
local null = cjson.null
local huge = math.huge

-- A finite number from a number or a numeric string, else nil. lua-cjson
-- reads `nan`, `NaN`, `inf`, `-Infinity` and `1e999`: such a value counts as
-- absent, so that no credit total or time comparison meets it (fuzz finding
-- record/nan-numbers).
local function finite(v)
  v = tonumber(v)
  if not v or v ~= v or v == huge or v == -huge then return nil end
  return v
end

--- A number from a number or a numeric string, nil for anything else and
-- for NaN and infinities; a whole number as a Lua integer where the Lua has
-- them (cjson decodes every number as a float).
function record.number(v)
  v = finite(v)
  if v and math.tointeger then return math.tointeger(v) or v end
  return v
end

local function present(v)
  if v == nil or v == null or v == "" then return nil end
  return v
end

--- Unix seconds from a number that may be milliseconds.
local function seconds(v)
  v = finite(present(v))
  if not v then return nil end
  if v > 1e11 then return v / 1000 end -- after 1973 in ms, or year 5138 in s
  return v
end

--- The decoded `resultJson`: a table, a string that was not JSON, or nil.
function record.output(rec)
  local raw = present(rec.resultJson)
  if type(raw) == "string" then
    local decoded = json.decode(raw)
    if decoded ~= nil and decoded ~= null then return decoded end
    return raw
  end
  if type(raw) == "table" then return raw end
  return nil
end

local URL_KEYS = { "resultUrls", "result_urls", "urls" }

--- Every result URL the record names, in order.
function record.urls(rec, output)
  local urls = {}
  local function take(list)
    if type(list) == "string" then list = { list } end
    if type(list) ~= "table" then return end
    for _, u in ipairs(list) do
      if type(u) == "string" and u ~= "" then urls[#urls + 1] = u end
    end
  end
  for _, where in ipairs({ type(output) == "table" and output or {}, rec }) do
    for _, k in ipairs(URL_KEYS) do take(where[k]) end
    if #urls > 0 then break end
  end
  return urls
end

--- The result of a successful job.
-- @tparam table rec the record (recordInfo's `data`)
-- @tparam[opt] table job the job (for id and model when the record lacks them)
-- @treturn table `{ id, model, state = "success", urls, output, credits,
--   created_at, completed_at, cost_time, raw }`; times in Unix seconds,
--   `cost_time` in seconds
function record.result(rec, job)
  local output = record.output(rec)
  local cost = finite(present(rec.costTime))
  local id, model = present(rec.taskId), present(rec.model)
  return {
    id = type(id) == "string" and id or (job and job.id),
    model = type(model) == "string" and model or (job and job.model),
    state = "success",
    urls = record.urls(rec, output),
    output = output,
    -- the first of the three that is a number (NaN and infinities are none)
    credits = record.number(rec.creditsConsumed) or record.number(rec.creditsCharged) or record.number(rec.credits),
    created_at = seconds(rec.createTime),
    completed_at = seconds(rec.completeTime),
    cost_time = cost and cost / 1000 or nil,
    raw = rec,
  }
end

--- The error of a job that ran and failed: kind "failed", `code` from
-- failCode (a number when numeric), message from failMsg. Credits are charged
-- only on success, so such a job may be retried (`retryable = true`).
function record.failure(rec, job)
  -- a number (none for NaN and infinities), a numeric string as its number,
  -- any other string as it is
  local code = present(rec.failCode)
  code = record.number(code) or (type(code) == "string" and code or nil)
  local msg = present(rec.failMsg)
  if type(msg) ~= "string" then msg = nil end
  local id = present(rec.taskId) or (job and job.id)
  return Error.new("failed", msg or "the job failed", {
    code = code, task_id = type(id) == "string" and id or nil, retryable = true, record = rec,
  })
end

return record

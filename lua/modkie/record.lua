--- Read the gateway's answers about a task: the one reader behind both
-- `job:await()` (recordInfo answers) and `modkie.webhook.parse` (callbacks),
-- so the same body reads the same way on both paths.
--
-- What it accepts, as the gateway's documentation shows them (see
-- docs/webhooks.md and spec/conformance/):
--   * the envelope `{code, msg | message, data = record}`, or a bare record
--     (ModKie's `task.completed` webhook);
--   * Kie's states waiting/queuing/generating/success/fail and ModKie's
--     pending/processing; `resultJson` a JSON string or an object (ModKie's
--     webhook calls it `result`); `resultUrls` a list, one URL, or a list
--     written as a string; `resultWaterMarkUrls` are not outputs;
--   * `failCode` a string ("500", "GENERATION_FAILED"), an integer, "" or null;
--     a fail record inside a `code: 501` envelope keeps its own failCode/failMsg;
--   * credits as creditsConsumed, consumeCredits or creditsCharged, fractional;
--   * times in Unix milliseconds (or seconds); `costTime` in seconds or in
--     milliseconds, decided from the record itself (see `cost_seconds`);
--   * `progress` 0-100 and `updateTime` where the gateway gives them;
--   * the per-model callbacks of Kie's older APIs (Veo, Runway, Suno, 4o
--     Image, Flux Kontext): no `state`, the envelope's code says how it ended.
-- @module modkie.record

local core = require "modkie.core"
local Error = require "modkie.error"
local json = require "modkie.json"

local record = {}

local null = json.null
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

--- Unix seconds from a time that may be in milliseconds (nil when it is no number).
function record.seconds(v)
  v = finite(present(v))
  if not v then return nil end
  if v > 1e11 then return v / 1000 end -- after 1973 in ms, or year 5138 in s
  return v
end

--- `costTime` in seconds. The API reference says milliseconds (its example:
-- 15000 for a 32 s task), every callback example gives seconds (8 for a task
-- whose completeTime - createTime is 10 s). With both times there, the unit
-- is the one whose reading is nearer that span, on a log scale: seconds
-- unless that is more than sqrt(1000) (about 31.6) times the span. Without
-- them, 1000 or more is milliseconds (no documented job takes 16 minutes,
-- none takes under a second).
-- @param cost the record's costTime
-- @tparam[opt] number created Unix seconds
-- @tparam[opt] number completed Unix seconds
-- @treturn number|nil seconds
function record.cost_seconds(cost, created, completed)
  cost = finite(present(cost))
  if not cost or cost < 0 then return nil end
  if created and completed and completed >= created then
    if cost <= math.sqrt(1000) * (completed - created) then return cost end
    return cost / 1000
  end
  if cost >= 1000 then return cost / 1000 end
  return cost
end

-- A list written as a string: '["a","b"]' (JSON), '[a, b]' (unquoted, as
-- one Veo callback example has it), or one URL.
local function string_list(s)
  if not s:find("^%s*%[") then return { s } end
  local decoded = json.decode(s)
  if type(decoded) == "table" then return decoded end
  local list = {}
  for item in s:match("^%s*%[(.-)%]%s*$"):gmatch("[^,]+") do
    list[#list + 1] = (item:gsub("^[%s\"']+", ""):gsub("[%s\"']+$", ""))
  end
  return list
end

--- The decoded result: `resultJson` (a JSON string or an object), else
-- ModKie's webhook `result`; a string that is not JSON as it is; nil.
function record.output(rec)
  local raw = present(rec.resultJson)
  if raw == nil then raw = present(rec.result) end
  if type(raw) == "string" then
    local decoded = json.decode(raw)
    if decoded ~= nil and decoded ~= null then return decoded end
    return raw
  end
  if type(raw) == "table" then return raw end
  return nil
end

-- Where outputs are named, in order; the first place that names any wins.
-- resultWaterMarkUrls (the same outputs, watermarked) and originUrls are not
-- outputs: the clean ones are.
local URL_KEYS = { "resultUrls", "result_urls", "urls", "resultImageUrl", "video_url", "audio_url" }

--- Every result URL the record names, in order.
function record.urls(rec, output)
  local urls = {}
  local function take(list)
    if type(list) == "string" then list = string_list(list) end
    if type(list) ~= "table" then return end
    for _, u in ipairs(list) do
      if type(u) == "string" and u ~= "" then urls[#urls + 1] = u end
    end
  end
  -- groups of places: the first group that names any URL is the answer
  local groups = { { type(output) == "table" and output or {} }, { rec } }
  for _, k in ipairs({ "info", "response" }) do -- Veo, 4o Image, Flux Kontext callbacks
    if type(rec[k]) == "table" then groups[#groups + 1] = { rec[k] } end
  end
  if type(rec.data) == "table" then -- Suno: one entry per song
    local songs = {}
    for _, item in ipairs(rec.data) do
      if type(item) == "table" then songs[#songs + 1] = item end
    end
    groups[#groups + 1] = songs
  end
  for _, group in ipairs(groups) do
    for _, where in ipairs(group) do
      for _, k in ipairs(URL_KEYS) do take(where[k]) end
    end
    if #urls > 0 then break end
  end
  return urls
end

--- The task's progress, 0 to 100, where the gateway gives it.
function record.progress(rec)
  local p = finite(rec.progress)
  if p and p >= 0 and p <= 100 then return record.number(p) end
  return nil
end

local function task_id(rec, job)
  local id = present(rec.taskId)
  if id == nil then id = present(rec.task_id) end
  if type(id) == "string" then return id end
  return job and job.id
end

--- The result of a successful job.
-- @tparam table rec the record (recordInfo's `data`)
-- @tparam[opt] table job the job (for id and model when the record lacks them)
-- @treturn table `{ id, model, state = "success", urls, output, credits,
--   created_at, completed_at, updated_at, cost_time, progress, raw }`; times
--   in Unix seconds, `cost_time` in seconds
function record.result(rec, job)
  local output = record.output(rec)
  local model = present(rec.model)
  local created, completed = record.seconds(rec.createTime), record.seconds(rec.completeTime)
  return {
    id = task_id(rec, job),
    model = type(model) == "string" and model or (job and job.model),
    state = "success",
    urls = record.urls(rec, output),
    output = output,
    -- the first that is a number (NaN and infinities are none)
    credits = record.number(rec.creditsConsumed) or record.number(rec.consumeCredits)
      or record.number(rec.creditsCharged) or record.number(rec.credits),
    created_at = created,
    completed_at = completed,
    updated_at = record.seconds(rec.updateTime),
    cost_time = record.cost_seconds(rec.costTime, created, completed),
    progress = record.progress(rec),
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
  return Error.new("failed", msg or "the job failed", {
    code = code, task_id = task_id(rec, job), retryable = true, record = rec,
  })
end

-- ---------------------------------------------------------------- the reader

local function broken(message, fields)
  return nil, Error.new("protocol", message, fields)
end

--- Read an answer that carries a task's record: a recordInfo answer or a
-- callback body, already decoded. The one reading for polls and callbacks.
-- @tparam table doc the decoded body: the envelope, or a bare record
-- @tparam[opt] table job the job it is about (its id and model fill in what the record lacks)
-- @treturn[1] table the result (see `record.result`)
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "failed" (the job ran and failed: `code`,
--   `message`, `task_id`, `server_state`, `retryable`), or "protocol" (not
--   the contract, or a task not yet ended: then `err.server_state` says its state)
function record.read(doc, job)
  local code = present(doc.code)
  if code ~= nil then
    code = record.number(code)
    if type(code) ~= "number" then return broken("code is not a number") end
  end
  local msg = present(doc.msg) or present(doc.message)
  if type(msg) ~= "string" then msg = nil end
  local rec
  if type(doc.data) == "table" and (next(doc.data) == nil or doc.data[1] == nil) then
    rec = doc.data
  elseif present(doc.data) == nil and (doc.state ~= nil or doc.taskId ~= nil or doc.task_id ~= nil) then
    rec = doc -- a bare record: ModKie's task.completed webhook
  else
    return broken("the body has no record (data)" .. (msg and ": " .. msg or ""), { code = code })
  end
  local id = present(rec.taskId)
  if id == nil then id = present(rec.task_id) end
  if type(id) ~= "string" and job and job.id then id = job.id end -- polled: the job knows its id
  if type(id) ~= "string" or id == "" then
    return broken("the record has no usable task id (taskId is "
      .. (id == nil and "missing" or "not a non-empty string") .. ")", { code = code })
  end
  job = { id = id, model = job and job.model }
  local state = rec.state
  if state == nil and code ~= nil and (code ~= 200 or rec.info or rec.callbackType or rec.video_url) then
    -- Kie's per-model callbacks (Veo, 4o Image, Flux Kontext: `info`; Suno:
    -- `callbackType`; Runway: `video_url`) carry no state: the code says how
    -- it ended, except for Suno's early ones (callbackType "text", "first")
    local step = rec.callbackType
    if type(step) == "string" and step ~= "complete" and step ~= "error" then
      return broken(("task %s has not ended (callbackType %s): a final callback follows"):format(id, step),
        { task_id = id, server_state = step, code = code })
    end
    state = code == 200 and "success" or "fail"
  end
  if type(state) ~= "string" then
    return broken("the record's state is not a string", { task_id = id, code = code })
  end
  -- the C core's words for a state, the ones the engine judges polls by
  local ended = core.classify_state(state)
  if ended == "success" then
    if code and code ~= 200 then
      return broken(("code %s contradicts state %s"):format(tostring(code), state), { task_id = id, code = code })
    end
    return record.result(rec, job)
  elseif ended == "failed" then
    local err = record.failure(rec, job)
    err.server_state = state
    if err.code == nil and code and code ~= 200 then err.code = code end
    if type(present(rec.failMsg)) ~= "string" and msg and code and code ~= 200 then err.message = msg end
    return nil, err
  end
  return broken(("task %s has not ended (state %s)"):format(id, state), { task_id = id, server_state = state })
end

return record

--- The emulated gateway: the API behind the HTTP server. It keeps tasks,
-- their timelines, credits and counters, and answers in one of two dialects:
--   kie     envelope {"code","msg","data"}; errors as HTTP 200 + code in body;
--           resultJson and param as JSON strings; failCode a string.
--   modkie  envelope {"code","message","data"}; errors as HTTP status = code;
--           resultJson and param as objects; failCode an integer or null.
-- Every request goes through Gateway:handle, which picks the endpoint and is
-- the single place where an answer is decided (see `intercept`).
-- Choices where the contract is silent:
--   * every API error follows the dialect rule, 429 included: kie answers
--     HTTP 200 + {"code":429} and still sets Retry-After; modkie answers 429.
--   * /files and /__mock answer with real HTTP statuses in both dialects,
--     and so does a Lua error (HTTP 500, dialect-shaped body).
--   * credits are charged at the instant a job ends (see ledger.lua), and a
--     record shows creditsConsumed/creditsCharged only once the job ended.
--   * a prompt with a bad [fault=…] directive is refused with 422 naming it.
--   * callbacks (createTask's callBackUrl) go out when the task ends, in the
--     dialect's body and signature (see modkie.mock.callbacks).
--   * `--record-delay S`: recordInfo answers {"code":422,"msg":"recordInfo is
--     null"} for S seconds after createTask, as the gateway does while a new
--     record is not visible yet.
--   * `--models`: models nobody registered are refused with 422 (the
--     gateway's exact answer for them is undocumented).
--   * the file upload API (modkie.mock.uploads): what was uploaded is served
--     until it expires, and a createTask naming an expired upload gets 422.
local socket = require "socket"
local json = require "modkie.json"
local directives = require "modkie.mock.directives"
local files = require "modkie.mock.files"
local media = require "modkie.mock.media"
local Ledger = require "modkie.mock.ledger"
local Uploads = require "modkie.mock.uploads"
local Callbacks = require "modkie.mock.callbacks"
local RateLimit = require "modkie.mock.ratelimit"

local floor = math.floor
local null = json.null

local Gateway = {}
Gateway.__index = Gateway

Gateway.DIALECTS = {
  kie = { msg_key = "msg", http_errors = false, credits_key = "creditsConsumed",
    states = { { 0.1, "waiting" }, { 0.3, "queuing" }, { 1, "generating" } } },
  modkie = { msg_key = "message", http_errors = true, credits_key = "creditsCharged",
    states = { { 0.2, "pending" }, { 1, "processing" } } },
}

local DEFAULT_PRICE = 10
local FAIL_CODE, FAIL_MSG = 501, "generation failed"
-- [fail=CODE]: the failures the documentation shows, failCode -> failMsg
local FAIL_MESSAGES = { ["500"] = "Internal server error", GENERATION_FAILED = "The generation task failed." }
local DOWNLOAD_TTL = 20 * 60
local POLL_LOG_MAX = 100000 -- recordInfo requests /__mock/polls lists, at most
-- Stands for the raw create body in a modkie record until it is encoded.
local PARAM_MARKER = "\0modkie-mock:param\0"
local PARAM_MARKER_ENCODED = json.encode(PARAM_MARKER)

--- Per-model rules: price per successful job, and input validation that
-- returns the message for the first bad field (nil when the input is fine).
local function one_of(list)
  local set = {}
  for _, v in ipairs(list) do set[v] = true end
  return set, table.concat(list, ", ")
end
local ASPECTS, ASPECTS_TEXT = one_of { "16:9", "9:16", "4:3", "1:1", "3:4", "21:9" }
local RESOLUTIONS, RESOLUTIONS_TEXT = one_of { "480p", "720p" }

Gateway.MODELS = {
  ["kling/kling-3-0"] = {
    price = 35,
    validate = function(input)
      local p = input.prompt
      if type(p) ~= "string" or p:match("^%s*$") then
        return "input.prompt is required and must be a non-empty string"
      end
      local v = input.aspect_ratio
      if v ~= nil and not ASPECTS[v] then
        return "input.aspect_ratio must be one of " .. ASPECTS_TEXT
      end
      v = input.resolution
      if v ~= nil and not RESOLUTIONS[v] then
        return "input.resolution must be one of " .. RESOLUTIONS_TEXT
      end
      if input.duration ~= nil and type(input.duration) ~= "number" then
        return "input.duration must be a number"
      end
      if input.generate_audio ~= nil and type(input.generate_audio) ~= "boolean" then
        return "input.generate_audio must be a boolean"
      end
    end,
  },
}

local CONTROL_COUNTERS = {
  "creates", "create_requests", "polls", "credit_requests", "download_url_requests",
  "files", "files_with_auth", "expect_headers", "rate_limited", "requests",
}

-- Default rate limits: {requests, per seconds} (the gateway's documented limits).
Gateway.DEFAULT_LIMITS = { create = { 20, 10 }, poll = { 10, 1 } }

-- Models whose records carry `progress` (the reference: Sora 2 models).
local function has_progress(model)
  return type(model) == "string" and model:find("^sora%-2") ~= nil
end

--- opts: dialect, job_seconds, api_key, credits, files_base, media (real clips and images), limits (true for
-- the defaults, or { create = {n, s}, poll = {n, s} }, a missing one keeps its
-- default), now (clock function, default socket.gettime), intercept (see
-- Gateway:answer; e.g. a modkie.mock.faults plan's), faults (that plan: its
-- counters show in stats and it is reset with the gateway), webhook_secret,
-- callback_retries, callback_backoff (see modkie.mock.callbacks), record_delay
-- (seconds), models (true: refuse models modkie does not register; a list:
-- and these are known too), prices ({ [model] = credits }, fractional allowed).
function Gateway.new(opts)
  local self = setmetatable({}, Gateway)
  self.dialect_name = opts.dialect or "kie"
  self.dialect = assert(Gateway.DIALECTS[self.dialect_name], "unknown dialect")
  self.job_seconds = opts.job_seconds or 8
  self.api_key = opts.api_key
  self.start_credits = opts.credits or 10000
  self.files_base = opts.files_base
  self.media = opts.media
  self.own_base = opts.own_base
  self.clock = opts.now or socket.gettime
  self.ledger = Ledger.new(self.start_credits)
  self.record_delay = opts.record_delay or 0
  self.prices = opts.prices or {}
  self.uploads = Uploads.new(self, { ttl = opts.upload_ttl, max_bytes = opts.max_upload })
  if opts.models then
    self.known = {}
    for _, id in ipairs(require("modkie.models").list()) do self.known[id] = true end
    for id in pairs(Gateway.MODELS) do self.known[id] = true end
    for _, id in ipairs(type(opts.models) == "table" and opts.models or {}) do self.known[id] = true end
  end
  self.callbacks = Callbacks.new {
    secret = opts.webhook_secret, retries = opts.callback_retries, backoff = opts.callback_backoff,
    now = self.clock, log = opts.log,
    body = function(task, now) return self:callback_body(task, now) end,
    sign = function(body, task, secret, now) return self:sign_callback(body, task, secret, now) end,
  }
  if opts.limits then
    local l = type(opts.limits) == "table" and opts.limits or {}
    local create = l.create or Gateway.DEFAULT_LIMITS.create
    local poll = l.poll or Gateway.DEFAULT_LIMITS.poll
    self.limits = { create = RateLimit.new(create[1], create[2]), record = RateLimit.new(poll[1], poll[2]) }
  end
  -- Connection counters owned by the HTTP server (a table it updates).
  self.net = opts.net or {}
  -- Fault injection: function(endpoint, ctx, gateway, proceed) -> response or nil.
  self.intercept = opts.intercept
  self.faults = opts.faults
  -- Persistence (modkie.mock.state), set by whoever opens it: told of every
  -- change so tasks and balances survive a restart.
  self.journal = nil
  self.seq = 0
  -- Prefix of task ids: differs between runs, so ids never repeat.
  self.id_prefix = string.format("task_%x", floor(socket.gettime() * 1000) % 0x10000000000)
  self:reset()
  return self
end

--- Forget tasks and counters; balances back to the start.
function Gateway:reset()
  self.tasks, self.task_list = {}, {}
  self.poll_log = {} -- every recordInfo answered with a record, in order: { t, taskId }
  self.replays = {}
  self.submits_by_prompt = {}
  self.stats = {}
  for _, name in ipairs(CONTROL_COUNTERS) do self.stats[name] = 0 end
  self.ledger:reset()
  if self.limits then
    for _, l in pairs(self.limits) do l:reset() end
  end
  if self.faults then self.faults:reset() end
  if self.callbacks then self.callbacks:reset() end
  if self.uploads then self.uploads:reset() end
  if self.journal then self.journal:reset() end
end

--- Price of a successful job of `model` (--price, else the model's, else 10).
function Gateway:price(model)
  local rules = Gateway.MODELS[model]
  return self.prices[model] or rules and rules.price or DEFAULT_PRICE
end

--- Take in a task (new, or loaded from a state file): index it, count its
-- prompt, schedule its charge unless it was charged already.
function Gateway:add_task(task)
  self.tasks[task.id] = task
  self.task_list[#self.task_list + 1] = task
  if task.outcome == "success" and not task.charged then
    self.ledger:schedule(task.key, task.ends, self:price(task.model), task)
  end
  if task.callback then self.callbacks:schedule(task) end
  if type(task.prompt) == "string" then
    self.submits_by_prompt[task.prompt] = (self.submits_by_prompt[task.prompt] or 0) + 1
  end
end

---------------------------------------------------------------------------
-- Answers

local JSON_HEADERS = { ["Content-Type"] = "application/json" }

local function answer(status, body, headers)
  return { status = status, headers = headers or JSON_HEADERS, body = body }
end

--- A success envelope around `data`.
function Gateway:ok(data)
  return answer(200, json.encode { code = 200, [self.dialect.msg_key] = "success", data = data })
end

--- An error in the dialect's style; `headers` adds to Content-Type.
function Gateway:fail(code, message, headers)
  local h = JSON_HEADERS
  if headers then
    h = { ["Content-Type"] = "application/json" }
    for k, v in pairs(headers) do h[k] = v end
  end
  local body = json.encode { code = code, [self.dialect.msg_key] = message, data = null }
  return answer(self.dialect.http_errors and code or 200, body, h)
end

-- Errors outside the API envelope (files, control): always a real status.
function Gateway:http_error(status, message)
  return answer(status, json.encode { code = status, [self.dialect.msg_key] = message, data = null })
end

---------------------------------------------------------------------------
-- Helpers

local function url_decode(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function query_params(query)
  local params = {}
  for pair in (query or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k = url_decode(k)
    if params[k] == nil then params[k] = url_decode(v) end
  end
  return params
end

-- The API key of a request, or nil when it must be refused.
function Gateway:authorize(req)
  local h = req.headers.authorization
  if not h then return nil end
  local scheme, key = h:match("^(%S+)%s+(.-)%s*$")
  if not scheme or scheme:lower() ~= "bearer" or key == "" then return nil end
  if self.api_key and key ~= self.api_key then return nil end
  return key
end

-- The rate limit of `kind` for `ctx.key`: nil when admitted, else a 429.
function Gateway:limit(kind, ctx)
  if not self.limits then return nil end
  local ok, wait = self.limits[kind]:take(ctx.key, ctx.now)
  if ok then return nil end
  self.stats.rate_limited = self.stats.rate_limited + 1
  return self:fail(429, "rate limited", { ["Retry-After"] = string.format("%d", wait) })
end

--- Where a task is at `now`: state name, and whether it has ended.
function Gateway:state_of(task, now)
  if now >= task.ends then
    return task.outcome, true
  end
  local frac = (now - task.created) / task.duration
  local states = self.dialect.states
  for i = 1, #states do
    if frac < states[i][1] then return states[i][2], false end
  end
  return states[#states][2], false
end

function Gateway:result_urls(task)
  local base = self.files_base or self.own_base
  local urls = {}
  for n = 0, task.outputs - 1 do urls[#urls + 1] = files.url(base, task.id, n, task.ext) end
  return json.array(urls)
end

-- The task's progress at `now` (0-100), for the models that report one.
local function progress_of(self, task, now, state)
  if not (task.progress or has_progress(task.model)) or state == "fail" then return nil end
  if state == "success" then return 100 end
  local states = self.dialect.states
  local start = states[#states - 1][1] -- the last state (generating, processing) begins here
  local frac = ((now - task.created) / task.duration - start) / (1 - start)
  return math.max(0, math.min(99, floor(frac * 100)))
end

-- failCode and failMsg of a failed task in the dialect: [fail=CODE] picks a
-- documented shape ("500", "GENERATION_FAILED", "null"), else 501.
local function failure(self, task)
  local code = task.fail_code
  if code == "null" then return null, FAIL_MSG end
  local msg = code and FAIL_MESSAGES[code] or FAIL_MSG
  code = code or string.format("%d", FAIL_CODE)
  if self.dialect_name == "kie" then return code, msg end
  return tonumber(code) or code, msg -- modkie: an integer when numeric
end

--- The recordInfo record of `task` at `now`, in the dialect's shape.
function Gateway:record(task, now)
  local kie = self.dialect_name == "kie"
  local state, ended = self:state_of(task, now)
  local rec = {
    taskId = task.id, model = task.model, state = state,
    -- modkie: the request object, spliced in verbatim by record_info.
    param = kie and task.raw or PARAM_MARKER,
    createTime = task.create_ms,
    updateTime = floor(math.min(now, task.ends) * 1000),
    progress = progress_of(self, task, now, state),
  }
  if not ended then
    if kie then
      rec.resultJson, rec.failCode, rec.failMsg = "", "", ""
    else
      rec.resultJson, rec.failCode, rec.failMsg = null, null, null
    end
    return rec
  end
  self.ledger:settle(task.key, now) -- sets task.charged if it succeeded
  rec.costTime = task.cost_ms
  rec.completeTime = task.create_ms + task.cost_ms
  rec.updateTime = rec.completeTime
  rec[self.dialect.credits_key] = task.charged or 0
  if state == "success" then
    if kie then
      rec.resultJson, rec.failCode, rec.failMsg = json.encode(self:result_of(task)), "", ""
    else
      rec.resultJson, rec.failCode, rec.failMsg = self:result_of(task), null, null
    end
  else
    -- kie: resultJson is only there on success (the reference); modkie: null
    rec.failCode, rec.failMsg = failure(self, task)
    if not kie then rec.resultJson = null end
  end
  return rec
end

--- What a successful task made: { resultUrls } or, for text, { resultObject }.
function Gateway:result_of(task)
  if task.text then return { resultObject = { text = task.text } } end
  return { resultUrls = self:result_urls(task) }
end

-- ISO 8601 UTC, as ModKie's webhook writes its timestamp.
local function iso8601(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", floor(t)) .. string.format(".%03dZ", floor((t % 1) * 1000))
end

--- The callback body of a task that has ended, in the dialect's shape (the
-- documented examples: Kie's market callbacks, ModKie's task.completed).
function Gateway:callback_body(task, now)
  local rec = self:record(task, now)
  local ok = rec.state == "success"
  if self.dialect_name ~= "kie" then
    return json.encode {
      event = "task.completed", taskId = task.id, state = rec.state, provider = "kie",
      capability = task.text and "text" or (files.content_type(task.ext):match("^image/") and "image" or "video"),
      model = task.model, result = ok and rec.resultJson or {}, failMsg = ok and null or rec.failMsg,
      creditsCharged = task.charged or 0, timestamp = iso8601(now),
    }
  end
  local data = {
    taskId = task.id, model = task.model, state = rec.state, param = task.raw,
    createTime = rec.createTime, completeTime = rec.completeTime, updateTime = rec.updateTime,
    -- the callback examples: consumeCredits, costTime in whole seconds, the balance left
    consumeCredits = task.charged or 0, costTime = ok and floor(task.duration + 0.5) or 0,
    remainedCredits = self.ledger:balance(task.key, now), progress = rec.progress,
  }
  if ok then
    data.resultJson = rec.resultJson
    return json.encode { code = 200, msg = "Playground task completed successfully.", data = data }
  end
  data.failCode, data.failMsg = rec.failCode, rec.failMsg
  return json.encode { code = 501, msg = "Playground task failed.", data = data }
end

--- The signature headers of a callback: the dialect's scheme (docs/webhooks.md).
function Gateway:sign_callback(body, _, secret, now)
  local webhook = require "modkie.webhook" -- HMAC in modkie's C core: needed only to sign
  return webhook.sign { scheme = self.dialect_name == "kie" and "kie" or "modkie", body = body, secret = secret,
    timestamp = floor(now) }
end

-- The task and output index a file URL or path points at, when that output
-- exists now; else nil.
function Gateway:file_of(path, now)
  local id, n, ext = files.parse_path(path)
  local task = id and self.tasks[id]
  if not task or task.text or n >= task.outputs or ext ~= task.ext then return nil end
  local state = self:state_of(task, now)
  if state ~= "success" then return nil end
  return task, n
end

---------------------------------------------------------------------------
-- Endpoints: each takes (gateway, ctx) with ctx = { req, now, key }.

local function decode_body(self, ctx)
  local body = json.strict_decode(ctx.req.body or "")
  if body == nil then return nil, self:fail(422, "request body is not valid JSON") end
  if not json.is_object(body) then return nil, self:fail(422, "request body must be a JSON object") end
  return body
end

--- The prompt of a createTask request and its directives (nil when the body
-- holds no prompt), read once per request.
function Gateway.create_directives(_, ctx)
  if ctx.directives == nil then
    ctx.directives = false
    local body = json.strict_decode(ctx.req.body or "")
    local prompt = json.is_object(body) and json.is_object(body.input) and body.input.prompt
    if type(prompt) == "string" then
      ctx.prompt = prompt
      ctx.directives, ctx.clean_prompt = directives.parse(prompt)
    end
  end
  return ctx.prompt, ctx.directives or nil
end

local function url_task_id(url)
  return type(url) == "string" and url:match("/files/([%w_%-]+)/%d+%.%w+") or nil
end

--- The task a poll, download-url or file request is about, or nil.
function Gateway:task_for(endpoint, ctx)
  local id
  if endpoint == "poll" then
    id = query_params(ctx.req.query).taskId
  elseif endpoint == "files" then
    id = files.parse_path(ctx.req.path)
  elseif endpoint == "download_url" then
    local body = json.strict_decode(ctx.req.body or "")
    id = json.is_object(body) and url_task_id(body.url)
  end
  return id and self.tasks[id] or nil
end

local function create(self, ctx)
  local limited = self:limit("create", ctx)
  if limited then return limited end
  local body, err = decode_body(self, ctx)
  if not body then return err end
  local model, input = body.model, body.input
  if type(model) ~= "string" or model == "" then
    return self:fail(422, "model is required and must be a non-empty string")
  end
  if not json.is_object(input) then
    return self:fail(422, "input is required and must be a JSON object")
  end
  local callback = body.callBackUrl
  if callback ~= nil and callback ~= null and type(callback) ~= "string" then
    return self:fail(422, "callBackUrl must be a string")
  end
  if callback == null or callback == "" then callback = nil end
  if self.known and not self.known[model] then
    return self:fail(422, "model '" .. model .. "' is not served by this gateway")
  end
  local rules = Gateway.MODELS[model]
  if rules and rules.validate then
    local problem = rules.validate(input)
    if problem then return self:fail(422, problem) end
  end
  -- a reference file it issued must still be there when the job runs
  local gone = self.uploads:check_input(input, ctx.now)
  if gone then return self:fail(422, gone) end
  local d, clean = directives.parse(input.prompt)
  if d.errors then return self:fail(422, "input.prompt: " .. table.concat(d.errors, "; ")) end
  local price = self:price(model)
  if self.ledger:balance(ctx.key, ctx.now) < price then
    return self:fail(402, "insufficient credits")
  end

  self.seq = self.seq + 1
  local id = string.format("%s_%d", self.id_prefix, self.seq)
  local duration = d.seconds or self.job_seconds
  local now = ctx.now
  -- Kept small on purpose: thousands of tasks live as long as the process,
  -- and every field is work for the garbage collector. The create request
  -- is kept as its raw text (it is what `param` echoes back).
  local task = {
    id = id, model = model, key = ctx.key, raw = ctx.req.body, prompt = input.prompt,
    created = now, duration = duration, ends = now + duration,
    create_ms = floor(now * 1000), cost_ms = floor(duration * 1000 + 0.5),
    outcome = d.fail and "fail" or "success",
    outputs = d.outputs or 1, ext = d.ext or "mp4", size = d.size or files.DEFAULT_SIZE,
    text = d.text and ("text result for: " .. tostring(clean)) or nil,
    polls = 0,
    -- only what a directive or an option changes: most tasks carry none of these
    callback = callback, callback_opts = d.callback,
    record_delay = d.record_delay or (self.record_delay > 0 and self.record_delay or nil),
    fail_code = d.fail_code, envelope = d.envelope, progress = d.progress,
  }
  -- Fault triggers for the task's later requests (create's are the plan's).
  if d.faults then
    for _, t in ipairs(d.faults) do
      if t.e ~= "create" then task.faults = { list = d.faults, seen = {} }; break end
    end
  end
  self:add_task(task)
  self.stats.creates = self.stats.creates + 1
  -- Written before the answer leaves: a task the client may know of is never lost.
  if self.journal then self.journal:task(task) end
  return self:ok { taskId = id }
end

local function record_info(self, ctx)
  local limited = self:limit("record", ctx)
  if limited then return limited end
  local id = query_params(ctx.req.query).taskId
  -- the documented answers (Get Task Details: 400, 404)
  if not id or id == "" then return self:fail(400, "taskId parameter is required") end
  local task = self.tasks[id]
  if not task then return self:fail(404, "Task not found") end
  task.polls = task.polls + 1
  if #self.poll_log < POLL_LOG_MAX then self.poll_log[#self.poll_log + 1] = { ctx.now, id } end
  if self.journal then self.journal:touch(task) end
  if task.record_delay and ctx.now < task.created + task.record_delay then
    -- the documented answer while a new record is not visible yet
    return self:fail(422, "recordInfo is null")
  end
  local rec = self:record(task, ctx.now)
  local res
  if task.envelope == 501 and rec.state == "fail" then -- [envelope=501]: the fail record as callbacks wrap it
    res = answer(self.dialect.http_errors and 501 or 200,
      json.encode { code = 501, [self.dialect.msg_key] = "Playground task failed.", data = rec })
  else
    res = self:ok(rec)
  end
  if self.dialect_name ~= "kie" then
    -- The body was checked to be a JSON object at create time: splice it in.
    local s, e = res.body:find(PARAM_MARKER_ENCODED, 1, true)
    if s then res.body = res.body:sub(1, s - 1) .. task.raw .. res.body:sub(e + 1) end
  end
  return res
end

local function credit(self, ctx)
  return self:ok(self.ledger:balance(ctx.key, ctx.now))
end

local function download_url(self, ctx)
  local body, err = decode_body(self, ctx)
  if not body then return err end
  local url = body.url
  if type(url) ~= "string" or url == "" then
    return self:fail(422, "url is required and must be a string")
  end
  local path
  for _, base in ipairs { self.files_base or "", self.own_base or "" } do
    if base ~= "" and url:sub(1, #base + 7) == base .. "/files/" then
      path = url:sub(#base + 1):gsub("[?#].*$", "")
      break
    end
  end
  if not (path and self:file_of(path, ctx.now)) then
    return self:fail(422, "url is not a file of this gateway")
  end
  local expires = floor(ctx.now) + DOWNLOAD_TTL
  -- A token that looks the part; /files does not check it.
  local h = 5381
  local signed = url .. "|" .. expires
  for i = 1, #signed do h = (h * 33 + signed:byte(i)) % 4294967296 end
  local sep = url:find("?", 1, true) and "&" or "?"
  return self:ok(string.format("%s%stoken=%08x&expires=%d", url, sep, h, expires))
end

-- With --media: a real clip or image for an mp4 or png output, sized by the
-- input's aspect_ratio (and, for a clip, its duration); nil for other kinds.
local function playable(task, n)
  if task.ext ~= "mp4" and task.ext ~= "png" then return nil end
  local body = json.strict_decode(task.raw or "")
  local input = type(body) == "table" and type(body.input) == "table" and body.input or {}
  local w, h = media.size(input.aspect_ratio)
  local seed = task.id .. ":" .. n
  if task.ext == "png" then return media.png(seed, w, h) end
  return media.mp4(seed, w, h, input.duration)
end

local function file(self, ctx)
  local req = ctx.req
  if req.headers.authorization then
    self.stats.files_with_auth = self.stats.files_with_auth + 1
  end
  local task, n = self:file_of(req.path, ctx.now)
  if not task then return self:http_error(404, "file not found") end
  local body = self.media and playable(task, n) or files.content(task.id, n, task.size)
  return answer(200, body, { ["Content-Type"] = files.content_type(task.ext) })
end

local function mock_stats(self)
  local out = {}
  for k, v in pairs(self.stats) do out[k] = v end
  for k, v in pairs(self.net) do out[k] = v end
  out.tasks = #self.task_list
  out.submits_by_prompt = self.submits_by_prompt
  out.callbacks = self.callbacks.stats
  for k, v in pairs(self.uploads.stats) do out[k] = v end
  out.dialect = self.dialect_name
  if self.faults then
    out.faults = self.faults:totals()
    out.fault_seed = self.faults.seed
  end
  return answer(200, json.encode(out))
end

local function mock_tasks(self, ctx)
  local list = {}
  for i, t in ipairs(self.task_list) do
    list[i] = {
      taskId = t.id, model = t.model, prompt = t.prompt == nil and null or t.prompt,
      created = t.create_ms, polls = t.polls, state = (self:state_of(t, ctx.now)),
    }
  end
  return answer(200, json.encode(json.array(list)))
end

-- What the rate limits saw (--limits): every arrival's time per key, admitted or refused.
local function mock_limits(self)
  if not self.limits then return answer(200, '{"enabled":false}') end
  local out = { enabled = true }
  for name, l in pairs(self.limits) do
    local r = l:report()
    local keys = {}
    for i, k in ipairs(r.keys) do keys[i] = { admitted = json.array(k.admitted), refused = json.array(k.refused) } end
    out[name] = { limit = r.limit, window = r.window, keys = json.array(keys) }
  end
  return answer(200, json.encode(out))
end

-- GET /__mock/polls: every recordInfo of a known task, in the order they
-- came, [{"t": seconds, "taskId": …}, …] (the first POLL_LOG_MAX): which job
-- a client chose to poll, and when.
local function mock_polls(self)
  local list = {}
  for i, p in ipairs(self.poll_log) do list[i] = { t = p[1], taskId = p[2] } end
  return answer(200, json.encode(json.array(list)))
end

-- POST /__mock/replay {"path": P, "taskId"?: ID, "answers": [{"status"?, "body", "headers"?}, …]}:
-- the next requests to path P (for recordInfo: of task ID) get these answers
-- verbatim, in order, the last one again and again: a test replays a
-- documented answer byte for byte, whatever the emulator would have said.
local function mock_replay(self, ctx)
  local body = json.strict_decode(ctx.req.body or "")
  local answers = json.is_object(body) and body.answers
  if type(body) ~= "table" or type(body.path) ~= "string" or type(answers) ~= "table" or #answers == 0 then
    return answer(400, '{"ok":false,"error":"send {path, taskId?, answers: [{status?, body, headers?}, ...]}"}')
  end
  local list = {}
  for i, a in ipairs(answers) do
    if type(a) ~= "table" or type(a.body) ~= "string" then
      return answer(400, '{"ok":false,"error":"answers[' .. i .. '].body must be a string"}')
    end
    local headers = { ["Content-Type"] = "application/json" }
    if type(a.headers) == "table" then headers = a.headers end
    list[i] = { status = tonumber(a.status) or 200, headers = headers, body = a.body }
  end
  local task = type(body.taskId) == "string" and body.taskId or ""
  self.replays[body.path .. "?" .. task] = { list = list, n = 0 }
  return answer(200, '{"ok":true}')
end

-- The replayed answer for this request, if a test asked for one.
function Gateway:replayed(req)
  if next(self.replays) == nil then return nil end
  local task = ""
  if req.path == "/api/v1/jobs/recordInfo" then task = query_params(req.query).taskId or "" end
  local r = self.replays[req.path .. "?" .. task]
  if not r then return nil end
  r.n = math.min(r.n + 1, #r.list)
  local a = r.list[r.n]
  return { status = a.status, headers = a.headers, body = a.body }
end

local function mock_uploads(self, ctx)
  return answer(200, json.encode(self.uploads:list(ctx.now)))
end

local function mock_uploads_expire(self, ctx)
  return answer(200, json.encode { ok = true, expired = self.uploads:expire_all(ctx.now) })
end

local function mock_reset(self)
  self:reset()
  if self.on_reset then self.on_reset() end
  return answer(200, '{"ok":true}')
end

local function mock_credits(self, ctx)
  local body = json.strict_decode(ctx.req.body or "")
  if not json.is_object(body) or type(body.key) ~= "string" or type(body.balance) ~= "number" then
    return answer(400, '{"ok":false,"error":"send {\\"key\\": string, \\"balance\\": number}"}')
  end
  self.ledger:set(body.key, body.balance, ctx.now)
  if self.journal then self.journal:credits(body.key, body.balance, ctx.now) end
  return answer(200, json.encode { ok = true, key = body.key, balance = body.balance })
end

-- Endpoint table: name (what a fault plan would name), method, whether it is
-- behind auth, the counter it bumps, and its handler.
local ROUTES = {
  ["/api/v1/jobs/createTask"] = { name = "create", method = "POST", api = true,
    counter = "create_requests", fn = create },
  ["/api/v1/jobs/recordInfo"] = { name = "record", method = "GET", api = true,
    counter = "polls", fn = record_info },
  ["/api/v1/chat/credit"] = { name = "credit", method = "GET", api = true,
    counter = "credit_requests", fn = credit },
  ["/api/v1/common/download-url"] = { name = "download_url", method = "POST", api = true,
    counter = "download_url_requests", fn = download_url },
  ["/__mock/stats"] = { name = "mock_stats", method = "GET", fn = mock_stats },
  ["/__mock/tasks"] = { name = "mock_tasks", method = "GET", fn = mock_tasks },
  ["/__mock/reset"] = { name = "mock_reset", method = "POST", fn = mock_reset },
  ["/__mock/limits"] = { name = "mock_limits", method = "GET", fn = mock_limits },
  ["/__mock/polls"] = { name = "mock_polls", method = "GET", fn = mock_polls },
  ["/__mock/credits"] = { name = "mock_credits", method = "POST", fn = mock_credits },
  ["/__mock/replay"] = { name = "mock_replay", method = "POST", fn = mock_replay },
  ["/__mock/uploads"] = { name = "mock_uploads", method = "GET", fn = mock_uploads },
  ["/__mock/uploads/expire"] = { name = "mock_uploads_expire", method = "POST", fn = mock_uploads_expire },
}
for path, route in pairs(Uploads.routes()) do ROUTES[path] = route end
local UPLOADED_ROUTE = { name = "uploaded_file", method = "GET", fn = function(self, ctx)
  return self.uploads:serve(ctx)
end }
local FILE_ROUTE = { name = "file", method = "GET", counter = "files", fn = file }
Gateway.ROUTES = ROUTES

--- Answer one parsed HTTP request (see modkie.mock.http for both shapes).
-- A Lua error becomes a 500 in the dialect's body shape, printed to stderr.
function Gateway:handle(req)
  local ok, res = xpcall(function() return self:answer(req) end, debug.traceback)
  if ok then return res end
  io.stderr:write("modkie mock: error answering ", tostring(req.method), " ",
    tostring(req.target), ": ", tostring(res), "\n")
  return self:http_error(500, "internal error")
end

function Gateway:answer(req)
  local stats = self.stats
  stats.requests = stats.requests + 1
  if self.journal then self.journal:touch() end
  if req.headers.expect then stats.expect_headers = stats.expect_headers + 1 end
  local path = req.path
  local route = ROUTES[path] or (path:sub(1, 7) == "/files/" and FILE_ROUTE)
    or (Uploads.is_file_path(path) and UPLOADED_ROUTE) or nil
  if route and route.counter then
    local counts = route.upload and self.uploads.stats or stats
    counts[route.counter] = counts[route.counter] + 1
  end
  local replay = self:replayed(req)
  if replay then return replay end
  local ctx = { req = req, now = self.clock(), route = route }
  local is_api = path:sub(1, 5) == "/api/"
  if is_api then
    ctx.key = self:authorize(req)
    if not ctx.key then
      if route and route.upload then return Uploads.unauthorized() end -- the upload API's own 401
      return self:fail(401, "You do not have access permissions")
    end
  end
  if not route then
    if is_api then return self:fail(404, "not found") end
    return self:http_error(404, "not found")
  end
  local method = req.method == "HEAD" and "GET" or req.method
  if method ~= route.method then
    local res = route.api and self:fail(405, "method not allowed")
      or self:http_error(405, "method not allowed")
    res.headers = { ["Content-Type"] = "application/json", Allow = route.method }
    return res
  end
  -- The one place an answer is decided per endpoint: a fault plan may
  -- answer instead (an error status, a dropped connection, a cut body…),
  -- before the endpoint runs or, through `proceed`, after it.
  if self.intercept then
    local res = self.intercept(route.name, ctx, self, function() return route.fn(self, ctx) end)
    if res then return res end
  end
  return route.fn(self, ctx)
end

return Gateway

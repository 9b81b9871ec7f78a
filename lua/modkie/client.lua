--- A client of the gateway: owns one C engine (one libcurl multi handle),
-- the jobs it runs, and its scheduler (`client.scheduler`, modkie.scheduler).
-- @classmod modkie.Client

local core = require "modkie.core"
local encoding = require "modkie.encoding"
local Error = require "modkie.error"
local file = require "modkie.file"
local inbox = require "modkie.inbox"
local Job = require "modkie.job"
local json = require "modkie.json"
local models = require "modkie.models"
local options = require "modkie.options"
local record = require "modkie.record"
local schedule = require "modkie.schedule"
local scheduler = require "modkie.scheduler"
local SharedDict = require "modkie.shared_dict"
local uploads = require "modkie.uploads"
local next = next

local Client = {}
Client.__index = Client
Client.__name = "modkie.Client"

local DEFAULT_BASE_URL = "https://modkie.com"
-- The largest file an upload sends unless max_upload says otherwise: the
-- docs recommend at most 100 MB for the URL upload and give the stream
-- upload no limit; a model field's `max_size` is checked too.
local DEFAULT_MAX_UPLOAD = 100 * 1024 * 1024

-- What a job asks of its client (modkie.Job's `port`): `cancel(client, job)`
-- stops it, `send(client, job)` lets its held createTask go.
local JOB_PORT = {}

-- option -> accepted Lua types
local OPTIONS = {
  api_key = { string = true }, base_url = { string = true },
  timeout = { number = true }, connect_timeout = { number = true },
  deadline = { number = true, boolean = true }, retries = { number = true },
  rate = { table = true, boolean = true },
  poll_interval = { number = true, ["function"] = true, string = true }, poll_history = { table = true },
  max_connections = { number = true }, wait = { ["function"] = true }, log = { ["function"] = true },
  user_agent = { string = true }, ca_file = { string = true },
  max_body = { number = true }, max_download = { number = true },
  allow_insecure = { boolean = true }, seed = { number = true }, record_grace = { number = true },
  upload_url = { string = true }, max_upload = { number = true },
  time_scale = { number = true }, webhook = { table = true }, callback_url = { string = true },
  listen = { string = true },
}
local SUBMIT_OPTIONS = { callback_url = { string = true, boolean = true }, deadline = { number = true, boolean = true },
  validate = { boolean = true }, meta = true, hold = { boolean = true } }
local GENERATE_OPTIONS = { timeout = { number = true }, download = { string = true } }
for k, v in pairs(SUBMIT_OPTIONS) do GENERATE_OPTIONS[k] = v end
GENERATE_OPTIONS.hold = nil -- generate sends at once
local NO_OPTIONS = {} -- submit without options (read, never written)
local JOB_OPTIONS = { deadline = { number = true, boolean = true }, meta = true, model = { string = true } }

-- Unknown option names and wrong types raise, naming the option.
local check_options = options.check

-- Numeric options: the range each accepts (NaN fails every one), for the error message.
local function above(min) return function(v) return v > min end end
local function within(min, max) return function(v) return v >= min and v <= max end end
local function whole_within(min, max) return function(v) return v >= min and v <= max and v == math.floor(v) end end
-- The ranges are the C core's (its casts to integers must stay defined): say
-- so here, naming the option, not from deep in core.new.
local NUMBER_RULES = {
  timeout = { within(0.001, 1e6), "a number of seconds from 0.001 to 1e6" },
  connect_timeout = { within(0.001, 1e6), "a number of seconds from 0.001 to 1e6" },
  max_connections = { whole_within(1, 10000), "a whole number from 1 to 10000" },
  max_body = { within(1, 1e12), "a number of bytes from 1 to 1e12" },
  max_download = { within(0, 1e15), "a number of bytes from 0 (no cap) to 1e15" },
  retries = { whole_within(0, 1000), "a whole number from 0 to 1000" },
  poll_interval = { within(0, 1e6), "a number of seconds from 0 to 1e6, or a function" },
  deadline = { above(0), "a number of seconds > 0, or false for none" },
  seed = { whole_within(0, 2 ^ 53), "a whole number from 0 to 2^53" },
  record_grace = { within(0, 1e6), "a number of seconds from 0 to 1e6" },
  max_upload = { within(1, 1e15), "a number of bytes from 1 to 1e15" },
  time_scale = { within(1e-6, 1e6), "a number from 1e-6 to 1e6" },
}

local function check_numbers(opts)
  for k, rule in pairs(NUMBER_RULES) do
    local v = opts[k]
    if (type(v) == "number" and not rule[1](v)) or v == true then
      error(("modkie.new: option '%s' must be %s, got %s"):format(k, rule[2], tostring(v)), 3)
    end
  end
end

local function check_rate_pair(name, pair)
  if pair == false then return false end
  if type(pair) ~= "table" or type(pair[1]) ~= "number" or type(pair[2]) ~= "number"
    or not whole_within(1, 1e6)(pair[1]) or not (pair[2] > 0 and pair[2] <= 1e6) then
    error(("modkie.new: option 'rate.%s' must be {requests, seconds} (a whole number from 1 to 1e6 and a number "
      .. "of seconds > 0 and <= 1e6) or false")
      :format(name), 4)
  end
  return pair
end

local RATE_KEYS = { submit = true, poll = true, shared = true, clients = true }

-- rate.shared: the store's spec for the C core ("file:…", "redis://…", or
-- "host" for a shared dict the Lua layer answers from), and the dict.
local function check_shared(v)
  if v == nil then return nil end
  if type(v) == "string" and v:find("%c") then -- C would end the path at a NUL: another file
    error("modkie.new: option 'rate.shared' must not contain control characters or NUL bytes", 4)
  end
  if type(v) == "string" and (v:match("^file:.") or v:match("^redis://.")) then return v end
  if SharedDict.is_dict(v) then return "host", v end
  -- never echo a string: a redis URL may hold a password
  error("modkie.new: option 'rate.shared' must be an OpenResty shared dict (ngx.shared.NAME), \"file:/path\" "
    .. "or \"redis://host:port/db\", got " .. (type(v) == "string" and "another string" or type(v)), 4)
end

local function rates(rate)
  if rate == false then return false, false end
  if rate == true or rate == nil then rate = {} end
  check_options("modkie.new", rate, RATE_KEYS, 3, "rate.") -- names here; the values below, each its own way
  local submit = rate.submit == nil and { 20, 10 } or check_rate_pair("submit", rate.submit)
  local poll = rate.poll == nil and { 10, 1 } or check_rate_pair("poll", rate.poll)
  local share, dict = check_shared(rate.shared)
  local clients = rate.clients
  if clients ~= nil and not (type(clients) == "number" and whole_within(1, 1e6)(clients)) then
    error("modkie.new: option 'rate.clients' must be a whole number from 1 to 1e6 (the clients sharing the account)",
      3)
  end
  return submit, poll, share, clients, dict
end

--- Check and normalise the base URL (or the upload URL, `name`): http(s),
-- no trailing slash; plain http only to this machine unless allow_insecure.
-- What counts as this machine is decided in C, by libcurl's own reading of
-- the URL (core.origin): localhost, a dotted quad in 127.0.0.0/8 with every
-- part <= 255, or [::1]. Any other host is a name a resolver (hosts file,
-- DNS) could point anywhere. Both carry the key.
-- `url` as an error may show it: everything from after the scheme to its
-- last "@" hidden, as a user:password may hold any character ("#", "?",
-- "@") and come with any other mistake (a mistyped scheme).
local function without_userinfo(url)
  local at = url:find("@[^@]*$")
  if not at then return url end
  local from = select(2, url:find("^%a[%w+.-]*:/*")) or 0
  return url:sub(1, from) .. "…" .. url:sub(at)
end

local function check_base_url(url, allow_insecure, name)
  name = name or "base_url"
  local shown = without_userinfo(url)
  local scheme = url:match("^(%a[%w+.-]*)://")
  scheme = scheme and scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then
    error("modkie.new: " .. name .. " must be an http:// or https:// URL, got '" .. shown .. "'", 3)
  end
  if url:find("[%s%c]") then error("modkie.new: " .. name .. " must not contain spaces or control characters", 3) end
  -- every call appends /api/v1/…: after a query or a fragment it would name
  -- no endpoint (every call 404s); a user:password would show in errors
  local authority = url:match("^%a[%w+.-]*://([^/?#]*)")
  if url:find("[?#]") or authority:find("@", 1, true) then
    error("modkie.new: " .. name .. " must be the gateway's root URL, without a query (?), a fragment (#) or "
      .. "user:password@ (the key goes in api_key), got '" .. shown .. "'", 3)
  end
  local origin = core.origin(url)
  if not origin then error("modkie.new: " .. name .. " '" .. shown .. "' is not a URL with a host", 3) end
  if scheme == "http" and not allow_insecure and not origin.loopback then
    error("modkie.new: " .. name .. " '" .. shown .. "' is plain http to another host: the API key would cross the "
      .. "network unencrypted; use https, or pass allow_insecure = true", 3)
  end
  url = url:gsub("/+$", "")
  -- the docs show endpoints as …/api/v1/jobs/createTask: a base URL copied
  -- with its /api/v1 would make every call 404; the base is the root
  local root = url:match("^(.-)/[Aa][Pp][Ii]/[Vv]1$") or url:match("^(.-)/[Aa][Pp][Ii]$")
  if root and root:match("^%a[%w+.-]*://[^/]+") then url = root:gsub("/+$", "") end
  return url
end

local function check_key(key)
  if key == nil or key == "" then return nil end
  if not key:match("^[\33-\126]+$") then
    -- never echo the key: it is a secret even when malformed
    error("modkie.new: the API key contains spaces or control characters (check MODKIE_API_KEY)", 3)
  end
  return key
end

--- Raise unless `url` is an http(s) URL: the gateway POSTs callbacks there.
local function check_callback_url(what, url, level)
  if not url:match("^[Hh][Tt][Tt][Pp][Ss]?://[^/%s%c]+") or url:find("[%s%c]") then
    error(what .. " must be an http:// or https:// URL with no spaces", level + 1)
  end
end

--- Make a client. See docs/design.md §3 for the options; every option is optional.
-- Unknown option names and wrong types raise an error naming the option.
-- @tparam[opt] table opts
-- @treturn modkie.Client
function Client.new(opts)
  Error.check(1, "modkie.new", opts, "?table")
  opts = opts or {}
  check_options("modkie.new", opts, OPTIONS)
  check_numbers(opts)

  if opts.user_agent and not opts.user_agent:match("^[\32-\126]+$") then
    error("modkie.new: option 'user_agent' must be printable ASCII (no line breaks), and not empty", 2)
  end
  if opts.ca_file == "" then error("modkie.new: option 'ca_file' must name a file", 2) end
  if type(opts.poll_interval) == "string" and opts.poll_interval ~= "learn" then
    error("modkie.new: option 'poll_interval' must be seconds, a function or \"learn\", got \""
      .. opts.poll_interval .. "\"", 2)
  end
  if opts.poll_history and opts.poll_interval ~= nil and opts.poll_interval ~= "learn" then
    error("modkie.new: option 'poll_history' goes with the default schedule or poll_interval = \"learn\"", 2)
  end
  if opts.callback_url then check_callback_url("modkie.new: option 'callback_url'", opts.callback_url, 2) end
  if opts.webhook then inbox.check(opts.webhook) end
  if opts.listen and not opts.webhook then
    error("modkie.new: option 'listen' needs webhook = { secret = … }: a callback is believed only once its "
      .. "signature is checked", 2)
  end
  local base_url = check_base_url(opts.base_url or os.getenv("MODKIE_BASE_URL") or DEFAULT_BASE_URL,
    opts.allow_insecure)
  -- uploads go to the gateway unless told otherwise (README, "Uploads": why)
  local upload_url = opts.upload_url or os.getenv("MODKIE_UPLOAD_URL")
  upload_url = upload_url and upload_url ~= "" and check_base_url(upload_url, opts.allow_insecure, "upload_url")
    or base_url
  local key = check_key(opts.api_key or os.getenv("MODKIE_API_KEY"))
  local key_problem -- say what is wrong with the key, not just that there is none
  if opts.api_key == "" then
    key_problem = "the API key is empty (api_key = \"\" was given to modkie.new)"
  elseif opts.api_key == nil and os.getenv("MODKIE_API_KEY") == "" then
    key_problem = "the API key is empty: MODKIE_API_KEY is set, but to nothing"
  end
  local submit_rate, poll_rate, share, clients, dict = rates(opts.rate)

  -- what is known of each model's durations: the engine ranks polls with
  -- it, "learn" reads it, poll_history() hands it on
  local durations = core.durations(opts.time_scale)
  for model, list in pairs(opts.poll_history or {}) do
    if type(model) == "string" and type(list) == "table" then
      for _, secs in ipairs(list) do
        if type(secs) == "number" then durations:add(model, secs) end
      end
    end
  end
  local self = setmetatable({
    base_url = base_url, upload_url = upload_url,
    callback_url = opts.callback_url,
    deadline = opts.deadline == nil and 900 or opts.deadline,
    _durations = durations,
    _has_key = key ~= nil, _key_problem = key_problem,
    _active = 0,     -- jobs not yet ended
    _uploading = {}, -- jobs whose files are being uploaded (no createTask yet)
    _max_upload = opts.max_upload or DEFAULT_MAX_UPLOAD,
    _log = opts.log,
    _dict = dict and SharedDict.new(dict), -- answers the engine's rate questions from a shared dict
  }, Client)
  -- A number of seconds, and the default schedule, the engine times in C: a
  -- poll that changes nothing never reaches Lua. A function (or "learn") is
  -- asked between steps: the engine's "interval" events, answered with
  -- engine:schedule (on.interval below).
  local interval = opts.poll_interval
  if interval == "learn" then
    local learner = schedule.learner(nil, opts.seed, durations)
    self._learner = learner
    self._interval = function(elapsed, polls, job, default)
      return learner:interval(elapsed, polls, job.model, default)
    end
    interval = "ask"
  elseif type(interval) == "function" then
    self._interval = interval
    interval = "ask"
  end
  -- The key goes to the C engine and nowhere else: no Lua table holds it.
  self._engine = core.new({
    base_url = base_url, upload_url = upload_url, api_key = key,
    timeout = opts.timeout, connect_timeout = opts.connect_timeout,
    retries = opts.retries, max_body = opts.max_body, max_download = opts.max_download,
    max_connections = opts.max_connections, submit_rate = submit_rate, poll_rate = poll_rate,
    poll_interval = interval, user_agent = opts.user_agent, ca_file = opts.ca_file,
    seed = opts.seed, record_grace = opts.record_grace, share = share, clients = clients,
    time_scale = opts.time_scale, durations = durations, listen = opts.listen,
  })
  if opts.listen and not opts.callback_url then -- jobs call back to the listener
    local host = opts.listen:match("^(.*):%d+$")
    if host == "" or host == "0.0.0.0" or host == "[::]" or host == "::" then host = "127.0.0.1" end
    if host:find(":", 1, true) and host:sub(1, 1) ~= "[" then host = "[" .. host .. "]" end -- "::1:8080" too
    self.callback_url = ("http://%s:%d/"):format(host, self._engine:listening())
  end
  self.scheduler = scheduler.new(self, self._engine, opts.wait)
  self._uploads = uploads.new(self, upload_url)
  self._inbox = inbox.new(self, opts.webhook)
  return self
end

function Client:__tostring()
  return ("modkie.Client(%s)"):format(self.base_url)
end

-- ---------------------------------------------------------------- logging

--- Call the log hook; a failing hook must not break the client. The hot
-- paths (submit, accepted, state, done) test `self._log` before building
-- the fields: without a hook a job makes no table for its log lines.
function Client:_emit(level, event, fields)
  local log = self._log
  -- core.pcall, not pcall: a hook that yields must not suspend a step half done
  if log then core.pcall(log, level, event, fields) end
end

-- ---------------------------------------------------------------- jobs

local function no_key(self)
  return Error.new("config", self._key_problem or "no API key: set MODKIE_API_KEY or pass api_key to modkie.new")
end

local function closed()
  return Error.new("config", "the client is closed")
end

-- The engine's limits on a task id: at most core.MAX_TASK_ID bytes (a
-- request line must hold it), and no NUL (C strings end there).
local function check_task_id(fname, task_id)
  Error.check(1, fname, task_id, "string")
  if task_id == "" or #task_id > core.MAX_TASK_ID then
    error(("bad argument #1 to '%s' (a task id of 1 to %d bytes expected)"):format(fname, core.MAX_TASK_ID), 3)
  end
  if task_id:find("%z") then
    error(("bad argument #1 to '%s' (a task id must not contain a NUL byte)"):format(fname), 3)
  end
end

local function deadline_seconds(d)
  if d == false then return 0 end
  return d
end

-- A job's deadline: its own (`opts.deadline`, checked as modkie.new checks
-- the client's: 0, a negative or NaN would silently mean none), else the client's.
local function job_deadline(client, fname, d)
  if d == nil then return client.deadline end
  if d == true or (type(d) == "number" and not NUMBER_RULES.deadline[1](d)) then
    error(("%s: option 'deadline' must be %s, got %s"):format(fname, NUMBER_RULES.deadline[2], tostring(d)), 3)
  end
  return d
end

-- The createTask body, or a validation error naming what cannot be sent.
--- The callback URL a job is submitted with: submit's `callback_url`, else
-- the client's (or its listener's); false: none. Raises on a bad one.
function Client:_callback_url(opts)
  local url = opts.callback_url
  if url == nil then url = self.callback_url end
  if url == true then error("submit: option 'callback_url' must be a URL, or false for none", 3) end
  if url then check_callback_url("submit: option 'callback_url'", url, 3) end
  return url or nil
end

local function create_body(model, input, callback_url)
  local body, jerr = json.encode({ model = model, input = input, callBackUrl = callback_url })
  if not body then
    return nil, Error.new("validation", "input cannot be sent as JSON: " .. tostring(jerr), { field = "input" })
  end
  if encoding.invalid(body) then -- raw bytes would make the body invalid JSON
    local path, b, at = encoding.find_invalid({ input = input, model = model, callback_url = callback_url })
    local field = path and path:gsub("^input%.", "") or "input"
    return nil, Error.new("validation", ("%s: byte 0x%02X at offset %d is not UTF-8 (JSON takes only UTF-8 text; "
      .. "convert it first)"):format(field, b or 0, at or 0), { field = field,
      problems = { { field = field, message = "is not UTF-8 text" } } })
  end
  return body
end

-- A URL stands for each file while the input is checked before uploading.
local function file_placeholder() return "https://upload.invalid/file" end

--- Submit a job. Never blocks: createTask goes out on the next step. Files
-- in the input (`modkie.file`, anywhere, alone or in lists) are checked now
-- and uploaded first: the job is "uploading" until they are, then
-- "submitting" with their URLs in their places (`job.input`, `job.uploads`).
-- @tparam string model e.g. "kling/kling-3-0"
-- @tparam table input the model's input fields
-- @tparam[opt] table opts `callback_url`, `deadline` (seconds, or false), `validate` (default true), `meta`,
--   `hold` (the createTask stops at the door once it has its rate token and a
--   connection slot: `job.held` becomes true and it waits for `job:send()`)
-- @treturn[1] modkie.Job
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "validation" (with `problems`; a bad file names its field) or "config"
function Client:submit(model, input, opts)
  -- (each check's call made only when it fails: submit runs once per job)
  if getmetatable(self) ~= Client then Error.method(self, Client, "submit", "client") end
  if type(model) ~= "string" then Error.check(1, "submit", model, "string") end
  if type(input) ~= "table" then Error.check(2, "submit", input, "table") end
  if opts == nil then
    opts = NO_OPTIONS
  else
    if type(opts) ~= "table" then Error.check(3, "submit", opts, "?table") end
    check_options("submit", opts, SUBMIT_OPTIONS)
  end
  local deadline = job_deadline(self, "submit", opts.deadline)
  if self._closed then return nil, closed() end
  if opts.validate ~= false then
    local ok, err = models.validate(model, input)
    if not ok then return nil, err end
  else
    local ok, err = models.check_id(model)
    if not ok then return nil, err end
  end
  if not self._has_key then return nil, no_key(self) end
  local files, ferr = file.probe_all(input, self._max_upload)
  if not files then return nil, ferr end
  local callback_url = self:_callback_url(opts)
  if #files > 0 then return self:_submit_with_files(model, input, opts, files, deadline, callback_url) end
  local body, berr = create_body(model, input, callback_url)
  if not body then return nil, berr end
  local h = self._engine:submit(body, deadline_seconds(deadline), opts.hold, model, callback_url ~= nil)
  local job = Job.new(self, JOB_PORT, nil, model, input, opts.meta, "submitting")
  job._hold, job.callback_url = opts.hold or nil, callback_url
  self.scheduler:pending(h, job)
  self._active = self._active + 1
  if self._log then self:_emit("info", "submit", { model = model }) end
  return job
end

-- submit's way for an input with files: the job waits ("uploading") in a
-- coroutine of the client's scheduler until its files are uploaded, then
-- sends its createTask with their URLs. Nothing is sent when a file is bad.
function Client:_submit_with_files(model, input, opts, files, deadline, callback_url)
  local _, berr = create_body(model, file.replace(input, file_placeholder), callback_url)
  if berr then return nil, berr end
  local job = Job.new(self, JOB_PORT, nil, model, input, opts.meta, "uploading")
  job._hold, job.uploads = opts.hold or nil, {}
  self.scheduler:pending(nil, job)
  self._active = self._active + 1
  self._uploading[job] = true
  local started = core.now()
  local pendings = {}
  for i, f in ipairs(files) do pendings[i] = self._uploads:start(f.file) end
  self:_emit("info", "submit", { model = model, files = #files })
  self.scheduler:go(function()
    for _, p in ipairs(pendings) do
      if not p.done then self.scheduler:wait({ p }) end
    end
    if job.done then return end -- cancelled, or the client closed
    self._uploading[job] = nil
    local url_of = {}
    for i, f in ipairs(files) do
      local p = pendings[i]
      local e = p.entry
      if not e then
        local err = p.upload_error or Error.new("network", "the upload did not finish")
        self:_finish(job, "error", nil, Error.new(err.kind, ("%s: upload of %s failed: %s"):format(f.field,
          f.file:label(), err.message), { field = f.field, path = f.file.path, status = err.status, code = err.code,
          retryable = err.retryable }))
        return
      end
      url_of[f.file] = e.url
      job.uploads[i] = { field = f.field, path = f.file.path, name = f.file.name, size = e.size, type = e.mime,
        sha256 = e.sha256, url = e.url, expires_at = e.expires_at, uploaded_at = e.uploaded_at,
        reused = p.cached or nil }
    end
    local resolved = file.replace(input, function(v) return url_of[v] end)
    local left = deadline_seconds(deadline)
    if left and left > 0 then
      left = left - (core.now() - started)
      if left <= 0 then
        self:_finish(job, "error", nil, Error.new("deadline", ("the job did not end within its deadline (%g s): "
          .. "its files were still uploading; no task was created"):format(deadline)))
        return
      end
    end
    local body, err = create_body(model, resolved, callback_url)
    if not body then
      self:_finish(job, "error", nil, err)
      return
    end
    job.input, job.state = resolved, "submitting"
    self.scheduler:attach(job, self._engine:submit(body, left, opts.hold, model, callback_url ~= nil))
  end)
  return job
end

--- Upload a local file (or a `modkie.file`) to the gateway's upload API,
-- once per content: the same bytes uploaded earlier by this client (or
-- remembered from a batch journal) give the same URL while it has life left.
-- Checked first: it exists, is a readable regular file, not empty, at most
-- `max_upload` bytes.
-- @tparam string|modkie.File source a path, or `modkie.file(...)`
-- @treturn[1] string the URL to put in a job's input (`downloadUrl`)
-- @treturn[1] number when it expires (Unix seconds; planned 24 h at most)
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "validation" (a bad file, with `path`), or the upload's (network, auth, …)
function Client:upload(source)
  Error.method(self, Client, "upload", "client")
  if type(source) ~= "string" and not file.is(source) then
    error("bad argument #1 to 'upload' (a path or a modkie.file expected, got " .. type(source) .. ")", 2)
  end
  if self._closed then return nil, closed() end
  if not self._has_key then return nil, no_key(self) end
  local f = file.is(source) and source or file.new(source)
  local facts, why = f:probe(self._max_upload)
  if not facts then return nil, Error.new("validation", why, { path = f.path }) end
  local p = self._uploads:start(f)
  self.scheduler:wait({ p })
  if not p.entry then return nil, p.upload_error or Error.new("network", "the upload did not finish") end
  return p.entry.url, p.entry.expires_at
end

--- Submit a job, wait for it to end and (with `download`) save its outputs:
-- the one call replicate's `run` and fal's `subscribe` taught users.
-- @tparam string model
-- @tparam table input
-- @tparam[opt] table opts `submit`'s options (`callback_url`, `deadline`,
--   `validate`, `meta`), and `timeout` (seconds to wait; the job keeps
--   going after it), `download` (a folder: checked before anything is sent,
--   then the outputs are saved there and listed in `res.files`)
-- @treturn[1] table the result, as `job:await` gives it (with `files`)
-- @treturn[2] nil
-- @treturn[2] modkie.Error as `submit`, `await` or `download` return it
-- @treturn modkie.Job|nil the job (nil when it could not be submitted): on
--   a timeout it keeps going, and `job:await()` waits for it again
function Client:generate(model, input, opts)
  Error.method(self, Client, "generate", "client")
  Error.check(1, "generate", model, "string")
  Error.check(2, "generate", input, "table")
  Error.check(3, "generate", opts, "?table")
  opts = opts or {}
  check_options("generate", opts, GENERATE_OPTIONS)
  local sopts, timeout, dir = {}, opts.timeout, opts.download
  for k, v in pairs(opts) do
    if k ~= "timeout" and k ~= "download" then sopts[k] = v end
  end
  if dir then
    local ok, err = require("modkie.download").check_dir(dir)
    if not ok then return nil, err end
  end
  local job, err = self:submit(model, input, sopts)
  if not job then return nil, err end
  local res
  res, err = job:await(timeout)
  if res and dir then
    local files, derr = job:download(dir)
    if not files then return nil, derr, job end
    res.files = files
  end
  return res, err, job
end

--- Adopt a task created earlier (after a restart): poll it to its end.
-- @tparam string task_id
-- @tparam[opt] table opts `deadline`, `meta`, `model`
-- @treturn[1] modkie.Job
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "config"
function Client:job(task_id, opts)
  Error.method(self, Client, "job", "client")
  check_task_id("job", task_id)
  Error.check(2, "job", opts, "?table")
  opts = opts or {}
  check_options("job", opts, JOB_OPTIONS)
  if self._closed then return nil, closed() end
  if not self._has_key then return nil, no_key(self) end
  local deadline = job_deadline(self, "job", opts.deadline)
  local h = self._engine:adopt(task_id, deadline_seconds(deadline), opts.model)
  local job = self.scheduler:pending(h, Job.new(self, JOB_PORT, task_id, opts.model, nil, opts.meta, "queued"))
  self._active = self._active + 1
  self._inbox:track(job)
  return job
end

function Client:_finish(p, state, result, err)
  p.done, p.state, p.result, p.error, p.held = true, state, result, err, nil
  p.ended_at = core.now() -- await_any and completed hand jobs out in the order they ended
  if getmetatable(p) == Job then
    self._active = self._active - 1
    self._uploading[p] = nil
    self._inbox:ended(p, p._via)
  end
  if p.on_finish then p.on_finish(p) end
  self.scheduler:finish(p)
end

-- What a job asks of its client (see JOB_PORT at the top).
function JOB_PORT.cancel(self, job)
  local h = self.scheduler:handle(job)
  if h then self._engine:cancel(h) end -- (none while its files upload)
  local msg = "cancelled"
  if job.state == "uploading" then
    msg = "cancelled while its files were uploading: no task was created"
  elseif job._hold and not job.sent then
    msg = "cancelled before its createTask was sent: no task was created"
  elseif job.state == "submitting" then
    msg = "cancelled while createTask was pending or in flight; a task may still have been created"
  end
  self:_finish(job, "cancelled", nil, Error.new("cancelled", msg, { task_id = job.id }))
  self:_emit("info", "done", { task_id = job.id, model = job.model, state = "cancelled" })
  return true
end

-- ---------------------------------------------------------------- events from the engine

local function error_from(t, extra)
  local fields = {}
  for k, v in pairs(t) do if k ~= "kind" and k ~= "message" then fields[k] = v end end
  for k, v in pairs(extra or {}) do fields[k] = v end
  return Error.new(t.kind, t.message, fields)
end

local CONNECT_FAILED = { "Couldn't connect", "Connection refused", "Failed to connect" }

--- Add to an error from the gateway what points to its fix: the key on a
-- 401, the emulator when nothing listens on this machine (the engine names
-- the request of a 404 itself: a wrong base_url makes every call one).
-- `api`: the error is an API call's (not a download's).
function Client:_explain(err, api)
  if not api then return err end
  local msg = err.message
  if err.kind == "auth" then
    msg = msg .. "; check the API key (MODKIE_API_KEY, or api_key in modkie.new)"
  elseif err.kind == "network" then
    local origin = core.origin(self.base_url)
    for _, s in ipairs(CONNECT_FAILED) do
      if origin and origin.loopback and msg:find(s, 1, true) then
        msg = msg .. ("; nothing listens at %s: to try modkie without a gateway, start the emulator there "
          .. "(modkie mock --port %d, or from a checkout: lua5.4 bin/modkie mock --port %d)")
          :format(self.base_url, origin.port, origin.port)
        break
      end
    end
  end
  err.message = msg
  return err
end

local on = {}

function on.accepted(self, job, ev)
  job.id, job.state, job._accepted_at = ev.task_id, "queued", core.now()
  self._inbox:track(job)
  self.scheduler:notify(job) -- wake job:accepted() callers
  if self._log then self:_emit("info", "accepted", { task_id = job.id, model = job.model }) end
end

-- A held createTask is at the door: it waits for job:send().
function on.ready(self, job)
  job.held = true
  self.scheduler:notify(job) -- wake a batch waiting for its jobs to reach the door
  if self._log then self:_emit("debug", "ready", { model = job.model }) end
end

--- Let a createTask held at the door go (see submit's `hold`).
function JOB_PORT.send(self, job)
  if not job.held then return false end
  job.held = nil
  job.sent = true
  return self._engine:send(self.scheduler:handle(job))
end

function on.state(self, job, ev)
  job.state, job.server_state = ev.state, ev.server_state
  job.progress = ev.progress
  job.updated_at = ev.updated_at or job.updated_at
  if self._log then
    self:_emit("debug", "state", { task_id = job.id, model = job.model, state = job.state,
      server_state = ev.server_state, progress = job.progress, updated_at = job.updated_at })
  end
end

function on.retry(self, p, ev)
  if p.state == "submitting" and p.sent then
    -- a createTask let go from the door came back: answered that nothing
    -- was created (429, 455); it waits in line and stops at the door again
    p.sent = nil
    p.bounced = (p.bounced or 0) + 1
    self.scheduler:notify(p) -- wake a batch: it records that the row was not sent after all
  end
  self:_emit("warn", "retry", {
    task_id = p.id, attempt = ev.attempt, delay = ev.delay, kind = ev.error.kind,
    status = ev.error.status, code = ev.error.code, message = ev.error.message,
  })
end

-- The engine asks when the job polls next (poll_interval is a function, or
-- "learn"): the answer goes back at once. A function that raises: the job
-- goes on on the default schedule and step raises the error once every
-- event is handed out; one that returns no number of seconds: the default
-- schedule, and a warning. It runs inside the step: one that yields fails
-- (core.pcall lets no yield through), as an error raised from step.
function on.interval(self, job, ev)
  local ok, secs = core.pcall(self._interval, ev.elapsed, ev.polls, job, ev.default)
  if not ok then
    if type(secs) == "string" and secs:find("attempt to yield", 1, true) then
      secs = "modkie: a poll_interval function must not yield: it runs inside client:step; "
        .. "return the seconds at once (" .. secs .. ")"
    end
    self._raised = self._raised or secs
    secs = ev.default
  elseif type(secs) ~= "number" or not (secs >= 0 and secs <= 1e6) then -- NaN fails both
    self:_emit("warn", "warning", { task_id = job.id, message =
      "poll_interval must return a number of seconds from 0 to 1e6; polling on the default schedule" })
    secs = ev.default
  end
  self._engine:schedule(self.scheduler:handle(job), secs)
end

--- A job ended (`via` "poll" or "callback"): `state`, and its `result` or
-- `err`, read from its record by the one reader (in C, core.read_record).
-- What it took is learned for the poll ranks.
function Client:_ended_with(job, state, result, err, via)
  if result then
    result.model = result.model or job.model
    local model = job.model or (type(result.model) == "string" and result.model)
    -- the record's times, else (a callback without them, as ModKie's
    -- webhook) this client's own clock from acceptance to the callback
    local took = result.created_at and result.completed_at and result.completed_at - result.created_at
    if not took and via == "callback" and job._accepted_at then took = core.now() - job._accepted_at end
    if model and took then self._durations:add(model, took) end
  end
  self:_finish(job, state, result, err)
  if self._log then
    self:_emit(err and "warn" or "info", "done", {
      task_id = job.id, model = job.model, state = state, polls = job.polls, via = via,
      kind = err and err.kind, message = err and err.message,
    })
  end
end

function on.done(self, job, ev)
  job.polls = ev.polls or job.polls
  if ev.server_state then job.server_state = ev.server_state end
  job.updated_at = ev.updated_at or job.updated_at
  local state, result, err = ev.state, ev.result, nil
  if result then -- read in C, by the reader callbacks use too (core.read_record)
    job.progress = ev.progress or (job.progress and 100)
  elseif state == "failed" then
    job.progress = ev.progress or job.progress
    err = error_from(ev.error)
  else
    local extra = { task_id = job.id }
    if ev.error.kind == "ambiguous" then extra.model, extra.input = job.model, job.input end
    err = self:_explain(error_from(ev.error, extra), true)
  end
  self:_ended_with(job, state, result, err, "poll")
end

function on.reply(self, p, ev)
  if ev.error then
    self:_finish(p, "error", nil, self:_explain(error_from(ev.error), p.api or p.request))
  else
    p.data = ev.data
    self:_finish(p, "success", ev.path or ev.data)
  end
end

function on.timer(self, p)
  self:_finish(p, "success")
end

-- The account's rate store went away (the client carries on with local
-- windows) or came back: said once each time.
function Client:_store_event(ev)
  if ev.state == "away" then
    self:_emit("warn", "store", { state = "away", message = ev.message
      .. "; carrying on with local windows at a fraction of the limits" })
  else
    self:_emit("info", "store", { state = "back" })
  end
end

-- A request to the listener (`listen`): a callback, answered with what deliver says.
function Client:_request(ev)
  local ok, status = pcall(self._inbox.deliver, self._inbox, ev.headers, ev.body)
  if not ok then
    self:_emit("warn", "callback", { outcome = "error", message = tostring(status) })
    status = 500
  end
  self._engine:respond(ev.h, status)
end

function Client:_dispatch(events)
  local sched = self.scheduler
  for i = 1, #events do
    local ev = events[i]
    local p = sched:op(ev.h)
    if p then on[ev.type](self, p, ev)
    elseif ev.type == "store" then self:_store_event(ev)
    elseif ev.type == "request" then self:_request(ev) end
  end
end

-- ---------------------------------------------------------------- driving (the scheduler is modkie.scheduler)

--- Drive I/O once: wait up to `timeout` seconds (0 or nil: do what is ready
-- and return at once) for something to happen, dispatch what finished, run
-- the coroutines it woke.
-- @treturn number jobs still active
function Client:step(timeout)
  Error.method(self, Client, "step", "client")
  Error.check(1, "step", timeout, "?number")
  local co, main = coroutine.running()
  if co and not main and self.scheduler:owns(co) then
    error("modkie: client:step called from a coroutine run by this client; use job:await or client:sleep", 2)
  end
  local sched = self.scheduler
  if sched:in_step() then
    error("modkie: client:step called from inside step (a log hook, poll_interval function or finaliser); "
      .. "return from it, and step again from the code that called step", 2)
  end
  if self._closed then return 0 end
  if sched:busy() then timeout = 0 end
  sched:begin_step()
  local ok, events = pcall(self._engine.step, self._engine, timeout or 0)
  -- the engine stops for its rate questions; their grants start at once
  if ok and self._dict then self._dict:answer(self._engine) end
  if ok and events then ok, events = pcall(self._dispatch, self, events) end
  if ok and self._uploads.active > 0 then self._uploads:tick() end
  if ok and self._inbox.dict then ok, events = pcall(self._inbox.relay, self._inbox) end -- other workers' callbacks
  sched:end_step()
  if self._close_pending then self:close() end -- close() called inside the step
  if not ok then error(events, 0) end
  local raised = self._raised -- a poll_interval function's error, now that every event is handled
  if raised then
    self._raised = nil
    error(raised, 0)
  end
  sched:run_ready()
  return self._active
end

--- `step(0)`: for a game's frame loop.
function Client:update()
  Error.method(self, Client, "update", "client")
  return self:step(0)
end

--- Seconds until the client next needs a step (0: now), or nil when idle.
function Client:timeout()
  Error.method(self, Client, "timeout", "client")
  if self.scheduler:busy() then return 0 end
  if self._closed then return nil end
  local seconds = self._engine:timeout() -- nothing at all when idle: say nil
  local relay = self._inbox:timeout()
  if relay and (not seconds or relay < seconds) then seconds = relay end
  return seconds
end

--- The sockets a host's own event loop should watch for this client:
-- `{ {fd = n, events = "r" | "w" | "rw"}, … }`. When one is ready, or
-- `client:timeout()` seconds pass, call `client:step(0)`, then ask again:
-- the set changes as connections open and close.
function Client:fds()
  Error.method(self, Client, "fds", "client")
  if self._closed then return {} end
  return self._engine:fds()
end

--- Start `fn(...)` as a coroutine run by this client. It starts on the next
-- step; inside it, await yields instead of blocking.
-- @treturn thread the coroutine
function Client:go(fn, ...)
  Error.method(self, Client, "go", "client")
  Error.check(1, "go", fn, "function")
  return self.scheduler:go(fn, ...)
end

--- `go(fn, ...)` if fn is given, then step until nothing is left to do.
function Client:run(fn, ...)
  Error.method(self, Client, "run", "client")
  Error.check(1, "run", fn, "?function")
  if fn then self:go(fn, ...) end
  while not self._closed and (self.scheduler:busy() or self._engine:timeout() ~= nil) do
    self:step(60)
  end
end

--- Pass `seconds` without blocking the client's other work: yields inside
-- the scheduler or OpenResty; elsewhere drives the client while it waits.
function Client:sleep(seconds)
  Error.method(self, Client, "sleep", "client")
  Error.check(1, "sleep", seconds, "number")
  self.scheduler:sleep(seconds)
end

-- ---------------------------------------------------------------- one-off calls

--- One API call: `endpoint` "recordInfo" (arg: the task id), "credit" or
-- "download-url" (arg: the JSON body); the engine builds the request.
function Client:_call(endpoint, arg)
  if self._closed then return nil, closed() end
  if not self._has_key then return nil, no_key(self) end
  local p = self.scheduler:pending(self._engine:call(endpoint, arg))
  p.api = true
  self.scheduler:wait({ p })
  if p.error then return nil, p.error end
  if p.data == nil or type(p.data) == "userdata" then -- absent, or JSON null
    return nil, Error.new("protocol", endpoint .. ": the answer has no data")
  end
  return p.data
end

--- Start downloading `url` into the file `path` (streamed to `path.part`,
-- renamed when whole; the key goes only to the gateway's own origin). Most
-- callers want `job:download`, which names the files and waits.
-- @treturn table a pending of `client.scheduler`: once `done`, `error` is set when it failed
function Client:download_file(url, path)
  Error.method(self, Client, "download_file", "client")
  Error.check(1, "download_file", url, "string")
  Error.check(2, "download_file", path, "string")
  return self.scheduler:pending(self._engine:download(url, path))
end

--- One recordInfo call.
-- @tparam string task_id
-- @treturn[1] table the raw record (recordInfo's `data`)
-- @treturn[2] nil
-- @treturn[2] modkie.Error
function Client:record(task_id)
  Error.method(self, Client, "record", "client")
  check_task_id("record", task_id)
  local data, err = self:_call("recordInfo", task_id)
  if not data then return nil, err end
  if type(data) ~= "table" or (next(data) ~= nil and data[1] ~= nil) then
    return nil, Error.new("protocol", "recordInfo: data is not a record")
  end
  return data
end

--- The account's credit balance.
-- @treturn[1] number
-- @treturn[2] nil
-- @treturn[2] modkie.Error
function Client:credits()
  Error.method(self, Client, "credits", "client")
  local data, err = self:_call("credit")
  if data == nil then return nil, err end
  local n = record.number(data)
  if not n then return nil, Error.new("protocol", "credit: data is not a number") end
  return n
end

--- A direct download link for a result URL (valid about 20 minutes).
-- @tparam string url
-- @treturn[1] string
-- @treturn[2] nil
-- @treturn[2] modkie.Error
function Client:download_url(url)
  Error.method(self, Client, "download_url", "client")
  Error.check(1, "download_url", url, "string")
  local data, err = self:_call("download-url", json.encode({ url = url }))
  if data == nil then return nil, err end
  if type(data) ~= "string" or not data:match("^[Hh][Tt][Tt][Pp][Ss]?://[^%s%c]+$") then
    return nil, Error.new("protocol", "download-url: data is not an http(s) URL")
  end
  return data
end

-- ---------------------------------------------------------------- closing

--- Stop every job (they end "cancelled"), free the engine. Safe to call twice;
-- also runs on garbage collection, and on `<close>` in Lua 5.4.
-- Inside a step (a log hook, a poll_interval function, a finaliser) the close
-- is deferred: it returns at once, and the client closes before step returns.
function Client:close()
  local sched = self.scheduler
  if self._closed or not sched then return end -- (not sched: modkie.new raised half way)
  if sched:in_step() then
    self._close_pending = true
    return
  end
  self._close_pending = nil
  -- no engine: modkie.new raised making it (the half-made client is still collected);
  -- or collected with its engine: nothing left to stop
  if not self._engine or self._engine:closed() then
    self._closed = true
    return
  end
  for _, p in ipairs(sched:ops_list()) do
    self._engine:cancel(sched:handle(p))
    self:_finish(p, "cancelled", nil, Error.new("cancelled", "the client was closed", { task_id = p.id }))
  end
  -- (next, not pairs: close may run in a __gc finaliser; see modkie.scheduler's wake)
  local job = next(self._uploading)
  while job ~= nil do
    self:_finish(job, "cancelled", nil, Error.new("cancelled", "the client was closed while the job's files "
      .. "were uploading: no task was created"))
    job = next(self._uploading, job) -- (_finish cleared it: allowed while traversing)
  end
  self._engine:close()
  self._closed = true
  sched:run_ready()
end

Client.__close = Client.close
Client.__gc = Client.close

--- The job durations learned so far (the last 100 per model, from the jobs
-- that succeeded), `{ [model] = { seconds, … } }`, to start another client
-- warm (`poll_history = …`): what ranks polls by default, and what
-- `poll_interval = "learn"` reads.
function Client:poll_history()
  Error.method(self, Client, "poll_history", "client")
  return self._durations:history()
end

--- A callback request to this client's callback URL: check its signature
-- (the `webhook` option: `secret`, `scheme`), end the job it names with its
-- record (read as a poll's would be), wake whoever awaits that job, and
-- count it (`stats().callbacks`). Idempotent: a repeat or a late callback
-- changes nothing. See docs/webhooks.md.
-- @tparam table headers name -> value, any case (OpenResty's `ngx.req.get_headers()` as is)
-- @tparam string body the raw body, byte for byte
-- @treturn number the HTTP status to answer: 200 (taken, or nothing to do), 400 (signed but not a
--   callback of the contract), 401 (not signed by the gateway)
function Client:deliver(headers, body)
  Error.method(self, Client, "deliver", "client")
  Error.check(1, "deliver", headers, "table")
  Error.check(2, "deliver", body, "string")
  if not self._inbox.opts then
    error("client:deliver needs the webhook option: modkie.new{ webhook = { secret = …, scheme = … } }", 2)
  end
  return self._inbox:deliver(headers, body)
end

--- Engine counters: live ops, transfers in flight, requests sent, polls
-- chosen by rank, rate-limited answers, and `callbacks` (see `deliver`).
function Client:stats()
  Error.method(self, Client, "stats", "client")
  local stats = self._engine:stats()
  stats.callbacks = self._inbox:counts()
  return stats
end

return Client

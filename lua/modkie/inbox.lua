--- Callbacks in: what a client does with a POST to its callback URL
-- (`client:deliver`). It checks the signature (modkie.webhook), reads the
-- body with the reader polls use (modkie.record), ends the job it names and
-- wakes its awaiters, and says which HTTP status to answer:
--
--   200  the job ended with it; or it was a repeat (the job had ended by an
--        earlier callback: idempotent), late (a poll, a cancel or the
--        deadline had ended it), about a task this client does not run
--        (handed to the other workers with `webhook.shared`), or a callback
--        of a task that has not ended yet (a progress callback): nothing to do
--   400  signed, but not a callback of the contract (not JSON, no record, no
--        task id): sending it again will not help, and nothing was ended
--   401  not signed by the gateway (forged, a wrong secret, a stale Kie
--        timestamp): nothing was read
--
-- and counts each (`client:stats().callbacks`).
--
-- With `webhook.shared = ngx.shared.DICT` (OpenResty) a callback for a job
-- this client does not run is put in the dict, and every client of that dict
-- takes the ones for its own jobs on its next step: the worker that receives
-- a callback need not be the one whose request waits for the job.
-- @module modkie.inbox

local core = require "modkie.core"
local json = require "modkie.json"
local options = require "modkie.options"
local record = require "modkie.record"
local SharedDict = require "modkie.shared_dict"
local webhook = require "modkie.webhook"

local inbox = {}

local Inbox = {}
Inbox.__index = Inbox

local REMEMBER = 10000   -- ended task ids kept, to tell a repeat or a late callback from an unknown one
local RELAY_TTL = 600    -- seconds a relayed callback stays in the shared dict
local RELAY_CHECK = 0.1  -- seconds between looks at the shared dict while callback jobs wait
local EARLY_MAX = 1000   -- callbacks kept for tasks not known yet (they may beat their createTask's answer)

local OPTIONS = { secret = true, scheme = true, tolerance = true, shared = true }

--- Check the client's `webhook` option; raise naming the field.
-- @tparam table opts `{ secret =, scheme =, tolerance =, shared = }`
-- @treturn table the same, checked
function inbox.check(opts)
  if type(opts) ~= "table" then error("modkie.new: option 'webhook' must be a table", 3) end
  options.check("modkie.new", opts, OPTIONS, 3, "webhook.") -- names here; the values below, each its own way
  local secrets = type(opts.secret) == "table" and opts.secret or { opts.secret }
  local ok = #secrets > 0
  for _, s in ipairs(secrets) do ok = ok and type(s) == "string" and s ~= "" end
  if not ok then -- never show the secret
    error("modkie.new: option 'webhook.secret' must be a non-empty string (or a list of them while rotating)", 3)
  end
  if opts.scheme ~= nil and opts.scheme ~= "kie" and opts.scheme ~= "modkie" then
    error("modkie.new: option 'webhook.scheme' must be \"kie\" or \"modkie\"", 3)
  end
  local tol = opts.tolerance
  if tol ~= nil and not (type(tol) == "number" and tol >= 0 and tol <= 1e6) then
    error("modkie.new: option 'webhook.tolerance' must be a number of seconds from 0 to 1e6", 3)
  end
  if opts.shared ~= nil and not SharedDict.is_dict(opts.shared) then
    error("modkie.new: option 'webhook.shared' must be an OpenResty shared dict (ngx.shared.NAME)", 3)
  end
  return opts
end

--- The inbox of `client`, with its checked `webhook` option (or nil: then
-- `deliver` refuses to run).
function inbox.new(client, opts)
  local self = setmetatable({
    client = client, opts = opts,
    jobs = {},          -- task id -> job still running
    gone = {}, order = {}, first = 1, -- task id -> how it ended ("callback" or "other"), oldest first
    early = {}, early_order = {}, early_first = 1, -- task id -> a verified callback's body, for a task not known yet
    stats = { delivered = 0, picked_up = 0, duplicate = 0, late = 0, unknown = 0, relayed = 0, pending = 0,
      refused = 0, malformed = 0 },
  }, Inbox)
  if opts and opts.shared then
    self.dict = opts.shared
    self.cursor = tonumber(self.dict:get("modkie:callbacks:n")) or 0
    self.next_check = 0
  end
  return self
end

--- A job ended (`via` "callback" when its callback ended it).
function Inbox:ended(job, via)
  local id = job.id
  if not id or self.jobs[id] ~= job then return end -- (never tracked without the webhook option)
  self.jobs[id] = nil
  if self.gone[id] == nil then
    self.order[#self.order + 1] = id
    if #self.order - self.first + 1 > REMEMBER then
      self.gone[self.order[self.first]] = nil
      self.order[self.first] = nil
      self.first = self.first + 1
    end
  end
  self.gone[id] = via == "callback" and "callback" or "other"
end

local function count(self, what, fields)
  self.stats[what] = self.stats[what] + 1
  local level = (what == "refused" or what == "malformed") and "warn" or "info"
  fields = fields or {}
  fields.outcome = what
  self.client:_emit(level, "callback", fields)
end

-- The job ends with what the callback said (`res` or `err`, as modkie.record.read gave them).
local function finish(self, job, res, err)
  local client = self.client
  local state = res and "success" or err.kind == "failed" and "failed" or "error"
  local rec = res and res.raw or (err and err.record)
  if type(rec) == "table" and type(rec.state) == "string" then job.server_state = rec.state end
  if res then
    job.progress = res.progress or (job.progress and 100)
    job.updated_at = res.updated_at or job.updated_at
  end
  job._via = "callback"
  client._engine:called_back(client.scheduler:handle(job))
  client:_ended_with(job, state, res, err, "callback")
end

-- A verified callback of a task this client does not know (yet): kept, the
-- oldest dropped past EARLY_MAX, for `track` to end the job with. The first
-- one of a task is kept, as for a known task: with the Kie scheme the body is
-- not signed, so a later one may be a replay with another body.
local function keep_early(self, id, raw)
  if self.early[id] ~= nil then return end
  local order = self.early_order
  order[#order + 1] = id
  if #order - self.early_first + 1 > EARLY_MAX then
    self.early[order[self.early_first]] = nil
    order[self.early_first] = nil
    self.early_first = self.early_first + 1
  end
  self.early[id] = raw
end

--- A job has its task id: a callback can end it from now on. (Without the
-- webhook option no callback is taken: nothing to remember.)
function Inbox:track(job)
  local id = job.id
  if not (self.opts and id) then return end
  self.jobs[id] = job
  -- its callback may have come first (before this client read the
  -- createTask's answer), here or at another worker
  local raw = self.early[id]
  if raw then self.early[id] = nil end
  if not raw and self.dict then
    raw = self.dict:get("modkie:callback:" .. id)
    if raw then self.dict:delete("modkie:callback:" .. id) end
  end
  if raw then
    local res, err = record.read(raw, job)
    finish(self, job, res, err)
    count(self, "delivered", { task_id = id })
  end
end

-- A verified callback of task `id` (`raw` its body): end its job, or say why not. Returns the status.
local function take(self, id, raw, may_relay)
  local job = self.jobs[id]
  if not job then
    local how = self.gone[id]
    if how == "callback" then count(self, "duplicate", { task_id = id })
    elseif how then count(self, "late", { task_id = id })
    elseif may_relay and self.dict then
      local n = self.dict:incr("modkie:callbacks:n", 1, 0)
      local ok = n and self.dict:set("modkie:callbacks:" .. n, id .. "\n" .. raw, RELAY_TTL)
      -- and by task id, for a worker that learns the task after its relay read past it: the
      -- first callback of a task, as everywhere (a later one may be a replay with another body)
      if ok then
        local added, aerr = self.dict:add("modkie:callback:" .. id, raw, RELAY_TTL)
        ok = added or aerr == "exists"
      end
      count(self, ok and "relayed" or "unknown", { task_id = id })
    else
      keep_early(self, id, raw)
      count(self, "unknown", { task_id = id })
    end
    return 200
  end
  local res, err = record.read(raw, job)
  finish(self, job, res, err)
  count(self, "delivered", { task_id = id })
  return 200
end

--- A callback request: verify it, end the job it names, count it.
-- @tparam table headers name -> value (any case)
-- @tparam string body the raw body
-- @treturn number the HTTP status to answer (200, 400 or 401)
function Inbox:deliver(headers, body)
  local opts = self.opts
  local ok, info = webhook.verify{ headers = headers, body = body, secret = opts.secret, scheme = opts.scheme,
    tolerance = opts.tolerance }
  if not ok then
    count(self, "refused", { reason = info.reason, field = info.field, message = info.message })
    return 401
  end
  -- the key out of the body, as the engine takes it out of every answer it
  -- reads (only now: the ModKie scheme signs the body as it came)
  local engine = self.client._engine
  if engine and not engine:closed() then body = engine:redact(body) end
  local doc = json.decode(body)
  if type(doc) ~= "table" then
    count(self, "malformed", { message = "the body is not a JSON object" })
    return 400
  end
  local probe, perr = record.read(body)
  local id = probe and probe.id or (perr and perr.task_id)
  -- (a final state the reader refused, a code contradicting it, is malformed below)
  local ended = perr and perr.server_state and core.classify_state(perr.server_state)
  if perr and perr.kind == "protocol" and perr.server_state and id and ended ~= "success" and ended ~= "failed" then
    count(self, "pending", { task_id = id, server_state = perr.server_state }) -- not ended yet: a later one will say
    return 200
  end
  if not id or (perr and perr.kind == "protocol") or (info.task_id and info.task_id ~= id) then
    count(self, "malformed", { message = perr and perr.message or "the signed task id is not the record's" })
    return 400
  end
  return take(self, id, body, true)
end

--- With `webhook.shared`: end this client's jobs whose callbacks another
-- worker received. Cheap when nothing is new (one dict read per RELAY_CHECK).
function Inbox:relay()
  local dict = self.dict
  if not dict or next(self.jobs) == nil then return end
  local now = core.now()
  if now < self.next_check then return end
  self.next_check = now + RELAY_CHECK
  local n = tonumber(dict:get("modkie:callbacks:n")) or 0
  while self.cursor < n do
    self.cursor = self.cursor + 1
    local entry = dict:get("modkie:callbacks:" .. self.cursor)
    local id, raw
    if type(entry) == "string" then id, raw = entry:match("^([^\n]*)\n(.*)$") end
    local job = id and self.jobs[id]
    if job then -- verified by the worker that received it
      local res, err = record.read(raw, job)
      finish(self, job, res, err)
      count(self, "picked_up", { task_id = id })
    end
  end
end

--- Seconds until `relay` wants a look (nil: never).
function Inbox:timeout()
  if not self.dict or next(self.jobs) == nil then return nil end
  local left = self.next_check - core.now()
  return left > 0 and left or 0
end

--- What came in: `{ delivered, picked_up, duplicate, late, unknown, relayed, pending, refused, malformed }`
-- (`picked_up`: jobs of this client ended by a callback another worker received and `relayed`).
function Inbox:counts()
  local out = {}
  for k, v in pairs(self.stats) do out[k] = v end
  return out
end

return inbox

--- Fault injection for the emulator: answers replaced by errors, resets,
-- stalls, cut or garbled bodies, so a client can be tested against a gateway
-- that misbehaves. Two sources, one place (Plan:intercept, the gateway's
-- hook):
--   * random: `--faults SPEC`, a fraction of each endpoint's answers, drawn
--     from a seeded stream per endpoint (same seed + same requests, in the
--     same order per endpoint = same faults);
--   * triggers: `[fault=ENDPOINT:KIND]` or `[fault=ENDPOINT:KINDxN]` in a
--     prompt: the first N requests of that endpoint for that prompt's task
--     (for create: carrying that prompt) get KIND. Triggers win over a draw.
--
-- SPEC grammar (spaces allowed around tokens):
--   spec     = rule { ";" rule }
--   rule     = endpoint "=" fault { "," fault }
--   fault    = kind ":" fraction           fraction: a number in [0, 1]
--   endpoint = create | poll | credits | download_url | files
--   kind     = 500 | 502 | 503 | 455 | 429 | reset | stall | cut | badjson
--            | html | huge | all          ("all": the fraction split evenly
--                                           over every kind)
-- e.g. `poll=500:0.1,reset:0.05;create=429:0.05`. An endpoint's fractions
-- add up to at most 1; an endpoint or kind may appear once.
--
-- What each kind answers, and when (for createTask this decides whether the
-- task exists): 429 and 455 answer *instead of* the endpoint, so nothing is
-- created; every other kind answers *after* the endpoint ran, so a create
-- fault of those kinds creates the task and loses its id.
--   500          the gateway's error answer in the dialect's style (kie: HTTP
--                200 + code; modkie: HTTP status = code)
--   502 503      what an edge proxy in front of the gateway sends: a real HTTP
--                status in both dialects, 502 with an HTML page, 503 with an
--                empty body and Retry-After
--   455 429      likewise, with Retry-After: --retry-after seconds
--   reset        the connection is reset (RST), no response at all
--   stall        the answer is held --stall-seconds, then sent
--   cut          Content-Length of the whole answer, half of it sent, close
--   badjson      HTTP 200, application/json, the answer without its last byte
--   html         HTTP 502 text/html, a proxy's error page
--   huge         the answer after --huge-bytes of JSON whitespace: valid,
--                same meaning, bigger than a client's 8 MiB cap
-- /files answers with real HTTP statuses in every dialect (as it does anyway).
local rng = require "modkie.rng"

local faults = {}

faults.ENDPOINTS = { "create", "poll", "credits", "download_url", "files" }
faults.KINDS = { "500", "502", "503", "455", "429", "reset", "stall", "cut", "badjson", "html", "huge" }

local ENDPOINT_SET, KIND_SET = {}, {}
for _, e in ipairs(faults.ENDPOINTS) do ENDPOINT_SET[e] = true end
for _, k in ipairs(faults.KINDS) do KIND_SET[k] = true end
local ENDPOINT_LIST = table.concat(faults.ENDPOINTS, ", ")
local KIND_LIST = table.concat(faults.KINDS, ", ")

-- The gateway's route names, as fault endpoints.
local ROUTE_ENDPOINT = {
  create = "create", record = "poll", credit = "credits", download_url = "download_url", file = "files",
}

-- Faults that answer instead of the endpoint: nothing happens on the gateway.
faults.BEFORE = { ["429"] = true, ["455"] = true }

faults.DEFAULT_RETRY_AFTER = 1
faults.DEFAULT_STALL_SECONDS = 35 -- longer than a client's default 30 s timeout
faults.DEFAULT_HUGE_BYTES = 9 * 1024 * 1024

local trim = require("modkie.encoding").trim

--- Parse a SPEC: { [endpoint] = { {kind, fraction}, … } }, or nil and a
-- message naming the bad part.
function faults.parse_spec(text)
  if type(text) ~= "string" or trim(text) == "" then return nil, "is empty" end
  local plan = {}
  for rule in (text .. ";"):gmatch("([^;]*);") do
    local r = trim(rule)
    if r ~= "" then
      local endpoint, list = r:match("^([^=]*)=(.*)$")
      if not endpoint then return nil, "'" .. r .. "' is not ENDPOINT=KIND:FRACTION,…" end
      endpoint = trim(endpoint)
      if not ENDPOINT_SET[endpoint] then
        return nil, "'" .. endpoint .. "' is not an endpoint (" .. ENDPOINT_LIST .. ") in '" .. r .. "'"
      end
      if plan[endpoint] then return nil, "endpoint '" .. endpoint .. "' is given twice" end
      local entries, seen, total = {}, {}, 0
      for item in (list .. ","):gmatch("([^,]*),") do
        local it = trim(item)
        local kind, fraction = it:match("^([^:]*):(.*)$")
        if not kind then return nil, "'" .. it .. "' in '" .. r .. "' is not KIND:FRACTION" end
        kind, fraction = trim(kind), trim(fraction)
        if not (KIND_SET[kind] or kind == "all") then
          return nil, "'" .. kind .. "' is not a fault kind (" .. KIND_LIST .. ", all) in '" .. r .. "'"
        end
        local p = tonumber(fraction)
        if not p or p ~= p or p < 0 or p > 1 then
          return nil, "fraction '" .. fraction .. "' of " .. endpoint .. ":" .. kind .. " must be a number from 0 to 1"
        end
        local kinds = kind == "all" and faults.KINDS or { kind }
        for _, k in ipairs(kinds) do
          if seen[k] then return nil, "kind '" .. k .. "' is given twice for " .. endpoint end
          seen[k] = true
          entries[#entries + 1] = { k, p / #kinds }
        end
        total = total + p
      end
      if total > 1 + 1e-9 then
        return nil, "the fractions of " .. endpoint .. " add up to " .. tostring(total) .. ", more than 1"
      end
      plan[endpoint] = entries
    end
  end
  if next(plan) == nil then return nil, "names no endpoint" end
  return plan
end

--- Parse the value of a `[fault=…]` prompt directive: a list of
-- { e = endpoint, k = kind, n = count }, or nil and a message.
-- Value: `ENDPOINT:KIND` or `ENDPOINT:KINDxN`, several separated by commas.
function faults.parse_trigger(value)
  local list = {}
  for item in (value .. ","):gmatch("([^,]*),") do
    local it = trim(item)
    local endpoint, kind, count = it:match("^([%w_]+):([%w]-)x(%d+)$")
    if not endpoint then endpoint, kind = it:match("^([%w_]+):([%w]+)$") end
    if not endpoint then return nil, "'" .. it .. "' is not ENDPOINT:KIND or ENDPOINT:KINDxN" end
    if not ENDPOINT_SET[endpoint] or endpoint == "credits" then
      return nil, "'" .. endpoint .. "' is not an endpoint a prompt can fault (create, poll, download_url, files)"
    end
    if not KIND_SET[kind] then return nil, "'" .. kind .. "' is not a fault kind (" .. KIND_LIST .. ")" end
    local n = tonumber(count or "1")
    if n < 1 then return nil, "the count of '" .. it .. "' must be at least 1" end
    list[#list + 1] = { e = endpoint, k = kind, n = n }
  end
  return list
end

-- The kind a trigger list gives the request numbered `seen` (from 0) of
-- `endpoint`, or nil.
local function triggered(list, endpoint, seen)
  for _, t in ipairs(list) do
    if t.e == endpoint then
      if seen < t.n then return t.k end
      seen = seen - t.n
    end
  end
end

local Plan = {}
Plan.__index = Plan

--- A fault plan. opts: spec (as parse_spec returns, or nil: triggers only),
-- seed, retry_after, stall_seconds, huge_bytes.
function faults.new(opts)
  local self = setmetatable({
    spec = opts.spec or {},
    seed = opts.seed or (os.time() % 1000000),
    retry_after = opts.retry_after or faults.DEFAULT_RETRY_AFTER,
    stall_seconds = opts.stall_seconds or faults.DEFAULT_STALL_SECONDS,
    huge_bytes = opts.huge_bytes or faults.DEFAULT_HUGE_BYTES,
  }, Plan)
  self:reset()
  return self
end

--- Counters to zero and every stream back to its seed, so a run after a
-- reset meets the same faults as the first one.
function Plan:reset()
  self.streams, self.counts, self.create_seen = {}, {}, {}
  for _, e in ipairs(faults.ENDPOINTS) do
    self.streams[e] = rng.new(self.seed, e)
    self.counts[e] = {}
  end
end

--- Injected faults so far: { [endpoint] = { [kind] = n } }.
function Plan:totals()
  return self.counts
end

--- What survives a restart (see modkie.mock.state): counters, stream
-- positions, trigger progress per prompt.
function Plan:snapshot()
  local streams = {}
  for e, s in pairs(self.streams) do streams[e] = s:state() end
  return { seed = self.seed, counts = self.counts, streams = streams, create_seen = self.create_seen }
end

function Plan:restore(snap)
  if type(snap) ~= "table" then return end
  if type(snap.counts) == "table" then
    for e, kinds in pairs(snap.counts) do
      if self.counts[e] and type(kinds) == "table" then
        for k, n in pairs(kinds) do self.counts[e][k] = n end
      end
    end
  end
  if type(snap.create_seen) == "table" then self.create_seen = snap.create_seen end
  -- The streams go on where they stopped only for the same seed.
  if snap.seed == self.seed and type(snap.streams) == "table" then
    for e, state in pairs(snap.streams) do
      if self.streams[e] then self.streams[e]:restore(state) end
    end
  end
end

-- A random kind for `endpoint`, or nil. One draw per request, fault or not,
-- so the stream's position depends only on how many requests came.
function Plan:draw(endpoint)
  local entries = self.spec[endpoint]
  if not entries then return nil end
  local u = self.streams[endpoint]:next()
  for _, entry in ipairs(entries) do
    if u < entry[2] then return entry[1] end
    u = u - entry[2]
  end
end

-- The kind a prompt trigger gives this request, or nil.
function Plan:trigger(endpoint, ctx, gw)
  if endpoint == "create" then
    local prompt, d = gw:create_directives(ctx)
    if not (d and d.faults) then return nil end
    local seen = self.create_seen[prompt] or 0
    self.create_seen[prompt] = seen + 1
    return triggered(d.faults, "create", seen)
  end
  local task = gw:task_for(endpoint, ctx)
  local trig = task and task.faults
  if not trig then return nil end
  local seen = trig.seen[endpoint] or 0
  trig.seen[endpoint] = seen + 1
  if gw.journal then gw.journal:touch(task) end
  return triggered(trig.list, endpoint, seen)
end

local JSON = "application/json"
local HTML_PAGE = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
  .. "<body><h1>502 Bad Gateway</h1><p>The upstream server did not answer (injected by modkie mock).</p>"
  .. "</body></html>\n"
local MESSAGES = {
  ["500"] = "internal error (injected fault)", ["502"] = "bad gateway (injected fault)",
  ["503"] = "service unavailable (injected fault)", ["455"] = "service under maintenance (injected fault)",
  ["429"] = "rate limited (injected fault)",
}

local function copy(res)
  local out = {}
  for k, v in pairs(res) do out[k] = v end
  return out
end

-- An error status: in the dialect's style on the API, a real status on /files;
-- 502 and 503 as a proxy in front of the gateway sends them.
local function status_answer(self, kind, endpoint, gw)
  local code = tonumber(kind)
  local headers
  if code == 429 or code == 455 or code == 503 then
    headers = { ["Retry-After"] = string.format("%d", self.retry_after) }
  end
  if code == 502 then
    return { status = 502, headers = { ["Content-Type"] = "text/html; charset=utf-8" }, body = HTML_PAGE }
  elseif code == 503 then
    return { status = 503, headers = headers, body = "" }
  end
  if endpoint == "files" then
    local h = { ["Content-Type"] = JSON }
    for k, v in pairs(headers or {}) do h[k] = v end
    return { status = code, headers = h,
      body = string.format('{"code":%d,"msg":"%s","data":null}', code, MESSAGES[kind]) }
  end
  return gw:fail(code, MESSAGES[kind], headers)
end

local BUILD = {
  reset = function() return { reset = true } end,
  stall = function(self, real) local r = copy(real); r.delay = self.stall_seconds; return r end,
  cut = function(_, real)
    local r = copy(real)
    r.truncate = math.floor(#(real.body or "") / 2)
    return r
  end,
  badjson = function(_, real)
    return { status = 200, headers = { ["Content-Type"] = JSON }, body = (real.body or "{"):sub(1, -2) }
  end,
  html = function()
    return { status = 502, headers = { ["Content-Type"] = "text/html; charset=utf-8" }, body = HTML_PAGE }
  end,
  huge = function(self, real)
    if not self.padding or #self.padding ~= self.huge_bytes then
      self.padding = string.rep(" ", self.huge_bytes)
    end
    local r = copy(real)
    r.body = self.padding .. (real.body or "")
    return r
  end,
}

--- The gateway's hook: a replacement answer, or nil to answer normally.
-- `proceed()` runs the endpoint and returns its real answer.
function Plan:intercept(route_name, ctx, gw, proceed)
  local endpoint = ROUTE_ENDPOINT[route_name]
  if not endpoint then return nil end
  local kind = self:draw(endpoint)
  kind = self:trigger(endpoint, ctx, gw) or kind
  if not kind then return nil end
  local c = self.counts[endpoint]
  c[kind] = (c[kind] or 0) + 1
  if gw.journal then gw.journal:touch() end
  if faults.BEFORE[kind] then return status_answer(self, kind, endpoint, gw) end
  local real = proceed()
  if BUILD[kind] then return BUILD[kind](self, real) end
  return status_answer(self, kind, endpoint, gw)
end

return faults

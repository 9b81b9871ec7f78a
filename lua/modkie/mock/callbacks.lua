--- The emulator's callbacks: when a task created with `callBackUrl` ends,
-- POST its final record there, signed the way the dialect signs, and try
-- again with backoff while the receiver does not answer 2xx.
--
-- Bodies, as the gateway's documentation shows them:
--   kie     {"code":200,"msg":"Playground task completed successfully.","data":{record}}
--           {"code":501,"msg":"Playground task failed.","data":{fail record}}
--           (the market pages' callback records: consumeCredits, costTime in
--           seconds, remainedCredits; no resultJson on a failure)
--   modkie  {"event":"task.completed","taskId":…,"state":…,"result":{…},
--           "failMsg":…,"creditsCharged":…,"timestamp":"…"} (ModKie's webhook page)
-- Signatures, when the emulator has a secret (--webhook-secret):
--   kie     X-Webhook-Timestamp: <Unix seconds>, X-Webhook-Signature:
--           base64(HMAC-SHA256(taskId .. "." .. timestamp, secret))
--   modkie  X-ModKie-Signature: sha256=<hex HMAC-SHA256(raw body, secret)>
--
-- Delivery never blocks the emulator: each POST runs LuaSocket's HTTP client
-- (socket.http) in a coroutine over a non-blocking socket, resumed by the
-- server's own select loop when its socket is ready (see `watch`, `ready`).
-- A POST gets DEADLINE seconds; a non-2xx answer, a refused connection or a
-- timeout is tried again after backoff, backoff * 2, … up to `retries` times
-- (Kie documents 3 retries, 1, 5 and 15 minutes apart; the emulator's
-- defaults are 3 retries from 1 s so that tests see them).
--
-- Prompt directives: [callback=drop] (never sent), [callback=delay:S] (sent
-- S seconds after the task ends), [callback=duplicate] (sent twice); several
-- separated by commas.
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local url = require "socket.url"

local trim = require("modkie.encoding").trim

local Callbacks = {}
Callbacks.__index = Callbacks

local DEADLINE = 10 -- seconds one POST may take

--- opts: secret (nil: unsigned), retries (default 3), backoff (seconds, default 1),
-- sign(body, task, secret, now) -> headers (the gateway's signer),
-- body(task, now) -> string (the final record's body), now (clock).
function Callbacks.new(opts)
  return setmetatable({
    secret = opts.secret, retries = opts.retries or 3, backoff = opts.backoff or 1,
    sign = opts.sign, body = opts.body, clock = opts.now or socket.gettime,
    due = {},       -- deliveries waiting for their time, unsorted (few at once)
    flying = {},    -- coroutine -> delivery, a POST under way
    waits = {},     -- socket -> coroutine waiting on it
    want_r = {}, want_w = {},
    stats = { sent = 0, delivered = 0, failed = 0, retried = 0, dropped = 0, gave_up = 0 },
    log = opts.log,
  }, Callbacks)
end

--- Read a [callback=…] directive value into `d.callback`; nil, message when bad.
function Callbacks.parse_directive(value)
  local out = {}
  for item in (value .. ","):gmatch("([^,]*),") do
    item = trim(item)
    local delay = item:match("^delay:([%d%.]+)$")
    if item == "drop" then out.drop = true
    elseif item == "duplicate" then out.copies = 2
    elseif delay and tonumber(delay) then out.delay = tonumber(delay)
    else return nil, "'" .. item .. "' is not drop, duplicate or delay:SECONDS" end
  end
  return out
end

--- Schedule the callbacks of `task` (its `callback` URL, its `callback_opts`).
function Callbacks:schedule(task)
  local o = task.callback_opts or {}
  if o.drop then
    self.stats.dropped = self.stats.dropped + 1
    return
  end
  for _ = 1, o.copies or 1 do
    self.due[#self.due + 1] = { task = task, at = task.ends + (o.delay or 0), attempt = 0 }
  end
end

--- Forget every pending delivery (the gateway was reset).
function Callbacks:reset()
  for co, dv in pairs(self.flying) do
    if dv.sock then dv.sock:close() end
    self.flying[co] = nil
  end
  self.due, self.waits, self.want_r, self.want_w = {}, {}, {}, {}
  for k in pairs(self.stats) do self.stats[k] = 0 end
end

-- A LuaSocket TCP object for socket.http whose waits yield to the emulator's loop.
local Async = {}
Async.__index = Async

local function wait(self, mode)
  if socket.gettime() > self.deadline then return false end
  coroutine.yield(mode, self.sock)
  return socket.gettime() <= self.deadline
end

-- the socket stays non-blocking: waits are the coroutine's
function Async.settimeout() return 1 end
function Async.setoption() return 1 end
function Async:getfd() return self.sock:getfd() end
function Async:dirty() return self.sock:dirty() end
function Async:close() return self.sock:close() end

function Async:connect(host, port)
  local ok, err = self.sock:connect(host, port)
  if ok then return 1 end
  if err ~= "timeout" and err ~= "Operation already in progress" then return nil, err end
  if not wait(self, "w") then return nil, "timeout" end
  ok, err = self.sock:connect(host, port)
  if ok or err == "already connected" then return 1 end
  return nil, err
end

function Async:send(data, i, j)
  i = i or 1
  while true do
    local last, err, sent = self.sock:send(data, i, j)
    if last then return last end
    if err ~= "timeout" then return nil, err, sent end
    i = sent + 1
    if not wait(self, "w") then return nil, "timeout", sent end
  end
end

function Async:receive(pattern, prefix)
  local parts = { prefix }
  pattern = pattern or "*l"
  while true do
    local data, err, partial = self.sock:receive(pattern)
    if data then
      parts[#parts + 1] = data
      return table.concat(parts)
    end
    if partial and partial ~= "" then
      parts[#parts + 1] = partial
      if type(pattern) == "number" then pattern = pattern - #partial end
    end
    if err == "closed" and pattern == "*a" then return table.concat(parts) end
    if err ~= "timeout" then return nil, err, table.concat(parts) end
    if not wait(self, "r") then return nil, "timeout", table.concat(parts) end
  end
end

-- One POST, inside a coroutine: the HTTP status, or nil and why. It drives
-- socket.http's own request steps (open, request line, headers, body, status
-- line) rather than http.request, whose pcall a coroutine cannot yield
-- across on Lua 5.1; an error they raise ends the coroutine, and `resume`
-- reads it.
local function post(dv, target, headers, body)
  local parsed = url.parse(target)
  if not parsed or parsed.scheme ~= "http" or not parsed.host then
    return nil, "not an http:// URL (the emulator speaks plain HTTP)"
  end
  local port = tonumber(parsed.port) or 80
  local send = { host = parsed.host .. (parsed.port and (":" .. parsed.port) or ""),
    ["content-type"] = "application/json", ["content-length"] = tostring(#body), connection = "close" }
  for k, v in pairs(headers) do send[k] = v end
  local h = http.open(parsed.host, port, function()
    local sock = socket.tcp()
    sock:settimeout(0)
    dv.sock = sock
    return setmetatable({ sock = sock, deadline = socket.gettime() + DEADLINE }, Async)
  end)
  h:sendrequestline("POST", url.build({ path = parsed.path or "/", query = parsed.query }))
  h:sendheaders(send)
  h:sendbody({ ["content-length"] = send["content-length"] }, ltn12.source.string(body))
  local code = h:receivestatusline()
  h:close()
  if type(code) ~= "number" then return nil, "no HTTP status line in the answer" end
  return code
end

function Callbacks:start(dv, now)
  local task = dv.task
  local body = self.body(task, now)
  local headers = self.secret and self.sign(body, task, self.secret, now) or {}
  dv.attempt = dv.attempt + 1
  self.stats.sent = self.stats.sent + 1
  local co = coroutine.create(function() return post(dv, task.callback, headers, body) end)
  self.flying[co] = dv
  self:resume(co)
end

-- Run the coroutine until it waits on a socket or the POST is over.
function Callbacks:resume(co)
  local dv = self.flying[co]
  local ok, a, b = coroutine.resume(co)
  if ok and coroutine.status(co) == "suspended" then
    self.waits[b] = co
    local set = a == "w" and self.want_w or self.want_r
    set[b] = true
    return
  end
  self.flying[co] = nil
  if dv.sock then dv.sock:close() end
  local status, why = a, b
  if not ok then status, why = nil, tostring(type(a) == "table" and a[1] or a) end
  if status and status >= 200 and status < 300 then
    self.stats.delivered = self.stats.delivered + 1
  else
    self.stats.failed = self.stats.failed + 1
    why = status and ("HTTP " .. status) or why
    if dv.attempt <= self.retries then
      self.stats.retried = self.stats.retried + 1
      dv.at = self.clock() + self.backoff * 2 ^ (dv.attempt - 1)
      self.due[#self.due + 1] = dv
    else
      self.stats.gave_up = self.stats.gave_up + 1
    end
    if self.log then
      self.log(("callback %s to %s: %s"):format(dv.task.id, dv.task.callback, tostring(why)))
    end
  end
end

--- Sockets the server loop must watch for the deliveries: reads, writes.
function Callbacks:watch()
  local r, w = {}, {}
  for s in pairs(self.want_r) do r[#r + 1] = s end
  for s in pairs(self.want_w) do w[#w + 1] = s end
  return r, w
end

--- Seconds until the next delivery is due or a POST may time out, or nil.
function Callbacks:timeout(now)
  local t
  for _, dv in ipairs(self.due) do
    local wait_s = dv.at - now
    if not t or wait_s < t then t = wait_s end
  end
  if next(self.flying) and (not t or t > 0.5) then t = 0.5 end -- notice deadlines
  if t and t < 0 then t = 0 end
  return t
end

--- After the server's select: start what is due, resume what is ready.
function Callbacks:ready(readable, writable, now)
  for _, list in ipairs({ readable, writable }) do
    for _, s in ipairs(list) do
      local co = self.waits[s]
      if co then
        self.waits[s], self.want_r[s], self.want_w[s] = nil, nil, nil
        self:resume(co)
      end
    end
  end
  for s, co in pairs(self.waits) do -- a socket that never got ready: its wait times out
    local dv = self.flying[co]
    if dv and dv.sock == s and now > (dv.started or now) + DEADLINE then
      self.waits[s], self.want_r[s], self.want_w[s] = nil, nil, nil
      self:resume(co)
    end
  end
  if #self.due > 0 then
    local due = self.due
    self.due = {} -- a delivery that fails at once is due again: it goes here
    for _, dv in ipairs(due) do
      if dv.at <= now then
        dv.started = now
        self:start(dv, now)
      else
        self.due[#self.due + 1] = dv
      end
    end
  end
end

return Callbacks

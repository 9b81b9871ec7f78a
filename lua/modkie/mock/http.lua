--- A small non-blocking HTTP/1.1 server for the emulator.
-- One thread: a `socket.select` loop over non-blocking LuaSocket sockets.
-- It frames requests (Content-Length or chunked bodies), keeps connections alive,
-- answers pipelined requests in order, writes big answers in pieces, and
-- survives any client: a malformed request gets 400 and a close, a handler
-- error gets 500. It knows nothing of the API; a handler maps a request to a
-- response table:
--   { status = 200, headers = { ["Content-Type"] = "…" }, body = "…",
--     close = true,      -- close the connection after this answer
--     drop = true,       -- close at once without answering
--     reset = true,      -- like drop, but the close is a TCP reset (RST)
--     truncate = n,      -- send only the first n bytes of the body, then close
--     delay = seconds }  -- hold the answer this long (later requests wait)
-- `drop`, `reset`, `truncate` and `delay` are there for fault injection.
local socket = require "socket"

local gettime = socket.gettime
local concat = table.concat
local byte = string.byte

local http = {}

local MAX_HEAD = 16 * 1024          -- request line + headers
local MAX_BODY = 8 * 1024 * 1024    -- request body
local READ_SIZE = 64 * 1024
local IDLE_TIMEOUT = 120            -- keep-alive connection waiting for a request
local REQUEST_TIMEOUT = 30          -- a request begun but not complete
local WRITE_TIMEOUT = 60            -- an answer the client does not read
local LINGER = 2                    -- reading what follows a final answer
local SWEEP_EVERY = 1
local NOTHING = {}
-- LuaSocket's select refuses descriptors >= FD_SETSIZE (1024); stay below it.
local DEFAULT_MAX_CONNECTIONS = 900
http.MAX_CONNECTIONS_LIMIT = 1000

local REASONS = {
  [200] = "OK", [201] = "Created", [204] = "No Content",
  [400] = "Bad Request", [401] = "Unauthorized", [402] = "Payment Required",
  [403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed",
  [408] = "Request Timeout", [411] = "Length Required", [413] = "Payload Too Large",
  [422] = "Unprocessable Entity", [429] = "Too Many Requests",
  [431] = "Request Header Fields Too Large", [433] = "Sub-key Limit",
  [455] = "Maintenance", [500] = "Internal Server Error", [501] = "Not Implemented",
  [502] = "Bad Gateway", [503] = "Service Unavailable", [504] = "Gateway Timeout",
  [505] = "HTTP Version Not Supported",
}

--- A set of sockets as an array for select, with O(1) add and remove.
local function new_set() return { list = {}, index = {} } end

local function set_add(set, s)
  if set.index[s] then return end
  local list = set.list
  list[#list + 1] = s
  set.index[s] = #list
end

local function set_remove(set, s)
  local i = set.index[s]
  if not i then return end
  local list = set.list
  local n = #list
  local last = list[n]
  list[i] = last
  set.index[last] = i
  list[n] = nil
  set.index[s] = nil
end

local function traceback(err)
  return debug.traceback(tostring(err), 2)
end

--- Does the comma-separated header value `value` hold `token`?
local function has_token(value, token)
  if not value then return false end
  for t in value:lower():gmatch("[^,%s]+") do
    if t == token then return true end
  end
  return false
end

-- Parse the request head (request line and headers, without the blank line).
-- Returns a request table, or nil, status, message.
local function parse_head(head)
  local line_end = head:find("\r?\n") or (#head + 1)
  local method, target, major, minor =
    head:sub(1, line_end - 1):match("^([%w!#%$%%&'%*%+%.%^_`|~%-]+) (%S+) HTTP/(%d)%.(%d)\r?$")
  if not method then return nil, 400, "malformed request line" end
  if major ~= "1" then return nil, 505, "only HTTP/1.x is spoken here" end
  local headers = {}
  local pos = head:find("\n", line_end, true)
  while pos do
    local nl = head:find("\n", pos + 1, true)
    local line = head:sub(pos + 1, (nl or #head + 1) - 1)
    pos = nl
    if line:sub(-1) == "\r" then line = line:sub(1, -2) end
    local name, value = line:match("^([^%s:]+):(.*)$")
    if not name then return nil, 400, "malformed header line" end
    -- the value without blanks at either end, found from each end: a
    -- pattern `[ \t]*(.-)[ \t]*$` backtracks over a run of blanks at every
    -- position, quadratic in the line (fuzz finding mock_http/slow-header-blanks)
    local first, last = value:find("[^ \t]"), #value
    if first then
      local b = byte(value, last)
      while b == 32 or b == 9 do
        last = last - 1
        b = byte(value, last)
      end
      value = value:sub(first, last)
    else
      value = ""
    end
    name = name:lower()
    local old = headers[name]
    if old then
      if name == "content-length" and old ~= value then
        return nil, 400, "conflicting Content-Length headers"
      end
      if name ~= "content-length" then headers[name] = old .. ", " .. value end
    else
      headers[name] = value
    end
  end
  local path, query = target:match("^([^?#]*)%??([^#]*)")
  if target:find("^%a[%w+.-]*://") then -- absolute form: keep only the path
    path = path:match("^%a[%w+.-]*://[^/]*(.*)$")
    if path == "" then path = "/" end
  end
  local version = "1." .. minor
  local keep_alive
  if minor == "0" then
    keep_alive = has_token(headers.connection, "keep-alive")
  else
    keep_alive = not has_token(headers.connection, "close")
  end
  return {
    method = method, target = target, path = path, query = query,
    version = version, headers = headers, keep_alive = keep_alive,
  }
end

local Server = {}
Server.__index = Server

--- Make a server (not yet listening).
-- opts: host, port, handler(req) -> response, log (function(line) or nil),
-- max_connections, max_body_for (function(path) -> the body cap of requests
-- to that path, or nil for the usual 8 MiB), on_error (function(message)), backlog, io (other sockets
-- the loop watches, e.g. the callbacks' outgoing connections: an object with
-- `watch()` -> read list, write list; `timeout(now)` -> seconds or nil;
-- `ready(readable, writable, now)` called after every select).
function http.new(opts)
  local self = setmetatable({}, Server)
  self.host = opts.host or "127.0.0.1"
  self.port = opts.port or 0
  self.handler = assert(opts.handler, "handler required")
  self.log = opts.log
  self.on_error = opts.on_error or function(msg) io.stderr:write(msg, "\n") end
  self.max_connections = math.min(opts.max_connections or DEFAULT_MAX_CONNECTIONS,
    http.MAX_CONNECTIONS_LIMIT)
  self.backlog = opts.backlog or 1024
  self.io = opts.io
  self.max_body_for = opts.max_body_for
  self.conns = {}           -- socket -> connection
  self.rset = new_set()     -- sockets we want to read from
  self.wset = new_set()     -- sockets with an answer not yet fully written
  self.delayed = {}         -- connections holding a delayed answer
  self.dirty = {}           -- connections whose LuaSocket buffer may hold data
  self.next_sweep = 0
  -- Connection counters, read by the gateway's stats.
  self.stats = { connections = 0, open_connections = 0, max_open_connections = 0, refused = 0 }
  return self
end

--- Bind and listen. Returns true, or nil and a message.
function Server:listen()
  local sock, err = socket.bind(self.host, self.port, self.backlog)
  if not sock then return nil, err end
  sock:settimeout(0)
  self.sock = sock
  local _, port = sock:getsockname()
  self.port = tonumber(port)
  set_add(self.rset, sock)
  return true
end

--- Reset the connection counters (open connections stay open).
function Server:reset_stats()
  local s = self.stats
  s.connections, s.refused = 0, 0
  s.max_open_connections = s.open_connections
end

function Server:close_conn(c)
  if c.closed then return end
  c.closed = true
  local s = c.sock
  set_remove(self.rset, s)
  set_remove(self.wset, s)
  self.delayed[c] = nil
  self.dirty[c] = nil
  self.conns[s] = nil
  s:close()
  self.stats.open_connections = self.stats.open_connections - 1
end

-- Close the longest-idle keep-alive connection to make room; false if none.
-- O(open connections), but only when the limit is reached.
function Server:evict_idle()
  local victim
  for _, c in pairs(self.conns) do
    if c.lingering then victim = c; break end
    if c.inlen == 0 and not c.outq[1] and not c.held and not c.close_after
      and (not victim or c.last < victim.last) then
      victim = c
    end
  end
  if not victim then return false end
  self:close_conn(victim)
  return true
end

local REFUSAL_BODY = '{"code":503,"msg":"too many connections","data":null}'
local REFUSAL = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
  .. "Content-Length: " .. #REFUSAL_BODY .. "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
  .. REFUSAL_BODY

function Server:accept(now)
  for _ = 1, 128 do
    local s = self.sock:accept()
    if not s then return end
    s:settimeout(0)
    self.stats.connections = self.stats.connections + 1
    if self.stats.open_connections >= self.max_connections and not self:evict_idle() then
      -- Full of busy connections: answer politely and never select on it.
      self.stats.refused = self.stats.refused + 1
      s:send(REFUSAL)
      s:close()
    else
      s:setoption("tcp-nodelay", true)
      local c = {
        sock = s, inbuf = "", inparts = {}, inlen = 0,
        outq = {}, outhead = 1, outpos = 0,
        last = now, begun = nil, body_cap = self.max_body_for,
      }
      self.conns[s] = c
      set_add(self.rset, s)
      local st = self.stats
      st.open_connections = st.open_connections + 1
      if st.open_connections > st.max_open_connections then
        st.max_open_connections = st.open_connections
      end
    end
  end
end

-- Whether `c` should be in the read set: not while an answer is pending
-- (back-pressure: a client must read what it asked for before asking more).
function Server:update_interest(c)
  if c.closed then return end
  if c.lingering or not (c.outq[c.outhead] or c.held or c.close_after) then
    set_add(self.rset, c.sock)
  else
    set_remove(self.rset, c.sock)
  end
end

function Server:read(c, now)
  local data, err, partial = c.sock:receive(READ_SIZE)
  if data then
    -- A full read may leave bytes in LuaSocket's own buffer, which select
    -- cannot see: look again on the next turn.
    self.dirty[c] = true
  else
    data = partial
  end
  if c.lingering then -- after a final answer: discard, wait for the close
    if err == "closed" then self:close_conn(c) end
    return
  end
  if data and #data > 0 then
    c.last = now
    c.begun = c.begun or now
    c.inparts[#c.inparts + 1] = data
    c.inlen = c.inlen + #data
  end
  if err == "closed" then
    c.peer_closed = true
  elseif err and err ~= "timeout" then
    self:close_conn(c)
    return
  end
  -- Waiting for a body that has not all arrived: nothing to parse yet.
  if not (c.want and c.inlen < c.want) then self:process(c, now) end
  if c.peer_closed and not c.closed then
    -- The client sent all it will: answer what is complete, then close.
    if c.outq[c.outhead] or c.held then
      c.close_after = true
      self:update_interest(c)
    else
      self:close_conn(c)
    end
  end
end

-- Join the input pieces into one string (done only when parsing).
local function input(c)
  if #c.inparts > 0 then
    c.inbuf = c.inbuf .. concat(c.inparts)
    c.inparts = {}
  end
  return c.inbuf
end

local function consume(c, upto)
  c.inbuf = c.inbuf:sub(upto + 1)
  c.inlen = #c.inbuf
  c.scan = nil
end

-- A chunked body: take the chunks that have arrived; the request once the
-- last chunk (size 0) and the trailer section are in, nil while more is
-- needed, or nil, status, message.
local function next_chunk(c, buf)
  local chunks, pos = c.chunks, 1
  while true do
    local eol = buf:find("\r\n", pos, true)
    if not eol then
      if #buf - pos > 1024 then return nil, 400, "chunk size line too long" end
      break
    end
    local size = tonumber(buf:sub(pos, eol - 1):match("^%s*(%x+)%s*;?.-$") or "", 16)
    if not size then return nil, 400, "bad chunk size" end
    if size == 0 then
      -- trailer fields, ended by an empty line (they are dropped)
      local stop = buf:sub(eol, eol + 3) == "\r\n\r\n" and eol + 3 or select(2, buf:find("\r\n\r\n", eol, true))
      if not stop then break end
      local req = c.head
      req.body = table.concat(chunks.parts)
      consume(c, stop)
      c.head, c.chunks = nil, nil
      c.begun = c.inlen > 0 and c.last or nil
      return req
    end
    if chunks.size + size > (chunks.max or MAX_BODY) then return nil, 413, "request body too large" end
    if #buf < eol + 2 + size + 1 then break end
    if buf:sub(eol + 2 + size, eol + 3 + size) ~= "\r\n" then return nil, 400, "chunk not ended by CRLF" end
    chunks.parts[#chunks.parts + 1] = buf:sub(eol + 2, eol + 1 + size)
    chunks.size = chunks.size + size
    pos = eol + 4 + size
  end
  if pos > 1 then consume(c, pos - 1) end
  return nil
end

-- Take one complete request off the input: request, or nil (need more), or
-- nil, status, message (the client broke the protocol).
local function next_request(c)
  local sc = c.scan
  if sc then
    -- A head has begun and its end was not in the input so far: look for it
    -- only in the pieces that arrived since (and the 2 bytes before them),
    -- without joining the input. Joining and searching it all on every read
    -- is quadratic in a head that arrives a byte at a time (fuzz finding
    -- mock_http/slow-header-blanks).
    local parts = c.inparts
    if #parts == sc.n then return nil end
    local new = sc.tail .. concat(parts, "", sc.n + 1, #parts)
    if not new:find("\n\r?\n") and c.inlen <= MAX_HEAD + 1 then
      sc.n, sc.tail = #parts, new:sub(-2)
      return nil
    end
  end
  local buf = input(c)
  if not c.head then
    local s = buf:find("[^\r\n]")
    if not s then consume(c, #buf); return nil end
    if s > 1 then -- blank lines before a request: drop them
      consume(c, s - 1)
      buf, s = c.inbuf, 1
    end
    local e1, e2 = buf:find("\r?\n\r?\n")
    if not e1 then
      if #buf - s > MAX_HEAD then return nil, 431, "request head too large" end
      c.scan = { n = 0, tail = buf:sub(-2) } -- input() left no pieces
      return nil
    end
    if e1 - s > MAX_HEAD then return nil, 431, "request head too large" end
    local req, status, msg = parse_head(buf:sub(s, e1 - 1))
    if not req then return nil, status, msg end
    local h = req.headers
    local length = 0
    local max_body = c.body_cap and c.body_cap(req.path) or MAX_BODY
    if h["transfer-encoding"] then
      -- only chunked (RFC 9112 7.1); with Content-Length too the framing is ambiguous: refuse
      if not h["transfer-encoding"]:lower():match("^%s*chunked%s*$") then
        return nil, 501, "only the chunked transfer coding is understood"
      end
      if h["content-length"] then return nil, 400, "both Transfer-Encoding and Content-Length" end
      consume(c, e2)
      c.head, c.chunks = req, { parts = {}, size = 0, max = max_body }
      return next_request(c)
    end
    if h["content-length"] then
      if not h["content-length"]:match("^%d+$") then return nil, 400, "bad Content-Length" end
      length = tonumber(h["content-length"])
      if length > max_body then return nil, 413, "request body too large" end
    end

    consume(c, e2)
    c.head, c.want = req, length
    buf = c.inbuf
  end
  if c.chunks then return next_chunk(c, buf) end
  if #buf < c.want then return nil end
  local req = c.head
  req.body = buf:sub(1, c.want)
  consume(c, c.want)
  c.head, c.want = nil, nil
  c.begun = c.inlen > 0 and c.last or nil
  return req
end

-- Serialise an answer onto the connection's output queue.
local function queue(c, req, res)
  local status = res.status or 200
  local body = res.body or ""
  local length = res.length or #body
  local keep = req.keep_alive and not res.close and not c.peer_closed
  if res.truncate then
    body = body:sub(1, res.truncate)
    keep = false
  end
  if req.method == "HEAD" then body = "" end
  local parts = { "HTTP/1.1 ", string.format("%d", status), " ", REASONS[status] or "Unknown", "\r\n" }
  if res.headers then
    for name, value in pairs(res.headers) do
      parts[#parts + 1] = name .. ": " .. tostring(value) .. "\r\n"
    end
  end
  parts[#parts + 1] = "Content-Length: " .. string.format("%d", length) .. "\r\n"
  if not keep then
    parts[#parts + 1] = "Connection: close\r\n"
  elseif req.version == "1.0" then
    parts[#parts + 1] = "Connection: keep-alive\r\n"
  end
  parts[#parts + 1] = "\r\n"
  parts[#parts + 1] = body
  c.outq[#c.outq + 1] = concat(parts)
  if not keep then c.close_after = true end
end

-- Answer a protocol error and close.
local function reject(c, status, message)
  local body = '{"code":' .. string.format("%d", status) .. ',"msg":"' .. message .. '","data":null}'
  queue(c, { method = "?", keep_alive = false },
    { status = status, headers = { ["Content-Type"] = "application/json" }, body = body, close = true })
end

function Server:process(c, now)
  while not (c.closed or c.held or c.close_after or c.lingering) do
    local req, status, message = next_request(c)
    if not req then
      if status then
        reject(c, status, message)
        if self.log then self.log(string.format("- - %d %s", status, message)) end
      end
      break
    end
    self:dispatch(c, req, now)
  end
  if not c.closed then self:flush(c, now, false) end
end

function Server:dispatch(c, req, now)
  local ok, res = xpcall(function() return self.handler(req) end, traceback)
  if not ok or type(res) ~= "table" then
    self.on_error("modkie mock: error handling " .. req.method .. " " .. req.target .. ": "
      .. tostring(ok and "handler returned no response" or res))
    res = { status = 500, headers = { ["Content-Type"] = "application/json" },
      body = '{"code":500,"msg":"internal error","data":null}' }
  end
  if self.log then
    self.log(string.format("%s %s %d %d", req.method, req.target, res.status or 0, #(res.body or "")))
  end
  if res.reset then
    -- Linger 0: close() sends RST instead of FIN, as a crashed peer would.
    c.sock:setoption("linger", { on = true, timeout = 0 })
    self:close_conn(c)
  elseif res.drop then
    self:close_conn(c)
  elseif res.delay and res.delay > 0 then
    c.held = { at = now + res.delay, req = req, res = res }
    self.delayed[c] = true
  else
    queue(c, req, res)
  end
end

-- Write what the socket takes now. `resume`: called from the loop after the
-- socket became writable, so requests waiting behind the answer may go on.
function Server:flush(c, now, resume)
  local q = c.outq
  while q[c.outhead] do
    local data = q[c.outhead]
    local last, err, sent = c.sock:send(data, c.outpos + 1)
    if last then
      q[c.outhead] = nil
      c.outhead, c.outpos = c.outhead + 1, 0
      c.last = now
    elseif err == "timeout" then
      if sent and sent > c.outpos then c.outpos, c.last = sent, now end
      set_add(self.wset, c.sock)
      self:update_interest(c)
      return
    else
      self:close_conn(c)
      return
    end
  end
  c.outq, c.outhead, c.outpos = {}, 1, 0
  set_remove(self.wset, c.sock)
  if c.close_after and not c.held then
    self:finish(c, now)
    return
  end
  self:update_interest(c)
  if resume and (c.inlen > 0 or c.peer_closed) then
    self:process(c, now)
    if c.peer_closed and not c.closed and not c.outq[c.outhead] and not c.held then
      self:close_conn(c)
    end
  end
end

-- After a final answer: stop sending, and read (and drop) whatever the client
-- still sends until it closes, so an unread request does not turn our close
-- into a reset that could destroy the answer in flight.
function Server:finish(c, now)
  if c.peer_closed then self:close_conn(c); return end
  c.sock:shutdown("send")
  c.lingering = now + LINGER
  c.inparts, c.inbuf, c.inlen, c.scan = {}, "", 0, nil
  self:update_interest(c)
end

function Server:wake_delayed(now)
  for c in pairs(self.delayed) do
    if c.held.at <= now then
      local held = c.held
      c.held = nil
      self.delayed[c] = nil
      queue(c, held.req, held.res)
      self:flush(c, now, true)
    end
  end
end

-- Once a second: close connections that idle, stall or linger too long.
function Server:sweep(now)
  self.next_sweep = now + SWEEP_EVERY
  for _, c in pairs(self.conns) do
    if c.lingering then
      if now >= c.lingering then self:close_conn(c) end
    elseif c.outq[c.outhead] then
      if now - c.last > WRITE_TIMEOUT then self:close_conn(c) end
    elseif not c.held then
      if c.begun and now - c.begun > REQUEST_TIMEOUT then
        self:close_conn(c)
      elseif now - c.last > IDLE_TIMEOUT then
        self:close_conn(c)
      end
    end
  end
end

-- A new list: a's items, then b's (the sets' own lists stay the server's).
local function joined(a, b)
  local out = {}
  for i = 1, #a do out[i] = a[i] end
  for i = 1, #b do out[#a + i] = b[i] end
  return out
end

--- Run one turn of the loop, waiting at most `timeout` seconds for I/O.
function Server:step(timeout)
  local now = gettime()
  if next(self.dirty) then timeout = 0 end
  for c in pairs(self.delayed) do
    local wait = c.held.at - now
    if wait < timeout then timeout = wait < 0 and 0 or wait end
  end
  local rlist, wlist, io = self.rset.list, self.wset.list, self.io
  if io then
    local xr, xw = io:watch()
    if #xr > 0 or #xw > 0 then rlist, wlist = joined(rlist, xr), joined(wlist, xw) end
    local t = io:timeout(now)
    if t and t < timeout then timeout = t end
  end
  local readable, writable = socket.select(rlist, wlist, timeout)
  now = gettime()
  local dirty = self.dirty
  if next(dirty) then self.dirty = {} else dirty = NOTHING end
  for i = 1, #readable do
    local s = readable[i]
    if s == self.sock then
      self:accept(now)
    else
      local c = self.conns[s]
      if c then dirty[c] = nil; self:guard(self.read, c, now) end
    end
  end
  for c in pairs(dirty) do
    if self.rset.index[c.sock] then self:guard(self.read, c, now) end
  end
  for i = 1, #writable do
    local c = self.conns[writable[i]]
    if c then self:guard(self.flush, c, now, true) end
  end
  if next(self.delayed) then self:wake_delayed(now) end
  if io then io:ready(readable, writable, now) end
  if now >= self.next_sweep then self:sweep(now) end
end

-- A bug in this file must cost one connection, never the process.
function Server:guard(fn, c, now, arg)
  local ok, err = xpcall(function() fn(self, c, now, arg) end, traceback)
  if not ok then
    self.on_error("modkie mock: connection error: " .. tostring(err))
    pcall(self.close_conn, self, c)
  end
end

--- Serve until `self.stopping` is set. `on_turn(now)`, if given, runs after
-- every turn, and a turn waits at most `turn` seconds (default 1).
function Server:run(turn, on_turn)
  turn = turn or SWEEP_EVERY
  while not self.stopping do
    local ok, err = xpcall(function()
      self:step(turn)
      if on_turn then on_turn(gettime()) end
    end, traceback)
    if not ok then
      self.on_error("modkie mock: loop error: " .. tostring(err))
      socket.sleep(0.01)
    end
  end
end

--- Stop listening and close every connection.
function Server:close()
  self.stopping = true
  for _, c in pairs(self.conns) do self:close_conn(c) end
  if self.sock then self.sock:close(); self.sock = nil end
end

return http

--- Fuzz harness: the emulator's HTTP/1.1 server (modkie.mock.http) reading
-- any bytes from a client, without sockets: a fake socket hands the input
-- to Server:read in chunks, exactly as LuaSocket's receive does, and
-- collects what the server sends.
-- Input: a byte that sets the chunk sizes, then the bytes the client sends.
-- Properties:
--  * nothing raises out of Server:read (in the emulator the guard would
--    turn a raise into a lost connection and a log line);
--  * what the server sends is a sequence of well-formed HTTP/1.1 answers,
--    each with a Content-Length that matches its body;
--  * chunking does not matter: the same bytes in one piece give the same
--    requests to the handler and the same answers.
local http = require "modkie.mock.http"
local F = require "fuzzutil"
local check, show = F.check, F.show

local NOW = 1000

local Sock = {}
Sock.__index = Sock

function Sock:receive(n)
  local c = self.chunks[self.pos]
  self.pos = self.pos + 1
  if c == nil then return nil, "closed", "" end
  if #c >= n then return c:sub(1, n) end -- never: chunks are smaller than READ_SIZE
  return nil, "timeout", c
end

function Sock:send(data, i)
  self.out[#self.out + 1] = data:sub(i or 1)
  return #data
end

function Sock:close() self.closed = true; return 1 end
function Sock:setoption() return 1 end
function Sock:shutdown() return 1 end

-- Feed `chunks` to a new server; return the handler's log and the output.
local function serve(chunks)
  local log = {}
  local server = http.new({
    handler = function(req)
      log[#log + 1] = { req.method, req.target, req.path, req.query, req.version, req.body, req.keep_alive }
      local res = { status = 200, headers = { ["Content-Type"] = "text/plain" },
        body = req.method .. " " .. req.path .. " " .. #req.body }
      if req.headers["x-close"] then res.close = true end
      if req.headers["x-truncate"] then res.truncate = 3 end
      return res
    end,
    on_error = function(msg) error("on_error: " .. msg) end,
  })
  local sock = setmetatable({ chunks = chunks, pos = 1, out = {} }, Sock)
  local c = { sock = sock, inbuf = "", inparts = {}, inlen = 0, outq = {}, outhead = 1, outpos = 0, last = NOW }
  server.conns[sock] = c
  server.rset.list[1], server.rset.index[sock] = sock, 1
  server.stats.open_connections = 1
  for _ = 1, #chunks + 2 do
    if c.closed then break end
    server:read(c, NOW)
  end
  return log, table.concat(sock.out)
end

-- Split `out` into answers; check each is well-formed. `log` says which
-- answers are to HEAD requests (a length, no body).
local function answers(out, log)
  local list, pos = {}, 1
  while pos <= #out do
    local e = out:find("\r\n\r\n", pos, true)
    check(e, "answer without an end of head: %s", show(out:sub(pos, pos + 200)))
    local head = out:sub(pos, e - 1)
    local status = head:match("^HTTP/1%.1 (%d%d%d) [^\r\n]*")
    check(status, "bad status line: %s", show(head:sub(1, 80)))
    local length = head:match("\r\nContent%-Length: (%d+)")
    check(length, "no Content-Length in %s", show(head))
    local req = log[#list + 1]
    local n = (req and req[1] == "HEAD") and 0 or tonumber(length)
    list[#list + 1] = { status = tonumber(status), head = head, body = out:sub(e + 4, e + 3 + n) }
    pos = e + 4 + n
    if head:find("\r\nConnection: close", 1, true) then
      check(pos > #out, "more after Connection: close: %s", show(out:sub(pos, pos + 80)))
      break
    end
  end
  return list
end

return function(data)
  local r = F.reader(data)
  local sizes = r.byte()
  local text = r.rest()
  local chunks, pos, k = {}, 1, 0
  while pos <= #text do
    k = k + 1
    local n = 1 + (sizes * k * 7 + k) % (sizes % 64 + 1)
    chunks[#chunks + 1] = text:sub(pos, pos + n - 1)
    pos = pos + n
  end
  local log1, out1 = serve(chunks)
  answers(out1, log1)
  local log2, out2 = serve({ text })
  check(F.equal(log1, log2), "requests differ by chunking: %s vs %s", show(log1), show(log2))
  check(out1 == out2, "answers differ by chunking:\n%s\nvs\n%s", show(out1), show(out2))
end

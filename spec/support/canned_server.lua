--- A tiny HTTP/1.1 server whose answers are files: for specs that need a
-- gateway saying exactly what they choose (wrong types, huge or broken bodies).
--
--   lua canned_server.lua DIR   -- prints "listening http://127.0.0.1:PORT"
--
-- A request for a path whose last segment is NAME (query ignored) gets the
-- bytes of DIR/NAME.body, with status DIR/NAME.status (default 200) and type
-- DIR/NAME.type (default application/json); no NAME.body: a 404. With a file
-- DIR/NAME.nolength, no Content-Length: the body ends when the connection
-- closes (as a server streaming a file of unknown size). DIR/NAME.delay holds
-- seconds to wait before answering; DIR/NAME.trickle, bytes per second to send
-- the body at (a slow host). Each request
-- is appended to DIR/requests.log as "METHOD TARGET auth=yes|no". One
-- connection at a time, closed after each answer: simple, and enough here.
local socket = require "socket"

local dir = assert(arg[1], "usage: canned_server.lua DIR")
local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
io.stdout:write(("listening http://127.0.0.1:%d\n"):format(port))
io.stdout:flush()

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function serve(c)
  local line = c:receive("*l")
  if not line then return end
  local method, target = line:match("^(%u+) (%S+)")
  if not method then return end
  local len, auth = 0, false
  while true do
    local h = c:receive("*l")
    if not h or h == "" then break end
    local name, value = h:match("^([^:]+):%s*(.-)%s*$")
    name = name and name:lower()
    if name == "content-length" then len = tonumber(value) or 0 end
    if name == "authorization" then auth = true end
    if name == "expect" then c:send("HTTP/1.1 100 Continue\r\n\r\n") end
  end
  if len > 0 then c:receive(len) end
  local log = io.open(dir .. "/requests.log", "ab")
  if log then
    log:write(("%s %s auth=%s\n"):format(method, target, auth and "yes" or "no"))
    log:close()
  end
  local name = target:gsub("[?#].*$", ""):match("([^/]+)$") or "root"
  local body = read(dir .. "/" .. name .. ".body")
  local status = tonumber(read(dir .. "/" .. name .. ".status") or "") or (body and 200 or 404)
  local ctype = read(dir .. "/" .. name .. ".type") or "application/json"
  body = body or '{"code":404,"msg":"no canned answer for ' .. name .. '"}'
  local length = read(dir .. "/" .. name .. ".nolength") and "" or ("Content-Length: %d\r\n"):format(#body)
  local delay = tonumber(read(dir .. "/" .. name .. ".delay") or "")
  if delay then socket.sleep(delay) end
  c:send(("HTTP/1.1 %d Canned\r\nContent-Type: %s\r\n%sConnection: close\r\n\r\n"):format(status, ctype, length))
  local rate = tonumber(read(dir .. "/" .. name .. ".trickle") or "")
  if not rate then
    c:send(body)
    return
  end
  local chunk = math.max(1, math.floor(rate / 10))
  for i = 1, #body, chunk do
    if not c:send(body:sub(i, i + chunk - 1)) then return end
    socket.sleep(0.1)
  end
end

while true do
  local c = server:accept()
  if c then
    c:settimeout(5) -- a client that connects and sends nothing must not hold the server for long
    pcall(serve, c)
    c:close()
  end
end

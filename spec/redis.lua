--- Test helper: a private redis-server (Debian's) on a port held for it
-- (helper.held_port) until it is stopped, with nothing saved to disk;
-- stopped, killed and started again on that port by the specs.
local socket = require "socket"
local helper = require "spec.helper"

local redis = {}

-- Wait until redis-server answers PING on `port` (true), or give up (false).
local function answers(port, seconds)
  local deadline = socket.gettime() + seconds
  repeat
    local c = socket.connect("127.0.0.1", port)
    if c then
      c:settimeout(1)
      c:send("PING\r\n")
      local line = c:receive("*l")
      c:close()
      if line == "+PONG" then return true end
    end
    socket.sleep(0.02)
  until socket.gettime() > deadline
  return false
end

--- Start redis-server. Returns { port, url(db), stop(), kill9(), start() }.
function redis.start()
  local dir = helper.tmpdir()
  local port, release = helper.held_port()
  local r = { port = port, dir = dir }
  local pidfile = dir .. "/redis.pid"
  function r.url(db) return ("redis://127.0.0.1:%d/%d"):format(r.port, db or 0) end
  function r.start()
    os.remove(pidfile)
    local cmd = ("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --daemonize yes "
      .. "--pidfile %s --logfile %s/redis.log --dir %s"):format(r.port, pidfile, dir, dir)
    assert(os.execute(cmd), "redis-server did not start")
    assert(answers(r.port, 10), "redis-server does not answer: " .. tostring(helper.read_file(dir .. "/redis.log")))
  end
  local function signal(sig)
    local pid = helper.read_file(pidfile)
    if pid then os.execute(("kill -%s %s 2>/dev/null"):format(sig, pid:match("%d+"))) end
    for _ = 1, 250 do -- until the port is free again
      local c = socket.connect("127.0.0.1", r.port)
      if not c then return end
      c:close()
      socket.sleep(0.02)
    end
  end
  --- SIGKILL: Redis gets no chance to close anything cleanly.
  function r.kill9() signal("KILL") end
  function r.stop()
    signal("TERM")
    release()
    helper.rmdir(dir)
  end
  r.start()
  return r
end

return redis

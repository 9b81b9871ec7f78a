--- Test helper: a private nginx (its own prefix, a port held for it by
-- helper.held_port, a self-signed certificate) for specs that need a real
-- HTTPS / HTTP/2 server.
local socket = require "socket"
local helper = require "spec.helper"

local nginx = {}

local write = helper.write_file

--- Start nginx with `http_block` (the inside of `http { }`; `PORT` and
-- `PREFIX` in it are replaced). Returns { port, prefix, cert, stop(), log() }.
function nginx.start(http_block)
  local prefix = helper.tmpdir()
  local port, release = helper.held_port()
  assert(os.execute(("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
    .. "-addext subjectAltName=IP:127.0.0.1 -keyout %s/key.pem -out %s/cert.pem >/dev/null 2>&1")
    :format(prefix, prefix)))
  http_block = http_block:gsub("PORT", tostring(port)):gsub("PREFIX", prefix)
  write(prefix .. "/nginx.conf", ([[
worker_processes 1;
daemon on;
pid %s/nginx.pid;
error_log %s/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %s;
  proxy_temp_path %s;
  fastcgi_temp_path %s;
  uwsgi_temp_path %s;
  scgi_temp_path %s;
%s
}
]]):format(prefix, prefix, prefix, prefix, prefix, prefix, prefix, http_block))
  assert(os.execute(("nginx -p %s -c %s/nginx.conf -e %s/error.log"):format(prefix, prefix, prefix)),
    "nginx did not start")
  for _ = 1, 100 do -- wait until it listens
    local c = socket.connect("127.0.0.1", port)
    if c then c:close() break end
    socket.sleep(0.02)
  end
  local n = { port = port, prefix = prefix, cert = prefix .. "/cert.pem" }
  function n.read(name) return helper.read_file(prefix .. "/" .. name) end
  --- The lines of log `name`, once it has at least `at_least` (nginx writes
  -- a line just after the answer, so it may trail the client by a moment).
  function n.lines(name, at_least)
    local lines
    for _ = 1, 100 do
      lines = {}
      for l in (n.read(name) or ""):gmatch("[^\n]+") do lines[#lines + 1] = l end
      if #lines >= (at_least or 0) then break end
      helper.sleep(0.02)
    end
    return lines
  end
  function n.stop()
    local pid = n.read("nginx.pid")
    if pid then os.execute("kill " .. pid:match("%d+") .. " 2>/dev/null") end
    socket.sleep(0.05)
    release()
    helper.rmdir(prefix)
  end
  return n
end

return nginx

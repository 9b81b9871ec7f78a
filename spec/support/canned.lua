--- Start spec/support/canned_server.lua as a child process and set its answers.
local helper = require "spec.helper"

local canned = {}

local LUA = os.getenv("MODKIE_TEST_LUA") or "lua5.4"

local write = helper.write_file

--- Start a server. Returns { url, port, pid, answer(), requests(), stop() }.
function canned.start()
  local dir = helper.tmpdir()
  local pipe = assert(io.popen(("exec sh -c 'echo $$; exec %s spec/support/canned_server.lua %s'")
    :format(LUA, helper.shell_quote(dir)), "r"))
  local pid = assert(tonumber(pipe:read("*l")), "canned server: no pid")
  local line = pipe:read("*l")
  local url = assert(line and line:match("(http://[%d.]+:%d+)"), "canned server did not start")
  local s = { url = url, port = tonumber(url:match(":(%d+)$")), pid = pid, dir = dir }

  --- From now on, a request for `name` (the path's last segment) gets `body`
  -- with HTTP `status` (default 200) and `content_type`; `no_length`: sent
  -- without Content-Length, ended by closing the connection. `opts.delay`:
  -- seconds before the answer; `opts.trickle`: bytes per second for the body.
  function s.answer(name, body, status, content_type, no_length, opts)
    write(dir .. "/" .. name .. ".body", body)
    local base = dir .. "/" .. name
    opts = opts or {}
    if status then write(base .. ".status", tostring(status)) else os.remove(base .. ".status") end
    if content_type then write(base .. ".type", content_type) else os.remove(base .. ".type") end
    if no_length then write(base .. ".nolength", "") else os.remove(base .. ".nolength") end
    if opts.delay then write(base .. ".delay", tostring(opts.delay)) else os.remove(base .. ".delay") end
    if opts.trickle then write(base .. ".trickle", tostring(opts.trickle)) else os.remove(base .. ".trickle") end
  end

  --- The requests seen so far, one "METHOD TARGET auth=yes|no" string each.
  function s.requests()
    local out = {}
    for l in (helper.read_file(dir .. "/requests.log") or ""):gmatch("[^\n]+") do out[#out + 1] = l end
    return out
  end

  function s.stop()
    if s.stopped then return end
    s.stopped = true
    os.execute("kill " .. pid .. " 2>/dev/null")
    pipe:close()
    helper.rmdir(dir)
  end
  return s
end

return canned

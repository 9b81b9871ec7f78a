--- Drive a client from a libuv loop (luv): no thread, no busy loop.
--
--     local uv = require "luv"
--     local client = require("modkie").new{ … }
--     local driver = require("modkie.luv").attach(client, uv)
--     client:go(function() … job:await() … end)   -- or submit from uv callbacks,
--     driver.sync()                                  -- then sync
--     uv.run()                                      -- returns when the client is idle
--
-- The driver watches the client's sockets (`client:fds()`) with uv poll
-- handles and its next deadline (`client:timeout()`) with a uv timer; when
-- either fires it calls `client:step(0)` and brings the handles up to date.
-- Between polls of waiting jobs nothing runs at all.
-- @module modkie.luv

local luv_driver = {}

--- Attach `client` to the uv loop. Returns `{ sync = fn, close = fn }`:
-- call `sync()` after work was added from outside the client's own
-- callbacks or coroutines; `close()` releases the uv handles.
function luv_driver.attach(client, uv)
  local polls = {} -- fd -> { handle = uv poll, events = "r" | "w" | "rw" }
  local timer = uv.new_timer()
  local closed = false
  local driver = {}

  local function drop(fd)
    local p = polls[fd]
    polls[fd] = nil
    p.handle:stop()
    p.handle:close()
  end

  local function on_ready()
    if closed then return end
    client:step(0)
    driver.sync()
  end

  --- Bring the uv handles in line with what the client waits for now.
  function driver.sync()
    if closed then return end
    local want = {}
    for _, s in ipairs(client:fds()) do want[s.fd] = s.events end
    for fd in pairs(polls) do
      if not want[fd] then drop(fd) end
    end
    for fd, events in pairs(want) do
      local p = polls[fd]
      if not p then
        p = { handle = uv.new_socket_poll(fd) }
        polls[fd] = p
      end
      if p.events ~= events then
        p.events = events
        p.handle:start(events, on_ready)
      end
    end
    timer:stop()
    local t = client:timeout()
    if t then timer:start(math.max(1, math.ceil(t * 1000)), 0, on_ready) end
  end

  --- Stop watching; the client itself stays open. The handles finish closing
  -- the next time the uv loop runs: run it once more before the program ends.
  function driver.close()
    if closed then return end
    closed = true
    for fd in pairs(polls) do drop(fd) end
    timer:stop()
    timer:close()
  end

  driver.sync()
  return driver
end

return luv_driver

--- How `await` passes time, wherever it is called (DESIGN.md §4).
--
-- A "pending" is anything a caller can wait for: a job, a one-off call, a
-- download, a timer. It has `done` (boolean), `waiters` (set of coroutines to
-- resume when it is done) and `client`.
--
-- Modes, chosen from where the caller runs:
--   scheduler  a coroutine started by this client's `go`/`run`: yield to the
--              client's scheduler; it resumes us when a pending is done.
--   ngx        OpenResty, a phase that can yield: `step(0)`, then `ngx.sleep`
--              until the engine next needs a step. The worker never blocks.
--   user       another coroutine, with the client's `wait` option: `step(0)`,
--              then `wait(remaining)` (e.g. yield to a game engine's frame).
--   block      the main thread, or a coroutine without `wait`: block in
--              `client:step` (inside curl_multi_poll) until something ends.
-- @module modkie.wait

local core = require "modkie.core"
local Error = require "modkie.error"

local wait = {}

--- What a scheduler coroutine yields while it waits.
wait.WAKE = setmetatable({}, { __tostring = function() return "modkie.wait.WAKE" end })

--- coroutine -> the client whose scheduler runs it.
wait.owners = setmetatable({}, { __mode = "k" })

-- ngx phases in which ngx.sleep may yield.
local NGX_YIELDABLE = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}
local NGX_MAX_SLEEP = 0.5

local function running()
  local co, main = coroutine.running()
  if co == nil then return nil, true end -- Lua 5.1 on the main thread
  return co, main
end

local function any_done(pendings)
  for _, p in ipairs(pendings) do
    if p.done then return true end
  end
  return false
end

--- The mode for waiting on `client`'s pendings from here; raises on misuse.
function wait.mode(client)
  local co, main = running()
  if co and not main then
    local owner = wait.owners[co]
    if owner == client then return "scheduler" end
    if owner then
      error("modkie: this coroutine is run by another modkie client; wait for a job from a coroutine of its own "
        .. "client (client:go), or from the main thread", 4)
    end
  end
  if client._stepping then
    error("modkie: cannot wait from inside client:step (a log hook or poll_interval function); "
      .. "wait from the code that calls step instead", 4)
  end
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and type(ngx.get_phase) == "function" then
    local phase = ngx.get_phase()
    if NGX_YIELDABLE[phase] then return "ngx" end
    error("modkie: cannot wait in nginx's '" .. tostring(phase) .. "' phase, which cannot yield; wait in a "
      .. "rewrite, access or content handler, or start the work with ngx.timer.at", 4)
  end
  if co and not main and client._wait then return "user" end
  return "block"
end

local function remaining(deadline)
  if not deadline then return nil end
  return deadline - core.now()
end

local function in_scheduler(client, pendings, timeout)
  local co = coroutine.running()
  for _, p in ipairs(pendings) do p.waiters[co] = true end
  local alarm = timeout and client:_alarm(timeout)
  if alarm then alarm.waiters[co] = true end
  repeat
    coroutine.yield(wait.WAKE)
  until any_done(pendings) or (alarm and alarm.done)
  for _, p in ipairs(pendings) do p.waiters[co] = nil end
  if alarm and not alarm.done then client:_drop(alarm) end
  return any_done(pendings)
end

--- Wait until one of `pendings` (all of one client) is done, or `timeout`
-- seconds pass (nil: no limit). Returns true when one is done.
function wait.any(client, pendings, timeout)
  if any_done(pendings) then return true end
  local mode = wait.mode(client)
  if mode == "scheduler" then return in_scheduler(client, pendings, timeout) end
  local deadline = timeout and core.now() + timeout
  while not any_done(pendings) do
    local left = remaining(deadline)
    if left and left <= 0 then return false end
    if mode == "block" then
      client:step(left or 3600)
    else
      client:step(0)
      if any_done(pendings) then break end
      left = remaining(deadline)
      if mode == "ngx" then
        local pause = client:timeout() or NGX_MAX_SLEEP
        if pause > NGX_MAX_SLEEP then pause = NGX_MAX_SLEEP end
        if left and pause > left then pause = left end
        rawget(_G, "ngx").sleep(pause > 0.001 and pause or 0.001)
      else
        client._wait(left)
      end
    end
  end
  return true
end

--- Wait until every pending is done or `timeout` passes. Returns true when all are done.
function wait.all(client, pendings, timeout)
  local deadline = timeout and core.now() + timeout
  for _, p in ipairs(pendings) do
    if not p.done then
      local left = remaining(deadline)
      if not wait.any(client, { p }, left and (left > 0 and left or 0)) then return false end
    end
  end
  return true
end

--- The error await returns when its own timeout runs out.
function wait.timeout_error(what, timeout, task_id)
  return Error.new("timeout", ("%s did not end within %g s; it keeps going"):format(what, timeout),
    { task_id = task_id, retryable = true })
end

return wait

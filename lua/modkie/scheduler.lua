--- A client's scheduler: what can be waited for, who waits, and how waiting
-- passes time wherever it is called (docs/design.md §4).
--
-- A *pending* is anything a caller can wait for: a job, a one-off call, a
-- download, a timer, a batch's own work. `scheduler:pending` is the one
-- place that makes one, and `scheduler:finish` (done) and
-- `scheduler:notify` (not done, but worth a look: a job was accepted, or
-- reached the door) are the one place that wakes its waiters. A pending
-- has `done` (true once finished); its `waiters` and `watchers` (the
-- coroutines to resume) and `_h` (the engine handle of its work, if any)
-- are the scheduler's.
--
-- Modes, chosen from where the caller runs:
--   scheduler  a coroutine started by this client's `go`/`run`: yield to the
--              scheduler; it resumes the coroutine when a pending is done.
--   ngx        OpenResty, a phase that can yield: `step(0)`, then `ngx.sleep`
--              until the engine next needs a step. The worker never blocks.
--   user       another coroutine, with the client's `wait` option: `step(0)`,
--              then `wait(remaining)` (e.g. yield to a game engine's frame).
--   block      the main thread, or a coroutine without `wait`: block in
--              `client:step` (inside curl_multi_poll) until something ends.
--
-- Every client has one, as `client.scheduler`; jobs, downloads, batches and
-- `modkie.await_any` wait through it.
-- @classmod modkie.Scheduler

local core = require "modkie.core"
local Error = require "modkie.error"
local next = next

local scheduler = {}

local Scheduler = {}
Scheduler.__index = Scheduler
Scheduler.__name = "modkie.Scheduler"

-- What a scheduler coroutine yields while it waits.
local WAKE = setmetatable({}, { __tostring = function() return "modkie.scheduler.WAKE" end })

-- coroutine -> the scheduler that runs it (weakly: a finished coroutine goes).
local owners = setmetatable({}, { __mode = "k" })

-- ngx phases in which ngx.sleep may yield.
local NGX_YIELDABLE = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}
local NGX_MAX_SLEEP = 0.5

local unpack = table.unpack or unpack -- luacheck: ignore 143
local resume, status, running_co, yield = coroutine.resume, coroutine.status, coroutine.running, coroutine.yield

--- The scheduler of `client`, whose `engine` runs the timers.
-- @param client the client: its `step` and `timeout` pass time when waiting outside the scheduler
-- @param engine the client's C engine (`timer`, `cancel`)
-- @tparam[opt] function user_wait the client's `wait` option
-- @treturn modkie.Scheduler
function scheduler.new(client, engine, user_wait)
  return setmetatable({
    client = client, engine = engine, user_wait = user_wait,
    ops = {},        -- engine handle -> pending
    ready = {},      -- coroutines to resume on the next step
    spare = {},      -- an empty list: ready's place while run_ready goes through it
    queued = {},     -- set of the coroutines in ready
    start = {},      -- coroutine -> arguments for its first resume
    threads = {},    -- the coroutines started by go, alive (held here so a waiting one is not collected)
    stepping = false,
  }, Scheduler)
end

-- ---------------------------------------------------------------- pendings

--- Make `t` (or a new table) a pending: not done, nobody waiting. With `h`,
-- it stands for the engine's work of that handle (`scheduler:op(h)` finds it).
-- @param[opt] h an engine handle
-- @tparam[opt] table t the object to make a pending (a job)
-- @treturn table the pending
function Scheduler:pending(h, t)
  t = t or {}
  t.done, t.waiters, t._h = false, {}, h
  if h then self.ops[h] = t end
  return t
end

--- Give pending `p`, made without engine work, the work of handle `h`
-- (a job whose createTask waited for its uploads).
function Scheduler:attach(p, h)
  p._h = h
  self.ops[h] = p
end

--- The pending of engine handle `h`, or nil.
function Scheduler:op(h)
  return self.ops[h]
end

--- The engine handle of pending `p`'s work, or nil.
function Scheduler.handle(_, p) -- (a method: scheduler:handle(p))
  return p._h
end

--- The pendings that have engine work, as a list (in no order).
function Scheduler:ops_list()
  local list = {}
  local h, p = next(self.ops)
  while h ~= nil do -- (next, not pairs: close may run in a finaliser; see wake)
    list[#list + 1] = p
    h, p = next(self.ops, h)
  end
  return list
end

local function push(self, co)
  if not self.queued[co] then
    self.queued[co] = true
    self.ready[#self.ready + 1] = co
  end
end

-- The one place waiters are woken: they run on the next step.
-- next, not pairs: job:cancel() may run in a __gc finaliser, where a
-- compiled pairs loop can spin for ever under LuaJIT (docs/embedding.md,
-- "Finalisers under LuaJIT")
local function wake(self, set)
  local co = next(set)
  while co ~= nil do
    push(self, co)
    co = next(set, co)
  end
end

--- Mark `p` done and wake whoever waits for it.
function Scheduler:finish(p)
  p.done = true
  local h = p._h
  if h ~= nil and self.ops[h] == p then self.ops[h] = nil end
  wake(self, p.waiters)
end

--- Wake whoever waits on `p` with an `until_fn` (see `wait`), without
-- finishing it: what they wait for may have happened.
function Scheduler:notify(p)
  if p.watchers then wake(self, p.watchers) end
end

--- A pending finished after `seconds` (an engine timer).
function Scheduler:alarm(seconds)
  return self:pending(self.engine:timer(seconds))
end

--- Give up on `p`: cancel the engine's work for it; it counts as done, and
-- its waiters are not woken.
function Scheduler:drop(p)
  if p.done then return end
  if p._h ~= nil then
    self.engine:cancel(p._h)
    self.ops[p._h] = nil
  end
  p.done = true
end

-- ---------------------------------------------------------------- coroutines

--- Start `fn(...)` as a coroutine of this scheduler: it starts on the next
-- step, and waiting inside it yields instead of blocking.
-- @treturn thread
function Scheduler:go(fn, ...)
  local co = coroutine.create(fn)
  owners[co] = self
  self.threads[co] = true
  self.start[co] = { n = select("#", ...), ... }
  push(self, co)
  return co
end

--- True when `co` is a coroutine of this scheduler.
function Scheduler:owns(co)
  return co ~= nil and owners[co] == self
end

--- True when coroutines wait to run (the next step must not block).
function Scheduler:busy()
  return #self.ready > 0
end

--- Resume the coroutines that can run. A coroutine that raised makes this
-- raise (with its traceback); the others run on the next step.
function Scheduler:run_ready()
  local ready = self.ready
  local n = #ready
  if n == 0 then return end
  -- the two lists take turns (no table made per step): what the coroutines
  -- wake now goes to the other one, for the next step
  self.ready, self.spare = self.spare, ready
  local start, queued = self.start, self.queued
  for i = 1, n do
    local co = ready[i]
    ready[i], queued[co] = nil, nil
    if status(co) == "suspended" then
      local args = start[co]
      local ok, what
      if args then
        start[co] = nil
        ok, what = resume(co, unpack(args, 1, args.n))
      else
        ok, what = resume(co)
      end
      if not ok then
        self.threads[co], owners[co] = nil, nil
        for j = i + 1, n do
          local other = ready[j]
          ready[j], queued[other] = nil, nil
          push(self, other)
        end
        error(debug.traceback(co, "modkie: a coroutine run by client:go failed: " .. tostring(what)), 0)
      end
      if status(co) == "dead" then
        self.threads[co], owners[co] = nil, nil
      elseif what ~= WAKE then
        push(self, co) -- a plain yield: run again on the next step
      end
    end
  end
end

--- The client's step begins: waiting is refused until `end_step`.
function Scheduler:begin_step()
  self.stepping = true
end

--- The client's step is over.
function Scheduler:end_step()
  self.stepping = false
end

--- True inside the client's step (a log hook, a poll_interval function, a finaliser).
function Scheduler:in_step()
  return self.stepping
end

-- ---------------------------------------------------------------- waiting

local function running()
  local co, main = coroutine.running()
  if co == nil then return nil, true end -- Lua 5.1 on the main thread
  return co, main
end

local function any_done(pendings, until_fn)
  for i = 1, #pendings do
    if pendings[i].done then return true end
  end
  return until_fn ~= nil and until_fn() and true or false
end

--- How waiting passes time from here: "scheduler", "ngx", "user" or
-- "block" (see the top of this file). Raises on misuse: waiting inside a
-- step, from another client's coroutine, or in an nginx phase that cannot yield.
function Scheduler:mode()
  local co, main = running()
  if co and not main then
    local owner = owners[co]
    if owner == self then return "scheduler" end
    if owner then
      error("modkie: this coroutine is run by another modkie client; wait for a job from a coroutine of its own "
        .. "client (client:go), or from the main thread", 4)
    end
  end
  if self.stepping then
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
  if co and not main and self.user_wait then return "user" end
  return "block"
end

local function remaining(deadline)
  if not deadline then return nil end
  return deadline - core.now()
end

local function in_scheduler(self, pendings, timeout, until_fn)
  local co = running_co()
  for i = 1, #pendings do
    local p = pendings[i]
    p.waiters[co] = true
    if until_fn then
      p.watchers = p.watchers or {}
      p.watchers[co] = true
    end
  end
  local alarm = timeout and self:alarm(timeout)
  if alarm then alarm.waiters[co] = true end
  repeat
    yield(WAKE)
  until any_done(pendings, until_fn) or (alarm and alarm.done)
  for i = 1, #pendings do
    local p = pendings[i]
    p.waiters[co] = nil
    if p.watchers then p.watchers[co] = nil end
  end
  if alarm and not alarm.done then self:drop(alarm) end
  return any_done(pendings, until_fn)
end

--- Wait until one of `pendings` is done (or `until_fn()` is true, checked
-- whenever one of them is notified), or `timeout` seconds pass (nil: no limit).
-- @tparam table pendings of this scheduler
-- @tparam[opt] number timeout seconds
-- @tparam[opt] function until_fn
-- @treturn boolean true when one is done (or `until_fn` said so), false on timeout
function Scheduler:wait(pendings, timeout, until_fn)
  if any_done(pendings, until_fn) then return true end
  local mode = self:mode()
  if mode == "scheduler" then return in_scheduler(self, pendings, timeout, until_fn) end
  local client = self.client
  local deadline = timeout and core.now() + timeout
  while not any_done(pendings, until_fn) do
    local left = remaining(deadline)
    if left and left <= 0 then return false end
    if mode == "block" then
      client:step(left or 3600)
    else
      client:step(0)
      if any_done(pendings, until_fn) then break end
      left = remaining(deadline)
      if mode == "ngx" then
        local pause = client:timeout() or NGX_MAX_SLEEP
        if pause > NGX_MAX_SLEEP then pause = NGX_MAX_SLEEP end
        if left and pause > left then pause = left end
        rawget(_G, "ngx").sleep(pause > 0.001 and pause or 0.001)
      else
        self.user_wait(left)
      end
    end
  end
  return true
end

--- In a coroutine of this scheduler, wait until `p` is done and return
-- true: `wait({ p })` without its list (a job's await). Elsewhere return
-- false at once: the caller then uses `wait`.
-- @treturn boolean
function Scheduler:wait_here(p)
  local co = running_co()
  if co == nil or owners[co] ~= self then return false end
  if not p.done then
    local waiters = p.waiters
    waiters[co] = true
    repeat yield(WAKE) until p.done
    waiters[co] = nil
  end
  return true
end

--- Wait until every pending is done or `timeout` passes.
-- @treturn boolean true when all are done
function Scheduler:wait_all(pendings, timeout)
  local deadline = timeout and core.now() + timeout
  for _, p in ipairs(pendings) do
    if not p.done then
      local left = remaining(deadline)
      if not self:wait({ p }, left and (left > 0 and left or 0)) then return false end
    end
  end
  return true
end

--- Pass `seconds`: yields inside the scheduler or OpenResty; elsewhere
-- drives the client while it waits.
function Scheduler:sleep(seconds)
  self:wait({ self:alarm(seconds) })
end

--- The error a wait returns when its own timeout runs out.
-- @tparam string what what did not end ("await: job task_1")
-- @tparam number timeout seconds
-- @tparam[opt] string task_id
-- @treturn modkie.Error kind "timeout", retryable
function scheduler.timeout_error(what, timeout, task_id)
  return Error.new("timeout", ("%s did not end within %g s; it keeps going"):format(what, timeout),
    { task_id = task_id, retryable = true })
end

return scheduler

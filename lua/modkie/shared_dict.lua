--- An account's rate windows in an OpenResty shared dict, for the workers
-- of one nginx: `rate = { shared = ngx.shared.modkie }` with
-- `lua_shared_dict modkie 1m;` in nginx.conf.
--
-- The C engine never calls Lua, so it leaves its questions open ("may 3
-- polls go now?") and the client answers them from the dict between steps
-- (`engine:questions()`, `engine:answer(...)`). Grants are numbered
-- tickets: ticket n may go once ticket n - limit is a window old. A ticket is
-- claimed with `add`, which exactly one worker wins, so there is no lock to
-- hold and a worker that dies half-way blocks no one; `incr` keeps a hint of
-- the next free ticket. Keys are `modkie:<account>:<lane>:n` and
-- `…:t:<n>` (the account is a hash of the gateway and the key, never the
-- key); a ticket lives its window plus a minute, so the dict never fills.
-- Times are `modkie.core.now()`, the monotonic clock every worker shares.
-- @module modkie.shared_dict

local core = require "modkie.core"

local SharedDict = {}
SharedDict.__index = SharedDict

local KEEP = 60 -- seconds a ticket outlives its window
local format = string.format

--- Whether `v` looks like an OpenResty shared dict (get, add, incr).
function SharedDict.is_dict(v)
  local t = type(v)
  if t ~= "table" and t ~= "userdata" then return false end
  local ok, yes = pcall(function()
    return type(v.get) == "function" and type(v.add) == "function" and type(v.incr) == "function"
  end)
  return ok and yes
end

--- Answer the engine's questions from `dict`.
function SharedDict.new(dict)
  return setmetatable({ dict = dict }, SharedDict)
end

-- Up to `want` grants at `now`, at most `limit` in any `per` seconds:
-- granted, seconds until asking again is worthwhile; or nil, err.
local function take(dict, prefix, want, limit, per, now)
  local n = dict:get(prefix .. "n") or 0 -- may lag behind: claims below skip what others took
  if type(n) ~= "number" then return nil, "'" .. prefix .. "n' is not a number" end
  local granted, skipped = 0, 0
  while granted < want do
    if n >= limit then
      local old = dict:get(format("%st:%d", prefix, n - limit))
      if type(old) == "number" and old > now - per and old <= now then return granted, old + per - now end
    end
    local ok, err = dict:add(format("%st:%d", prefix, n), now, per + KEEP)
    if ok then
      granted = granted + 1
      dict:incr(prefix .. "n", 1, 0)
    elseif err == "exists" then
      skipped = skipped + 1
      if skipped > 10000 then return granted, 0.001 end -- a hint far behind: catch up next time
    else
      return nil, err
    end
    n = n + 1
  end
  return granted, 0
end

--- Answer every open question of `engine` (the client's C engine).
function SharedDict:answer(engine)
  local questions = engine:questions()
  if not questions then return end
  local ngx = rawget(_G, "ngx")
  local peers = ngx and ngx.worker and ngx.worker.count and ngx.worker.count() or 0
  for _, q in ipairs(questions) do
    local prefix = "modkie:" .. q.account .. ":" .. q.lane .. ":"
    local ok, granted, wait = pcall(take, self.dict, prefix, q.want, q.limit, q.per, core.now())
    if ok and granted then
      engine:answer(q.lane, granted, wait, peers)
    else
      engine:answer(q.lane, nil, "shared dict: " .. tostring(ok and wait or granted))
    end
  end
end

return SharedDict

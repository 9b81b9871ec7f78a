--- Rolling-window rate limits per key: at most `limit` admitted requests in
-- any `window` seconds. Each key keeps the times of its admitted requests in a
-- queue no longer than `limit`, so a check costs O(1) amortised.
-- Every arrival is also logged (the first LOG_MAX per key), so a test can
-- check the windows from what the gateway saw (`/__mock/limits`).
local RateLimit = {}
RateLimit.__index = RateLimit

local LOG_MAX = 100000

function RateLimit.new(limit, window)
  local self = setmetatable({ limit = limit, window = window }, RateLimit)
  self:reset()
  return self
end

function RateLimit:reset()
  self.keys = {}
  self.logs = {} -- per key, in order of first arrival: { admitted = {t…}, refused = {t…} }
  self.log_of = {}
end

-- The arrival log of `key`.
function RateLimit:log(key)
  local log = self.log_of[key]
  if not log then
    log = { admitted = {}, refused = {} }
    self.log_of[key] = log
    self.logs[#self.logs + 1] = log
  end
  return log
end

local function append(list, t)
  if #list < LOG_MAX then list[#list + 1] = t end
end

--- What the limiter saw: { limit, window, keys = { {admitted = {t…}, refused = {t…}}, … } }
-- (keys in order of their first request; never the keys themselves).
function RateLimit:report()
  return { limit = self.limit, window = self.window, keys = self.logs }
end

--- Admit one request of `key` at `now`: true, or false and the whole seconds
-- (at least 1) after which a retry would be admitted. Refused requests are
-- not counted against the window.
function RateLimit:take(key, now)
  local q = self.keys[key]
  if not q then q = { head = 1, tail = 0 }; self.keys[key] = q end
  local horizon = now - self.window
  while q.head <= q.tail and q[q.head] <= horizon do
    q[q.head] = nil
    q.head = q.head + 1
  end
  if q.tail - q.head + 1 >= self.limit then
    local wait = math.ceil(q[q.head] + self.window - now)
    if wait < 1 then wait = 1 end
    append(self:log(key).refused, now)
    return false, wait
  end
  q.tail = q.tail + 1
  q[q.tail] = now
  append(self:log(key).admitted, now)
  return true
end

return RateLimit

--- Rolling-window rate limits per key: at most `limit` admitted requests in
-- any `window` seconds. Each key keeps the times of its admitted requests in a
-- queue no longer than `limit`, so a check costs O(1) amortised.
local RateLimit = {}
RateLimit.__index = RateLimit

function RateLimit.new(limit, window)
  return setmetatable({ limit = limit, window = window, keys = {} }, RateLimit)
end

function RateLimit:reset()
  self.keys = {}
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
    return false, wait
  end
  q.tail = q.tail + 1
  q[q.tail] = now
  return true
end

return RateLimit

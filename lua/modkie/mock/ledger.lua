--- Credit accounting per API key.
-- A job is charged at the instant it ends (its timeline's end, not when it is
-- first polled), exactly once: every read of a key's balance first settles the
-- key's jobs that have ended by now. Pending charges sit in a per-key min-heap
-- ordered by end time, so settling costs O(log n) per ended job and nothing
-- for the jobs still running. Failed jobs are never scheduled: they cost 0.
-- A charge may take a balance below zero (jobs are admitted against the
-- settled balance; nothing is reserved while they run).
local Ledger = {}
Ledger.__index = Ledger

function Ledger.new(start)
  return setmetatable({ start = start, balances = {}, heaps = {} }, Ledger)
end

--- Forget every balance and pending charge.
function Ledger:reset()
  self.balances, self.heaps = {}, {}
end

local function push(heap, item)
  local i = #heap + 1
  heap[i] = item
  while i > 1 do
    local parent = math.floor(i / 2)
    if heap[parent].at <= item.at then break end
    heap[i], heap[parent] = heap[parent], item
    i = parent
  end
end

local function pop(heap)
  local top, n = heap[1], #heap
  local last = heap[n]
  heap[n] = nil
  n = n - 1
  if n > 0 then
    local i = 1
    heap[1] = last
    while true do
      local l, smallest = 2 * i, i
      if l <= n and heap[l].at < heap[smallest].at then smallest = l end
      if l + 1 <= n and heap[l + 1].at < heap[smallest].at then smallest = l + 1 end
      if smallest == i then break end
      heap[i], heap[smallest] = heap[smallest], heap[i]
      i = smallest
    end
  end
  return top
end

--- Schedule `amount` to be charged to `key` at time `at`; `task.charged` is
-- set when it is.
function Ledger:schedule(key, at, amount, task)
  local heap = self.heaps[key]
  if not heap then heap = {}; self.heaps[key] = heap end
  push(heap, { at = at, amount = amount, task = task })
end

--- Apply every charge of `key` due by `now`.
function Ledger:settle(key, now)
  local heap = self.heaps[key]
  if not heap then return end
  while heap[1] and heap[1].at <= now do
    local item = pop(heap)
    self.balances[key] = (self.balances[key] or self.start) - item.amount
    item.task.charged = item.amount
  end
end

--- The balance of `key` as of `now`.
function Ledger:balance(key, now)
  self:settle(key, now)
  return self.balances[key] or self.start
end

--- Set the balance of `key` (charges already due are applied first).
function Ledger:set(key, balance, now)
  self:settle(key, now)
  self.balances[key] = balance
end

return Ledger

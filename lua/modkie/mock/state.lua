--- `modkie mock --state FILE`: the emulator's tasks, balances and counters
-- kept in a file, so it can be stopped (even by kill -9) and started again on
-- the same port with its tasks still there. Task timelines are wall-clock
-- times, so jobs go on ending while the emulator is down.
--
-- The file is a journal of JSON lines: a header (format, id prefix, settled
-- balances), then one line per event:
--   {"t": task}                      a task was created (written and flushed
--                                    before the create is answered: a task a
--                                    client may know of is never lost)
--   {"c": {key, balance, at}}        POST /__mock/credits set a balance
--   {"n": {stats, faults, tasks}}    counters, and the poll counts / trigger
--                                    progress of the tasks that changed
-- Counters are written at most every COUNTERS_EVERY seconds, so after a
-- kill -9 they may lag by that much; tasks and balances never do. Charges
-- are not written: they follow from the tasks (a task's charge is due at its
-- end), so replaying the journal settles them again.
-- On start, and when the journal has grown, the file is rewritten compact:
-- to FILE.tmp, then renamed over FILE, so a kill at any moment leaves either
-- the old or the new file whole. A torn last line (a kill mid-write) is
-- ignored.
local json = require "modkie.json"

local State = {}
State.__index = State

local FORMAT = 1
local COUNTERS_EVERY = 0.2
local MIN_COMPACT_BYTES = 1024 * 1024

local function read_lines(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  local lines = {}
  for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
  return lines, text:sub(-1) == "\n"
end

local function seq_of(id)
  return tonumber(tostring(id):match("_(%d+)$")) or 0
end

-- Apply a counters line: control counters, fault counters, per-task progress.
local function apply_counters(gw, n)
  if type(n.stats) == "table" then
    for k, v in pairs(n.stats) do
      if gw.stats[k] ~= nil and type(v) == "number" then gw.stats[k] = v end
    end
  end
  if gw.faults then gw.faults:restore(n.faults) end
  if type(n.tasks) == "table" then
    for id, p in pairs(n.tasks) do
      local task = gw.tasks[id]
      if task and type(p) == "table" then
        if type(p.polls) == "number" then task.polls = p.polls end
        if task.faults and type(p.seen) == "table" then task.faults.seen = p.seen end
      end
    end
  end
end

-- Load the journal at `path` into the gateway (fresh, just reset).
-- Returns true, or nil and a message.
local function load(path, gw)
  local lines, whole = read_lines(path)
  if not lines or #lines == 0 then return true end
  local head = json.strict_decode(lines[1])
  if not (json.is_object(head) and head.modkie_mock_state == FORMAT) then
    return nil, path .. " is not a modkie mock state file (left untouched)"
  end
  if type(head.id_prefix) == "string" then gw.id_prefix = head.id_prefix end
  gw.seq = math.max(gw.seq, tonumber(head.seq) or 0)
  if json.is_object(head.balances) then
    for key, balance in pairs(head.balances) do
      if type(balance) == "number" then gw.ledger.balances[key] = balance end
    end
  end
  local counters, tasks_at_counters
  for i = 2, #lines do
    local line = json.strict_decode(lines[i])
    if type(line) ~= "table" then
      -- A torn last line is a kill mid-write; anything else is worth a word.
      if i < #lines or whole then
        io.stderr:write("modkie mock: ", path, ": line ", tostring(i), " is not JSON, skipped\n")
      end
    elseif json.is_object(line.t) and type(line.t.id) == "string" then
      local task = line.t
      if task.prompt == json.null then task.prompt = nil end
      gw:add_task(task)
      gw.seq = math.max(gw.seq, seq_of(task.id))
    elseif json.is_object(line.c) and type(line.c.key) == "string" and type(line.c.balance) == "number" then
      gw.ledger:set(line.c.key, line.c.balance, tonumber(line.c.at) or 0)
    elseif json.is_object(line.n) then
      counters, tasks_at_counters = line.n, #gw.task_list
      apply_counters(gw, line.n)
    end
  end
  -- Creates written after the last counters line still count.
  if counters then
    gw.stats.creates = gw.stats.creates + (#gw.task_list - tasks_at_counters)
  else
    gw.stats.creates = #gw.task_list
  end
  return true
end

--- Open (or create) the state file for gateway `gw`: load what it holds,
-- rewrite it compact, keep it open for appending. Returns the state object
-- (also set as `gw.journal`), or nil and a message.
function State.open(path, gw)
  local ok, err = load(path, gw)
  if not ok then return nil, err end
  local self = setmetatable({ path = path, gw = gw, changed = {}, dirty = false, next_counters = 0 }, State)
  ok, err = self:compact()
  if not ok then return nil, err end
  gw.journal = self
  return self
end

function State:write(line)
  local ok, err = self.file:write(line, "\n")
  if ok then ok, err = self.file:flush() end
  if not ok then
    io.stderr:write("modkie mock: cannot write ", self.path, ": ", tostring(err), "\n")
    return
  end
  self.bytes = self.bytes + #line + 1
end

-- The counters line: control counters, faults, and the tasks that changed.
function State:counters_line(all_tasks)
  local tasks = {}
  local list = all_tasks and self.gw.task_list or nil
  if list then
    for _, t in ipairs(list) do
      if t.polls > 0 or t.faults then tasks[t.id] = { polls = t.polls, seen = t.faults and t.faults.seen } end
    end
  else
    for t in pairs(self.changed) do tasks[t.id] = { polls = t.polls, seen = t.faults and t.faults.seen } end
  end
  self.changed, self.dirty = {}, false
  return json.encode { n = {
    stats = self.gw.stats, faults = self.gw.faults and self.gw.faults:snapshot() or nil, tasks = tasks,
  } }
end

--- Rewrite the whole state to FILE.tmp, then rename it over FILE.
function State:compact()
  local gw = self.gw
  local tmp = self.path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, "cannot write " .. tmp .. ": " .. tostring(err) end
  local parts = { json.encode { modkie_mock_state = FORMAT, id_prefix = gw.id_prefix, seq = gw.seq,
    balances = gw.ledger.balances } }
  for _, task in ipairs(gw.task_list) do parts[#parts + 1] = json.encode { t = task } end
  parts[#parts + 1] = self:counters_line(true)
  local text = table.concat(parts, "\n") .. "\n"
  local ok
  ok, err = f:write(text)
  if ok then ok, err = f:flush() end
  f:close()
  if not ok then os.remove(tmp); return nil, "cannot write " .. tmp .. ": " .. tostring(err) end
  if self.file then self.file:close(); self.file = nil end
  ok, err = os.rename(tmp, self.path)
  if not ok then return nil, "cannot rename " .. tmp .. " to " .. self.path .. ": " .. tostring(err) end
  self.file, err = io.open(self.path, "ab")
  if not self.file then return nil, "cannot open " .. self.path .. ": " .. tostring(err) end
  self.bytes, self.compact_bytes = 0, #text
  return true
end

--- A task was created: on disk before its create is answered.
function State:task(task)
  self:write(json.encode { t = task })
end

--- A balance was set through the control endpoint.
function State:credits(key, balance, at)
  self:write(json.encode { c = { key = key, balance = balance, at = at } })
end

--- Counters changed; `task`, if given, had its polls or triggers move on.
function State:touch(task)
  self.dirty = true
  if task then self.changed[task] = true end
end

--- The gateway was reset: start the file over.
function State:reset()
  self.changed = {}
  local ok, err = self:compact()
  if not ok then io.stderr:write("modkie mock: ", err, "\n") end
end

--- Called from the serve loop: write counters when they changed, at most
-- every COUNTERS_EVERY seconds; compact when the journal has grown.
function State:tick(now)
  if not self.dirty or now < self.next_counters then return end
  self.next_counters = now + COUNTERS_EVERY
  self:write(self:counters_line(false))
  if self.bytes > math.max(MIN_COMPACT_BYTES, 2 * self.compact_bytes) then
    local ok, err = self:compact()
    if not ok then io.stderr:write("modkie mock: ", err, "\n") end
  end
end

--- Write the last counters and close the file.
function State:close()
  if not self.file then return end
  if self.dirty then self:write(self:counters_line(false)) end
  self.file:close()
  self.file = nil
end

return State

--- The command line's own record of every task it submitted, so that no
-- task id is ever lost (the jobs API cannot list tasks): `modkie list`,
-- `modkie wait --last`.
--
-- An append-only JSON Lines file, `tasks.jsonl` in the state folder:
-- `$MODKIE_STATE_DIR`, else `$XDG_STATE_HOME/modkie`, else
-- `~/.local/state/modkie`. Two kinds of line:
--
--     {"id":"task_…","model":"kling/kling-3-0","gateway":"https://modkie.com","via":"submit",
--      "prompt":"a red fox…","t":1732550000}     (one line in the file)
--     {"t":1732550042,"id":"task_…","state":"success"}
--
-- The folder is made with mode 0700 and the file with 0600, whatever the
-- umask (an existing file is made 0600 too).
-- The first is written (and fsynced, for `submit`) as soon as the gateway
-- accepts the task; the second when the command saw the job end. The API
-- key is never written; the gateway is written without any user or
-- password part. A line that does not parse is skipped.
-- @module modkie.cli.tasks

local core = require "modkie.core"
local json = require "modkie.json"

local tasks = {}

local PROMPT_CHARS = 100 -- a reminder of what the task was, not the whole prompt

--- The state folder (not created).
function tasks.dir()
  local dir = os.getenv("MODKIE_STATE_DIR")
  if dir and dir ~= "" then return dir end
  local xdg = os.getenv("XDG_STATE_HOME")
  if xdg and xdg ~= "" then return xdg .. "/modkie" end
  return (os.getenv("HOME") or ".") .. "/.local/state/modkie"
end

--- The file of records.
function tasks.path()
  return tasks.dir() .. "/tasks.jsonl"
end

-- The gateway as it may be written down: scheme, host, port and path, no user:password@.
local function gateway(url)
  if type(url) ~= "string" then return nil end
  return (url:gsub("^(%a[%w+.-]*://)[^/@]*@", "%1"):gsub("[?#].*$", ""))
end

-- The folder and the file are private (0700, 0600, whatever the umask):
-- they list the tasks of a paid account.
local function append(rec, sync)
  local dir = tasks.dir()
  local ok, err = require("modkie.download").mkdir_p(dir:match("^(.+)/[^/]+/*$") or ".")
  if ok then ok, err = core.mkdir(dir, true) end
  if ok then ok, err = core.private(tasks.path()) end
  if not ok then return nil, err end
  local f
  f, err = io.open(tasks.path(), "ab")
  if not f then return nil, err end
  rec.t = rec.t or os.time()
  -- one write of a short line to a file opened for appending: whole even
  -- when two commands append at once
  ok, err = f:write(assert(json.encode(rec)) .. "\n")
  if ok and sync then ok, err = core.fsync(f) end
  f:close()
  if not ok then return nil, err end
  return true
end

local warned = false
-- A record that cannot be written must not stop the command (the id is
-- also printed): say so once, on stderr.
local function record(rec, sync)
  local ok, err = append(rec, sync)
  if not ok and not warned then
    warned = true
    io.stderr:write(("modkie: could not keep a record of task %s in %s: %s (set MODKIE_STATE_DIR to "
      .. "another folder)\n"):format(require("modkie.cli.escape").text(rec.id), tasks.path(), tostring(err)))
  end
  return ok
end

--- Record a task the gateway accepted.
-- @tparam table t `id`, `model`, `gateway` (the base URL), `via` ("submit",
--   "batch rows.csv"), `prompt` (optional)
-- @tparam[opt] boolean sync fsync the record (one task at a time)
function tasks.add(t, sync)
  local prompt = type(t.prompt) == "string" and t.prompt:gsub("%s+", " ") or nil
  if prompt and #prompt > PROMPT_CHARS then
    -- cut on a character boundary (a UTF-8 continuation byte is 0x80-0xBF)
    local cut = PROMPT_CHARS
    while cut > 0 and prompt:byte(cut + 1) and prompt:byte(cut + 1) >= 0x80 and prompt:byte(cut + 1) < 0xC0 do
      cut = cut - 1
    end
    prompt = prompt:sub(1, cut) .. "…"
  end
  return record({ id = t.id, model = t.model, gateway = gateway(t.gateway), via = t.via, prompt = prompt }, sync)
end

--- Record how a task ended, as the command saw it.
function tasks.ended(id, state)
  return record({ id = id, state = state })
end

--- Every task recorded, oldest first, each `{ id, t, model, gateway, via,
-- prompt, state, ended_t }` (state nil when no end was seen).
-- @treturn[1] table
-- @treturn[2] nil
-- @treturn[2] string why the file cannot be read (a missing file is an empty list)
function tasks.list()
  local f, err = io.open(tasks.path(), "rb")
  if not f then
    if tostring(err):find("No such file", 1, true) then return {} end
    return nil, err
  end
  local list, by_id = {}, {}
  -- a field of the wrong type (a line edited by hand, or by another
  -- program) is dropped, not handed on: `list` must show every other task
  local function str(v) return type(v) == "string" and v or nil end
  local function when(v)
    -- Unix seconds before the year 10000 (os.date shows them)
    return type(v) == "number" and v >= 0 and v < 253402300800 and math.floor(v) or nil
  end
  for line in f:lines() do
    local rec = json.decode(line)
    if type(rec) == "table" and type(rec.id) == "string" then
      -- an end whose state is of the wrong type stays an end (false), never a submit
      local state = rec.state
      if state ~= nil then state = str(state) or false end
      rec = { id = rec.id, t = when(rec.t), model = str(rec.model), gateway = str(rec.gateway), via = str(rec.via),
        prompt = str(rec.prompt), state = state }
      local task = by_id[rec.id]
      if rec.state == nil then
        if not task then
          task = { id = rec.id }
          by_id[rec.id] = task
          list[#list + 1] = task
        end
        task.t, task.model, task.gateway, task.via, task.prompt = rec.t, rec.model, rec.gateway, rec.via, rec.prompt
      elseif task and type(rec.state) == "string" then
        task.state, task.ended_t = rec.state, rec.t
      end
    end
  end
  f:close()
  return list
end

return tasks

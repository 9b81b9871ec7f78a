--- Which batch a download folder belongs to: two batches saving into one
-- folder would write over each other's `<row>-<n>.<ext>` files, and each
-- journal (and review page) would then show the other batch's outputs as
-- its own.
--
-- A batch with a journal that saves into a folder leaves a marker there,
-- `.modkie-batch` (JSON: the journal's absolute path), once its `run` record
-- is written and before anything is sent. A batch may use a folder when:
--
-- - its marker names this batch's journal (the same file, however named);
-- - there is no marker, or the journal it names no longer exists, and the
--   folder holds no batch output (a name such as `3-1.mp4` or `3_2-1.png`),
--   or this journal's earlier runs saved into this folder (a folder made
--   before markers existed, or a journal moved with its folder).
--
-- Anything else is a `config` error naming the folder, the journal that owns
-- it and the ways out. A batch without a journal leaves no marker (it has
-- nothing to name) and is refused a folder that has a live marker or holds
-- batch outputs: it could not resume them, only write over them.
-- @module modkie.batch.folder

local core = require "modkie.core"
local Error = require "modkie.error"
local json = require "modkie.json"

local folder = {}

folder.MARKER = ".modkie-batch"

local function strip(dir) return (dir:gsub("(.)/+$", "%1")) end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

--- The absolute path of `path` (a file that may not exist yet: its folder's
-- absolute path and its name), or nil.
function folder.absolute(path)
  local real = core.realpath(path)
  if real then return real end
  local dir, base = path:match("^(.*)/([^/]+)$")
  if not dir then dir, base = ".", path end
  local rdir = core.realpath(dir == "" and "/" or dir)
  return rdir and (rdir:gsub("/$", "") .. "/" .. base) or nil
end

-- Does `dir` hold a file named as a batch saves its outputs (`3-1.mp4`,
-- `3_2-1.png`, or one still being saved, `3-1.mp4.part`)? The first such
-- name, in order, or nil.
local function holds_outputs(dir)
  local names = core.list_dir(dir) or {}
  table.sort(names)
  for _, name in ipairs(names) do
    if name:find("^%d+%-%d+%.%w+$") or name:find("^%d+_%d+%-%d+%.%w+$")
      or name:find("^%d+[_%d]*%-%d+%.%w+%.part$") then
      return name
    end
  end
  return nil
end

--- The marker of `dir`: its table, or nil (none, or not readable as one).
function folder.marker(dir)
  local f = io.open(strip(dir) .. "/" .. folder.MARKER, "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  local m = text and json.decode(text)
  if type(m) ~= "table" or type(m.journal) ~= "string" then return nil end
  return m
end

-- Did an earlier run of the journal (its `run` records) save into `dir`?
local function saved_here(state, dir)
  local real = core.realpath(dir)
  for _, run in ipairs(state and state.run_records or {}) do
    local d = run.download
    if type(d) == "string" and (strip(d) == strip(dir) or (real and core.realpath(d) == real)) then
      return true
    end
  end
  return false
end

--- Check that the batch with journal `journal` (a path, or nil) may save
-- into `dir` (which exists). `state`: the journal's replay (its run records).
-- @treturn[1] true
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "config" naming the folder and its owner
function folder.check(dir, journal, state)
  local m = folder.marker(dir)
  local mine = journal and folder.absolute(journal)
  if m and mine and m.journal == mine then return true end
  if m and exists(m.journal) then
    local msg
    if journal then
      msg = ("download folder %s holds the outputs of another batch, whose journal is %s; this batch (journal %s) "
        .. "would write over them. Save into another folder (download, "
        .. "--download), or, to resume that batch, run it with its own journal; nothing was sent")
        :format(dir, m.journal, mine or journal)
    else
      msg = ("download folder %s holds the outputs of the batch whose journal is %s; this batch has no journal and "
        .. "would write over them. Save into another folder (download, --download), or, to resume that batch, "
        .. "run it with that journal; nothing was sent"):format(dir, m.journal)
    end
    return nil, Error.new("config", msg, { path = dir, owner = m.journal })
  end
  -- no marker, or its journal is gone: a folder of before markers, or of a moved journal
  if journal and saved_here(state, dir) then return true end
  local name = holds_outputs(dir)
  if not name then return true end
  local msg = ("download folder %s already holds the outputs of a batch (%s, …)%s; this batch%s would write "
    .. "over them. Save into another folder (download, --download)%s; nothing was sent")
    :format(dir, name, m and (" whose journal " .. m.journal .. " no longer exists") or "",
      journal and (" (journal " .. (mine or journal) .. ")") or ", which has no journal,",
      journal and ", or resume the batch that made them with its own journal" or
      ", or pass the journal of the batch that made them")
  return nil, Error.new("config", msg, { path = dir, file = name })
end

--- Mark `dir` as the folder of the batch whose journal is `journal` (written
-- whole: to a temporary name, synced, renamed). A folder already marked for
-- it is left alone.
-- @treturn[1] true
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "config"
function folder.claim(dir, journal)
  local mine = folder.absolute(journal)
  local m = folder.marker(dir)
  if m and m.journal == mine then return true end
  local path = strip(dir) .. "/" .. folder.MARKER
  local tmp = path .. ".tmp"
  local body = json.encode({ journal = mine or journal, t = math.floor(core.time()),
    note = "modkie batch: the outputs in this folder belong to the batch with this journal" })
  local f, err = io.open(tmp, "wb")
  local ok = f and f:write(body, "\n")
  if f then
    if ok then ok, err = core.fsync(f) end
    f:close()
  end
  if ok then ok, err = os.rename(tmp, path) end
  if ok then core.fsync_dir(strip(dir)) end
  if not ok then
    os.remove(tmp)
    return nil, Error.new("config", ("download folder %s: cannot write its marker %s: %s"):format(dir,
      folder.MARKER, tostring(err)), { path = dir })
  end
  return true
end

return folder

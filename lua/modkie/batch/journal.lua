--- A batch's journal: an append-only JSON Lines file that lets a batch
-- killed at any moment (kill -9, power loss, Ctrl-C) run again without
-- submitting a row twice or losing a result.
--
-- One JSON object per line, each with a `type`:
--
--     {"type":"run","v":1,"t":1732550000,"model":"kling/kling-3-0","jobs":12,"pid":4242}
--     {"type":"submit","job":"3","row":3,"fp":"1f0c…","t":…}        before createTask is sent
--     {"type":"retry","job":"3","t":…}         that createTask was answered "nothing created" (429): unsent again
--     {"type":"accepted","job":"3","id":"task_…","t":…}            the gateway's task id
--     {"type":"done","job":"3","state":"success","id":"task_…","urls":[…],"credits":35,"t":…}
--     {"type":"done","job":"3","state":"failed","id":"task_…","error":{"kind":"failed","message":"…","code":501}}
--     {"type":"done","job":"3","state":"error","error":{"kind":"credits",…}}   refused: nothing was created
--     {"type":"done","job":"3","state":"ambiguous","error":{…}}     sent, outcome unknown
--     {"type":"files","job":"3","files":["3-1.mp4"],"t":…}          outputs saved (names in the download folder)
--     {"type":"upload","sha256":"…","url":"https://…","expires_at":…,"uploaded_at":…,"size":…,"t":…}
--                          a file a row sent: a rerun uploads it again only once its URL expires
--
-- `job` is the row number, or `row.variant` with `expand`; `fp` is the
-- fingerprint of what the row sends (model and input). Replaying the lines
-- in order gives each job's last known state. The writer fsyncs the file
-- before each createTask goes out and after each outcome (`sync`); a line
-- torn by a crash (the last line of a run, with no newline or not JSON) is
-- ignored, because nothing was acted on before it was synced. So are torn
-- lines in a row, as runs each killed while writing their first (`run`)
-- line leave them: before a `run` line, whole or torn, or up to the end of
-- the file. The API key is never written.
-- @module modkie.batch.journal

local core = require "modkie.core"
local Error = require "modkie.error"
local json = require "modkie.json"

local journal = {}

journal.VERSION = 1


local function new_state()
  return { jobs = {}, uploads = {}, runs = 0, lines = 0, torn = 0, run_records = {} }
end

local function job_of(state, key, rec)
  local js = state.jobs[key]
  if not js then
    js = { key = key, submits = 0, state = "new" }
    state.jobs[key] = js
  end
  if rec.row ~= nil then js.row = rec.row end
  return js
end

-- What each record type does to its job's state.
local APPLY = {
  submit = function(js, rec, line)
    js.submits = js.submits + 1
    js.fp, js.line = rec.fp, line
    js.state, js.id, js.done, js.files = "submitting", nil, nil, nil
  end,
  retry = function(js)
    -- the createTask its last submit let go was answered that nothing was
    -- created: as far as the gateway goes, the row was never sent
    if js.state == "submitting" then js.state, js.submits = "new", js.submits - 1 end
  end,
  accepted = function(js, rec)
    js.id, js.state = rec.id, "accepted"
  end,
  done = function(js, rec)
    js.done, js.state = rec, rec.state
    if rec.id ~= nil then js.id = rec.id end
  end,
  files = function(js, rec)
    js.files = rec.files
  end,
}

-- A crash while writing a `run` record leaves a line that starts as one does
-- (journal.encode writes the type first), cut anywhere.
local RUN_HEAD = '{"type":"run"'
local function torn_run(line)
  return line:sub(1, #RUN_HEAD) == RUN_HEAD:sub(1, #line)
end

local function damaged(path, line, why)
  return Error.new("validation", ("journal %s: line %d is damaged (%s); it was not written by this batch, "
    .. "or was edited by hand"):format(tostring(path), line, why), { path = path, line = line })
end

--- Replay the text of a journal.
-- @tparam string text the file's content
-- @tparam[opt] string path for messages
-- @tparam[opt] table opts `submits = true`: keep each job's last submit record
-- @treturn[1] table `{ jobs = { [key] = { key, row, fp, line, submits, state,
--   id, submit, done, files } }, uploads = { [sha256] = upload record }, runs, run_records, lines, torn }`;
--   `state` is "submitting", "accepted", or the `done` record's state;
--   `done` is the job's last such record, and `submit` too with
--   `opts.submits` (else left out, to spare memory); `run_records` the
--   `run` records in order, each with `last_t`, the time of its run's last record
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "validation" naming the line
function journal.replay(text, path, opts)
  local keep = opts and opts.submits
  local state = new_state()
  -- where each line is (not the lines themselves: a big journal is read
  -- once, and each line decoded once, when its turn comes)
  local first, last, n, pos, len = {}, {}, 0, 1, #text
  while pos <= len do
    local nl = text:find("\n", pos, true) or len + 1
    n = n + 1
    first[n], last[n] = pos, nl - 1
    pos = nl + 1
  end
  state.lines = n
  local function line(i) return text:sub(first[i], last[i]) end
  -- line i's record, or why it is not one (nil for a blank line)
  local function decode(i)
    local s = line(i)
    if not s:find("%S") then return nil end
    local rec = json.decode(s)
    if type(rec) ~= "table" then return "not JSON" end
    if type(rec.type) ~= "string" then return "no record type" end
    return rec
  end
  -- A journal starts with a record (modkie writes `run` first), or with one
  -- torn by a crash: a line cut short of `{"type":…`. A first line that is
  -- neither (a CSV header, a template, a JSON object of no record type we
  -- write, such as a JSON Lines row) means this is some other file, named
  -- as the journal by mistake: appending to it would corrupt it.
  for i = 1, n do
    local s = line(i)
    if s:find("%S") then
      local rec = decode(i)
      local ok = false
      if type(rec) == "table" then
        ok = rec.type == "run" or rec.type == "upload" or APPLY[rec.type] ~= nil
      elseif rec == "not JSON" then -- torn: a record cut short
        ok = s:find('^%s*{%s*$') ~= nil or s:find('^%s*{%s*"') ~= nil
      end
      if not ok then
        return nil, Error.new("validation", ("journal %s: line %d is not a journal record: it is some other file "
          .. "(the rows? the template?), not written by modkie batch; name the journal file itself (by default "
          .. "the rows file's name with .journal added), or a new one"):format(tostring(path), i),
          { path = path, line = i })
      end
      break
    end
  end
  -- the lines from `tail` on are all torn (or blank)
  local tail = n + 1
  while tail > 1 and type(decode(tail - 1)) ~= "table" do tail = tail - 1 end
  local ahead = n > 0 and decode(1) or nil
  for i = 1, n do
    local rec = ahead
    ahead = i < n and decode(i + 1) or nil
    if type(rec) == "string" then
      -- torn by a crash: the last line of a run, so followed by the next
      -- run's `run` line, whole or torn (that run killed while writing it:
      -- fuzz finding journal/double-tear; the torn `run` line is checked in
      -- turn), or only by torn lines up to the end. Anything else after it
      -- means the file was damaged some other way.
      if i >= tail or (type(ahead) == "table" and ahead.type == "run")
        or (type(ahead) == "string" and torn_run(line(i + 1))) then
        state.torn = state.torn + 1
      else
        return nil, damaged(path, i, rec)
      end
    elseif rec and rec.type == "run" then
      if type(rec.v) ~= "number" or rec.v > journal.VERSION then
        return nil, Error.new("validation", ("journal %s: line %d was written by a newer modkie "
          .. "(journal version %s); upgrade to resume it"):format(tostring(path), i, tostring(rec.v)),
          { path = path, line = i })
      end
      state.runs = state.runs + 1
      state.model = rec.model
      state.run_records[state.runs] = rec
      rec.last_t = rec.t
    elseif rec and rec.type == "upload" then
      -- the latest upload of each content (by sha256)
      if type(rec.sha256) == "string" and type(rec.url) == "string" and type(rec.expires_at) == "number" then
        local old = state.uploads[rec.sha256]
        if not old or old.expires_at < rec.expires_at then state.uploads[rec.sha256] = rec end
      end
    elseif rec and APPLY[rec.type] then
      if type(rec.job) ~= "string" then return nil, damaged(path, i, "no job key") end
      local js = job_of(state, rec.job, rec)
      APPLY[rec.type](js, rec, i)
      -- the whole submit record (input, values) only for who asked: a
      -- resume of 10,000 rows does not need their inputs in memory
      if rec.type == "submit" and keep then js.submit = rec end
      local run = state.run_records[state.runs]
      if run and type(rec.t) == "number" then run.last_t = rec.t end
    end
    -- blank lines, and types written by a later version for its own use: skipped
  end
  return state
end

local function read_all(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("*a")
  f:close()
  return text or ""
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

--- Replay the journal at `path` without writing (a missing file is an empty
-- journal); `opts` as for `replay`.
-- @treturn[1] table the state, as `replay` gives it
-- @treturn[2] nil
-- @treturn[2] modkie.Error
function journal.read(path, opts)
  if not exists(path) then return new_state() end
  local text, err = read_all(path)
  if not text then
    return nil, Error.new("config", ("journal %s: cannot read it: %s"):format(path, tostring(err)), { path = path })
  end
  return journal.replay(text, path, opts)
end

--- Whether `v` can go into a record (JSON, nested at most 64 deep): an
-- input the journal cannot hold is left out rather than stopping the batch.
function journal.encodable(v)
  return json.encode(v) ~= nil
end

--- One record as a JSON line (no newline): `type` and `job` first, so a
-- person reading the file sees what each line is; `/` left unescaped (modkie.json).
-- @treturn[1] string
-- @treturn[2] nil
-- @treturn[2] string why it cannot be encoded
function journal.encode(rec)
  local rest = {}
  for k, v in pairs(rec) do
    if k ~= "type" and k ~= "job" then rest[k] = v end
  end
  local body, err = json.encode(rest)
  if not body then return nil, err end
  local head = json.encode(rec.type)
  if rec.job ~= nil then head = head .. ',"job":' .. json.encode(rec.job) end
  head = '{"type":' .. head
  if body == "{}" then return head .. "}" end
  return head .. "," .. body:sub(2)
end

local Journal = {}
Journal.__index = Journal

--- Open the journal at `path` for appending, after replaying what it holds.
-- A path that is a symbolic link is refused. The journal is locked (flock)
-- while open: a second process that opens it
-- gets an error instead of mixing its records in. A journal the call creates
-- has its folder synced, so the new name survives a power cut.
-- @treturn[1] Journal with `state` (the replay), `path`
-- @treturn[2] nil
-- @treturn[2] modkie.Error
function journal.open(path)
  local function fail(what, err)
    return nil, Error.new("config", ("journal %s: %s: %s"):format(path, what, tostring(err)), { path = path })
  end
  -- never through a symbolic link: one planted in a shared folder would have
  -- the batch append to (or create) a file of someone else's choosing
  if core.symlink(path) then return fail("refused", "it is a symbolic link; name the journal file itself") end
  local created = not exists(path)
  if created then
    -- private from its first byte (0600, whatever the umask): it holds the
    -- inputs, task ids and result URLs of a paid account
    local ok, perr = core.private(path)
    if not ok then return fail("cannot open it for writing", perr) end
  end
  local f, oerr = io.open(path, "ab")
  if not f then return fail("cannot open it for writing", oerr) end
  local plain, perr = core.opened_as(f, path)
  if not plain then
    f:close()
    return fail("refused", perr)
  end
  local locked, lerr = core.lock(f)
  if not locked then
    f:close()
    return fail("cannot lock it (is another batch using this journal?)", lerr)
  end
  if created then
    local synced, serr = core.fsync_dir(path:match("^(.*)/[^/]*$") or ".")
    if not synced then
      f:close()
      return fail("cannot sync its folder", serr)
    end
  end
  local text, err = read_all(path)
  if not text then
    f:close()
    return fail("cannot read it", err)
  end
  local state, rerr = journal.replay(text, path)
  if not state then
    f:close()
    return nil, rerr
  end
  local self = setmetatable({ path = path, file = f, state = state, dirty = false }, Journal)
  -- end a line torn by a crash, so the next record starts on its own line
  if text ~= "" and text:sub(-1) ~= "\n" then f:write("\n") end
  return self
end

--- Add a record (buffered; `sync` makes it durable). Adds `t`, Unix
-- seconds to the millisecond (journals of older versions hold whole seconds).
-- @treturn[1] true
-- @treturn[2] nil
-- @treturn[2] modkie.Error
function Journal:append(rec)
  if rec.t == nil then rec.t = math.floor(core.time() * 1000 + 0.5) / 1000 end
  local line, jerr = journal.encode(rec)
  if not line then
    return nil, Error.new("config", "journal: cannot encode a record: " .. tostring(jerr), { path = self.path })
  end
  local ok, werr = self.file:write(line, "\n")
  if not ok then
    return nil, Error.new("config", ("journal %s: write failed: %s"):format(self.path, tostring(werr)),
      { path = self.path })
  end
  self.dirty = true
  return true
end

--- Flush and fsync what was appended: after this, a crash keeps it.
-- @treturn[1] true
-- @treturn[2] nil
-- @treturn[2] modkie.Error
function Journal:sync()
  if not self.dirty then return true end
  local ok, err = core.fsync(self.file)
  if not ok then
    return nil, Error.new("config", ("journal %s: fsync failed: %s"):format(self.path, tostring(err)),
      { path = self.path })
  end
  self.dirty = false
  return true
end

--- `append` then `sync`.
function Journal:write(rec)
  local ok, err = self:append(rec)
  if not ok then return nil, err end
  return self:sync()
end

--- Sync and close (safe to call twice).
function Journal:close()
  if not self.file then return true end
  local ok, err = self:sync()
  self.file:close()
  self.file = nil
  if not ok then return nil, err end
  return true
end

return journal

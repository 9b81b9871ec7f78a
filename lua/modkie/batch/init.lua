--- Batches: a table, CSV or JSON Lines file of rows and a prompt template
-- in, one job per row (or per `expand` variant) out, crash-safe with a
-- journal, outputs downloaded into a folder.
--
--     local report = assert(modkie.batch.run{
--       client = client, model = "kling/kling-3-0",
--       template_file = "template.txt", rows = "rows.csv",
--       input = { duration = 5 }, concurrency = 8,
--       journal = "rows.journal", download = "videos",
--     })
--     print(report.succeeded, report.failed)
--
-- See docs/batch.md for every option, the journal's format and guarantees,
-- and the report's shape.
-- @module modkie.batch

local core = require "modkie.core"
local Error = require "modkie.error"
local download = require "modkie.download"
local file = require "modkie.file"
local folder = require "modkie.batch.folder"
local journal_mod = require "modkie.batch.journal"
local plan_mod = require "modkie.batch.plan"
local options = require "modkie.options"
local record = require "modkie.record"
local rows_mod = require "modkie.batch.rows"
local uploads = require "modkie.uploads"

local batch = {}

local DEFAULT_CONCURRENCY = 8
local TICK_BLOCK = 1       -- most seconds a blocking step waits (progress ticks)
-- Can a coroutine yield from inside pcall here? (Not on PUC Lua 5.1.)
local YIELD_ACROSS_PCALL = (function()
  local co = coroutine.create(function() pcall(coroutine.yield) end)
  coroutine.resume(co)
  return coroutine.status(co) == "suspended"
end)()

local TICK_YIELD = 0.05    -- scheduler/ngx/user waits: how soon a new task id is journaled
local PROGRESS_EVERY = 1   -- seconds between progress calls when nothing changed
local PROGRESS_MIN = 0.1   -- seconds between progress calls at most (counting walks every row)

-- Kinds of a refused createTask that will refuse every other row too: stop submitting.
local FATAL = { auth = true, credits = true, config = true }

-- option -> accepted types
local OPTIONS = {
  client = { table = true }, model = { string = true }, template = { string = true },
  template_file = { string = true }, rows = { table = true, string = true }, input = { table = true },
  fields = { table = true }, prompt_field = { string = true }, expand = { boolean = true, table = true },
  concurrency = { number = true }, journal = { string = true }, download = { string = true },
  dry_run = { boolean = true }, resubmit_ambiguous = { boolean = true }, retry_failed = { boolean = true },
  deadline = { number = true, boolean = true }, callback_url = { string = true },
  on_progress = { ["function"] = true }, on_result = { ["function"] = true },
  extra_columns = { boolean = true, table = true }, encoding = { string = true }, check_balance = { boolean = true },
  separator = { string = true },
}

local function check_options(opts)
  options.check("modkie.batch.run", opts, OPTIONS, 3)
  if not opts.model then error("modkie.batch.run: option 'model' is required", 3) end
  if opts.rows == nil then error("modkie.batch.run: option 'rows' is required (a table or a file path)", 3) end
  if opts.template and opts.template_file then
    error("modkie.batch.run: give 'template' or 'template_file', not both", 3)
  end
  local sep = opts.separator
  if sep ~= nil and not rows_mod.valid_separator(sep) then
    error("modkie.batch.run: option 'separator' must be one character other than a quote or newline, got '"
      .. sep .. "'", 3)
  end
  local c = opts.concurrency
  if c ~= nil and not (c >= 1 and c == math.floor(c)) then
    error("modkie.batch.run: option 'concurrency' must be a whole number >= 1, got " .. tostring(c), 3)
  end
  if type(opts.expand) == "table" then
    for k in pairs(opts.expand) do
      if k ~= "random" and k ~= "seed" then
        error("modkie.batch.run: unknown option 'expand." .. tostring(k) .. "' (expand takes random and seed)", 3)
      end
    end
  end
  if not opts.dry_run and (type(opts.client) ~= "table" or type(opts.client.submit) ~= "function") then
    error("modkie.batch.run: option 'client' is required (a modkie client) unless dry_run", 3)
  end
end

-- ---------------------------------------------------------------- small helpers

-- cjson reads every number as a float on Lua 5.3+: 35 comes back as 35.0.
local function integral(n)
  if type(n) == "number" and n == math.floor(n) then return math.floor(n) end
  return n
end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- A row's values as the journal keeps them (for the review page): text,
-- numbers and booleans, and tables the journal can hold; nothing else.
local function plain_values(row)
  if type(row) ~= "table" then return nil end
  local out, any = {}, false
  for k, v in pairs(row) do
    local t = type(v)
    if type(k) == "string" and (t == "string" or t == "number" or t == "boolean"
      or (t == "table" and journal_mod.encodable(v))) then
      out[k], any = v, true
    end
  end
  return any and out or nil
end

-- The gateway's times of a job (Unix seconds) and its polls, for the journal:
-- with the record's `t` they give the job's duration and notice delay.
local function timings(rec, job)
  local t = { polls = job.polls }
  if type(rec) == "table" then
    local r = record.result(rec)
    t.created_at, t.completed_at, t.cost_time = r.created_at, r.completed_at, r.cost_time
  end
  return t
end

-- What goes into the journal for an error: plain fields, never a record or input.
local function error_record(err)
  return { kind = err.kind, message = err.message, code = err.code, status = err.status }
end

local function error_from_record(e, task_id)
  if type(e) ~= "table" or not Error.kinds[e.kind] then
    return Error.new("protocol", "the journal recorded an error it could not describe", { task_id = task_id })
  end
  return Error.new(e.kind, e.message, { code = e.code, status = e.status, task_id = task_id })
end

--- The file name of output `n` of a report entry: `<row>-<n>.<ext>`, or
-- `<row>_<variant>-<n>.<ext>` with expand. Never taken from the URL but its
-- (sanitised) extension.
function batch.file_name(entry, n, url)
  local base = tostring(entry.row)
  if entry.variant then base = base .. "_" .. tostring(entry.variant) end
  return download.name(base, n, url)
end

local function files_complete(e)
  if not e.files or #e.files < #e.urls then return false end
  for _, p in ipairs(e.files) do
    if not file_exists(p) then return false end
  end
  return true
end

-- A journal of another batch (a row changed, or one it knows is gone):
-- the error that refuses it, or nil. `jobs`: the batch's jobs (key, fp).
local function mismatch(path, state, jobs)
  local by_key = {}
  for _, e in ipairs(jobs) do by_key[e.key] = e end
  local found
  for key, js in pairs(state.jobs) do
    local e = by_key[key]
    local why
    if not e then
      why = ("job %s (journal line %d) is not in this batch: the rows or the expand option changed")
        :format(key, js.line or 0)
    elseif js.fp ~= nil and js.fp ~= e.fp then
      why = ("row %s changed since the journal was written (journal line %d): its input or its rendered "
        .. "prompt differs"):format(key, js.line or 0)
    end
    if why and (not found or (js.line or 0) < found.line) then
      found = { line = js.line or 0, why = why, key = key }
    end
  end
  if not found then return nil end
  return Error.new("validation", ("journal %s belongs to another batch: %s. Use a new journal for a "
    .. "new batch, or put the rows and template back as they were."):format(path, found.why),
    { path = path, row = tonumber(found.key:match("^%d+")), line = found.line })
end

-- ---------------------------------------------------------------- dry run

-- The local files of a job to submit: `{ field, column, path, size, type,
-- sha256, upload }` each; `upload` false when the journal holds a fresh URL
-- of the same bytes (or an earlier job of this batch uploads them).
local function dry_files(job, state, planned)
  local out = {}
  for _, f in ipairs(file.find(job.input)) do
    local facts = f.file:facts() or f.file:probe() or {}
    local known = state and facts.sha256 and state.uploads[facts.sha256]
    local fresh = known and uploads.fresh(known, core.time())
    local upload = facts.sha256 ~= nil and not fresh and not planned[facts.sha256]
    if facts.sha256 then planned[facts.sha256] = true end
    out[#out + 1] = { field = f.field, column = f.field:match("^[^%[%.]+"), path = f.file.path or f.file.name,
      size = facts.size, type = facts.mime, sha256 = facts.sha256, upload = upload,
      url = fresh and known.url or nil }
  end
  return out
end

local function dry_report(opts, plan)
  local report = {
    dry_run = true, total = #plan.jobs, rows = {}, problems = plan.problems,
    invalid = 0, valid = #plan.jobs, skipped = 0, to_submit = 0,
    files = {}, uploads = { files = 0, bytes = 0 },
  }
  local planned = {}
  -- rows with problems: one entry per row, in row order among the jobs
  local bad = {}
  for _, p in ipairs(plan.problems) do
    if p.row and not bad[p.row] then -- (a problem of the header has no row)
      bad[p.row] = p
      report.invalid = report.invalid + 1
    end
  end
  local state
  if opts.journal then
    local jerr
    state, jerr = journal_mod.read(opts.journal)
    if not state then return nil, jerr end
    -- what the run would say once the rows are valid: it refuses to mix two batches
    if #plan.problems == 0 then
      jerr = mismatch(opts.journal, state, plan.jobs)
      if jerr then return nil, jerr end
    end
  end
  -- and it refuses a download folder of another batch
  if #plan.problems == 0 and opts.download and core.realpath(opts.download) then
    local ok, ferr = folder.check(opts.download, opts.journal, state)
    if not ok then return nil, ferr end
  end
  local i = 1
  for row = 1, plan.rows do
    while plan.jobs[i] and plan.jobs[i].row == row do
      local job = plan.jobs[i]
      local entry = { row = job.row, variant = job.variant, key = job.key, prompt = job.prompt,
        input = job.input, state = "valid" }
      local js = state and state.jobs[job.key]
      if js and js.fp == job.fp and js.state ~= "new" then
        entry.state, entry.id = "journaled", js.id
        entry.journal_state = js.state
        report.skipped = report.skipped + 1
      else
        report.to_submit = report.to_submit + 1
        entry.files = dry_files(job, state, planned)
        for _, f in ipairs(entry.files) do
          f.row, f.variant = job.row, job.variant
          report.files[#report.files + 1] = f
          if f.upload then
            report.uploads.files = report.uploads.files + 1
            report.uploads.bytes = report.uploads.bytes + (f.size or 0)
          end
        end
      end
      report.rows[#report.rows + 1] = entry
      i = i + 1
    end
    if bad[row] then
      report.rows[#report.rows + 1] = { row = row, state = "invalid",
        error = Error.new("validation", bad[row].message, { row = row, field = bad[row].field }) }
    end
  end
  report.total = #report.rows
  if plan.credits_each then report.credits = plan.credits_each * report.to_submit end
  return report
end

-- ---------------------------------------------------------------- the runner

local Runner = {}
Runner.__index = Runner

local function new_runner(opts, plan)
  local self = setmetatable({
    opts = opts, plan = plan, client = opts.client, model = plan.model,
    concurrency = opts.concurrency or DEFAULT_CONCURRENCY,
    entries = {}, queue = {}, qhead = 1, active = {},
    started = core.now(), last_progress = 0, finished_now = 0,
    mode = opts.client.scheduler:mode(),
  }, Runner)
  for i, job in ipairs(plan.jobs) do
    self.entries[i] = {
      row = job.row, variant = job.variant, key = job.key, prompt = job.prompt, input = job.input,
      state = "pending", fp = job.fp, values = job.values,
    }
  end
  return self
end

-- Open the journal, check it belongs to this batch, and turn what it holds
-- into restored entries and a queue of work.
function Runner:restore()
  local opts = self.opts
  local state = { jobs = {} }
  if opts.journal then
    local parent = opts.journal:match("^(.*)/[^/]*$")
    if parent and parent ~= "" then
      local ok, merr = download.mkdir_p(parent)
      if not ok then
        return nil, Error.new("config", ("journal %s: cannot create its folder: %s"):format(opts.journal,
          tostring(merr)), { path = opts.journal })
      end
    end
    local j, err = journal_mod.open(opts.journal)
    if not j then return nil, err end
    self.journal, state = j, j.state
    -- files earlier runs uploaded: reused while their URLs have life left
    for _, u in pairs(state.uploads) do self.client._uploads:remember(u) end
    local merr = mismatch(opts.journal, state, self.entries)
    if merr then
      j:close()
      self.journal = nil
      return nil, merr
    end
  end

  local adopt, todo, fetch = {}, {}, {}
  for _, e in ipairs(self.entries) do
    local js = state.jobs[e.key]
    local st = js and js.state or "new"
    local done = js and js.done
    if st == "new" then
      todo[#todo + 1] = e
    elseif st == "submitting" or st == "ambiguous" then
      if opts.resubmit_ambiguous then
        todo[#todo + 1] = e
      else
        e.restored, e.state = true, "ambiguous"
        e.error = st == "ambiguous" and error_from_record(done.error) or Error.new("ambiguous",
          "an earlier run was stopped after recording this row as submitting and before the gateway's answer "
          .. "was recorded: a task may exist. Not submitted again (resubmit_ambiguous = true to submit it anyway)",
          { row = e.row })
        e.error.row = e.row
      end
    elseif st == "accepted" then
      e.id, e.adopted = js.id, true
      adopt[#adopt + 1] = e
    elseif st == "success" then
      e.restored, e.state, e.id = true, "success", js.id
      e.urls, e.credits, e.output = done.urls or {}, integral(done.credits), done.output
      if js.files then
        e.files = {}
        for n, name in ipairs(js.files) do e.files[n] = self:path_of(name) end
      end
      if opts.download and not files_complete(e) then fetch[#fetch + 1] = e end
    elseif st == "failed" and not opts.retry_failed then
      e.restored, e.state, e.id = true, "failed", js.id
      e.error = error_from_record(done.error, js.id)
      e.error.row = e.row
    elseif st == "failed" then
      todo[#todo + 1] = e
    else -- "error": refused (no task id: safe to submit), or lost track of a task that exists
      local kind = type(done) == "table" and type(done.error) == "table" and done.error.kind
      if not js.id then
        todo[#todo + 1] = e
      elseif kind == "not_found" then
        e.restored, e.state, e.id = true, "error", js.id
        e.error = error_from_record(done.error, js.id)
        e.error.row = e.row
      else
        e.id, e.adopted = js.id, true
        adopt[#adopt + 1] = e
      end
    end
  end
  -- already-running tasks first: they cost nothing more; then saves, then new rows
  for _, e in ipairs(adopt) do self.queue[#self.queue + 1] = { kind = "adopt", entry = e } end
  for _, e in ipairs(fetch) do self.queue[#self.queue + 1] = { kind = "fetch", entry = e } end
  for _, e in ipairs(todo) do self.queue[#self.queue + 1] = { kind = "submit", entry = e } end
  return true
end

-- Before anything is paid for: the download folder must take files, and
-- the balance must cover the estimate (a run that stops halfway for credits
-- leaves a batch half done).
function Runner:preflight()
  local opts = self.opts
  if opts.download then
    local ok, err = download.check_dir(opts.download)
    if not ok then return nil, err end
    -- a folder of another batch: its files would be written over
    ok, err = folder.check(opts.download, opts.journal, self.journal and self.journal.state)
    if not ok then return nil, err end
  end
  local n = 0
  for i = self.qhead, #self.queue do
    if self.queue[i].kind == "submit" then n = n + 1 end
  end
  local each = self.plan.credits_each
  if opts.check_balance == false or not each or n == 0 then return true end
  local balance, err = self.client:credits()
  if not balance then
    err.message = ("batch: the balance could not be checked before sending (%s); check_balance = false "
      .. "(--no-balance-check) sends without checking"):format(err.message)
    return nil, err
  end
  local need = each * n
  if balance < need then
    return nil, Error.new("credits", ("batch: about %s credits are needed for %d %s (%s each, the model's "
      .. "estimate), but the balance is %s; nothing was sent. Top up, or pass check_balance = false "
      .. "(--no-balance-check) to send anyway"):format(tostring(need), n, n == 1 and "job" or "jobs",
      tostring(each), tostring(balance)), { needed = need, balance = balance })
  end
  return true
end

-- This run's first journal record.
function Runner:begin()
  if not self.journal then return true end
  local opts = self.opts
  return self.journal:write({ type = "run", v = journal_mod.VERSION, model = self.model,
    jobs = #self.entries, rows = self.plan.rows, columns = self.plan.columns,
    source = type(opts.rows) == "string" and opts.rows or nil, template = opts.template_file,
    download = opts.download })
end

function Runner:path_of(name)
  return (self.opts.download or "."):gsub("/+$", "") .. "/" .. name
end


function Runner:log(rec)
  if not self.journal then return end
  local ok, err = self.journal:append(rec)
  if not ok then error(err, 0) end -- a journal that cannot be written must stop the batch
  self.dirty = true
end

function Runner:sync()
  if not (self.journal and self.dirty) then return end
  local ok, err = self.journal:sync()
  if not ok then error(err, 0) end
  self.dirty = false
end

-- ---------------------------------------------------------------- starting work

-- Fill free slots. New rows are handed to the client held at the door: a
-- row is recorded as submitting (and synced) only once its createTask has
-- its rate token and a connection, just before it goes out (see `send_held`),
-- so a row still waiting in line is known never to have been sent.
function Runner:fill()
  local free = self.concurrency - #self.active
  local sopts = { validate = false, deadline = self.opts.deadline, callback_url = self.opts.callback_url,
    hold = true }
  while free > 0 and self.qhead <= #self.queue and not self.halted do
    local item = self.queue[self.qhead]
    self.qhead = self.qhead + 1
    free = free - 1
    local e = item.entry
    if item.kind == "adopt" then
      local job, err = self.client:job(e.id, { model = self.model, deadline = self.opts.deadline })
      if job then
        e.state = "running"
        self.active[#self.active + 1] = { entry = e, job = job, logged = true }
      else
        self:refused(e, err)
      end
    elseif item.kind == "fetch" then
      local a = { entry = e, quiet = true } -- restored: on_result was called in its own run
      if self:start_download(a) then
        self.active[#self.active + 1] = a
      else
        free = free + 1
      end
    else
      e.restored, e.adopted, e.error, e.id = nil, nil, nil, nil
      local job, err = self.client:submit(self.model, e.input, sopts)
      if job then
        e.state = "submitting"
        self.active[#self.active + 1] = { entry = e, job = job }
      else
        self:refused(e, err)
      end
    end
  end
  self:sync()
end

-- Jobs at the door: record them as submitting, sync once for all, then let
-- their createTasks go. Every attempt passes the door: a createTask that came
-- back answered that nothing was created (429, 455) is recorded as such (a
-- `retry` record: the row is unsent again) before its next attempt's `submit`.
function Runner:send_held()
  local door, bounced = {}, false
  self.logged_uploads = self.logged_uploads or {}
  for _, a in ipairs(self.active) do
    if a.job and (a.job.bounced or 0) ~= (a.bounced or 0) then
      a.bounced, bounced = a.job.bounced, true
      self:log({ type = "retry", job = a.entry.key })
    end
    if a.job and a.job.held then
      door[#door + 1] = a.job
      local e = a.entry
      -- the row's files first: a rerun reuses them (the same bytes, while their URLs live)
      for _, u in ipairs(a.job.uploads or {}) do
        local key = u.sha256 .. " " .. u.url
        if not self.logged_uploads[key] then
          self.logged_uploads[key] = true
          self:log({ type = "upload", sha256 = u.sha256, url = u.url, expires_at = u.expires_at,
            uploaded_at = u.uploaded_at, size = u.size })
        end
      end
      local input = a.job.input -- as sent: files replaced by their URLs
      self:log({ type = "submit", job = e.key, row = e.row, fp = e.fp,
        input = journal_mod.encodable(input) and input or nil, values = plain_values(e.values) })
    end
  end
  if #door == 0 then
    if bounced then self:sync() end -- a kill in the backoff leaves those rows plainly unsent
    return
  end
  self:sync() -- durable before any of these createTasks can be sent
  for _, job in ipairs(door) do job:send() end
end

-- A job that could not even start (no key, client closed): nothing was created.
function Runner:refused(e, err)
  err.row = e.row
  e.state, e.error = "error", err
  self:log({ type = "done", job = e.key, state = "error", id = e.id, error = error_record(err) })
  if FATAL[err.kind] and not e.id then self.halted = self.halted or err end
  self.finished_now = self.finished_now + 1
  self.refusals[#self.refusals + 1] = { entry = e, err = err }
end

-- Save an entry's outputs, skipping files already whole on disk when the
-- entry comes from an earlier run. Returns true when a download started.
function Runner:start_download(a)
  local e = a.entry
  local dir = self.opts.download
  local all, names, urls = {}, {}, {}
  for n, url in ipairs(e.urls or {}) do
    local name = batch.file_name(e, n, url)
    all[n] = name
    -- a file under its final name is whole (downloads are renamed into
    -- place when complete); trusted only for work of an earlier run
    if not ((e.restored or e.adopted) and file_exists(self:path_of(name))) then
      names[#names + 1] = name
      urls[#urls + 1] = url
    end
  end
  e.file_names = all
  if #urls == 0 then
    self:files_saved(e, nil)
    return false
  end
  local client = self.client
  local d = client.scheduler:pending()
  client:go(function()
    local _, err = download.files(client, urls, dir, { name = function(i) return names[i] end })
    d.err = err
    client.scheduler:finish(d)
  end)
  a.download, a.job = d, nil
  e.downloading = true
  return true
end

-- Record the files of `e` (all of them, or those that arrived before `err`).
function Runner:files_saved(e, err)
  e.downloading = nil
  local saved, files = {}, {}
  for _, name in ipairs(e.file_names) do
    if file_exists(self:path_of(name)) then
      saved[#saved + 1] = name
      files[#files + 1] = self:path_of(name)
    elseif not err then
      err = Error.new("network", "download: " .. name .. " is missing after the download", { row = e.row })
    end
  end
  e.files = files
  if err then
    err.row = e.row
    e.download_error = err
  else
    e.download_error = nil
    self:log({ type = "files", job = e.key, files = saved })
  end
end

-- ---------------------------------------------------------------- collecting outcomes

function Runner:job_done(a)
  local e, job = a.entry, a.job
  e.id = job.id or e.id
  self.finished_now = self.finished_now + 1
  if job.state == "success" then
    local res = job.result
    e.state, e.urls, e.credits, e.output, e.result = "success", res.urls or {}, res.credits, res.output, res
    local t = timings(res.raw, job)
    self:log({ type = "done", job = e.key, state = "success", id = e.id, urls = e.urls, credits = e.credits,
      output = res.output, created_at = t.created_at, completed_at = t.completed_at, cost_time = t.cost_time,
      polls = t.polls })
    if self.opts.download and #e.urls > 0 then return "download" end
    return "finished"
  end
  local err = job.error
  err.row = e.row
  e.error = err
  if job.state == "cancelled" then
    -- the client was closed under us: no outcome to record; a rerun adopts
    -- the task (or reports it ambiguous if it had no id yet)
    e.state = "cancelled"
    return "finished"
  end
  if job.state == "failed" then
    e.state = "failed"
  elseif err.kind == "ambiguous" then
    e.state = "ambiguous"
  else
    e.state = "error"
    if FATAL[err.kind] and not e.id then self.halted = self.halted or err end
  end
  local t = timings(err.record, job)
  self:log({ type = "done", job = e.key, state = e.state, id = e.id, error = error_record(err),
    created_at = t.created_at, completed_at = t.completed_at, cost_time = t.cost_time, polls = t.polls })
  return "finished"
end

-- After a step: record new task ids and outcomes (one sync for all), then
-- start downloads and tell the callbacks.
function Runner:collect()
  local keep, finished, downloads = {}, self.refusals, {}
  self.refusals = {}
  for _, a in ipairs(self.active) do
    local e, job = a.entry, a.job
    local status = "running"
    if job then
      if not a.logged and job.id then
        a.logged = true
        e.id, e.state = job.id, "running"
        self:log({ type = "accepted", job = e.key, id = job.id })
      end
      if job.done then
        status = self:job_done(a)
        if status == "download" then downloads[#downloads + 1] = a end
        a.result, a.err = job.result, job.error
      end
    elseif a.download and a.download.done then
      self:files_saved(e, a.download.err)
      status = "finished"
    end
    if status == "finished" then
      finished[#finished + 1] = a
    elseif status ~= "download" then
      keep[#keep + 1] = a
    end
  end
  self.active = keep
  self:send_held()
  self:sync()
  for _, a in ipairs(downloads) do
    if self:start_download(a) then keep[#keep + 1] = a else finished[#finished + 1] = a end
  end
  self:sync()
  local on_result = self.opts.on_result
  for _, a in ipairs(finished) do
    if on_result and not a.quiet then on_result(a.entry, a.result, a.err) end
  end
  return #finished > 0
end

function Runner:counts()
  local c = { total = #self.entries, succeeded = 0, failed = 0, ambiguous = 0, skipped = 0, pending = 0,
    running = 0, downloading = 0, credits = 0, files = 0, download_failed = 0 }
  for _, e in ipairs(self.entries) do
    local s = e.state
    if e.downloading then
      c.downloading = c.downloading + 1
    elseif s == "success" then
      c.succeeded = c.succeeded + 1
      if e.download_error then c.download_failed = c.download_failed + 1 end
    elseif s == "failed" or s == "error" or s == "cancelled" then
      c.failed = c.failed + 1
    elseif s == "ambiguous" then
      c.ambiguous = c.ambiguous + 1
    elseif s == "pending" then
      c.pending = c.pending + 1
    else
      c.running = c.running + 1
    end
    if s == "success" and e.credits then c.credits = c.credits + e.credits end
    if e.files then c.files = c.files + #e.files end
    if e.restored and not e.downloading and s ~= "pending" then c.skipped = c.skipped + 1 end
  end
  c.done = c.succeeded + c.failed + c.ambiguous
  return c
end

-- `changed`: something ended; `true` (start, end) always reports.
function Runner:progress(changed)
  local fn = self.opts.on_progress
  if not fn then return end
  local now = core.now()
  local since = now - self.last_progress
  if changed ~= true and since < (changed and PROGRESS_MIN or PROGRESS_EVERY) then return end
  self.last_progress = now
  local p = self:counts()
  p.elapsed = now - self.started
  p.rate = p.elapsed > 0 and self.finished_now / p.elapsed or 0
  local left = p.total - p.done
  if p.rate > 0 then p.eta = left / p.rate end
  fn(p)
end

-- Pass time until something may have changed.
function Runner:pump()
  if self.mode == "block" then
    self.client:step(TICK_BLOCK)
    return
  end
  local watch, jobs, bounced_seen = {}, {}, {}
  for _, a in ipairs(self.active) do
    watch[#watch + 1] = a.job or a.download
    if a.job then
      jobs[#jobs + 1] = a.job
      bounced_seen[#jobs] = a.bounced
    end
  end
  -- a job at the door must be journaled before it goes, and one whose
  -- createTask came back unsent as soon as it did: wake for those too
  local function at_door()
    for i, job in ipairs(jobs) do
      if job.held or (job.bounced or 0) ~= (bounced_seen[i] or 0) then return true end
    end
    return false
  end
  self.client.scheduler:wait(watch, TICK_YIELD, at_door)
end

function Runner:loop()
  self.refusals = {}
  self:progress(true)
  while true do
    self:fill()
    self:progress(self:collect() and "changed")
    if #self.active == 0 then
      if self.halted or self.qhead > #self.queue then break end
    else
      self:pump()
      self:progress(self:collect() and "changed")
    end
  end
  self:progress(true)
end

function Runner:report()
  local c = self:counts()
  local report = {
    total = c.total, succeeded = c.succeeded, failed = c.failed, ambiguous = c.ambiguous,
    skipped = c.skipped, pending = c.pending, credits = c.credits, files = c.files,
    download_failed = c.download_failed, halted = self.halted, journal = self.opts.journal,
    download = self.opts.download, elapsed = core.now() - self.started, rows = self.entries,
  }
  for _, e in ipairs(self.entries) do
    e.fp, e.file_names, e.result, e.downloading, e.values = nil, nil, nil, nil, nil
  end
  return report
end

-- Stop what is still running (the batch raised): jobs end "cancelled"; the
-- journal keeps what is needed to resume.
function Runner:abort()
  for _, a in ipairs(self.active) do
    if a.job and not a.job.done then a.job:cancel() end
  end
  if self.journal then pcall(self.journal.close, self.journal) end
end

--- Run a batch. See docs/batch.md.
-- @tparam table opts `client`, `model`, `template` | `template_file`, `rows`
--   (table or .csv/.tsv/.jsonl path), `input` (defaults), `fields`,
--   `prompt_field` ("prompt"), `expand` (true or `{random = n, seed = s}`),
--   `concurrency` (8), `journal`, `download`, `dry_run`,
--   `resubmit_ambiguous`, `retry_failed`, `deadline`, `callback_url`,
--   `on_progress(p)`, `on_result(entry, res, err)`, `extra_columns` (true:
--   allow columns nothing uses; a list: allow those), `encoding` (of the rows file: "cp1252", "latin1"),
--   `separator` (of a CSV rows file; by default ",", or what its header shows: ";" or a tab),
--   `check_balance` (default true: the estimate must fit the balance)
-- @treturn[1] table the report `{ total, succeeded, failed, ambiguous,
--   skipped, pending, credits, files, download_failed, halted, elapsed,
--   rows = { {row, variant, key, id, state, prompt, input, urls, files,
--   credits, output, error, download_error, restored} … } }`
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "validation" (bad rows or template, with
--   `problems`; or a journal of another batch) or "config" (journal I/O)
function batch.run(opts)
  Error.check(1, "modkie.batch.run", opts, "table")
  check_options(opts)
  local plan, err = plan_mod.build(opts)
  if not plan then return nil, err end
  if opts.dry_run then return dry_report(opts, plan) end
  if #plan.problems > 0 then return nil, plan_mod.error(plan.problems, plan.rows) end

  local runner = new_runner(opts, plan)
  local ok, rerr = runner:restore()
  if ok then ok, rerr = runner:preflight() end
  if ok then ok, rerr = runner:begin() end
  -- the folder is this batch's from now on (its run record is written)
  if ok and opts.download and opts.journal then ok, rerr = folder.claim(opts.download, opts.journal) end
  if not ok then
    if runner.journal then runner.journal:close() end
    return nil, rerr
  end
  -- Lua 5.1 cannot yield across pcall: where the loop yields (a scheduler
  -- coroutine, OpenResty, a wait function) it runs unprotected there, and an
  -- error leaves its jobs running in the client (the journal still resumes).
  local protect = (runner.mode == "block" or YIELD_ACROSS_PCALL) and pcall
    or function(f, ...) return true, f(...) end
  local fine, failure = protect(runner.loop, runner)
  if not fine then
    runner:abort()
    if Error.is(failure) then return nil, failure end -- the journal could not be written
    error(failure, 0)
  end
  if runner.journal then
    local cok, cerr = runner.journal:close()
    if not cok then return nil, cerr end
  end
  return runner:report()
end

return batch

--- `modkie submit`, `modkie status`, `modkie wait`, `modkie list`: one job
-- at a time, and the record of every task the command line submitted.
-- @module modkie.cli.job

local args = require "modkie.cli.args"
local common = require "modkie.cli.common"
local core = require "modkie.core"
local record = require "modkie.record"
local text = require("modkie.cli.escape").text
local tasks = require "modkie.cli.tasks"

local job_cli = {}

local EXIT = common.EXIT

local WAITING = {
  { name = "wait-timeout", value = "positive", arg = "S",
    help = "give up waiting after S seconds (the job keeps going; exit 4)" },
  { name = "download", value = "nonempty", arg = "DIR", help = "save the outputs into DIR (<id>-<n>.<ext>)" },
  { name = "deadline", value = "positive", arg = "S",
    help = "seconds the job may take before polling stops (default 900)" },
}

-- Waiting on a terminal: one status line on stderr, redrawn in place, with
-- the job's state and the time since the command started waiting.
local Status = {}
Status.__index = Status

local function status_line(tty)
  return setmetatable({ tty = tty, started = core.now() }, Status)
end

function Status:draw()
  if not self.tty then return end
  io.stderr:write("\r\27[K", text(self.id or "submitting"), ": ", text(self.state or "waiting"),
    self.progress and (" " .. text(self.progress) .. "%") or "", "  ", common.clock(core.now() - self.started))
  io.stderr:flush()
end

function Status:clear()
  if self.tty then io.stderr:write("\r\27[K") io.stderr:flush() end
end

-- The client's log hook: follow the job's state.
function Status:log()
  return function(_, event, f)
    if event == "accepted" then
      self.id, self.state = f.task_id, "accepted"
    elseif event == "state" then
      self.state = f.server_state or f.state
      self.progress = f.progress
    elseif event == "upload" and f.state ~= "done" and f.state ~= "reused" then
      self.state = "uploading " .. (f.file or "")
      self.progress = f.sent and f.size and f.size > 0 and math.floor(100 * f.sent / f.size) or nil
    else
      return
    end
    self:draw()
  end
end

local function is_interrupt(e)
  return tostring(e):find("interrupted", 1, true) ~= nil
end

-- Run fn(...) and turn Ctrl-C into `on_interrupt()`'s exit code.
local function interruptible(on_interrupt, fn, ...)
  local ok, code = pcall(fn, ...)
  if ok then return code end
  if is_interrupt(code) then return on_interrupt() end
  error(code, 0)
end

-- Wait for `job`, download when asked, print; returns the exit code.
local function finish(job, opts, status)
  local until_t = opts.wait_timeout and core.now() + opts.wait_timeout
  local res, err
  repeat -- in steps of a second, so the status line's clock moves
    local left = until_t and until_t - core.now()
    local slice = status.tty and 1 or nil
    if left and (not slice or left < slice) then slice = math.max(left, 0) end
    res, err = job:await(slice)
    status:draw()
  until job.done or not (err and err.kind == "timeout") or (until_t and core.now() >= until_t)
  if err and err.kind == "timeout" then
    err = require("modkie.error").new("timeout", ("await: job %s did not end within %g s; it keeps going: "
      .. "modkie wait %s"):format(tostring(job.id), opts.wait_timeout, tostring(job.id)), { task_id = job.id })
  end
  status:clear()
  local elapsed = core.now() - status.started
  if job.done and job.id then tasks.ended(job.id, job.state) end
  local files
  if res and opts.download then files, err = job:download(opts.download) end
  if opts.json then
    local out = res and common.result_json(res, files) or { id = job.id, state = job.state }
    out.error = common.error_json(err)
    out.elapsed = elapsed
    io.stdout:write(common.json(out), "\n")
  elseif res then
    common.print_result(res, files, elapsed)
  elseif job.id then
    io.stdout:write(("id       %s\nstate    %s\n"):format(text(job.id), text(job.state)))
    if err then io.stdout:write(("error    %s\n"):format(text(common.describe(err, true)))) end
    io.stdout:write(("elapsed  %s\n"):format(common.clock(elapsed)))
  end
  if err then
    -- with --json too: the error is also said on stderr, as every other
    -- command does (the JSON on stdout may go to a file no one reads yet)
    return common.fail(err)
  end
  return EXIT.ok
end

-- --------------------------------------------------------------- submit

local SUBMIT = args.command {
  usage = "modkie submit MODEL [--prompt TEXT] [--set KEY=VALUE]... [options]",
  about = "Submit one job. Prints its task id; with --wait, waits and prints the result;\n"
    .. "with --download DIR, also saves its outputs. Every task submitted is kept in\n"
    .. "the list 'modkie list' shows.",
  positionals = { "MODEL" }, min = 1,
  flags = common.flags(common.INPUT, {
    { name = "callback-url", value = "nonempty", arg = "URL",
      help = "the gateway POSTs the result there when the job ends" },
    { name = "wait", help = "wait for the job to end and print its result" },
  }, WAITING, {
    { name = "no-validate", help = "send the input even if the model's schema refuses it" },
  }, common.JSON, common.MODELS, common.GATEWAY, common.POLL),
  footer = "The API key comes from MODKIE_API_KEY. Exit codes: 0 ok, 1 the job failed,\n"
    .. "2 usage or invalid input, 3 auth or credits, 4 network or timeout, 130 interrupted.",
}
job_cli.SUBMIT_USAGE = SUBMIT.help

-- What to say when Ctrl-C stops a submit or a wait.
local function interrupted(command, job)
  if job and job.id then
    io.stderr:write(("\nmodkie %s: interrupted; task %s keeps running (and billing) at the gateway: "
      .. "follow it with 'modkie wait %s'\n"):format(command, text(job.id), text(job.id)))
  elseif job and job.sent then
    io.stderr:write(("\nmodkie %s: interrupted while createTask was in flight: a task may have been created "
      .. "without its id reaching us (the gateway's dashboard lists it)\n"):format(command))
  else
    io.stderr:write(("\nmodkie %s: interrupted before createTask was sent: no task was created\n"):format(command))
  end
  return EXIT.interrupted
end

function job_cli.submit(argv)
  local opts, perr = args.parse(argv, SUBMIT.spec)
  if not opts then return common.usage("submit", perr) end
  if opts.help then io.stdout:write(SUBMIT.help) return EXIT.ok end
  local model = opts[1]
  local lok, lerr = common.load_models(opts)
  if not lok then return common.fail(lerr) end
  local input, ierr = common.input(model, opts.set, opts.prompt, not opts.no_validate)
  if not input then return common.fail(ierr) end
  if opts.download then
    local dok, derr = require("modkie.download").check_dir(opts.download)
    if not dok then return common.fail(derr) end
  end
  local kok, kerr = common.need_key()
  if not kok then return common.fail(kerr) end
  -- --wait-timeout (like --download) asks to wait: it is never ignored
  local wants_wait = opts.wait or opts.download or opts.wait_timeout
  local status = status_line(wants_wait and common.tty())
  local client, cerr = common.client(opts, { log = status:log() })
  if not client then return common.fail(cerr) end
  local job, serr = client:submit(model, input, {
    callback_url = opts.callback_url, deadline = opts.deadline, validate = false, hold = true,
  })
  if not job then
    client:close()
    return common.fail(serr)
  end
  local code = interruptible(function() return interrupted("submit", job) end, function()
    -- until the gateway answers createTask: the id is written down before anything else
    while not job.id and not job.done do
      if job.held then job:send() end
      client:step(1)
    end
    if not job.id then
      status:clear()
      if opts.json then
        io.stdout:write(common.json({ state = job.state, error = common.error_json(job.error) }), "\n")
      end
      return common.fail(job.error)
    end
    tasks.add({ id = job.id, model = model, gateway = client.base_url, via = "submit", prompt = input.prompt }, true)
    if not wants_wait then
      if opts.json then
        io.stdout:write(common.json({ id = job.id, state = job.state, model = model }), "\n")
      else
        io.stdout:write(text(job.id), "\n")
      end
      return EXIT.ok
    end
    -- stdout may be a file read only at the end: say the id now
    status:clear()
    io.stderr:write(("modkie: task %s accepted; if this command stops, 'modkie wait %s' follows it\n")
      :format(text(job.id), text(job.id)))
    status:draw()
    return finish(job, opts, status)
  end)
  client:close()
  return code
end

-- --------------------------------------------------------------- status, wait: a task id or --last

local LAST = { name = "last", help = "the task the command line submitted last ('modkie list')" }

-- The task id from the arguments, or the last one recorded.
local function task_id(command, opts)
  if opts[1] and opts.last then return nil, common.usage(command, "give TASK_ID or --last, not both") end
  if opts[1] then
    -- an empty id (`modkie status "$ID"` with ID unset) or one no gateway
    -- gives is a usage error, not a raise from the client
    if opts[1] == "" then return nil, common.usage(command, "TASK_ID is empty") end
    if #opts[1] > core.MAX_TASK_ID then
      return nil, common.usage(command, ("TASK_ID is %d bytes: a task id is at most %d")
        :format(#opts[1], core.MAX_TASK_ID))
    end
    return opts[1]
  end
  if not opts.last then return nil, common.usage(command, "missing TASK_ID (or --last)") end
  local list, err = tasks.list()
  if not list then
    return nil, common.fail(("cannot read %s: %s"):format(tasks.path(), tostring(err)))
  end
  local last = list[#list]
  if not last then
    io.stderr:write("modkie ", command, ": no task recorded yet in ", tasks.path(), "\n")
    return nil, EXIT.usage
  end
  return last.id
end

local STATUS = args.command {
  usage = "modkie status TASK_ID [options]",
  about = "Ask the gateway once where a job is. Prints its state, and its outputs or\n"
    .. "error when it has ended. Exit code 0 whatever the job's state, when the\n"
    .. "gateway answered.",
  positionals = { "TASK_ID" },
  flags = common.flags(LAST, { name = "json", help = "print JSON (with the raw record and its times)" },
    common.GATEWAY),
}
job_cli.STATUS_USAGE = STATUS.help

function job_cli.status(argv)
  local opts, perr = args.parse(argv, STATUS.spec)
  if not opts then return common.usage("status", perr) end
  if opts.help then io.stdout:write(STATUS.help) return EXIT.ok end
  local id, code = task_id("status", opts)
  if not id then return code end
  local kok, kerr = common.need_key()
  if not kok then return common.fail(kerr) end
  local client, cerr = common.client(opts)
  if not client then return common.fail(cerr) end
  local rec, err = client:record(id)
  client:close()
  if not rec then
    if opts.json then io.stdout:write(common.json({ id = id, error = common.error_json(err) }), "\n") end
    return common.fail(err)
  end
  local server_state = type(rec.state) == "string" and rec.state or "?"
  local state = core.classify_state(server_state)
  -- the result's shape reads the times (Unix seconds) whatever the state
  local seen = record.result(rec)
  local out = { id = id, state = state, server_state = server_state, model = rec.model, record = rec,
    created_at = seen.created_at, completed_at = seen.completed_at }
  if state == "success" then
    out.urls, out.credits, out.output = common.array(seen.urls), seen.credits, seen.output
  elseif state == "failed" then
    out.error = common.error_json(record.failure(rec))
  end
  if opts.json then
    io.stdout:write(common.json(out), "\n")
  else
    io.stdout:write(("id       %s\nstate    %s"):format(text(out.id), state))
    if server_state ~= state then io.stdout:write(" (", text(server_state), ")") end
    io.stdout:write("\n")
    if type(out.model) == "string" then io.stdout:write(("model    %s\n"):format(text(out.model))) end
    for _, u in ipairs(out.urls or {}) do io.stdout:write(("url      %s\n"):format(text(u))) end
    if out.credits then io.stdout:write(("credits  %s\n"):format(text(out.credits))) end
    if out.error then io.stdout:write(("error    %s\n"):format(text(common.describe(record.failure(rec), true)))) end
  end
  return EXIT.ok
end

local WAIT = args.command {
  usage = "modkie wait TASK_ID [options]",
  about = "Poll a job created earlier (by submit, a batch or another program) until it\n"
    .. "ends; print its result. --last takes the task submitted last.",
  positionals = { "TASK_ID" },
  flags = common.flags(LAST, WAITING, common.JSON, common.GATEWAY, common.POLL),
  footer = "Exit codes: 0 success, 1 the job failed or does not exist, 3 auth,\n"
    .. "4 network or timeout, 130 interrupted (the job keeps going).",
}
job_cli.WAIT_USAGE = WAIT.help

function job_cli.wait(argv)
  local opts, perr = args.parse(argv, WAIT.spec)
  if not opts then return common.usage("wait", perr) end
  if opts.help then io.stdout:write(WAIT.help) return EXIT.ok end
  local id, icode = task_id("wait", opts)
  if not id then return icode end
  if opts.download then
    local dok, derr = require("modkie.download").check_dir(opts.download)
    if not dok then return common.fail(derr) end
  end
  local kok, kerr = common.need_key()
  if not kok then return common.fail(kerr) end
  local status = status_line(common.tty())
  status.id = id
  local client, cerr = common.client(opts, { log = status:log() })
  if not client then return common.fail(cerr) end
  local job, jerr = client:job(id, { deadline = opts.deadline })
  if not job then
    client:close()
    return common.fail(jerr)
  end
  local code = interruptible(function() return interrupted("wait", job) end, finish, job, opts, status)
  client:close()
  return code
end

-- --------------------------------------------------------------- list

local LIST = args.command {
  usage = "modkie list [options]",
  about = "The tasks the command line submitted (submit and batch), oldest first, with\n"
    .. "the last state a command saw. The jobs API cannot list tasks: this record,\n"
    .. "kept in " .. "$MODKIE_STATE_DIR, $XDG_STATE_HOME/modkie or ~/.local/state/modkie,\n"
    .. "is where a lost task id is found again. It never holds the API key.",
  flags = common.flags({
    { name = "all", help = "every task recorded (default: the last 20)" },
    { name = "limit", value = "count", arg = "N", help = "the last N tasks" },
  }, common.JSON),
}
job_cli.LIST_USAGE = LIST.help

function job_cli.list(argv)
  local opts, perr = args.parse(argv, LIST.spec)
  if not opts then return common.usage("list", perr) end
  if opts.help then io.stdout:write(LIST.help) return EXIT.ok end
  if opts.all and opts.limit then return common.usage("list", "give --all or --limit, not both") end
  local list, err = tasks.list()
  if not list then return common.fail(("cannot read %s: %s"):format(tasks.path(), tostring(err))) end
  local n = opts.all and #list or opts.limit or 20
  local first = math.max(1, #list - n + 1)
  if opts.json then
    local out = {}
    for i = first, #list do
      local t = list[i]
      out[#out + 1] = { id = t.id, submitted_at = t.t, model = t.model, gateway = t.gateway, via = t.via,
        prompt = t.prompt, state = t.state, ended_at = t.ended_t }
    end
    io.stdout:write(common.json(common.array(out)), "\n")
    return EXIT.ok
  end
  if #list == 0 then
    io.stderr:write("no task recorded yet (", tasks.path(), ")\n")
    return EXIT.ok
  end
  for i = first, #list do
    local t = list[i]
    io.stdout:write(("%s  %s  %s  %-9s %s\n"):format(text(t.id), t.t and os.date("%Y-%m-%d %H:%M", t.t) or "?",
      text(t.model or "?"), text(t.state or "submitted"),
      text(t.prompt or (t.via and t.via ~= "submit" and ("(" .. t.via .. ")")) or "")))
  end
  return EXIT.ok
end

return job_cli

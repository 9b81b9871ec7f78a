--- `modkie submit`, `modkie status`, `modkie wait`: one job at a time.
-- @module modkie.cli.job

local args = require "modkie.cli.args"
local common = require "modkie.cli.common"
local record = require "modkie.record"
local text = require("modkie.cli.escape").text

local job_cli = {}

local EXIT = common.EXIT

local function flags(extra)
  local f = { help = {}, json = {} }
  for k, v in pairs(common.CLIENT_FLAGS) do f[k] = v end
  for k, v in pairs(extra) do f[k] = v end
  return f
end

-- On a terminal, show the job's state changes on stderr while waiting.
local function status_log(tty)
  if not tty then return nil end
  return function(_, event, f)
    if event == "accepted" then
      io.stderr:write("\r\27[Kaccepted ", text(f.task_id))
    elseif event == "state" then
      io.stderr:write("\r\27[K", text(f.task_id), ": ", text(f.server_state or f.state))
    elseif event == "done" then
      io.stderr:write("\r\27[K")
    end
    io.stderr:flush()
  end
end

-- Wait for `job`, download when asked, print; returns the exit code.
local function finish(job, opts)
  local res, err = job:await(opts.wait_timeout)
  local files
  if res and opts.download then
    files, err = job:download(opts.download)
  end
  if opts.json then
    local out = res and common.result_json(res, files) or { id = job.id, state = job.state }
    out.error = common.error_json(err)
    io.stdout:write(common.json(out), "\n")
  elseif res then
    common.print_result(res, files)
  elseif job.id then
    io.stdout:write(("id       %s\nstate    %s\n"):format(text(job.id), text(job.state)))
    if err then
      local code = err.code and (" (code " .. text(err.code) .. ")") or ""
      io.stdout:write(("error    %s%s\n"):format(text(err.message), code))
    end
  end
  if err then
    if not opts.json then common.fail(err) end
    return common.exit_for(err)
  end
  return EXIT.ok
end

-- --------------------------------------------------------------- submit

job_cli.SUBMIT_USAGE = [[
usage: modkie submit MODEL [--prompt TEXT] [--set KEY=VALUE]... [options]

Submit one job. Prints its task id; with --wait, waits and prints the result;
with --download DIR, also saves its outputs.

options:
  --prompt TEXT         the prompt (same as --set prompt=TEXT)
  --set KEY=VALUE       an input field, converted to the model's type
                        (duration=5, generate_audio=true); repeatable
  --set KEY:=JSON       an input field given as raw JSON
  --callback-url URL    the gateway POSTs the result there when the job ends
  --wait                wait for the job to end and print its result
  --wait-timeout S      give up waiting after S seconds (the job keeps going)
  --download DIR        wait, then save the outputs into DIR (<id>-<n>.<ext>)
  --deadline S          seconds the job may take before polling stops (default 900)
  --no-validate         send the input even if the model's schema refuses it
  --json                print JSON
]] .. common.CLIENT_HELP .. [[

The API key comes from MODKIE_API_KEY. Exit codes: 0 ok, 1 the job failed,
2 usage or invalid input, 3 auth or credits, 4 network or timeout.
]]

function job_cli.submit(argv)
  local opts, perr = args.parse(argv, { positionals = { "MODEL" }, min = 1, flags = flags {
    prompt = { value = "string" }, set = { value = "string", many = true },
    ["callback-url"] = { value = "nonempty" }, wait = {}, ["wait-timeout"] = { value = "positive" },
    download = { value = "nonempty" }, deadline = { value = "positive" }, ["no-validate"] = {},
  } })
  if not opts then return common.usage("submit", perr) end
  if opts.help then io.stdout:write(job_cli.SUBMIT_USAGE) return EXIT.ok end
  local model = opts[1]
  local input, ierr = common.parse_sets(model, opts.set)
  if not input then return common.fail(ierr) end
  if opts.prompt then input.prompt = opts.prompt end
  if not opts.no_validate then
    local ok, verr = require("modkie").validate(model, input)
    if not ok then return common.fail(verr) end
  end
  local kok, kerr = common.need_key()
  if not kok then return common.fail(kerr) end
  local wants_wait = opts.wait or opts.download
  local client, cerr = common.client(opts, { log = wants_wait and status_log(common.tty()) or nil })
  if not client then return common.fail(cerr) end
  local job, serr = client:submit(model, input, {
    callback_url = opts.callback_url, deadline = opts.deadline, validate = false,
  })
  if not job then
    client:close()
    return common.fail(serr)
  end
  local code
  if wants_wait then
    code = finish(job, opts)
  else
    -- wait only for the gateway's answer to createTask
    while not job.id and not job.done do client:step(1) end
    if job.id then
      if opts.json then
        io.stdout:write(common.json({ id = job.id, state = job.state, model = model }), "\n")
      else
        io.stdout:write(text(job.id), "\n")
      end
      code = EXIT.ok
    else
      if opts.json then
        io.stdout:write(common.json({ state = job.state, error = common.error_json(job.error) }), "\n")
      end
      code = common.fail(job.error)
    end
  end
  client:close()
  return code
end

-- --------------------------------------------------------------- status

job_cli.STATUS_USAGE = [[
usage: modkie status TASK_ID [options]

Ask the gateway once where a job is. Prints its state, and its outputs or
error when it has ended. Exit code 0 whatever the job's state, when the
gateway answered.

options:
  --json                print JSON (with the raw record)
]] .. common.CLIENT_HELP

function job_cli.status(argv)
  local opts, perr = args.parse(argv, { positionals = { "TASK_ID" }, min = 1, flags = flags {} })
  if not opts then return common.usage("status", perr) end
  if opts.help then io.stdout:write(job_cli.STATUS_USAGE) return EXIT.ok end
  local kok, kerr = common.need_key()
  if not kok then return common.fail(kerr) end
  local client, cerr = common.client(opts)
  if not client then return common.fail(cerr) end
  local rec, err = client:record(opts[1])
  client:close()
  if not rec then
    if opts.json then io.stdout:write(common.json({ id = opts[1], error = common.error_json(err) }), "\n") end
    return common.fail(err)
  end
  local server_state = type(rec.state) == "string" and rec.state or "?"
  local state = require("modkie.core").classify_state(server_state)
  local out = { id = opts[1], state = state, server_state = server_state, model = rec.model, record = rec }
  if state == "success" then
    local res = record.result(rec)
    out.urls, out.credits, out.output = common.array(res.urls), res.credits, res.output
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
    if out.error then
      io.stdout:write(("error    %s%s\n"):format(text(out.error.message),
        out.error.code and (" (code " .. text(out.error.code) .. ")") or ""))
    end
  end
  return EXIT.ok
end

-- --------------------------------------------------------------- wait

job_cli.WAIT_USAGE = [[
usage: modkie wait TASK_ID [options]

Poll a job created earlier until it ends; print its result.

options:
  --wait-timeout S      give up after S seconds (the job keeps going; exit 4)
  --download DIR        save the outputs into DIR (<id>-<n>.<ext>)
  --deadline S          seconds from now the job may take (default 900)
  --json                print JSON
]] .. common.CLIENT_HELP .. [[

Exit codes: 0 success, 1 the job failed or does not exist, 3 auth,
4 network or timeout.
]]

function job_cli.wait(argv)
  local opts, perr = args.parse(argv, { positionals = { "TASK_ID" }, min = 1, flags = flags {
    ["wait-timeout"] = { value = "positive" }, download = { value = "nonempty" },
    deadline = { value = "positive" },
  } })
  if not opts then return common.usage("wait", perr) end
  if opts.help then io.stdout:write(job_cli.WAIT_USAGE) return EXIT.ok end
  local kok, kerr = common.need_key()
  if not kok then return common.fail(kerr) end
  local client, cerr = common.client(opts, { log = status_log(common.tty()) })
  if not client then return common.fail(cerr) end
  local job, jerr = client:job(opts[1], { deadline = opts.deadline })
  if not job then
    client:close()
    return common.fail(jerr)
  end
  local code = finish(job, opts)
  client:close()
  return code
end

return job_cli

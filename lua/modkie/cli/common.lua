--- What every CLI command shares: exit codes, the client, `--set`, output.
-- @module modkie.cli.common

local core = require "modkie.core"
local Error = require "modkie.error"
local models = require "modkie.models"
local convert = require "modkie.batch.convert"
local file = require "modkie.file"
local json = require "modkie.json"
local text = require("modkie.cli.escape").text

local common = {}

--- Exit codes (docs/cli.md).
common.EXIT = {
  ok = 0,
  failed = 1,       -- a job failed, was cancelled, or its outcome is unknown
  usage = 2,        -- bad flags, invalid input, rows or template
  auth = 3,         -- no key, key refused, not enough credits
  network = 4,      -- network, server, rate limit, timeout, deadline
  interrupted = 130,
}

local KIND_EXIT = {
  validation = "usage", config = "usage",
  auth = "auth", credits = "auth",
  network = "network", server = "network", rate_limit = "network", timeout = "network",
  deadline = "network", protocol = "network",
  failed = "failed", cancelled = "failed", ambiguous = "failed", not_found = "failed",
}

--- The exit code for an error.
function common.exit_for(err)
  if not Error.is(err) then return common.EXIT.failed end
  if err.kind == "config" and err.message:find("API key", 1, true) then return common.EXIT.auth end
  return common.EXIT[KIND_EXIT[err.kind] or "failed"]
end

--- True for error kinds that say the gateway or the network had trouble.
function common.transient(err)
  return KIND_EXIT[err.kind] == "network"
end

--- JSON text of `v` for `--json` (sorted keys, control characters escaped; see modkie.json).
common.json = json.sorted
--- Mark a filled list as a JSON array (`[]` when empty).
common.array = json.array

--- An error as plain JSON fields.
function common.error_json(err)
  if not err then return nil end
  return { kind = err.kind, message = err.message, code = err.code, status = err.status,
    task_id = err.task_id, field = err.field, row = err.row }
end

--- Text from the network (or anywhere else modkie did not write) made safe
-- to print on a terminal: see modkie.cli.escape. Everything the CLI prints
-- that came from the gateway goes through it.
common.text = text

--- An error in one line for a person: `job failed: generation failed (code
-- 501)`; `bare` leaves out the "job failed: " (after a `state failed` line).
function common.describe(err, bare)
  if not Error.is(err) then return tostring(err) end
  local msg = err.message
  if err.kind == "failed" then
    if not bare then msg = "job failed: " .. msg end
    if err.code ~= nil then msg = msg .. " (code " .. tostring(err.code) .. ")" end
  end
  return msg
end

--- Print an error on stderr.
function common.fail(err, prefix)
  local msg = common.describe(err)
  io.stderr:write("modkie: ", prefix or "", text(msg), "\n")
  if Error.is(err) and err.problems and not msg:find("\n", 1, true) and #err.problems > 1 then
    for _, p in ipairs(err.problems) do
      io.stderr:write("  ", text(p.field or ""), " ", text(p.message), "\n")
    end
  end
  return common.exit_for(err)
end

--- Print a usage error and return the usage exit code.
function common.usage(command, msg)
  io.stderr:write("modkie ", command, ": ", msg, "\nRun 'modkie ", command, " --help' for the options.\n")
  return common.EXIT.usage
end

--- Flags of the commands that talk to the gateway (entries for args.command).
common.GATEWAY = {
  { name = "base-url", value = "nonempty", arg = "URL",
    help = "the gateway (default: $MODKIE_BASE_URL or https://modkie.com)" },
  { name = "timeout", value = "positive", key = "http_timeout", arg = "S",
    help = "seconds per HTTP request (default 30)" },
  { name = "retries", value = "whole", arg = "N", help = "retries of a request after a transient failure (default 4)" },
}
--- Model schemas from JSON files (modkie.models.load), for the commands that check inputs.
common.MODELS = { name = "models", value = "nonempty", many = true, arg = "FILE",
  help = "also know the models of this JSON schema file\n(examples/models/; also $MODKIE_MODELS, ':'-separated);\n"
    .. "repeatable" }

--- Load the schema files of `--models` and $MODKIE_MODELS.
-- @treturn[1] true
-- @treturn[2] nil
-- @treturn[2] modkie.Error naming the file
function common.load_models(opts)
  local paths = {}
  for p in (os.getenv("MODKIE_MODELS") or ""):gmatch("[^:]+") do paths[#paths + 1] = p end
  for _, p in ipairs(opts.models or {}) do paths[#paths + 1] = p end
  for _, p in ipairs(paths) do
    local ok, err = models.load(p)
    if not ok then return nil, err end
  end
  return true
end

--- For the commands that poll jobs.
common.POLL = { name = "poll-interval", value = "seconds", arg = "S",
  help = "seconds between polls of a job (default: the gateway's\nrecommended schedule: 2-3 s, then slower)" }
common.JSON = { name = "json", help = "print JSON on stdout" }
--- An input from the command line (submit, validate).
common.INPUT = {
  { name = "prompt", value = "string", arg = "TEXT", help = "the prompt (same as --set prompt=TEXT)" },
  { name = "set", value = "string", many = true, arg = "KEY=VALUE",
    help = "an input field, converted to the model's type\n(duration=5, generate_audio=true); repeatable;\n"
      .. "KEY:=JSON gives it as raw JSON; KEY=@FILE a local\nfile, uploaded first (image_url=@still.png)" },
}

--- One list of flag entries from lists and single entries, in order.
function common.flags(...)
  local out = {}
  for i = 1, select("#", ...) do
    local x = select(i, ...)
    if x.name then out[#out + 1] = x else for _, f in ipairs(x) do out[#out + 1] = f end end
  end
  return out
end

-- The flag that sets each option of modkie.new the commands pass on.
local FLAG_OF = { timeout = "--timeout", retries = "--retries", poll_interval = "--poll-interval",
  max_upload = "--max-size" }

--- Make a client from the flags; the key comes from MODKIE_API_KEY only.
-- @treturn[1] modkie.Client
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "config" (a malformed key) or "validation" (a bad flag or MODKIE_BASE_URL)
function common.client(opts, extra)
  local modkie = require "modkie"
  local o = { base_url = opts.base_url, timeout = opts.http_timeout, poll_interval = opts.poll_interval,
    retries = opts.retries }
  for k, v in pairs(extra or {}) do o[k] = v end
  local ok, client = pcall(modkie.new, o)
  if not ok then
    -- modkie.new raises on a bad option value: a malformed key is a key problem
    -- (exit 3), anything else (a malformed URL…) a usage error (exit 2); the
    -- key is never in the text
    local msg = tostring(client):gsub("^[^:]*:%d+: ", "")
    -- only the key's own check names MODKIE_API_KEY; a plain-http base URL
    -- mentions the key too, but is a bad --base-url (exit 2), and the
    -- library's way out (allow_insecure) is no flag of the command line
    local key = msg:find("MODKIE_API_KEY", 1, true) ~= nil
    msg = msg:gsub("; use https, or pass allow_insecure = true$", "; use https (plain http is for this machine only)")
    -- name the flag (or variable) the user gave, not the library's option
    msg = msg:gsub("^modkie%.new: ", "")
      :gsub("^option '([%w_]+)'", function(name) return FLAG_OF[name] end)
      :gsub("^base_url", "base_url (--base-url or MODKIE_BASE_URL)")
      :gsub("^upload_url", "upload_url (--upload-url or MODKIE_UPLOAD_URL)")
      :gsub(", or a function, got", ", got")
    return nil, Error.new(key and "config" or "validation", msg)
  end
  return client
end

--- Stop with a clear message when no key is set, before doing anything.
function common.need_key()
  local key = os.getenv("MODKIE_API_KEY")
  if key == nil or key == "" then
    return nil, Error.new("config", "no API key: set the MODKIE_API_KEY environment variable "
      .. "(for the local emulator any value works, e.g. MODKIE_API_KEY=test)")
  end
  return true
end

-- One validation error for a list of `{ field, message, flag }` problems
-- (`flag`: the message names its --set already).
local function problems_error(model, problems)
  table.sort(problems, function(a, b) return tostring(a.field) < tostring(b.field) end)
  local lines = {}
  for i, p in ipairs(problems) do lines[i] = p.flag and p.message or (tostring(p.field) .. ": " .. p.message) end
  local msg = #problems == 1 and lines[1] or ("%d problems:\n  %s"):format(#problems, table.concat(lines, "\n  "))
  if not problems[1].flag or #problems > 1 then msg = model .. ": " .. msg end
  return Error.new("validation", msg, { field = problems[1].field, problems = problems })
end

--- Parse `--set key=value` and `--set key:=JSON` into `input`, converting
-- values to the model's field types; `--set key=@path` is a local file
-- (uploaded with the job, as httpie's and replicate's `@file`), and a
-- `files` field takes the files of several `--set`s as its list. Every bad
-- flag is listed at once.
-- @treturn[1] table input
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "validation" naming each flag and field (`problems`)
function common.parse_sets(model, sets, input)
  input = input or {}
  local schema = models.get(model)
  local problems = {}
  local function problem(field, msg) problems[#problems + 1] = { field = field, message = msg, flag = true } end
  for _, s in ipairs(sets or {}) do
    local key, raw = s:match("^([^=:]+):=(.*)$")
    if key then
      local value, why = convert.json(raw)
      if value == nil then problem(key, ("--set %s: the value %s"):format(s, why)) else input[key] = value end
    else
      key, raw = s:match("^([^=]+)=(.*)$")
      if not key or key == "" then
        problem(s, ("--set '%s': write key=value (or key:=JSON)"):format(s))
      else
        local f = schema and schema.fields[key]
        if raw:sub(1, 1) == "@" then
          if raw == "@" then
            problem(key, ("--set %s: name a file after the @ (key=@still.png)"):format(s))
          elseif f and f.type == "files" then
            input[key] = type(input[key]) == "table" and input[key] or {}
            table.insert(input[key], file.new(raw:sub(2)))
          else
            input[key] = file.new(raw:sub(2))
          end
        else
          local value, why = convert.value(f and f.type, raw)
          if why then problem(key, ("--set %s: %s for %s, a %s field"):format(s, why, key, f.type))
          else input[key] = value end
        end
      end
    end
  end
  if #problems > 0 then
    local err = problems_error(model, problems)
    err.input = input -- what did convert (validate lists every problem, schema ones too)
    return nil, err
  end
  return input
end

--- The input of `submit` and `validate`: `--set`s converted to the model's
-- field types, `--prompt`, then (with `validate`) the model's schema. Every
-- problem is listed at once: conversions and schema alike.
-- @treturn[1] table input
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "validation" with `problems`
function common.input(model, sets, prompt, validate)
  local input, serr = common.parse_sets(model, sets)
  local problems = serr and serr.problems or {}
  input = input or serr.input
  if prompt then input.prompt = prompt end
  if validate then
    local ok, verr = models.validate(model, input)
    if not ok then
      local bad = {}
      for _, p in ipairs(problems) do bad[p.field] = true end
      for _, p in ipairs(verr.problems or { { field = verr.field, message = verr.message } }) do
        -- a field whose --set did not convert is absent from input: say it once
        if not (bad[p.field] and p.message == "is required") then problems[#problems + 1] = p end
      end
    end
  end
  if #problems == 0 then return input end
  return nil, problems_error(model, problems)
end

--- Whether stderr is a terminal (progress bars, status lines).
function common.tty()
  local ok, yes = pcall(core.isatty, io.stderr)
  return ok and yes
end

--- Format seconds as m:ss or h:mm:ss.
function common.clock(s)
  s = math.floor((s or 0) + 0.5)
  local h, m = math.floor(s / 3600), math.floor(s % 3600 / 60)
  if h > 0 then return ("%d:%02d:%02d"):format(h, m, s % 60) end
  return ("%d:%02d"):format(m, s % 60)
end

--- Print a result (one job) as aligned `name  value` lines; `elapsed`:
-- seconds the command waited.
function common.print_result(res, files, elapsed)
  local out = io.stdout
  out:write(("id       %s\n"):format(text(res.id)))
  out:write(("state    %s\n"):format(text(res.state)))
  if res.model then out:write(("model    %s\n"):format(text(res.model))) end
  for _, u in ipairs(res.urls or {}) do out:write(("url      %s\n"):format(text(u))) end
  if #(res.urls or {}) == 0 and type(res.output) == "table" and res.output.resultObject then
    out:write(("output   %s\n"):format(common.json(res.output.resultObject)))
  end
  if res.credits then out:write(("credits  %s\n"):format(tostring(res.credits))) end
  for _, f in ipairs(files or {}) do out:write(("file     %s\n"):format(text(f))) end
  if elapsed then out:write(("elapsed  %s\n"):format(common.clock(elapsed))) end
end

--- A result as JSON fields (the raw record left out; `status --json` has it).
function common.result_json(res, files)
  return { id = res.id, model = res.model, state = res.state, urls = json.array(res.urls or {}),
    output = res.output, credits = res.credits, created_at = res.created_at, completed_at = res.completed_at,
    cost_time = res.cost_time, files = files and json.array(files) or nil }
end

return common

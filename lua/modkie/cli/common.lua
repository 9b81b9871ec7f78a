--- What every CLI command shares: exit codes, the client, `--set`, output.
-- @module modkie.cli.common

local core = require "modkie.core"
local Error = require "modkie.error"
local models = require "modkie.models"
local convert = require "modkie.batch.convert"
local json = require "modkie.cli.json"
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

--- JSON text of `v` (sorted keys; see modkie.cli.json).
common.json = json.encode
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

--- Print an error on stderr.
function common.fail(err, prefix)
  local msg = Error.is(err) and err.message or tostring(err)
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

--- Flags every command that talks to the gateway takes.
common.CLIENT_FLAGS = {
  ["base-url"] = { value = "nonempty" },
  timeout = { value = "positive", key = "http_timeout" },
  ["poll-interval"] = { value = "seconds" },
  retries = { value = "whole" },
}

common.CLIENT_HELP = [[
  --base-url URL        the gateway (default: $MODKIE_BASE_URL or https://modkie.com)
  --timeout S           seconds per HTTP request (default 30)
  --poll-interval S     seconds between polls of a job (default: the gateway's
                        recommended schedule: 2-3 s, then slower)
  --retries N           retries of a request after a transient failure (default 4)
]]

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
    return nil, Error.new(msg:find("API key", 1, true) and "config" or "validation", msg)
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

--- Parse `--set key=value` and `--set key:=JSON` into `input`, converting
-- values to the model's field types.
-- @treturn[1] table input
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "validation" naming the flag and field
function common.parse_sets(model, sets, input)
  input = input or {}
  local schema = models.get(model)
  for _, s in ipairs(sets or {}) do
    local key, raw = s:match("^([^=:]+):=(.*)$")
    local value
    if key then
      local why
      value, why = convert.json(raw)
      if value == nil then
        return nil, Error.new("validation", ("--set %s: the value %s"):format(s, why), { field = key })
      end
    else
      key, raw = s:match("^([^=]+)=(.*)$")
      if not key or key == "" then
        return nil, Error.new("validation", ("--set '%s': write key=value (or key:=JSON)"):format(s))
      end
      local f = schema and schema.fields[key]
      local why
      value, why = convert.value(f and f.type, raw)
      if why then
        return nil, Error.new("validation", ("--set %s: %s for %s, a %s field"):format(s, why, key, f.type),
          { field = key })
      end
    end
    input[key] = value
  end
  return input
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

--- Print a result (one job) as aligned `name  value` lines.
function common.print_result(res, files)
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
end

--- A result as JSON fields (the raw record left out; `status --json` has it).
function common.result_json(res, files)
  return { id = res.id, model = res.model, state = res.state, urls = json.array(res.urls or {}),
    output = res.output, credits = res.credits, created_at = res.created_at, completed_at = res.completed_at,
    cost_time = res.cost_time, files = files and json.array(files) or nil }
end

return common

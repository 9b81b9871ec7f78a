--- The `modkie` command line: a dispatcher over the commands in modkie.cli.*.
-- Each command returns its exit code (docs/cli.md lists them).
-- @module modkie.cli

local cli = {}

local USAGE = [[
usage: modkie <command> [options]

commands:
  submit MODEL     submit one job (--prompt, --set k=v; --wait, --download DIR)
  status ID        ask where a job is, once
  wait ID          wait for a job to end; print (and --download) its result
  list             the tasks this command line submitted (no id is lost)
  batch            one job per row of a CSV/JSON Lines file, from a template
  review JOURNAL   a batch's review page (HTML): every row's output, prompt, state
  validate MODEL   check an input against the model's schema (offline)
  upload FILE...   upload local files; print the URLs to put in an input
  credits          the account's credit balance
  models [MODEL]   the models modkie knows, or one model's fields
  mock             run the gateway emulator (a local HTTP server)

The API key comes from the MODKIE_API_KEY environment variable only;
MODKIE_BASE_URL (or --base-url) points at another gateway.
Exit codes: 0 ok, 1 a job failed, 2 usage or invalid input, 3 auth or
credits, 4 network or timeout, 130 interrupted.
Run 'modkie <command> --help' for a command's options.
]]

local function lazy(mod, fn)
  return function(args) return require(mod)[fn](args) end
end

-- The emulator is a rock of its own (modkie-mock, with luasocket): when it
-- is not installed, say how to get it rather than show a module search.
local function mock(args)
  local ok, mod = pcall(require, "modkie.mock")
  if ok then return mod.main(args) end
  local msg = tostring(mod)
  local missing = msg:match("module '([^']+)' not found")
  if missing == "modkie.mock" then
    io.stderr:write("modkie mock: the gateway emulator is not installed: it is the modkie-mock rock "
      .. "(luarocks install modkie-mock, or luarocks make modkie-mock-scm-1.rockspec in a checkout; "
      .. "from a checkout, lua5.4 bin/modkie mock runs it as it is)\n")
    return 2
  elseif missing == "socket" or (missing and missing:match("^socket%.")) or missing == "ltn12" then
    io.stderr:write("modkie mock: the gateway emulator needs luasocket (Debian: apt install lua-socket; "
      .. "or luarocks install luasocket)\n")
    return 2
  end
  error(mod, 0)
end

local commands = {
  submit = lazy("modkie.cli.job", "submit"),
  status = lazy("modkie.cli.job", "status"),
  wait = lazy("modkie.cli.job", "wait"),
  list = lazy("modkie.cli.job", "list"),
  batch = lazy("modkie.cli.batch", "main"),
  review = lazy("modkie.cli.review", "main"),
  validate = lazy("modkie.cli.models", "validate"),
  models = lazy("modkie.cli.models", "models"),
  credits = lazy("modkie.cli.account", "credits"),
  upload = lazy("modkie.cli.upload", "main"),
  mock = mock,
}

local run

--- Run the CLI with `args` (a list of strings); returns the exit code.
-- Output that could not be written (a full disk, a closed pipe with SIGPIPE
-- ignored) is not a success: a task id may be what was lost.
function cli.main(args)
  local code = run(args)
  local has_core, core = pcall(require, "modkie.core")
  local ok, err = true, nil
  -- (a program running main in-process may have put something else there)
  if has_core and io.type(io.stdout) == "file" then ok, err = core.flush(io.stdout) end
  if not ok then
    io.stderr:write("modkie: could not write the output to stdout: ", tostring(err), "\n")
    if code == 0 then code = 1 end
  end
  return code
end

function run(args)
  local name = args[1]
  if name == nil or name == "--help" or name == "-h" or name == "help" then
    io.stdout:write(USAGE)
    return name and 0 or 2
  end
  if name == "--version" or name == "version" then
    io.stdout:write("modkie ", require("modkie").VERSION, "\n")
    return 0
  end
  local command = commands[name]
  if not command then
    -- a flag before any command is one of modkie's own two (--verison)
    local known = name:sub(1, 1) == "-" and { "--help", "--version" } or commands
    io.stderr:write("modkie: unknown command '" .. name .. "'" .. require("modkie.suggest").hint(name, known)
      .. "\n\n" .. USAGE)
    return 2
  end
  local rest = {}
  for i = 2, #args do rest[#rest + 1] = args[i] end
  local ok, code = pcall(command, rest)
  if ok then return code end
  if tostring(code):find("interrupted!", 1, true) then
    io.stderr:write("\nmodkie ", name, ": interrupted\n")
    return 130
  end
  error(code, 0)
end

return cli

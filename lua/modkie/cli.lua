--- The `modkie` command line.
-- @module modkie.cli

local cli = {}

local USAGE = [[
usage: modkie <command> [options]

commands:
  mock       run the gateway emulator (a local HTTP server)

Run 'modkie <command> --help' for a command's options.
]]

local commands = {
  mock = function(args) return require("modkie.mock").main(args) end,
}

--- Run the CLI with `args` (a list of strings); returns the exit code.
function cli.main(args)
  local name = args[1]
  if name == nil or name == "--help" or name == "-h" or name == "help" then
    io.stdout:write(USAGE)
    return name and 0 or 2
  end
  local command = commands[name]
  if not command then
    io.stderr:write("modkie: unknown command '" .. name .. "'\n\n" .. USAGE)
    return 2
  end
  local rest = {}
  for i = 2, #args do rest[#rest + 1] = args[i] end
  return command(rest)
end

return cli

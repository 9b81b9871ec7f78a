--- `modkie credits`: the account's credit balance.
-- @module modkie.cli.account

local args = require "modkie.cli.args"
local common = require "modkie.cli.common"

local account = {}

local CREDITS = args.command {
  usage = "modkie credits [options]",
  about = "Print the account's credit balance (the key from MODKIE_API_KEY).",
  flags = common.flags(common.JSON, common.GATEWAY),
}
account.CREDITS_USAGE = CREDITS.help

function account.credits(argv)
  local opts, perr = args.parse(argv, CREDITS.spec)
  if not opts then return common.usage("credits", perr) end
  if opts.help then io.stdout:write(CREDITS.help) return common.EXIT.ok end
  local kok, kerr = common.need_key()
  if not kok then return common.fail(kerr) end
  local client, cerr = common.client(opts)
  if not client then return common.fail(cerr) end
  local n, err = client:credits()
  client:close()
  if not n then
    if opts.json then io.stdout:write(common.json({ error = common.error_json(err) }), "\n") end
    return common.fail(err)
  end
  if opts.json then
    io.stdout:write(common.json({ credits = n }), "\n")
  else
    io.stdout:write(tostring(n % 1 == 0 and ("%d"):format(n) or n), "\n")
  end
  return common.EXIT.ok
end

return account

--- Option tables, checked one way everywhere (`modkie.new`, `submit`,
-- `job`, `generate`, `batch.run`, `webhook.verify`): a name that is not an
-- option is an error naming it and the closest one ("did you mean"), a
-- value of the wrong type an error naming the option and the types it takes.
-- A typo must not pass silently.
-- @module modkie.options

local suggest = require "modkie.suggest"
local next = next

local options = {}

--- Raise unless every key of `opts` is a name of `known` and its value's
-- type is one `known[name]` lists.
-- @tparam string fname who checks, for the message ("modkie.new", "submit")
-- @tparam table opts the options given
-- @tparam table known name -> set of the type names it takes (`{ string = true }`), or `true` for any
-- @tparam[opt=2] number level where the error points, as `error`'s level seen from
--   the function that calls `check` (2: its caller)
-- @tparam[opt=""] string prefix before each name, for a table of options that is
--   an option's value (`"webhook."`: `unknown option 'webhook.secrte' (did you mean 'webhook.secret'?)`)
function options.check(fname, opts, known, level, prefix)
  level = (level or 2) + 1
  prefix = prefix or ""
  local k, v = next(opts)
  while k ~= nil do -- (next, not pairs: submit may run in a finaliser; see Error.new)
    local want = type(k) == "string" and known[k]
    if not want then
      error(("%s: unknown option '%s%s'%s"):format(fname, prefix, tostring(k), suggest.hint(k, known, prefix)),
        level)
    end
    if want ~= true and not want[type(v)] then
      local names = {}
      for t in pairs(want) do names[#names + 1] = t end
      table.sort(names)
      error(("%s: option '%s%s' must be a %s, got %s"):format(fname, prefix, k, table.concat(names, " or "), type(v)),
        level)
    end
    k, v = next(opts, k)
  end
end

return options

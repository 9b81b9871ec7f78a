--- Command-line flags: `--name value`, `--name=value`, switches, repeated
-- flags, positionals, `--` to end flags. Errors name the flag. The one argv
-- parser: every `modkie` command's, and the emulator's (`modkie mock`).
-- @module modkie.cli.args

local suggest = require "modkie.suggest"

local args = {}

-- Value checkers: return the parsed value, or nil and why.
args.types = {
  string = function(v) return v end,
  number = function(v)
    local n = tonumber(v)
    if not n or n ~= n or n == math.huge or n == -math.huge then return nil, "must be a number" end
    return n
  end,
  positive = function(v)
    local n = tonumber(v)
    if not n or n ~= n or n <= 0 or n == math.huge then return nil, "must be a number > 0" end
    return n
  end,
  seconds = function(v)
    local n = tonumber(v)
    if not n or n ~= n or n < 0 or n == math.huge then return nil, "must be a number of seconds >= 0" end
    return n
  end,
  count = function(v)
    local n = tonumber(v)
    if not n or n < 1 or n ~= math.floor(n) or n == math.huge then return nil, "must be a whole number >= 1" end
    return n
  end,
  whole = function(v)
    local n = tonumber(v)
    if not n or n < 0 or n ~= math.floor(n) or n == math.huge then return nil, "must be a whole number >= 0" end
    return n
  end,
  nonempty = function(v)
    if v == "" then return nil, "must not be empty" end
    return v
  end,
}

--- Parse `argv` by `spec`.
-- `spec.flags[name] = { value = "TYPE" (a key of args.types, or a function
-- value -> parsed | nil, why; absent for a switch), many = true (repeatable:
-- a list), optional = true (a value may follow; bare, the flag is true),
-- key = "field" (default: name with - as _) }`; `spec.positionals = {
-- "NAME", … }` (at most that many; `many = true` in it: any number),
-- `spec.min` (at least that many),
-- `spec.last_wins` (a flag given twice takes the last value, instead of an
-- error), `spec.defaults` (values of the flags not given).
-- @treturn[1] table options (switches true, values parsed, `many` lists),
--   with the positionals in `[1]`, `[2]`, …
-- @treturn[2] nil
-- @treturn[2] string the problem, naming the flag
function args.parse(argv, spec)
  local opts, pos = {}, {}
  for k, v in pairs(spec.defaults or {}) do opts[k] = v end
  local given = {}
  local flags = spec.flags
  local i, only_pos = 1, false
  while i <= #argv do
    local a = argv[i]
    if only_pos or a == "-" or a:sub(1, 1) ~= "-" then
      pos[#pos + 1] = a
    elseif a == "--" then
      only_pos = true
    else
      local name, inline = a:match("^%-%-([^=]+)=(.*)$")
      if not name then name = a:match("^%-%-(.+)$") end
      if a == "-h" then name = "help" end
      local flag = name and flags[name]
      if not flag then
        if name == "api-key" or name == "key" or name == "token" then
          return nil, "there is no --" .. name .. " flag: the API key comes from the MODKIE_API_KEY "
            .. "environment variable only, so it never lands in shell history"
        end
        return nil, "unknown option '" .. a .. "'" .. (name and suggest.hint(name, flags, "--") or "")
      end
      local key = flag.key or name:gsub("%-", "_")
      if not flag.value then
        if inline then return nil, "--" .. name .. " takes no value" end
        opts[key] = true
      elseif flag.optional and inline == nil and (argv[i + 1] == nil or argv[i + 1]:sub(1, 1) == "-") then
        opts[key] = true -- bare
      else
        local value = inline
        if value == nil then
          i = i + 1
          value = argv[i]
          if value == nil then return nil, "--" .. name .. " needs a value" end
          -- `--prompt --wait`: the value forgotten, the next flag taken for it
          local next_name = value:match("^%-%-([^=]+)")
          if next_name and flags[next_name] then
            return nil, ("--%s needs a value, got the flag '%s' (for that very text, write --%s=%s)")
              :format(name, value, name, value)
          end
        end
        local check = type(flag.value) == "function" and flag.value or args.types[flag.value]
        local parsed, why = check(value)
        if parsed == nil then return nil, ("--%s %s, got '%s'"):format(name, why, value) end
        if flag.many then
          opts[key] = opts[key] or {}
          opts[key][#opts[key] + 1] = parsed
        else
          if given[key] and not spec.last_wins then return nil, "--" .. name .. " given twice" end
          given[key], opts[key] = true, parsed
        end
      end
    end
    i = i + 1
  end
  if opts.help then return opts end
  local names = spec.positionals or {}
  if #pos > #names and not names.many then -- `many`: the last positional repeats
    return nil, "unexpected argument '" .. pos[#names + 1] .. "'"
  end
  if #pos < (spec.min or 0) then
    return nil, "missing " .. names[#pos + 1]
  end
  for k, v in ipairs(pos) do opts[k] = v end
  return opts
end

local INDENT = 24 -- where a flag's help text starts

--- One command's flags and its `--help` text from one list, so the help
-- lists exactly the flags the command takes.
-- @tparam table def `usage` (after "usage: "), `about` (a paragraph),
--   `flags` (a list of `{ name, value = TYPE, many, key, arg = "S", help }`
--   in the order the help shows them; `help` may span lines with "\n"),
--   `positionals`, `min`, `footer`
-- @treturn table `{ spec = <for args.parse>, help = <text> }`
function args.command(def)
  local spec = { flags = { help = {} }, positionals = def.positionals, min = def.min }
  local lines = { "usage: " .. def.usage, "", def.about, "", "options:" }
  local list = {}
  for _, f in ipairs(def.flags) do list[#list + 1] = f end
  list[#list + 1] = { name = "help", help = "this text" }
  for _, f in ipairs(list) do
    if f.name ~= "help" then
      assert(not spec.flags[f.name], "flag listed twice: " .. f.name)
      spec.flags[f.name] = { value = f.value, many = f.many, key = f.key }
    end
    local left = "  --" .. f.name .. (f.arg and (" " .. f.arg) or "")
    local text = f.help:gsub("\n", "\n" .. (" "):rep(INDENT))
    if #left >= INDENT - 1 then
      lines[#lines + 1] = left
      lines[#lines + 1] = (" "):rep(INDENT) .. text
    else
      lines[#lines + 1] = left .. (" "):rep(INDENT - #left) .. text
    end
  end
  if def.footer then
    lines[#lines + 1] = ""
    lines[#lines + 1] = def.footer
  end
  return { spec = spec, help = table.concat(lines, "\n") .. "\n" }
end

return args

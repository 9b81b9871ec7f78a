--- `modkie models` (what modkie knows about each model) and `modkie
-- validate` (check an input against a model's schema, offline).
-- @module modkie.cli.models

local args = require "modkie.cli.args"
local common = require "modkie.cli.common"
local models = require "modkie.models"

local models_cli = {}

local EXIT = common.EXIT

models_cli.MODELS_USAGE = [[
usage: modkie models [MODEL] [--json]

List the models modkie has a schema for, or show one model's input fields.
Other models can still be used; modkie just does not check their input.
]]

local function describe_field(name, f)
  local kind = f.type
  if f.enum then
    local values = {}
    for i, v in ipairs(f.enum) do values[i] = tostring(v) end
    kind = kind .. ": " .. table.concat(values, ", ")
  end
  local bounds = {}
  if f.min then bounds[#bounds + 1] = ">= " .. tostring(f.min) end
  if f.max then bounds[#bounds + 1] = "<= " .. tostring(f.max) end
  if #bounds > 0 then kind = kind .. " (" .. table.concat(bounds, ", ") .. ")" end
  if f.required then kind = kind .. ", required" end
  local line = ("  %-16s %s"):format(name, kind)
  if f.description then line = line .. "  -- " .. f.description end
  return line
end

local function schema_json(id, s)
  local fields = {}
  for name, f in pairs(s.fields) do
    fields[name] = { type = f.type, required = f.required or nil, enum = f.enum and common.array(f.enum) or nil,
      min = f.min, max = f.max, description = f.description }
  end
  return { id = id, title = s.title, credits = s.credits, fields = fields }
end

function models_cli.models(argv)
  local opts, perr = args.parse(argv, { positionals = { "MODEL" }, flags = { help = {}, json = {} } })
  if not opts then return common.usage("models", perr) end
  if opts.help then io.stdout:write(models_cli.MODELS_USAGE) return EXIT.ok end
  if opts[1] then
    local s = models.get(opts[1])
    if not s then
      io.stderr:write("modkie models: no schema for '", opts[1], "' (modkie models lists the known ones); ",
        "it can still be submitted, unchecked\n")
      return EXIT.usage
    end
    if opts.json then
      io.stdout:write(common.json(schema_json(opts[1], s)), "\n")
      return EXIT.ok
    end
    io.stdout:write(opts[1], s.title and (" (" .. s.title .. ")") or "",
      s.credits and ("; about " .. tostring(s.credits) .. " credits per job") or "", "\n")
    local names = {}
    for name in pairs(s.fields) do names[#names + 1] = name end
    table.sort(names, function(a, b)
      local ra, rb = s.fields[a].required and 0 or 1, s.fields[b].required and 0 or 1
      if ra ~= rb then return ra < rb end
      return a < b
    end)
    for _, name in ipairs(names) do io.stdout:write(describe_field(name, s.fields[name]), "\n") end
    return EXIT.ok
  end
  local ids = models.list()
  if opts.json then
    local list = common.array()
    for i, id in ipairs(ids) do list[i] = schema_json(id, models.get(id)) end
    io.stdout:write(common.json(list), "\n")
    return EXIT.ok
  end
  for _, id in ipairs(ids) do
    local s = models.get(id)
    io.stdout:write(("%-24s %s%s\n"):format(id, s.title or "",
      s.credits and ("  (about " .. tostring(s.credits) .. " credits per job)") or ""))
  end
  return EXIT.ok
end

models_cli.VALIDATE_USAGE = [[
usage: modkie validate MODEL [--prompt TEXT] [--set KEY=VALUE]... [--json]

Check an input against the model's schema, offline: prints "valid", or every
problem (exit 2). --set converts values to the field's type like submit.
To check a whole batch (rows and template), use 'modkie batch --dry-run'.
]]

function models_cli.validate(argv)
  local opts, perr = args.parse(argv, { positionals = { "MODEL" }, min = 1, flags = {
    help = {}, json = {}, prompt = { value = "string" }, set = { value = "string", many = true },
  } })
  if not opts then return common.usage("validate", perr) end
  if opts.help then io.stdout:write(models_cli.VALIDATE_USAGE) return EXIT.ok end
  local model = opts[1]
  local input, ierr = common.parse_sets(model, opts.set)
  if not input then
    if opts.json then
      io.stdout:write(common.json({ valid = false, problems = { { field = ierr.field, message = ierr.message } } }),
        "\n")
      return EXIT.usage
    end
    return common.fail(ierr)
  end
  if opts.prompt then input.prompt = opts.prompt end
  local ok, err = models.validate(model, input)
  local known = models.get(model) ~= nil
  if opts.json then
    local out = { valid = ok == true, model = model, checked = known, input = input }
    if not ok then
      out.problems = common.array()
      for i, p in ipairs(err.problems) do out.problems[i] = { field = p.field, message = p.message } end
    end
    io.stdout:write(common.json(out), "\n")
    return ok and EXIT.ok or EXIT.usage
  end
  if ok then
    io.stdout:write(known and "valid\n" or ("valid (no schema for " .. model .. ": not checked)\n"))
    return EXIT.ok
  end
  for _, p in ipairs(err.problems) do io.stdout:write(("%s: %s\n"):format(p.field, p.message)) end
  return EXIT.usage
end

return models_cli

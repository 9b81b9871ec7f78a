--- `modkie models` (what modkie knows about each model) and `modkie
-- validate` (check an input against a model's schema, offline).
-- @module modkie.cli.models

local args = require "modkie.cli.args"
local common = require "modkie.cli.common"
local file = require "modkie.file"
local models = require "modkie.models"

local models_cli = {}

local EXIT = common.EXIT

local MODELS = args.command {
  usage = "modkie models [MODEL] [--json]",
  about = "List the models modkie has a schema for, or show one model's input fields.\n"
    .. "Other models can still be used; modkie just does not check their input.",
  positionals = { "MODEL" },
  flags = { common.JSON, common.MODELS },
}
models_cli.MODELS_USAGE = MODELS.help

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
  if f.accept then bounds[#bounds + 1] = table.concat(f.accept, ", ") end
  if f.max_size then bounds[#bounds + 1] = "at most " .. file.size_text(f.max_size) end
  if f.max_items then bounds[#bounds + 1] = "at most " .. tostring(f.max_items) .. " files" end
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
      min = f.min, max = f.max, description = f.description, accept = f.accept and common.array(f.accept) or nil,
      max_size = f.max_size, min_items = f.min_items, max_items = f.max_items }
  end
  return { id = id, title = s.title, credits = s.credits, fields = fields }
end

function models_cli.models(argv)
  local opts, perr = args.parse(argv, MODELS.spec)
  if not opts then return common.usage("models", perr) end
  if opts.help then io.stdout:write(MODELS.help) return EXIT.ok end
  local lok, lerr = common.load_models(opts)
  if not lok then return common.fail(lerr) end
  if opts[1] then
    local s = models.get(opts[1])
    if not s then
      local meant = models.suggest(opts[1])
      io.stderr:write("modkie models: no schema for '", opts[1], "'",
        meant and (" (did you mean '" .. meant .. "'?)\n")
          or " (modkie models lists the known ones); it can still be submitted, unchecked\n")
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
    local list = {}
    for i, id in ipairs(ids) do list[i] = schema_json(id, models.get(id)) end
    io.stdout:write(common.json(common.array(list)), "\n")
    return EXIT.ok
  end
  for _, id in ipairs(ids) do
    local s = models.get(id)
    io.stdout:write(("%-24s %s%s\n"):format(id, s.title or "",
      s.credits and ("  (about " .. tostring(s.credits) .. " credits per job)") or ""))
  end
  return EXIT.ok
end

local VALIDATE = args.command {
  usage = "modkie validate MODEL [--prompt TEXT] [--set KEY=VALUE]... [--json]",
  about = "Check an input against the model's schema, offline: prints \"valid\", or every\n"
    .. "problem (exit 2). --set converts values to the field's type like submit.\n"
    .. "To check a whole batch (rows and template), use 'modkie batch --dry-run'.",
  positionals = { "MODEL" }, min = 1,
  flags = common.flags(common.INPUT, common.JSON, common.MODELS),
}
models_cli.VALIDATE_USAGE = VALIDATE.help

function models_cli.validate(argv)
  local opts, perr = args.parse(argv, VALIDATE.spec)
  if not opts then return common.usage("validate", perr) end
  if opts.help then io.stdout:write(VALIDATE.help) return EXIT.ok end
  local model = opts[1]
  local lok, lerr = common.load_models(opts)
  if not lok then return common.fail(lerr) end
  local input, err = common.input(model, opts.set, opts.prompt, true)
  local ok = input ~= nil
  input = input or {}
  local known = models.get(model) ~= nil
  if opts.json then
    local out = { valid = ok == true, model = model, checked = known,
      input = file.replace(input, function(f) return f.path or f.name end) }
    if not ok then
      local problems = {}
      for i, p in ipairs(err.problems) do problems[i] = { field = p.field, message = p.message } end
      out.problems = common.array(problems)
    end
    io.stdout:write(common.json(out), "\n")
    return ok and EXIT.ok or EXIT.usage
  end
  if ok then
    io.stdout:write(known and "valid\n" or ("valid (no schema for " .. model .. ": not checked)\n"))
    return EXIT.ok
  end
  for _, p in ipairs(err.problems) do
    io.stdout:write(p.flag and p.message or ("%s: %s"):format(p.field, p.message), "\n")
  end
  return EXIT.usage
end

return models_cli

--- Model schemas and input validation.
--
-- A schema says which `input` fields a model takes:
--
--     {
--       title = "Kling 3.0",
--       credits = 35,                      -- estimated credits per successful job
--       fields = {
--         prompt = { type = "string", required = true, min_length = 1 },
--         aspect_ratio = { type = "string", enum = { "16:9", "9:16" } },
--         duration = { type = "number", min = 1, max = 60 },
--         generate_audio = { type = "boolean" },
--       },
--       additional = false,                -- unknown fields are problems (a typo must not pass)
--     }
--
-- Field types: "string", "number", "integer", "boolean", "table" (any JSON
-- object or array). Models nobody registered are not validated: custom
-- models exist, and the gateway has the last word.
-- @module modkie.models

local Error = require "modkie.error"
local suggest = require "modkie.suggest"

local models = {}
local registry = {}

local TYPES = { string = true, number = true, integer = true, boolean = true, table = true }
local FIELD_KEYS = {
  type = true, required = true, enum = true, min = true, max = true,
  min_length = true, max_length = true, description = true, default = true,
}
local SCHEMA_KEYS = { title = true, credits = true, fields = true, additional = true, description = true }

local function check_schema(id, schema)
  local function bad(msg) error("modkie.models.register('" .. id .. "'): " .. msg, 3) end
  for k in pairs(schema) do
    if not SCHEMA_KEYS[k] then bad("unknown schema key '" .. tostring(k) .. "'") end
  end
  if type(schema.fields) ~= "table" then bad("schema.fields must be a table") end
  for name, f in pairs(schema.fields) do
    if type(name) ~= "string" or type(f) ~= "table" then bad("each field must be name = { type = … }") end
    if not TYPES[f.type] then bad("field '" .. name .. "' has unknown type '" .. tostring(f.type) .. "'") end
    for k in pairs(f) do
      if not FIELD_KEYS[k] then bad("field '" .. name .. "' has unknown key '" .. tostring(k) .. "'") end
    end
    if f.enum ~= nil and type(f.enum) ~= "table" then bad("field '" .. name .. "' enum must be a list") end
  end
  if schema.credits ~= nil and type(schema.credits) ~= "number" then bad("schema.credits must be a number") end
end

--- Register (or replace) the schema of model `id`.
-- @tparam string id model id, e.g. "kling/kling-3-0"
-- @tparam table schema see the module description
-- @treturn table the schema
function models.register(id, schema)
  Error.check(1, "modkie.models.register", id, "string")
  Error.check(2, "modkie.models.register", schema, "table")
  check_schema(id, schema)
  local copy = { id = id, fields = {} }
  for k, v in pairs(schema) do if k ~= "fields" then copy[k] = v end end
  for name, f in pairs(schema.fields) do
    local field = {}
    for k, v in pairs(f) do field[k] = v end
    if f.enum then
      field.enum_set = {}
      for _, v in ipairs(f.enum) do field.enum_set[v] = true end
    end
    copy.fields[name] = field
  end
  registry[id] = copy
  return copy
end

--- The schema of model `id`, or nil when the model is not registered.
function models.get(id)
  Error.check(1, "modkie.models.get", id, "string")
  return registry[id]
end

--- The registered id that `id` most likely mistypes (`kling/kling-3.0` ->
-- `kling/kling-3-0`), or nil.
function models.suggest(id)
  Error.check(1, "modkie.models.suggest", id, "string")
  return suggest.model(id, models.list())
end

--- Sorted list of registered model ids.
function models.list()
  local ids = {}
  for id in pairs(registry) do ids[#ids + 1] = id end
  table.sort(ids)
  return ids
end

local function is_integer(v)
  return type(v) == "number" and v == math.floor(v) and v > -math.huge and v < math.huge
end

local function describe(v)
  if type(v) == "string" then return ("%q"):format(#v > 40 and v:sub(1, 37) .. "..." or v) end
  return tostring(v)
end

local function check_field(f, v)
  if f.type == "integer" then
    if not is_integer(v) then return "must be an integer, got " .. describe(v) end
  elseif type(v) ~= f.type then
    return "must be a " .. f.type .. ", got " .. type(v) .. (type(v) ~= "table" and " " .. describe(v) or "")
  end
  if (f.type == "number" or f.type == "integer") and v ~= v then return "must be a number, got NaN" end
  if f.enum_set and not f.enum_set[v] then
    local choices = {}
    for i, c in ipairs(f.enum) do choices[i] = tostring(c) end
    return "must be one of " .. table.concat(choices, ", ") .. ", got " .. describe(v)
  end
  if f.min and type(v) == "number" and v < f.min then return "must be at least " .. f.min .. ", got " .. v end
  if f.max and type(v) == "number" and v > f.max then return "must be at most " .. f.max .. ", got " .. v end
  if type(v) == "string" then
    if f.required and v:match("^%s*$") then return "must not be empty" end
    if f.min_length and #v < f.min_length then return "must be at least " .. f.min_length .. " bytes" end
    if f.max_length and #v > f.max_length then return "must be at most " .. f.max_length .. " bytes, got " .. #v end
  end
  return nil
end

--- Check `input` against model's schema. An unregistered model passes,
-- unless its id mistypes a registered one (`kling/kling-3.0`): that is a
-- problem of field `model` suggesting the registered id.
-- @treturn[1] true when valid, or when the model is not registered
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "validation"; `err.problems` lists every bad
--   field as `{ field = name, message = text }`, sorted by field; `err.field` is the first
function models.validate(model, input)
  Error.check(1, "modkie.validate", model, "string")
  local schema = registry[model]
  if type(input) ~= "table" then
    return nil, Error.new("validation", "input must be a table, got " .. type(input),
      { field = "input", problems = { { field = "input", message = "must be a table" } } })
  end
  if not schema then
    -- an unknown id that mistypes a known one must not be sent unchecked
    local meant = suggest.model(model, models.list())
    if not meant then return true end
    return nil, Error.new("validation", ("unknown model '%s' (did you mean '%s'?); validate = false (--no-validate) "
      .. "sends it as it is"):format(model, meant), { field = "model",
      problems = { { field = "model", message = ("is '%s', not a model modkie knows (did you mean '%s'?)")
        :format(model, meant) } } })
  end
  local problems = {}
  for name, f in pairs(schema.fields) do
    local v = input[name]
    if v == nil then
      if f.required then problems[#problems + 1] = { field = name, message = "is required" } end
    else
      local msg = check_field(f, v)
      if msg then problems[#problems + 1] = { field = name, message = msg } end
    end
  end
  if not schema.additional then
    for name in pairs(input) do
      if type(name) ~= "string" then
        problems[#problems + 1] = { field = tostring(name), message = "field names must be strings" }
      elseif not schema.fields[name] then
        problems[#problems + 1] = { field = name,
          message = "is not a field of " .. model .. suggest.hint(name, schema.fields) }
      end
    end
  end
  if #problems == 0 then return true end
  table.sort(problems, function(a, b) return a.field < b.field end)
  local lines = {}
  for i, p in ipairs(problems) do lines[i] = p.field .. " " .. p.message end
  return nil, Error.new("validation", model .. ": " .. table.concat(lines, "; "),
    { field = problems[1].field, problems = problems })
end

--- The model on ModKie's product page.
models.register("kling/kling-3-0", {
  title = "Kling 3.0",
  credits = 35,
  fields = {
    prompt = { type = "string", required = true, min_length = 1, description = "what the video shows" },
    aspect_ratio = { type = "string", enum = { "16:9", "9:16", "4:3", "1:1", "3:4", "21:9" } },
    resolution = { type = "string", enum = { "480p", "720p" } },
    duration = { type = "number", min = 1, max = 60, description = "seconds of video" },
    generate_audio = { type = "boolean" },
  },
})

return models

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
-- object or array), and for reference inputs "file" (one file: a
-- `modkie.file`, uploaded first, or an http(s) URL) and "files" (a list of
-- them), with `accept = { "image/png", "image/*", … }` (the types its bytes
-- may be, sniffed, not the extension), `max_size` (bytes) and, for "files",
-- `min_items`/`max_items`. Models nobody registered are not validated:
-- custom models exist, and the gateway has the last word. `models.load`
-- reads schemas from a JSON file.
-- @module modkie.models

local cjson = require "cjson.safe"
local Error = require "modkie.error"
local file = require "modkie.file"
local suggest = require "modkie.suggest"
local next = next

local models = {}
local registry = {}

local TYPES = { string = true, number = true, integer = true, boolean = true, table = true, file = true, files = true }
local FIELD_KEYS = {
  type = true, required = true, enum = true, min = true, max = true,
  min_length = true, max_length = true, description = true, default = true,
  accept = true, max_size = true, min_items = true, max_items = true,
}
local SCHEMA_KEYS = { title = true, credits = true, fields = true, additional = true, description = true,
  source = true }
local FILE_ONLY = { accept = true, max_size = true }
local FILES_ONLY = { min_items = true, max_items = true }

-- Raise naming what is wrong with `schema`, at the line that called
-- models.register (level 4: bad, check_schema, register, its caller; models.load
-- calls it through pcall and keeps only the message).
local function check_schema(id, schema)
  local function bad(msg) error("modkie.models.register('" .. id .. "'): " .. msg, 4) end
  for k in pairs(schema) do
    if not SCHEMA_KEYS[k] then bad("unknown schema key '" .. tostring(k) .. "'" .. suggest.hint(k, SCHEMA_KEYS)) end
  end
  if type(schema.fields) ~= "table" then bad("schema.fields must be a table") end
  for name, f in pairs(schema.fields) do
    if type(name) ~= "string" or type(f) ~= "table" then bad("each field must be name = { type = … }") end
    for k in pairs(f) do
      if not FIELD_KEYS[k] then
        bad("field '" .. name .. "' has unknown key '" .. tostring(k) .. "'" .. suggest.hint(k, FIELD_KEYS))
      end
    end
    if not TYPES[f.type] then
      bad("field '" .. name .. "' has unknown type '" .. tostring(f.type) .. "'" .. suggest.hint(f.type, TYPES))
    end
    if f.enum ~= nil and type(f.enum) ~= "table" then bad("field '" .. name .. "' enum must be a list") end
    local is_file = f.type == "file" or f.type == "files"
    for k in pairs(f) do
      if (FILE_ONLY[k] and not is_file) or (FILES_ONLY[k] and f.type ~= "files") then
        bad("field '" .. name .. "': '" .. k .. "' goes with type " .. (FILES_ONLY[k] and "files" or "file or files"))
      end
    end
    if f.accept ~= nil then
      if type(f.accept) ~= "table" or #f.accept == 0 then
        bad("field '" .. name .. "' accept must be a list of types")
      end
      for _, t in ipairs(f.accept) do
        if type(t) ~= "string" or not t:match("^[%w.+-]+/[%w.+*-]+$") then
          bad("field '" .. name .. "' accept: '" .. tostring(t) .. "' is not a type such as image/png or image/*")
        end
      end
    end
    for _, k in ipairs({ "max_size", "min_items", "max_items" }) do
      local v = f[k]
      if v ~= nil and not (type(v) == "number" and v >= 0 and v == math.floor(v)) then
        bad("field '" .. name .. "' " .. k .. " must be a whole number")
      end
    end
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

local function http_url(v)
  return type(v) == "string" and v:match("^[Hh][Tt][Tt][Pp][Ss]?://[^%s%c]+$") ~= nil
end

-- One file value of a file field: a modkie.file whose bytes the field
-- accepts, or an http(s) URL (already somewhere the gateway can fetch).
local function check_file(f, v)
  if http_url(v) then return nil end
  if not file.is(v) then
    return "must be a file (modkie.file(path)) or an http(s) URL, got " .. (type(v) == "string"
      and describe(v) or type(v))
  end
  local facts, why = v:probe(f.max_size)
  if not facts then return why end
  if f.accept and not file.accepts(f.accept, facts.mime) then
    return ("%s is %s, not one of %s"):format(v:label(), facts.mime, table.concat(f.accept, ", "))
  end
  return nil
end

-- A file field's problems: `{ field, message }` each (a list names its item).
local function check_files(name, f, v, problems)
  if f.type == "file" then
    local msg = check_file(f, v)
    if msg then
      problems[#problems + 1] = { field = name, message = msg, path = file.is(v) and v.path or nil,
        of_file = file.is(v) }
    end
    return
  end
  if file.is(v) or http_url(v) then v = { v } end -- one file where a list goes: a list of one
  if type(v) ~= "table" or (next(v) ~= nil and v[1] == nil) then
    problems[#problems + 1] = { field = name, message = "must be a list of files (modkie.file) or http(s) URLs" }
    return
  end
  if f.min_items and #v < f.min_items then
    problems[#problems + 1] = { field = name,
      message = ("must have at least %d files, got %d"):format(f.min_items, #v) }
  end
  if f.max_items and #v > f.max_items then
    problems[#problems + 1] = { field = name,
      message = ("must have at most %d files, got %d"):format(f.max_items, #v) }
  end
  for i = 1, #v do
    local msg = check_file(f, v[i])
    if msg then
      problems[#problems + 1] = { field = ("%s[%d]"):format(name, i), message = msg,
        path = file.is(v[i]) and v[i].path or nil, of_file = file.is(v[i]) }
    end
  end
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

local MAX_ID = 256
-- Ids that passed check_id (a batch submits the same few again and again),
-- at most GOOD_IDS_KEPT: past that (ids made up per row) the memory starts over.
local GOOD_IDS_KEPT = 256
local good_ids, good_count = {}, 0

--- Whether `model` can be a model id at all: not empty, at most 256 bytes,
-- no space or control byte (a NUL, a newline). Checked even with
-- `validate = false`, which skips only the schema: no id of that shape names
-- a model, and the gateway would bill nothing but answer 422 a row later.
-- @treturn[1] true
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "validation", field "model"
function models.check_id(model)
  if good_ids[model] then return true end
  local why
  if model == "" then
    why = "is empty"
  elseif #model > MAX_ID then
    why = ("is %d bytes long (at most %d)"):format(#model, MAX_ID)
  else
    local at = model:find("[%z\1-\32\127]")
    if at then why = ("holds byte 0x%02X at offset %d (no space or control byte)"):format(model:byte(at), at - 1) end
  end
  if not why then
    if good_count >= GOOD_IDS_KEPT then good_ids, good_count = {}, 0 end
    good_ids[model], good_count = true, good_count + 1
    return true
  end
  return nil, Error.new("validation", "model " .. why, { field = "model",
    problems = { { field = "model", message = why } } })
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
  local id_ok, id_err = models.check_id(model)
  if not id_ok then return nil, id_err end
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
    elseif f.type == "file" or f.type == "files" then
      check_files(name, f, v, problems)
    elseif next(file.find(v)) then
      problems[#problems + 1] = { field = name, message = "is not a file field of " .. model
        .. " (a modkie.file goes only in a field of type file or files)" }
    else
      local msg = check_field(f, v)
      if msg then problems[#problems + 1] = { field = name, message = msg } end
    end
  end
  if not schema.additional then
    local name = next(input)
    while name ~= nil do -- (next, not pairs: submit may run in a finaliser; see Error.new)
      if type(name) ~= "string" then
        problems[#problems + 1] = { field = tostring(name), message = "field names must be strings" }
      elseif not schema.fields[name] then
        problems[#problems + 1] = { field = name,
          message = "is not a field of " .. model .. suggest.hint(name, schema.fields) }
      end
      name = next(input, name)
    end
  end
  if #problems == 0 then return true end
  table.sort(problems, function(a, b) return a.field < b.field end)
  local lines = {}
  for i, p in ipairs(problems) do lines[i] = p.field .. (p.of_file and ": " or " ") .. p.message end
  return nil, Error.new("validation", model .. ": " .. table.concat(lines, "; "),
    { field = problems[1].field, problems = problems })
end

-- JSON null (cjson.null) is no value.
local function denull(v)
  if type(v) == "userdata" then return nil end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = denull(x) end
  return out
end

--- Register the schemas of a JSON file: `{ "models": { "<id>": <schema>, … } }`,
-- each schema as `register` takes it (`fields`, `credits`, `title`,
-- `additional`, `description`, `source`: the page it was read from). The
-- gateway's image-to-video models can so be added without code; see
-- examples/models/ for one.
-- @tparam string path
-- @treturn[1] table the ids registered, sorted
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "validation" naming the file, the model and what is wrong
function models.load(path)
  Error.check(1, "modkie.models.load", path, "string")
  local function fail(msg)
    return nil, Error.new("validation", "models file " .. path .. ": " .. msg, { path = path })
  end
  local f, oerr = io.open(path, "rb")
  if not f then return fail("cannot be read: " .. tostring(oerr)) end
  local text = f:read("*a")
  f:close()
  local doc, jerr = cjson.decode(text)
  if type(doc) ~= "table" then return fail("is not JSON (" .. tostring(jerr or "not an object") .. ")") end
  if type(doc.models) ~= "table" or next(doc.models) == nil or doc.models[1] ~= nil then
    return fail('must hold { "models": { "<model id>": { "fields": { … } }, … } }')
  end
  local ids = {}
  for id, schema in pairs(doc.models) do
    if type(schema) ~= "table" then return fail("model '" .. tostring(id) .. "' is not an object") end
    ids[#ids + 1] = id
  end
  table.sort(ids)
  local checked = {}
  for _, id in ipairs(ids) do -- every schema checked before any is registered
    local ok, err = pcall(check_schema, id, denull(doc.models[id]))
    if not ok then
      return fail((tostring(err):gsub("^.-modkie%.models%.register%('[^']*'%): ", "model '" .. id .. "': ")))
    end
    checked[id] = denull(doc.models[id])
  end
  for _, id in ipairs(ids) do models.register(id, checked[id]) end
  return ids
end

--- The model on ModKie's product page. Its page lists the fields of its
-- default tab only (no reference image, frame or audio field), so none is
-- registered here: such inputs would be a guess. A model that takes files
-- is added with a schema (models.register, or models.load and
-- examples/models/).
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

--- A batch's plan: every job it would run, rendered and validated before
-- anything is sent.
--
-- For each row: columns that are fields of the model's schema (or listed in
-- `fields`) are converted to the field's type and go into `input`, over the
-- `input` defaults; every column (and every default) is a template variable;
-- the template renders `input[prompt_field]`. With `expand`, the template's
-- `{a|b}` alternatives make several jobs per row. Every problem is collected
-- with its row, line and column, so one pass shows them all.
-- @module modkie.batch.plan

local Error = require "modkie.error"
local models = require "modkie.models"
local rows_mod = require "modkie.batch.rows"
local template = require "modkie.batch.template"
local convert = require "modkie.batch.convert"
local fingerprint = require "modkie.batch.fingerprint"
local rowlist = require "modkie.batch.rowlist"
local encoding = require "modkie.encoding"
local file = require "modkie.file"
local suggest = require "modkie.suggest"

local plan = {}

local MAX_SHOWN = 10 -- problems spelled out in the error message

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function read_file(path, what)
  local f, err = io.open(path, "rb")
  if not f then
    return nil, Error.new("validation", ("cannot read the %s: %s"):format(what, tostring(err)), { path = path })
  end
  local text, rerr = f:read("*a")
  f:close()
  if not text then -- a folder opens, and then cannot be read
    return nil, Error.new("validation", ("cannot read the %s %s: %s"):format(what, path, tostring(rerr)),
      { path = path })
  end
  return text
end

-- "row 3 (line 4)": where a problem is, for messages.
local function where(row, line)
  if line then return ("row %d (line %d)"):format(row, line) end
  return ("row %d"):format(row)
end

-- "template t.txt, line 2, column 5: missing variable 'color'": the
-- template's own message without its "(row …, line …)" suffix, since the
-- row's place is said first and "line" there means the rows file's line.
local function template_problem(err, name)
  local msg = err.message
  local prefix = name and ("template " .. name .. ": ") or "template: "
  if msg:sub(1, #prefix) == prefix then msg = msg:sub(#prefix + 1) end
  msg = msg:gsub(" %([^()]*%)$", "")
  if err.line then
    return ("template %s, line %d, column %d: %s"):format(name or "", err.line, err.column or 0, msg)
  end
  return "template " .. (name or "") .. ": " .. msg
end

--- The template text and its name for messages, or nil when there is none.
local function template_text(opts)
  local text, name = opts.template, opts.template and "template" or nil
  if opts.template_file then
    local err
    text, err = read_file(opts.template_file, "template file")
    if not text then return nil, nil, err end
    name = opts.template_file
    -- Notepad and other Windows editors start UTF-8 files with a BOM: it is
    -- no part of the prompt (the rows reader drops it too)
    if text:sub(1, 3) == "\239\187\191" then text = text:sub(4) end
  end
  local bad = text and encoding.invalid(text)
  if bad then
    local line = select(2, text:sub(1, bad - 1):gsub("\n", "")) + 1
    return nil, nil, Error.new("validation", ("template %s: line %d: byte 0x%02X at offset %d is not UTF-8 (save the "
      .. "template as UTF-8)"):format(name, line, text:byte(bad), bad - 1), { line = line, offset = bad - 1 })
  end
  return text, name
end

-- The template's "missing variable" message `msg`, with why the variable is
-- missing from the row and what is there instead.
local function explain_missing(msg, name, row, columns)
  if row[name] == "" then
    return msg .. (" (its cell is empty in this row, and an empty cell is not set: give rows without one a "
      .. "default, {{%s | default \"…\"}})"):format(name)
  end
  local shown = {}
  for i = 1, math.min(#columns, 12) do shown[i] = tostring(columns[i]) end
  if #columns > 12 then shown[#shown + 1] = "…" end
  local list = "the columns are " .. (#shown > 0 and table.concat(shown, ", ") or "none")
  if msg:sub(-2) == "?)" then return msg:sub(1, -2) .. " " .. list .. ")" end -- it suggested a name already
  local best = suggest.closest(name, columns)
  return ("%s (%s%s)"):format(msg, best and ("did you mean '" .. best .. "'? ") or "", list)
end

-- Columns that are neither input fields nor used by the template: a typo
-- (`durration`) must not be dropped silently.
local function unused_columns(columns, is_field, used, schema, model, problem)
  local known = {}
  for name in pairs(used or {}) do known[name] = true end
  for name in pairs(schema and schema.fields or {}) do known[name] = true end
  for _, col in ipairs(columns) do known[col] = nil end
  for _, col in ipairs(columns) do
    if type(col) == "string" and not is_field(col) and not (used and used[col]) then
      problem(nil, nil, ("column '%s' is %s, and %s%s; to allow columns nothing uses, pass extra_columns = "
        .. "true (--allow-extra-columns)"):format(col,
        schema and ("not a field of " .. model) or "not an input field (fields, --field)",
        used and "the template does not use it" or "there is no template to use it",
        suggest.hint(col, known)), { field = col, column = col })
    end
  end
end

-- Compiled renderers for each variant of the template. With `expand = true`
-- the variants are the same for every row (computed once); with random
-- picks they depend on the row, so they are made per row and cached by text.
local function variants_source(text, name, expand)
  local cache = {}
  local function compile(t)
    local fn = cache[t]
    if fn then return fn end
    local err
    fn, err = template.compile(t, { name = name })
    if not fn then return nil, err end
    cache[t] = fn
    return fn
  end
  -- compile each text expand made (passing its error through)
  local function compile_all(texts, err)
    if not texts then return nil, err end
    local list = {}
    for i, t in ipairs(texts) do
      local fn, cerr = compile(t)
      if not fn then return nil, cerr end
      list[i] = fn
    end
    return list
  end
  if not expand then
    local fn, err = compile(text)
    if not fn then return nil, err end
    local list = { fn }
    return function() return list end
  end
  local random, seed = nil, nil
  if type(expand) == "table" then random, seed = expand.random, expand.seed end
  if not random then
    local list, err = compile_all(template.expand(text, { name = name }))
    if not list then return nil, err end
    return function() return list end
  end
  -- check the syntax once, so a broken template is one error, not one per row
  local _, xerr = template.expand(text, { name = name, random = 0 })
  if xerr then return nil, xerr end
  return function(row)
    -- a seed per row: picks differ between rows, yet a rerun picks the same
    -- (the journal's fingerprints depend on it)
    return compile_all(template.expand(text, { name = name, random = random,
      seed = tostring(seed or 0) .. ":" .. tostring(row), row = row }))
  end
end

local function http_url(v)
  return type(v) == "string" and v:match("^[Hh][Tt][Tt][Pp][Ss]?://") ~= nil
end

-- A cell of a file field: an http(s) URL stays as it is; anything else is a
-- local path, relative to the rows file's folder, uploaded by the job. A
-- `files` cell is a JSON list (`["a.png","b.png"]`) or one file.
local function file_cell(ftype, value, base)
  local function one(v)
    if type(v) ~= "string" then return nil, "must name a file (a path or an http(s) URL)" end
    v = v:match("^%s*(.-)%s*$")
    if http_url(v) then return v end
    if v:sub(1, 1) ~= "/" and base then v = base .. "/" .. v end
    return file.new(v)
  end
  if value == nil or value == "" then return nil end
  if ftype == "file" then return one(value) end
  local list = value
  if type(value) == "string" then
    list = value:match("^%s*%[") and convert.json(value) or { value }
    if type(list) ~= "table" then return nil, "is not a JSON list of files" end
  end
  if type(list) ~= "table" then return nil, "must be a list of files (paths or http(s) URLs)" end
  local out = {}
  for i, v in ipairs(list) do
    local f, why = one(v)
    if not f then return nil, ("item %d %s"):format(i, why) end
    out[i] = f
  end
  return out
end

--- Build the plan.
-- @tparam table opts the batch options (model, template | template_file,
--   rows, input, fields, prompt_field, expand)
-- @treturn[1] table `{ model, jobs = { {row, variant, key, line, prompt,
--   input, values (the row as read), fp} … }, rows = n, problems = { {row, line, field, column, message} … },
--   credits_each }`
-- @treturn[2] nil
-- @treturn[2] modkie.Error when the rows or the template cannot be read at all
function plan.build(opts)
  local model = opts.model
  local schema = models.get(model)
  local prompt_field = opts.prompt_field or "prompt"

  local rows, meta = rows_mod.read(opts.rows, { encoding = opts.encoding, separator = opts.separator })
  if not rows then return nil, meta end
  -- the whole line one column: the file is separated by another character
  local hint = meta.format == "csv" and rows_mod.separator_hint(meta.columns, meta.separator)
  if hint then
    return nil, Error.new("validation", ("rows %s: %s"):format(tostring(opts.rows), hint),
      { path = opts.rows, field = meta.columns[1] })
  end
  local lines = meta.lines or {}
  local columns = meta.columns
  if not columns then -- a Lua table of rows: every key any row has
    local seen = {}
    columns = {}
    for _, row in ipairs(rows) do
      for k in pairs(row) do
        if not seen[k] then seen[k], columns[#columns + 1] = true, k end
      end
    end
    table.sort(columns, function(a, b) return tostring(a) < tostring(b) end)
  end

  local text, name, terr = template_text(opts)
  if terr then return nil, terr end
  local variants_of
  if text then
    local err
    variants_of, err = variants_source(text, name, opts.expand)
    if not variants_of then return nil, err end
  end

  -- which columns are input fields, and of what type
  local extra = {}
  for _, f in ipairs(opts.fields or {}) do extra[f] = true end
  local function field_type(col)
    local f = schema and schema.fields[col]
    if f then return f.type end
    -- without a schema, the prompt column still is the prompt
    if extra[col] or (not schema and col == prompt_field) then return "any" end
    return nil
  end

  local defaults = opts.input or {}
  -- paths in file columns are relative to the rows file (a table of rows: to the current folder)
  local base = type(opts.rows) == "string" and (opts.rows:match("^(.*)/[^/]*$") or ".") or nil
  local jobs, problems = {}, {}
  local function problem(row, line, msg, fields)
    local p = fields or {}
    p.row, p.line, p.text = row, line, msg
    p.message = (row and where(row, line) or "header") .. ": " .. msg
    problems[#problems + 1] = p
  end
  if opts.extra_columns ~= true then
    local used = text and template.variables(text)
    if used or not text then
      local allowed = {}
      for _, col in ipairs(type(opts.extra_columns) == "table" and opts.extra_columns or {}) do allowed[col] = true end
      unused_columns(columns, function(col) return allowed[col] or field_type(col) end, used, schema, model, problem)
    end
  end

  for i, row in ipairs(rows) do
    local line = lines[i]
    local input, vars, ok = copy(defaults), copy(defaults), true
    for col, value in pairs(row) do
      if value ~= "" then vars[col] = value end -- an empty cell is not set
      local ftype = type(col) == "string" and field_type(col)
      if ftype then
        local v, why
        if ftype == "file" or ftype == "files" then v, why = file_cell(ftype, value, base)
        else v, why = convert.value(ftype, value) end
        if why then
          ok = false
          problem(i, line, ("column '%s': %s"):format(col, why), { field = col, column = col })
        elseif v ~= nil then
          input[col] = v
        end
      end
    end
    -- the texts this row's jobs send
    local prompts
    if variants_of then
      local fns, verr = variants_of(i)
      if not fns then
        ok = false
        problem(i, line, verr.message, { field = verr.field })
        fns = {}
      end
      prompts = {}
      for k, fn in ipairs(fns) do
        local p, rerr = fn(vars, { row = i })
        if not p then
          ok = false
          local msg = template_problem(rerr, name)
          if rerr.field and msg:find("missing variable", 1, true) then
            msg = explain_missing(msg, rerr.field, row, columns)
          end
          problem(i, line, msg, { field = rerr.field, template_line = rerr.line, template_column = rerr.column })
          break
        end
        -- a template file ends with a newline; the prompt should not
        prompts[k] = p:match("^%s*(.-)%s*$")
      end
    elseif opts.expand and type(input[prompt_field]) == "string" then
      local xopts = { row = i }
      if type(opts.expand) == "table" and opts.expand.random then
        xopts.random = opts.expand.random
        xopts.seed = tostring(opts.expand.seed or 0) .. ":" .. tostring(i)
      end
      local texts, xerr = template.expand(input[prompt_field], xopts)
      if not texts then
        ok = false
        problem(i, line, ("column '%s': %s"):format(prompt_field, xerr.message), { field = prompt_field })
        texts = {}
      end
      prompts = texts
    else
      prompts = { input[prompt_field] }
    end

    local many = #prompts > 1 or (opts.expand and true or false)
    for k = 1, (#prompts > 0 and #prompts or 1) do
      local job_input = copy(input)
      if prompts[k] ~= nil then job_input[prompt_field] = prompts[k] end
      local vok, verr = true, nil
      if ok then
        local path, b, at = encoding.find_invalid(job_input)
        if path then
          ok = false
          local col = row[path] ~= nil and path or nil
          problem(i, line, ("%s: byte 0x%02X at offset %d is not UTF-8 (JSON takes only UTF-8 text)"):format(
            col and ("column '" .. col .. "'") or ("input field '" .. path .. "'"), b, at),
            { field = path, column = col })
        end
      end
      if ok then vok, verr = models.validate(model, job_input) end
      if not vok then
        ok = false
        for _, p in ipairs(verr.problems) do
          local base_field = p.field:match("^[^%[%.]+") -- image_urls[2]: column image_urls
          local col = row[base_field] ~= nil and base_field or nil
          problem(i, line, ("%s %s"):format(
            col and ("column '" .. p.field .. "':") or ("input field '" .. p.field .. "'"), p.message),
            { field = p.field, column = col, path = p.path })
        end
      end
      if not ok then break end
      local key = many and (i .. "." .. k) or tostring(i)
      jobs[#jobs + 1] = {
        row = i, variant = many and k or nil, key = key, line = line,
        prompt = job_input[prompt_field], input = job_input, values = row,
        fp = fingerprint.of({ model, job_input }),
      }
    end
  end
  return {
    model = model, jobs = jobs, rows = #rows, problems = problems,
    credits_each = schema and schema.credits or nil, columns = meta.columns,
  }
end

--- The problems as lines, rows that share a problem on one line
-- ("rows 1-5 (5 rows): template t.txt, …: missing variable 'color' …").
function plan.lines(problems)
  local items = {}
  for i, p in ipairs(problems) do
    -- a header problem (no row) names its column: it stands alone
    items[i] = { row = p.row or 0, text = p.row and p.text or p.message, single = p.message }
  end
  return rowlist.group(items)
end

--- One validation error listing every problem (`err.problems`).
function plan.error(problems, total_rows)
  local all, lines = plan.lines(problems), {}
  for i = 1, math.min(#all, MAX_SHOWN) do lines[i] = "  " .. all[i] end
  if #all > MAX_SHOWN then lines[#lines + 1] = ("  … and %d more"):format(#all - MAX_SHOWN) end
  local head = #problems == 1 and "1 problem" or (#problems .. " problems")
  local first = problems[1]
  return Error.new("validation", ("batch: %s in %d rows, nothing was sent:\n%s"):format(
    head, total_rows, table.concat(lines, "\n")), {
    problems = problems, row = first.row, field = first.field, line = first.line,
  })
end

return plan

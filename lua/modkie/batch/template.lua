--- Prompt templates: Mustache-style variables, filters and sections, plus
-- `{a|b}` alternatives expanded into every combination.
--
-- **Variables.** `{{name}}`, dotted `{{product.color}}` (looked up through
-- nested tables; a segment of digits also tries the integer key, so
-- `{{items.1}}` works), whitespace allowed inside the braces (`{{ name }}`).
-- A name is everything up to the first `|` (trimmed), so column names as
-- spreadsheets have them work: `{{Product Name}}`, `{{Size (cm)}}`. It
-- cannot hold `{`, `}` or `|`, start or end with a dot, or hold two dots in
-- a row. A dotted name is first looked up whole (a column named
-- `product.name`), then through nested tables. A name whose last word is a
-- filter's name (`{{name upper}}`) is a filter without its `|`: an error.
-- Strings render as they are, numbers with `tostring` except that integral
-- numbers have no ".0" (`5`, not `5.0`, on every Lua), booleans as
-- `true`/`false`. A table (or function, userdata) where text is expected is
-- an error naming the variable. `cjson.null` counts as missing. There is no
-- HTML escaping: prompts are plain text. `{{{name}}}` and `{{&name}}` are
-- accepted and mean the same as `{{name}}`; a `{{{` not closed by `}}}`
-- before another `{` is a literal `{` then a tag (so `{{{x}}|y}` keeps its
-- `{…|…}` group for `expand`).
--
-- **Filters**, chainable left to right: `{{name | upper}}`, `lower`, `trim`
-- (ASCII case mapping and whitespace), `default "text"` (used when the
-- variable is missing or the empty string; inside the quotes `\"` is a quote
-- and `\\` a backslash). A variable with `default` is never missing. An
-- unknown filter is an error when the template is compiled. A `}}` cannot
-- appear inside a filter argument (the tag ends at the first `}}`).
--
-- **Sections.** `{{#x}}…{{/x}}` renders nothing when `x` is missing, `false`,
-- `""`, or an empty table; once when `x` is `true`; once per element when `x`
-- is a list (element pushed on the lookup context, so its fields are
-- visible and `{{.}}` is the element itself); once with `x` pushed when `x`
-- is any other value (a non-list table, a non-empty string, a number).
-- Inverted `{{^x}}…{{/x}}` renders exactly when `{{#x}}` would not. A missing
-- variable in a section test is never an error. Note `""` is false (so an
-- empty CSV cell hides its section) but `0` and `"0"` are true.
-- Comments `{{! … }}` render nothing. Section, inverted, closing and comment
-- tags alone on their line ("standalone", Mustache rule) remove the whole
-- line, so they leave no blank lines. Partials (`{{>x}}`) and delimiter
-- changes (`{{=<% %>=}}`) are not supported and are syntax errors.
-- Sections nest at most 200 deep (deeper is a syntax error).
--
-- **Escape.** `\{{` renders a literal `{{` (so `\{{name}}` renders
-- `{{name}}`). In general, a run of n backslashes right before `{{` renders
-- as n/2 backslashes (rounded down); when n is odd the `{{` is literal,
-- when even it opens a tag: `\\{{name}}` renders a backslash then the value.
-- Backslashes anywhere else are ordinary text.
--
-- **Errors** are returned as `nil, err` with `err.kind == "validation"`:
-- syntax errors when compiling (`err.line`, `err.column`: 1-based, of the
-- offending tag; columns count UTF-8 characters), a missing variable or a
-- table value when rendering (`err.field` = the variable name, plus
-- `err.line`, `err.column`). `opts.row` (a batch row number) goes into the
-- message and `err.row`; `opts.name` (e.g. the template file) goes into the
-- message and `err.template`. Wrong argument types raise.
--
-- **Alternatives** (`expand`): `{red|green|blue} car` lists every
-- combination, first group varying slowest; groups nest (`{a {x|y}|b}`, at
-- most 200 deep: deeper is an error), may have empty options (`{|very }big`),
-- and a group without `|` is a single option (`{single}` gives "single").
-- `\{`, `\}`, `\|` and `\\` are literal characters; outside any group a
-- lone `|` is literal. `{{…}}` Mustache tags pass through untouched (as do
-- any backslashes right before them): `{{` starts a tag when a `}}` closes
-- it before any other `{`, otherwise the first `{` opens a group (so
-- `{{red|blue} car|bike}` is a nested group).
-- Both orders work: expand the template first and render each variant per
-- row (recommended: row values are then never read as alternatives), or
-- render first and expand the result (then a `{`, `}` or `|` inside a row's
-- value is read as expand syntax).
-- @module modkie.batch.template

local Error = require "modkie.error"
local rng = require "modkie.rng"
local suggest = require "modkie.suggest"

local byte, sub, find, match, gsub, gmatch = string.byte, string.sub, string.find, string.match,
  string.gsub, string.gmatch
local rep, format, upper, lower = string.rep, string.format, string.upper, string.lower
local concat = table.concat
local floor = math.floor
local type, tostring, tonumber, setmetatable, getmetatable, pcall, error, next =
  type, tostring, tonumber, setmetatable, getmetatable, pcall, error, next

local NULL = require("modkie.json").null -- JSON null: treated as missing

local M = {}

local BACKSLASH, LBRACE, RBRACE, PIPE = 92, 123, 125, 124
local TWO53 = 2 ^ 53
-- Deepest nesting of sections (compile) and of `{…}` groups (expand). The
-- parser of groups and the renderer of sections recurse once per level: past
-- some tens of thousands of levels Lua raises "stack overflow" instead of
-- the error being returned (fuzz finding expand/deep-nesting), and lookups
-- cost a walk of the whole context stack.
local MAX_DEPTH = 200

---------------------------------------------------------------------------
-- Errors

-- Internal compile-time failure, raised with error() and caught by pcall.
local Fail = {}

local function raise(pos, msg, fields)
  error(setmetatable({ pos = pos, msg = msg, fields = fields }, Fail), 0)
end

-- 1-based line and column (in UTF-8 characters) of byte position `pos`.
local function locate(text, pos)
  local line, start = 1, 1
  local i = find(text, "\n", 1, true)
  while i and i < pos do
    line, start = line + 1, i + 1
    i = find(text, "\n", i + 1, true)
  end
  local _, cont = gsub(sub(text, start, pos - 1), "[\128-\191]", "")
  return line, pos - start - cont + 1
end

local function make_error(text, pos, msg, fields, name, row)
  local line, column = locate(text, pos)
  local err = fields or {}
  err.line, err.column, err.row, err.template = line, column, row, name
  local where = ("line %d, column %d"):format(line, column)
  if row ~= nil then where = "row " .. tostring(row) .. ", " .. where end
  local prefix = name and ("template " .. tostring(name) .. ": ") or "template: "
  return Error.new("validation", prefix .. msg .. " (" .. where .. ")", err)
end

-- Run `fn(...)`, turning a raised Fail into `nil, err`.
local function protect(text, name, row, fn, ...)
  local ok, res = pcall(fn, ...)
  if ok then return res end
  if getmetatable(res) ~= Fail then error(res, 0) end
  return nil, make_error(text, res.pos, res.msg, res.fields, name, row)
end

---------------------------------------------------------------------------
-- Values

local function fmtnum(v)
  if v == floor(v) and v > -TWO53 and v < TWO53 then return format("%d", v) end
  return tostring(v)
end

local trim = require("modkie.encoding").trim

-- Filters: {arity, fn(value_or_nil, arg)}; a nil value passes through.
local FILTERS = {
  upper = { 0, function(v) return v and upper(v) end },
  lower = { 0, function(v) return v and lower(v) end },
  trim = { 0, function(v) return v and trim(v) end },
  default = { 1, function(v, a)
    if v == nil or v == "" then return a end
    return v
  end },
}

-- A column name as spreadsheets have them (`Product Name`, `product.name`,
-- `Size (cm)`): anything but braces, `|` and a dot at either end or doubled.
local function valid_name(name)
  if name == "." then return true end
  return name ~= "" and not find(name, "[{}|]") and byte(name, 1) ~= 46
    and byte(name, -1) ~= 46 and not find(name, "..", 1, true)
end

-- A function(st) returning the value of `name` in the context stack (nil if missing).
local function make_lookup(name)
  if name == "." then
    return function(st)
      local v = st.stack[st.depth]
      if v == NULL then return nil end
      return v
    end
  end
  local segs, nkeys = {}, {}
  for seg in gmatch(name, "[^%.]+") do
    segs[#segs + 1] = seg
    nkeys[#segs] = find(seg, "^%d+$") and tonumber(seg) or false
  end
  local first, nfirst, count = segs[1], nkeys[1], #segs
  local whole = count > 1 and name or nil -- a column named `product.name` itself comes first
  return function(st)
    local stack, v = st.stack, nil
    for i = st.depth, 1, -1 do
      local f = stack[i]
      if type(f) == "table" then
        if whole then
          v = f[whole]
          if v ~= nil then
            if v == NULL then return nil end
            return v
          end
        end
        v = f[first]
        if v == nil and nfirst then v = f[nfirst] end
        if v ~= nil then break end
      end
    end
    for k = 2, count do
      if type(v) ~= "table" then return nil end
      local w = v[segs[k]]
      if w == nil and nkeys[k] then w = v[nkeys[k]] end
      v = w
    end
    if v == NULL then return nil end
    return v
  end
end

---------------------------------------------------------------------------
-- Nodes: function(st, n) -> n (new buffer length) or nil with st.err set.

local function identity(_, n) return n end

local function text_node(s)
  return function(st, n)
    n = n + 1
    st.buf[n] = s
    return n
  end
end

-- Turn a list of strings / node functions into one node.
local function seq_node(items)
  local nodes, count, pending = {}, 0, nil
  for i = 1, #items + 1 do
    local it = items[i]
    if type(it) == "string" then
      pending = (pending or "") .. it
    else
      if pending and pending ~= "" then
        count = count + 1
        nodes[count] = text_node(pending)
      end
      pending = nil
      if it then
        count = count + 1
        nodes[count] = it
      end
    end
  end
  if count == 0 then return identity end
  if count == 1 then return nodes[1] end
  return function(st, n)
    for i = 1, count do
      n = nodes[i](st, n)
      if not n then return nil end
    end
    return n
  end
end

local function var_node(name, filters, pos)
  local lookup, nf = make_lookup(name), #filters
  local fns, args = {}, {}
  for i = 1, nf do fns[i], args[i] = filters[i][1], filters[i][2] end
  return function(st, n)
    local v = lookup(st)
    local tv, s = type(v), nil
    if tv == "string" then
      s = v
    elseif tv == "number" then
      s = fmtnum(v)
    elseif tv == "boolean" then
      s = v and "true" or "false"
    elseif v ~= nil then
      st.err = { pos, "variable '" .. name .. "' is a " .. tv .. ", not a text value", name }
      return nil
    end
    for i = 1, nf do s = fns[i](s, args[i]) end
    if s == nil then
      if st.strict then
        st.err = { pos, "missing variable '" .. name .. "'", name }
        return nil
      end
      return n
    end
    n = n + 1
    st.buf[n] = s
    return n
  end
end

local function section_node(name, body, inverted)
  local lookup = make_lookup(name)
  return function(st, n)
    local v = lookup(st)
    local tv = type(v)
    local truthy
    if v == nil or v == false or v == "" then
      truthy = false
    elseif tv == "table" then
      truthy = next(v) ~= nil
    else
      truthy = true
    end
    if inverted then
      if truthy then return n end
      return body(st, n)
    end
    if not truthy then return n end
    if v == true then return body(st, n) end
    local stack, d = st.stack, st.depth + 1
    if tv == "table" and v[1] ~= nil then
      for i = 1, #v do
        st.depth = d
        stack[d] = v[i]
        n = body(st, n)
        if not n then return nil end
      end
    else
      st.depth = d
      stack[d] = v
      n = body(st, n)
      if not n then return nil end
    end
    stack[d] = nil
    st.depth = d - 1
    return n
  end
end

---------------------------------------------------------------------------
-- Parsing

-- Parse `name | filter "arg" | …` (already trimmed) of the tag at `pos`.
local function parse_variable(content, pos)
  -- the name runs to the first `|`: `{{Product Name | upper}}` names the column `Product Name`
  local name, p = match(content, "^([^|]-)%s*()|")
  if not name then name, p = content, #content + 1 end
  if name == "" then raise(pos, "bad filter syntax: no variable name before '|'") end
  -- `{{name upper}}`: a filter without its `|`, not a column `name upper`
  local head, word = match(name, "^(%S+)%s.-(%S+)$")
  if word and FILTERS[word] then
    raise(pos, "bad filter syntax: unexpected '" .. sub(name, #head + 1):match("^%s*(.-)$") .. "' after '" .. head
      .. "' (filters are written {{name | filter}})", { field = head })
  end
  if not valid_name(name) then
    raise(pos, "bad variable name '" .. name .. "' (a name cannot start or end with a dot or hold two dots in a "
      .. "row: rename the column)", { field = name })
  end
  local filters, len = {}, #content
  while true do
    p = match(content, "^%s*()", p)
    if p > len then break end
    if byte(content, p) ~= PIPE then
      raise(pos, "bad filter syntax: unexpected '" .. sub(content, p) .. "' after '" .. name
        .. "' (filters are written {{name | filter}})", { field = name })
    end
    p = match(content, "^%s*()", p + 1)
    local fname, q = match(content, "^([%a_][%w_]*)()", p)
    if not fname then
      raise(pos, "bad filter syntax: expected a filter name after '|' in {{" .. content .. "}}",
        { field = name })
    end
    local filter = FILTERS[fname]
    if not filter then
      raise(pos, "unknown filter '" .. fname .. "' (known: default, lower, trim, upper)",
        { field = name, filter = fname })
    end
    local fargs = {}
    p = q
    while true do
      local r = match(content, "^%s*()", p)
      if byte(content, r) ~= 34 then break end
      local parts, i = {}, r + 1
      while true do
        local j = find(content, '["\\]', i)
        if not j then
          raise(pos, "bad filter syntax: unterminated string in filter '" .. fname .. "'",
            { field = name, filter = fname })
        end
        parts[#parts + 1] = sub(content, i, j - 1)
        if byte(content, j) == 34 then
          i = j + 1
          break
        end
        local nc = sub(content, j + 1, j + 1)
        if nc == '"' or nc == "\\" then
          parts[#parts + 1] = nc
          i = j + 2
        else
          parts[#parts + 1] = "\\"
          i = j + 1
        end
      end
      fargs[#fargs + 1] = concat(parts)
      p = i
    end
    local after = match(content, "^%s*()", p)
    if after <= len and byte(content, after) ~= PIPE then
      raise(pos, "bad filter syntax near '" .. sub(content, after)
        .. "' (filter arguments are written in double quotes)", { field = name, filter = fname })
    end
    if #fargs ~= filter[1] then
      local want = filter[1] == 0 and "no argument" or "one quoted argument"
      raise(pos, ("bad filter syntax: filter '%s' takes %s, got %d"):format(fname, want, #fargs),
        { field = name, filter = fname })
    end
    filters[#filters + 1] = { filter[2], fargs[1] }
  end
  return { kind = "var", name = name, filters = filters, pos = pos }
end

local function parse_tag(inner, pos)
  local content = trim(inner)
  local sigil = sub(content, 1, 1)
  if sigil == "!" then return { kind = "!", pos = pos } end
  if sigil == "=" then raise(pos, "delimiter changes ({{=…=}}) are not supported") end
  if sigil == ">" or sigil == "<" then raise(pos, "partials ({{>name}}) are not supported") end
  if sigil == "#" or sigil == "^" or sigil == "/" then
    local name = trim(sub(content, 2))
    if name == "" then raise(pos, "empty section name in {{" .. content .. "}}") end
    if find(name, "|", 1, true) then
      raise(pos, "filters are not allowed in section tags: {{" .. content .. "}}", { field = name })
    end
    if not valid_name(name) then raise(pos, "bad section name '" .. name .. "'", { field = name }) end
    return { kind = sigil, name = name, pos = pos }
  end
  if sigil == "&" then content = trim(sub(content, 2)) end
  if content == "" then raise(pos, "empty tag name") end
  return parse_variable(content, pos)
end

local function tokenize(text)
  local tokens, nt = {}, 0
  local pending, np = {}, 0
  local pos = 1
  local function flush()
    local s = concat(pending, "", 1, np)
    np = 0
    if s ~= "" then
      nt = nt + 1
      tokens[nt] = { text = s }
    end
  end
  while true do
    local s = find(text, "{{", pos, true)
    if not s then
      np = np + 1
      pending[np] = sub(text, pos)
      break
    end
    local b = s
    while b > pos and byte(text, b - 1) == BACKSLASH do b = b - 1 end
    local nbs = s - b
    np = np + 1
    pending[np] = sub(text, pos, b - 1) .. rep("\\", floor(nbs / 2))
    if nbs % 2 == 1 then
      np = np + 1
      pending[np] = "{{"
      pos = s + 2
    else
      local inner, e
      local c3 = byte(text, s + 2) == LBRACE and find(text, "}}}", s + 3, true)
      if c3 and not find(sub(text, s + 3, c3 - 1), "{", 1, true) then
        inner, e = "&" .. sub(text, s + 3, c3 - 1), c3 + 2
      elseif byte(text, s + 2) == LBRACE then
        -- `{{{` that is not a triple tag: a literal `{` then a tag (`{{{x}}|y}`)
        inner = nil
      else
        local c = find(text, "}}", s + 2, true)
        if not c then
          raise(s, "unclosed tag '" .. sub(text, s, s + 19):gsub("\n.*", "") .. "' (no matching '}}')")
        end
        inner, e = sub(text, s + 2, c - 1), c + 1
      end
      if inner == nil then
        np = np + 1
        pending[np] = "{"
        pos = s + 1
      else
        if byte(trim(inner), 1) ~= 33 and find(inner, "{{", 1, true) then
          raise(s, "unclosed tag '" .. sub(text, s, find(text, "{{", s + 2, true) - 1) .. "' (no matching '}}')")
        end
        flush()
        nt = nt + 1
        tokens[nt] = parse_tag(inner, s)
        pos = e + 1
      end
    end
  end
  flush()
  return tokens
end

local STANDALONE = { ["#"] = true, ["^"] = true, ["/"] = true, ["!"] = true }

-- Mustache "standalone" rule: a section/inverted/closing/comment tag alone
-- on its line (only spaces and tabs around it) removes the whole line.
local function strip_standalone(tokens)
  local nt = #tokens
  local lead, trail = {}, {}
  for i = 1, nt do
    if STANDALONE[tokens[i].kind] then
      local prev, nxt = tokens[i - 1], tokens[i + 1]
      local before, after = prev == nil, nxt == nil
      if prev and prev.text then
        before = find(prev.text, "\n[ \t]*$") or (i == 2 and find(prev.text, "^[ \t]*$"))
      end
      if nxt and nxt.text then
        after = find(nxt.text, "^[ \t]*\r?\n") or (i == nt - 1 and find(nxt.text, "^[ \t]*$"))
      end
      if before and after then
        if prev then trail[i - 1] = true end
        if nxt then lead[i + 1] = true end
      end
    end
  end
  for i = 1, nt do
    local t = tokens[i]
    if lead[i] or trail[i] then
      local s = t.text
      local a, b = 1, #s
      if lead[i] then a = match(s, "^[ \t]*\r?\n()") or #s + 1 end
      if trail[i] then b = (match(s, "^.*\n()") or 1) - 1 end
      t.text = sub(s, a, b)
    end
  end
end

local function build(text)
  local tokens = tokenize(text)
  strip_standalone(tokens)
  local open, cur = {}, {}
  for i = 1, #tokens do
    local t = tokens[i]
    local kind = t.kind
    if t.text then
      cur[#cur + 1] = t.text
    elseif kind == "var" then
      cur[#cur + 1] = var_node(t.name, t.filters, t.pos)
    elseif kind == "#" or kind == "^" then
      if #open >= MAX_DEPTH then
        raise(t.pos, "sections nested more than " .. MAX_DEPTH .. " deep", { field = t.name })
      end
      open[#open + 1] = { tok = t, parent = cur }
      cur = {}
    elseif kind == "/" then
      local o = open[#open]
      if not o then
        raise(t.pos, "closing tag {{/" .. t.name .. "}} without an open section", { field = t.name })
      end
      if o.tok.name ~= t.name then
        local line, column = locate(text, o.tok.pos)
        raise(t.pos, ("section '%s' (opened at line %d, column %d) closed by {{/%s}}"):format(
          o.tok.name, line, column, t.name), { field = t.name })
      end
      open[#open] = nil
      local node = section_node(o.tok.name, seq_node(cur), o.tok.kind == "^")
      cur = o.parent
      cur[#cur + 1] = node
    end
  end
  local o = open[#open]
  if o then
    raise(o.tok.pos, "section '" .. o.tok.name .. "' is never closed (no {{/" .. o.tok.name .. "}})",
      { field = o.tok.name })
  end
  if #cur == 0 then return "" end
  if #cur == 1 and type(cur[1]) == "string" then return cur[1] end
  return seq_node(cur)
end

---------------------------------------------------------------------------
-- Public API

local EMPTY = {}

--- Compile a template once, to render it many times without re-parsing.
-- @tparam string text the template
-- @tparam[opt] table opts `name` (for messages), `strict` (default true),
--   `row`; defaults for the renderer's own `opts`
-- @treturn function `render(vars, opts) -> string | nil, err`, where opts
--   may set `strict`, `row` and `name` for this call
-- @return or `nil, err` on a syntax error (`err.line`, `err.column`)
function M.compile(text, opts)
  Error.check(1, "compile", text, "string")
  Error.check(2, "compile", opts, "?table")
  opts = opts or EMPTY
  local root, err = protect(text, opts.name, opts.row, build, text)
  if root == nil then return nil, err end
  local cstrict, crow, cname = opts.strict, opts.row, opts.name
  if type(root) == "string" then
    return function(vars, ropts)
      Error.check(1, "template", vars, "?table")
      Error.check(2, "template", ropts, "?table")
      return root
    end
  end
  return function(vars, ropts)
    Error.check(1, "template", vars, "?table")
    Error.check(2, "template", ropts, "?table")
    ropts = ropts or EMPTY
    local strict = ropts.strict
    if strict == nil then strict = cstrict end
    local st = { stack = { vars or EMPTY }, depth = 1, buf = {}, strict = strict ~= false }
    local n = root(st, 0)
    if not n then
      local e = st.err
      local row = ropts.row
      if row == nil then row = crow end
      local msg = e[2]
      if type(vars) == "table" and msg:sub(1, 16) == "missing variable" then
        msg = msg .. suggest.hint(e[3], vars) -- `{{color}}` where the row has `colour`
      end
      return nil, make_error(text, e[1], msg, { field = e[3] }, ropts.name or cname, row)
    end
    return concat(st.buf, "", 1, n)
  end
end

--- The names a template looks up: its variables and section names (the
-- first part of a dotted name), as a set. Names inside a list section may
-- be fields of its elements; they are listed too.
-- @tparam string text the template
-- @treturn table|nil `{ [name] = true }`, or nil and the syntax error
function M.variables(text)
  Error.check(1, "variables", text, "string")
  local tokens, err = protect(text, nil, nil, tokenize, text)
  if not tokens then return nil, err end
  local names = {}
  for _, t in ipairs(tokens) do
    if t.name and (t.kind == "var" or t.kind == "#" or t.kind == "^") then
      local first = match(t.name, "^[^.]+")
      if first then names[first] = true end
      names[t.name] = true -- a column named `product.name` itself
    end
  end
  return names
end

local cache = setmetatable({}, { __mode = "v" })

--- Render a template with variables (compiled templates are cached weakly).
-- @tparam string text the template
-- @tparam[opt] table vars the variables (a row, nested tables, lists)
-- @tparam[opt] table opts `strict` (default true: a missing variable is an
--   error; false renders it empty), `row` and `name` (for messages)
-- @treturn string|nil the text, or nil and a `validation` error
function M.render(text, vars, opts)
  Error.check(1, "render", text, "string")
  Error.check(2, "render", vars, "?table")
  Error.check(3, "render", opts, "?table")
  local fn = cache[text]
  if not fn then
    fn = M.compile(text)
    if not fn then -- compile again for an error that names the row and template
      return M.compile(text, opts and { name = opts.name, row = opts.row })
    end
    cache[text] = fn
  end
  return fn(vars, opts)
end

---------------------------------------------------------------------------
-- Alternatives

-- End position of a Mustache tag starting at `s` (text:sub(s, s+1) == "{{"),
-- or nil when this `{{` is not a tag (no `}}` before another `{`).
local function tag_end(text, s)
  if byte(text, s + 2) == LBRACE then
    local c = find(text, "}}}", s + 3, true)
    if c and not find(sub(text, s + 3, c - 1), "{", 1, true) then return c + 2 end
  end
  local c = find(text, "}}", s + 2, true)
  if c and not find(sub(text, s + 2, c - 1), "{", 1, true) then return c + 1 end
  return nil
end

-- A sequence is { count = n, [i] = string | group }; a group is
-- { count = n, options = { sequence… } }. Counts are floats (no overflow).
local function parse_seq(text, pos, depth)
  local items, lit, nl = { count = 1.0 }, {}, 0
  local function flush()
    if nl > 0 then
      items[#items + 1] = concat(lit, "", 1, nl)
      nl = 0
    end
  end
  while true do
    local i = find(text, "[\\{}|]", pos)
    if not i then
      nl = nl + 1
      lit[nl] = sub(text, pos)
      flush()
      return items, #text + 1, nil
    end
    nl = nl + 1
    lit[nl] = sub(text, pos, i - 1)
    local c = byte(text, i)
    if c == BACKSLASH then
      local j = i
      while byte(text, j) == BACKSLASH do j = j + 1 end
      local e = byte(text, j) == LBRACE and byte(text, j + 1) == LBRACE and tag_end(text, j)
      if e then
        nl = nl + 1
        lit[nl] = sub(text, i, e)
        pos = e + 1
      else
        local n = j - i
        nl = nl + 1
        lit[nl] = rep("\\", floor(n / 2))
        pos = j
        if n % 2 == 1 then
          local nc = byte(text, j)
          if nc == LBRACE or nc == RBRACE or nc == PIPE then
            nl = nl + 1
            lit[nl] = sub(text, j, j)
            pos = j + 1
          else
            nl = nl + 1
            lit[nl] = "\\"
          end
        end
      end
    elseif c == LBRACE then
      local e = byte(text, i + 1) == LBRACE and tag_end(text, i)
      if e then
        nl = nl + 1
        lit[nl] = sub(text, i, e)
        pos = e + 1
      else
        flush()
        if depth >= MAX_DEPTH then raise(i, "groups nested more than " .. MAX_DEPTH .. " deep") end
        local group, p = { count = 0.0, options = {} }, i + 1
        while true do
          local opt, q, term = parse_seq(text, p, depth + 1)
          group.options[#group.options + 1] = opt
          group.count = group.count + opt.count
          if term == nil then raise(i, "unclosed '{' (no matching '}')") end
          p = q + 1
          if term == RBRACE then break end
        end
        items[#items + 1] = group
        items.count = items.count * group.count
        pos = p
      end
    elseif c == RBRACE then
      if depth == 0 then raise(i, "unmatched '}' (write \\} for a literal brace)") end
      flush()
      return items, i, RBRACE
    else -- PIPE
      if depth == 0 then
        nl = nl + 1
        lit[nl] = "|"
        pos = i + 1
      else
        flush()
        return items, i, PIPE
      end
    end
  end
end

local expand_seq
local function expand_group(group)
  local out = {}
  for _, opt in ipairs(group.options) do
    local list = expand_seq(opt)
    for j = 1, #list do out[#out + 1] = list[j] end
  end
  return out
end

function expand_seq(seq)
  local acc = { "" }
  for _, item in ipairs(seq) do
    if type(item) == "string" then
      for j = 1, #acc do acc[j] = acc[j] .. item end
    else
      local choices, new = expand_group(item), {}
      for j = 1, #acc do
        local a = acc[j]
        for k = 1, #choices do new[#new + 1] = a .. choices[k] end
      end
      acc = new
    end
  end
  return acc
end

-- The k-th combination (0-based, in expand order) of a sequence.
local function nth_seq(seq, k, out)
  local picks = {}
  for i = #seq, 1, -1 do
    local item = seq[i]
    if type(item) ~= "string" then
      local c = item.count
      local d = k - floor(k / c) * c
      k = floor(k / c)
      picks[i] = d
    end
  end
  for i = 1, #seq do
    local item = seq[i]
    if type(item) == "string" then
      out[#out + 1] = item
    else
      local d = picks[i]
      local options = item.options
      for j = 1, #options do
        local c = options[j].count
        if d < c or j == #options then
          nth_seq(options[j], d, out)
          break
        end
        d = d - c
      end
    end
  end
  return out
end

--- Expand `{a|b}` alternatives into every combination, or a seeded random pick.
-- @tparam string text the text (Mustache tags in it are left as they are)
-- @tparam[opt] table opts `limit` (default 10000: more combinations than
--   this is an error naming the count; with `random`, the number of picks
--   may not exceed it either, but the combinations may), `random` (a count: return that many
--   picks, uniform over all combinations, repeats possible), `seed` (number
--   or string; the same seed gives the same picks on every Lua; default:
--   the clock)
-- @treturn {string,...}|nil the strings in order, or nil and a `validation`
--   error (`err.line`, `err.column` for unbalanced braces; `err.count` over the limit)
function M.expand(text, opts)
  Error.check(1, "expand", text, "string")
  Error.check(2, "expand", opts, "?table")
  opts = opts or EMPTY
  local limit, random, seed = opts.limit or 10000, opts.random, opts.seed
  if type(limit) ~= "number" or limit < 0 then
    Error.argument(2, "expand", "opts.limit must be a non-negative number")
  end
  if random ~= nil and (type(random) ~= "number" or random < 0 or random ~= floor(random)) then
    Error.argument(2, "expand", "opts.random must be a non-negative integer")
  end
  if seed ~= nil and type(seed) ~= "number" and type(seed) ~= "string" then
    Error.argument(2, "expand", "opts.seed must be a number or a string")
  end
  local tree, err = protect(text, opts.name, opts.row, parse_seq, text, 1, 0)
  if not tree then return nil, err end
  local total = tree.count
  local prefix = opts.name and ("template " .. tostring(opts.name) .. ": ") or "template: "
  if random then
    if random > limit then
      return nil, Error.new("validation", ("%sasked for %s random picks, more than the limit of %s"):format(
        prefix, fmtnum(random), fmtnum(limit)), { count = random, row = opts.row, template = opts.name })
    end
    local stream, out = rng.new(seed == nil and (os.time() + os.clock() * 1e6) or seed), {}
    for i = 1, random do
      local k = floor(stream:next() * total)
      if k >= total then k = total - 1 end
      out[i] = concat(nth_seq(tree, k, {}))
    end
    return out
  end
  if total > limit then
    return nil, Error.new("validation", ("%s'%s' expands to %.0f combinations, more than the limit of %s"):format(
      prefix, #text > 60 and sub(text, 1, 57) .. "..." or text, total, fmtnum(limit)),
      { count = total, row = opts.row, template = opts.name })
  end
  return expand_seq(tree)
end

return M

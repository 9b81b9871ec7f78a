--- Row readers for batches: CSV (RFC 4180), JSON Lines, or a Lua table.
--
-- **Shape.** A row is a plain table mapping column name to value, with no
-- extra fields. `read` and the `parse_*` functions return `rows, meta`:
-- `rows[i]` is data row `i` (row 1 is the first row after the CSV header, or
-- the first non-blank JSON line), and `meta` is
-- `{ format = "csv"|"jsonl"|"table", columns = {…}, lines = {…}, path = … }`
-- where `meta.lines[i]` is the physical line where row `i` starts (absent for
-- a Lua table) and `meta.columns` lists the column names: the CSV header in
-- order, for JSON Lines every key seen (sorted), for a Lua table nil.
--
-- **CSV.** The first non-blank record is the header; names are trimmed and
-- must be unique and non-empty. Fields may be quoted (`"a, b"`, `""` for a
-- quote, newlines inside quotes); lines end in LF or CRLF; a UTF-8 BOM is
-- dropped; blank lines (empty, or only spaces and tabs) are skipped; values
-- are strings, never trimmed (an empty cell is `""`). A row with fewer
-- fields than the header leaves the missing columns absent (nil); more
-- fields is an error. A `"` inside an unquoted field, a character after a
-- closing quote, or a quote never closed is an error. A lone CR (not
-- followed by LF) is data, not a line end. `opts.separator` is one character (default `,`;
-- `;` and `\t` work; files ending in `.tsv` default to `\t`). Without it, a
-- header with no comma (outside quotes) but a `;` (a spreadsheet's CSV where
-- the decimal mark is a comma) or a tab is read with that separator;
-- `meta.separator` (and `reader.separator`) says which was used.
--
-- **JSON Lines.** One JSON object per line (blank lines skipped); values
-- keep their JSON types; a top-level `null` value is dropped (the key is
-- absent; nested nulls stay `cjson.null`). A line that is not valid JSON or
-- not an object is an error.
--
-- **Text** must be UTF-8 (JSON, and so the gateway, takes nothing else):
-- `read` refuses a file that is not, naming the row, the column and the
-- byte's offset in the file, unless `opts.encoding` names the file's
-- encoding (`"cp1252"`, the usual Windows spreadsheet export, or
-- `"latin1"`): then the text is converted to UTF-8 first. A UTF-16 file is
-- refused with a note to save it as UTF-8.
--
-- **Errors** come back as `nil, err` with `err.kind == "validation"`,
-- `err.line` (physical line), `err.row` (data row, when the error is in one),
-- `err.column` (character position in the line, for CSV syntax errors),
-- `err.field` (the column involved, when known) and `err.path` (the file).
-- Wrong argument types raise.
-- @module modkie.batch.rows

local Error = require "modkie.error"
local encoding = require "modkie.encoding"
local json = require "modkie.json"

local byte, sub, find, match, gsub, gmatch = string.byte, string.sub, string.find, string.match, string.gsub,
  string.gmatch
local concat, sort = table.concat, table.sort
local type, tostring, pairs, setmetatable = type, tostring, pairs, setmetatable
local io_open = io.open

local M = {}

local QUOTE, LF, CR = 34, 10, 13
local BOM = "\239\187\191"
local NULL = json.null

-- A validation error whose message names the file, row, line and column.
local function mkerr(msg, fields, path)
  fields = fields or {}
  fields.path = path
  local where = {}
  if fields.row then where[#where + 1] = "row " .. tostring(fields.row) end
  if fields.line then where[#where + 1] = "line " .. tostring(fields.line) end
  if fields.column then where[#where + 1] = "column " .. tostring(fields.column) end
  local prefix = path and ("rows: " .. tostring(path) .. ": ") or "rows: "
  if #where > 0 then prefix = prefix .. concat(where, ", ") .. ": " end
  return Error.new("validation", prefix .. msg, fields)
end

local function fail(msg, fields, path)
  return nil, mkerr(msg, fields, path)
end

local trim = encoding.trim

---------------------------------------------------------------------------
-- CSV

-- Character column of byte `pos` within the line starting at byte `start`.
local function column_of(s, start, pos)
  local _, cont = gsub(sub(s, start, pos - 1), "[\128-\191]", "")
  return pos - start - cont + 1
end

--- Whether `sep` can separate a CSV's fields: one character other than a
-- quote or a newline (batch.run and the CLI check their option with it).
-- @treturn boolean
function M.valid_separator(sep)
  return type(sep) == "string" and #sep == 1 and sep ~= '"' and sep ~= "\n" and sep ~= "\r"
end

-- Check the separator option; return it and the pattern that finds the next
-- separator, newline or quote in an unquoted field.
local function separator(opts, fname, default)
  local sep = opts.separator or default or ","
  if not M.valid_separator(sep) then
    Error.argument(2, fname, "opts.separator must be one character other than a quote or newline")
  end
  -- escaped only when punctuation: "%a" would be every letter, not an "a"
  return sep, "[" .. (find(sep, "%p") and "%" .. sep or sep) .. "\n\"]"
end

-- The separator of a header line that has no comma outside quotes but a
-- `;` (what a spreadsheet saves as CSV where the decimal mark is a comma) or
-- a tab; else nil (a comma).
local function sniff(line)
  local bare = gsub(line, '"[^"]*"', "")
  if find(bare, ",", 1, true) then return nil end
  if find(bare, ";", 1, true) then return ";" end
  if find(bare, "\t", 1, true) then return "\t" end
  return nil
end

-- Parse one record of `s` starting at `pos`. With `cols` (the header), the
-- fields go into a new row keyed by column name; without, into a list.
-- Returns row, field count, next position, extra newlines inside quotes;
-- or nil, problem, byte position, field index ("unclosed" is the only
-- problem that more input could fix).
local function parse_record(s, pos, sepb, pat, cols, ncols)
  local row, nf, extra = {}, 0, 0
  while true do
    local value
    if byte(s, pos) == QUOTE then
      local i, parts, np = pos + 1, nil, 0
      while true do
        local q = find(s, '"', i, true)
        if not q then return nil, "unclosed", pos, nf + 1 end
        if byte(s, q + 1) == QUOTE then
          parts = parts or {}
          np = np + 1
          parts[np] = sub(s, i, q)
          i = q + 2
        else
          value = sub(s, i, q - 1)
          if parts then
            np = np + 1
            parts[np] = value
            value = concat(parts, "", 1, np)
          end
          pos = q + 1
          break
        end
      end
      if find(value, "\n", 1, true) then
        local _, k = gsub(value, "\n", "")
        extra = extra + k
      end
      nf = nf + 1
      if cols then
        if nf > ncols then return nil, "toomany", pos, nf end
        row[cols[nf]] = value
      else
        row[nf] = value
      end
      local c = byte(s, pos)
      if c == sepb then
        pos = pos + 1
      elseif c == nil then
        return row, nf, pos, extra
      elseif c == LF then
        return row, nf, pos + 1, extra
      elseif c == CR and byte(s, pos + 1) == LF then
        return row, nf, pos + 2, extra
      elseif c == CR and pos == #s then
        return row, nf, pos + 1, extra
      else
        return nil, "afterquote", pos, nf
      end
    else
      local e = find(s, pat, pos)
      local c = e and byte(s, e)
      if c == QUOTE then return nil, "stray", e, nf + 1 end
      local stop = e or #s + 1
      local last = stop - 1
      if c ~= sepb and last >= pos and byte(s, last) == CR then last = last - 1 end
      value = sub(s, pos, last)
      nf = nf + 1
      if cols then
        if nf > ncols then return nil, "toomany", pos, nf end
        row[cols[nf]] = value
      else
        row[nf] = value
      end
      if c ~= sepb then return row, nf, stop + 1, extra end
      pos = e + 1
    end
  end
end

local PROBLEMS = {
  unclosed = "quote not closed before the end of the file",
  stray = "a quote inside an unquoted field (quote the whole field and double the quote: \"a \"\"b\"\"\")",
  afterquote = "unexpected character after a closing quote",
}

--- Why a header read as one column, such as `product;duration`, is most
-- likely misread, and what to pass instead; nil when it is not so. A `;`
-- or tab that is `sep`, the separator the file was read with, was quoted
-- (`"prompt; max 200 chars"`): the column's own name, no hint.
-- @tparam table columns the header's columns
-- @tparam[opt] string sep the separator used
-- @treturn string|nil
function M.separator_hint(columns, sep)
  local only = columns and #columns == 1 and columns[1]
  if type(only) ~= "string" then return nil end
  local other
  for _, c in ipairs({ ";", "\t" }) do
    if c ~= sep and find(only, c, 1, true) then
      other = c
      break
    end
  end
  if not other then return nil end
  return ("the header is one column, '%s': the file looks separated by %s; pass separator = %s (--separator %s)")
    :format((gsub(only, "\t", "\\t")), other == "\t" and "a tab" or "';'", other == "\t" and '"\\t"' or '";"',
      other == "\t" and "tab" or "';'")
end

-- Turn a parse_record failure into an error object.
local function record_error(s, start, line, row, problem, at, fi, cols, ncols, path, sep)
  local fields = { row = row, line = line, field = cols and cols[fi] or nil }
  local hint = M.separator_hint(cols, sep)
  hint = hint and (" (" .. hint .. ")") or ""
  if problem == "toomany" then
    return mkerr(("%d fields or more, but the header has %d columns%s"):format(fi, ncols, hint), fields, path)
  end
  -- find the physical line and column of byte `at`
  local ls, i = start, find(s, "\n", start, true)
  local l = line
  while i and i < at do
    l, ls = l + 1, i + 1
    i = find(s, "\n", i + 1, true)
  end
  fields.line, fields.column = l, column_of(s, ls, at)
  return mkerr(PROBLEMS[problem] .. hint, fields, path)
end

-- Validate the header record (a list) and return the trimmed column names.
local function header_columns(list, n, line, path)
  local cols, seen = {}, {}
  for i = 1, n do
    local name = trim(list[i])
    if name == "" then
      return fail(("empty column name in the header (column %d)"):format(i), { line = line }, path)
    end
    if seen[name] then
      return fail(("duplicate column name '%s' in the header (columns %d and %d)"):format(name, seen[name], i),
        { line = line, field = name }, path)
    end
    seen[name], cols[i] = i, name
  end
  return cols
end

-- Skip blank lines (nothing but spaces and tabs) at `pos`; return the new
-- position and the number of lines skipped.
local function skip_blank(s, pos)
  local skipped = 0
  while true do
    local e = match(s, "^[ \t]*\r?\n()", pos)
    if not e then
      if match(s, "^[ \t]*\r?$", pos) then return #s + 1, skipped end
      return pos, skipped
    end
    pos, skipped = e, skipped + 1
  end
end

local function parse_csv(s, opts, fname, default_sep)
  separator(opts, fname, default_sep) -- (a bad option raises, whatever the text)
  local path = opts.path
  local pos, line = 1, 1
  if sub(s, 1, 3) == BOM then pos = 4 end
  local skipped
  pos, skipped = skip_blank(s, pos)
  line = line + skipped
  if opts.separator == nil and default_sep == nil then default_sep = sniff(match(s, "^[^\n]*", pos)) end
  local sep, pat = separator(opts, fname, default_sep)
  local sepb = byte(sep)
  local meta = { format = "csv", columns = {}, lines = {}, path = path, separator = sep }
  if pos > #s then return {}, meta end
  local head, n, nextpos, extra = parse_record(s, pos, sepb, pat)
  if not head then return nil, record_error(s, pos, line, nil, n, nextpos, extra, nil, nil, path) end
  local cols, err = header_columns(head, n, line, path)
  if not cols then return nil, err end
  meta.columns = cols
  local ncols, rows, lines, count = #cols, {}, meta.lines, 0
  line = line + 1 + extra
  pos = nextpos
  local len = #s
  while true do
    pos, skipped = skip_blank(s, pos)
    line = line + skipped
    if pos > len then break end
    local row
    row, n, nextpos, extra = parse_record(s, pos, sepb, pat, cols, ncols)
    if not row then
      return nil, record_error(s, pos, line, count + 1, n, nextpos, extra, cols, ncols, path, sep)
    end
    count = count + 1
    rows[count], lines[count] = row, line
    line = line + 1 + extra
    pos = nextpos
  end
  return rows, meta
end

--- Parse CSV text (RFC 4180) with a header row.
-- @tparam string text the CSV
-- @tparam[opt] table opts `separator` (one character, default ","), `path` (for messages)
-- @treturn {table,...}|nil rows (column name -> string), or nil and a `validation` error
-- @treturn table meta: `format`, `columns` (header order), `lines` (physical line of each row)
function M.parse_csv(text, opts)
  Error.check(1, "parse_csv", text, "string")
  Error.check(2, "parse_csv", opts, "?table")
  return parse_csv(text, opts or {}, "parse_csv")
end

---------------------------------------------------------------------------
-- JSON Lines

-- Decode one non-blank line; return the row or nil, err.
local function json_row(text, line, row, path)
  if not find(text, "^%s*{") then
    return fail("not a JSON object (each line must be one {...} object)", { line = line, row = row }, path)
  end
  local value, msg = json.decode(text)
  if type(value) ~= "table" then
    return fail("invalid JSON: " .. tostring(msg), { line = line, row = row }, path)
  end
  for k, v in pairs(value) do
    if v == NULL then value[k] = nil end
  end
  return value
end

local function add_keys(seen, list, row)
  for k in pairs(row) do
    if not seen[k] then
      seen[k] = true
      list[#list + 1] = k
    end
  end
end

local function sorted_columns(list)
  sort(list, function(a, b) return tostring(a) < tostring(b) end)
  return list
end

--- Parse JSON Lines text: one JSON object per line.
-- @tparam string text the JSON Lines
-- @tparam[opt] table opts `path` (for messages)
-- @treturn {table,...}|nil rows (values keep their JSON types), or nil and a `validation` error
-- @treturn table meta: `format`, `columns` (every key seen, sorted), `lines`
function M.parse_jsonl(text, opts)
  Error.check(1, "parse_jsonl", text, "string")
  Error.check(2, "parse_jsonl", opts, "?table")
  local path = opts and opts.path
  local rows, lines, seen, columns = {}, {}, {}, {}
  local count, line, pos, len = 0, 0, 1, #text
  if sub(text, 1, 3) == BOM then pos = 4 end
  while pos <= len do
    local nl = find(text, "\n", pos, true) or len + 1
    line = line + 1
    local s = sub(text, pos, nl - 1)
    if find(s, "%S") then
      local row, err = json_row(s, line, count + 1, path)
      if not row then return nil, err end
      count = count + 1
      rows[count], lines[count] = row, line
      add_keys(seen, columns, row)
    end
    pos = nl + 1
  end
  return rows, { format = "jsonl", columns = sorted_columns(columns), lines = lines, path = path }
end

---------------------------------------------------------------------------
-- Files

local FORMATS = { csv = "csv", tsv = "csv", jsonl = "jsonl", ndjson = "jsonl" }

-- Text that is not in the encoding the file is read as: name the row, the
-- column and the byte with its offset in the file. `rows`, `meta`: the file
-- parsed bytewise (nil when even that fails).
local function encoding_error(path, text, bad, why, enc, rows, meta)
  local line = 1
  for _ in gmatch(sub(text, 1, bad - 1), "\n") do line = line + 1 end
  local fields = { line = line, offset = bad - 1 }
  local where = ""
  if rows and meta and meta.lines then
    local row = 0
    for i, l in ipairs(meta.lines) do
      if l > line then break end
      row = i
    end
    if row == 0 then
      where = "the header: "
    else
      fields.row = row
      for _, col in ipairs(meta.columns or {}) do
        local v = rows[row][col]
        if type(v) == "string" and not encoding.to_utf8(v, enc or "utf-8") then
          fields.field = col
          where = ("column '%s': "):format(col)
          break
        end
      end
    end
  end
  local msg = ("%sbyte 0x%02X at offset %d of the file is %s"):format(where, byte(text, bad), bad - 1, why)
  if why == "not UTF-8" then
    msg = msg .. "; a CSV saved by a spreadsheet on Windows is often Windows-1252: name its encoding "
      .. "(encoding = \"cp1252\", or --encoding cp1252), or save it as \"CSV UTF-8\""
  end
  return mkerr(msg, fields, path)
end

-- Format and default separator for a path.
local function format_of(path, opts)
  local ext = match(path, "%.([%w]+)$")
  ext = ext and ext:lower()
  local fmt = opts.format
  if fmt ~= nil and fmt ~= "csv" and fmt ~= "jsonl" then
    Error.argument(2, "read", "opts.format must be \"csv\" or \"jsonl\"")
  end
  fmt = fmt or FORMATS[ext]
  if not fmt then
    return fail("cannot tell the format from the file name (use .csv, .tsv, .jsonl or .ndjson, "
      .. "or opts.format)", {}, path)
  end
  return fmt, ext == "tsv" and "\t" or nil
end

local function with_path(opts, path)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.path = path
  return o
end

--- Read every row of a Lua table, a `.csv`/`.tsv` file or a `.jsonl`/`.ndjson` file.
-- @tparam table|string source a list of row tables (returned as is once
--   each is checked to be a table), or a file path
-- @tparam[opt] table opts `format` ("csv" or "jsonl", overrides the
--   extension), `separator` (CSV), `encoding` ("utf-8", the default and
--   checked; "cp1252" or "latin1": converted to UTF-8)
-- @treturn {table,...}|nil the rows, or nil and a `validation` error
-- @treturn table meta (see the module description)
function M.read(source, opts)
  Error.check(2, "read", opts, "?table")
  opts = opts or {}
  if type(source) == "table" then
    for i = 1, #source do
      if type(source[i]) ~= "table" then
        return fail(("row %d is a %s, not a table"):format(i, type(source[i])), { row = i })
      end
    end
    return source, { format = "table" }
  end
  if type(source) ~= "string" then
    Error.argument(1, "read", "table or string expected, got " .. type(source))
  end
  local fmt, default_sep = format_of(source, opts)
  if not fmt then return nil, default_sep end
  local enc = opts.encoding
  if enc ~= nil and not encoding.known(enc) then
    return fail(("unknown encoding '%s' (use %s)"):format(tostring(enc), encoding.NAMES), {}, source)
  end
  local f, oerr = io_open(source, "rb")
  if not f then return fail("cannot open: " .. tostring(oerr), {}, source) end
  local text = f:read("*a")
  f:close()
  if not text then return fail("cannot read the file", {}, source) end
  opts = with_path(opts, source)
  local function parse(t)
    if fmt == "csv" then return parse_csv(t, opts, "read", default_sep) end
    return M.parse_jsonl(t, opts)
  end
  local b1, b2 = byte(text, 1, 2)
  if (b1 == 0xFF and b2 == 0xFE) or (b1 == 0xFE and b2 == 0xFF) then
    return fail("the file is UTF-16 (a spreadsheet's \"Unicode text\"): save it as \"CSV UTF-8\" instead", {}, source)
  end
  local utf8, bad, why = encoding.to_utf8(text, enc or "utf-8")
  if not utf8 then return nil, encoding_error(source, text, bad, why, enc, parse(text)) end
  return parse(utf8)
end

---------------------------------------------------------------------------
-- Streaming

local Reader = {}
Reader.__index = Reader

--- Next row of a reader: `row, n, line`; nil at the end; `nil, err` on bad data.
function Reader:next()
  if self.done then return nil, self.err end
  local row, err = self:_next()
  if not row then
    self.done, self.err = true, err
    self:close()
    return nil, err
  end
  return row, self.count, self.row_line
end

--- Close the file (done at the end or on an error; safe to call twice).
function Reader:close()
  if self.file then
    self.file:close()
    self.file = nil
  end
  self.done = true
end

-- Next line without its "\n", counting lines and bytes, in UTF-8 (the
-- file's encoding converted, or checked); nil at EOF, or with
-- `self.enc_err` set when a line is not in that encoding.
local function read_line(self)
  local l = self.file and self.file:read("*l")
  if not l then return nil end
  self.line = self.line + 1
  local at = self.offset
  self.offset = at + #l + 1
  if self.line == 1 and sub(l, 1, 3) == BOM then
    l = sub(l, 4)
    at = at + 3
  end
  local utf8, bad, why = encoding.to_utf8(l, self.enc)
  if utf8 then return utf8 end
  local msg = ("byte 0x%02X at offset %d of the file is %s"):format(byte(l, bad), at + bad - 1, why)
  if why == "not UTF-8" then
    msg = msg .. "; a CSV saved by a spreadsheet on Windows is often Windows-1252: name its encoding "
      .. "(encoding = \"cp1252\", or --encoding cp1252), or save it as \"CSV UTF-8\""
  end
  self.enc_err = mkerr(msg, { line = self.line, offset = at + bad - 1,
    row = self.columns and self.count + 1 or (self.format == "jsonl" and self.count + 1) or nil }, self.path)
  return nil
end

-- Next CSV record (list or row) from the file, skipping blank lines.
-- Blank is what skip_blank says (blanks, then the CR of a CRLF): a CR
-- anywhere else is data, so that `read` and `open` agree on " \r " (fuzz
-- finding csv/blank-cr).
local function next_record(self, cols, ncols)
  local l
  repeat
    l = read_line(self)
    if not l then
      if self.enc_err then return false, self.enc_err end
      return nil
    end
  until not match(l, "^[ \t]*\r?$")
  local start_line, s = self.line, l
  while true do
    local rec, n, at, fi = parse_record(s, 1, self.sepb, self.pat, cols, ncols)
    if rec then return rec, n, start_line end
    if n == "unclosed" then
      local more = read_line(self)
      if more then
        s = s .. "\n" .. more
      elseif self.enc_err then
        return false, self.enc_err
      else
        return false, record_error(s, 1, start_line, cols and self.count + 1 or nil, n, at, fi, cols, ncols, self.path,
          self.separator)
      end
    else
      return false, record_error(s, 1, start_line, cols and self.count + 1 or nil, n, at, fi, cols, ncols, self.path,
          self.separator)
    end
  end
end

local function csv_next(self)
  local row, err, line = next_record(self, self.columns, self.ncols)
  if not row then return nil, err end
  self.count, self.row_line = self.count + 1, line
  return row
end

local function jsonl_next(self)
  while true do
    local l = read_line(self)
    if not l then return nil, self.enc_err end
    if find(l, "%S") then
      local row, err = json_row(l, self.line, self.count + 1, self.path)
      if not row then return nil, err end
      self.count, self.row_line = self.count + 1, self.line
      return row
    end
  end
end

local function iterate(self)
  local row, err = self:next()
  if row then return row, self.count end
  if err then error(err, 2) end
  return nil
end

--- Open a `.csv`/`.tsv`/`.jsonl`/`.ndjson` file to read its rows one at a
-- time, without reading the whole file at once.
-- Use as `for row, n in rows.open(path) do … end` (on bad data the loop
-- raises the `modkie.Error`), or `local _, reader = rows.open(path)` and
-- call `reader:next()` (returns `row, n, line`, nil at the end, or `nil, err`).
-- `reader.columns` is the CSV header (nil for JSON Lines); `reader:close()`.
-- @tparam string path the file
-- @tparam[opt] table opts `format`, `separator`, `encoding` as for `read`
--   ("utf-8", the default and checked line by line; "cp1252" or "latin1":
--   each line converted to UTF-8 as it is read)
-- @treturn function|nil the iterator, or nil and a `validation` error
--   (file missing, unknown format or encoding, bad CSV header); text not in
--   the encoding is a `validation` error naming the row, line and byte offset
-- @treturn table the reader (also the iterator's state)
function M.open(path, opts)
  Error.check(1, "open", path, "string")
  Error.check(2, "open", opts, "?table")
  opts = opts or {}
  local fmt, default_sep = format_of(path, opts)
  if not fmt then return nil, default_sep end
  local enc = opts.encoding
  if enc ~= nil and not encoding.known(enc) then
    return fail(("unknown encoding '%s' (use %s)"):format(tostring(enc), encoding.NAMES), {}, path)
  end
  local self = setmetatable({ path = path, format = fmt, line = 0, count = 0, offset = 0, enc = enc or "utf-8" },
    Reader)
  if fmt == "csv" then separator(opts, "open", default_sep) end
  local f, oerr = io_open(path, "rb")
  if not f then return fail("cannot open: " .. tostring(oerr), {}, path) end
  self.file = f
  if fmt == "csv" then
    if opts.separator == nil and default_sep == nil then
      -- the header's separator, as `read` finds it (then back to the start)
      local l
      repeat l = f:read("*l") until not l or not match(l, "^[ \t]*\r?$")
      if l and sub(l, 1, 3) == BOM then l = sub(l, 4) end
      default_sep = l and sniff(l)
      f:seek("set", 0)
    end
    local sep, pat = separator(opts, "open", default_sep)
    self.sepb, self.pat, self.separator = byte(sep), pat, sep
    local head, n, line = next_record(self)
    if head == false then
      self:close()
      return nil, n
    end
    if head then
      local cols, err = header_columns(head, n, line, path)
      if not cols then
        self:close()
        return nil, err
      end
      self.columns, self.ncols = cols, #cols
    else
      self.columns, self.ncols = {}, 0
    end
    self._next = csv_next
  else
    self._next = jsonl_next
  end
  return iterate, self
end

return M

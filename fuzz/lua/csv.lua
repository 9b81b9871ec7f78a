--- Fuzz harness: rows.parse_csv on any bytes, and the streaming reader
-- (rows.open) on the same bytes written to a file.
-- Input: one byte picks the separator, the rest is the CSV text.
-- Properties:
--  * nothing raises; a refusal is `nil, err` with a validation error that
--    has a line (and a column, a row when it names them);
--  * the header gives unique, non-empty, trimmed names; every row's keys
--    are columns, its values strings; meta.lines rises with the rows;
--  * writing the rows back as CSV (every field quoted) and parsing that
--    gives the same columns and rows (round trip);
--  * rows.open reads the same rows, or refuses too (whole text and stream
--    agree).
local rows = require "modkie.batch.rows"
local F = require "fuzzutil"
local check, show = F.check, F.show

local SEPARATORS = { ",", ";", "\t", "|" }
local path = F.tmpname()

local function quote(s)
  return '"' .. s:gsub('"', '""') .. '"'
end

local function write_csv(columns, list, sep)
  local out = {}
  local head = {}
  for i, c in ipairs(columns) do head[i] = quote(c) end
  out[1] = table.concat(head, sep)
  for _, row in ipairs(list) do
    local last = 0
    for i, c in ipairs(columns) do
      if row[c] ~= nil then last = i end
    end
    local fields = {}
    for i = 1, last do fields[i] = quote(row[columns[i]] or "") end
    out[#out + 1] = table.concat(fields, sep)
  end
  return table.concat(out, "\n") .. "\n"
end

local function check_parsed(list, meta, what)
  check(type(list) == "table" and type(meta) == "table", "%s: rows %s, meta %s", what, type(list), type(meta))
  local cols, seen = meta.columns, {}
  for i, c in ipairs(cols) do
    check(type(c) == "string" and c ~= "" and not seen[c], "%s: column %d is %s", what, i, show(c))
    check(c == c:match("^%s*(.-)%s*$"), "%s: column %s is not trimmed", what, show(c))
    seen[c] = true
  end
  check(#meta.lines == #list, "%s: %d lines for %d rows", what, #meta.lines, #list)
  local prev = 0
  for i, row in ipairs(list) do
    for k, v in pairs(row) do
      check(seen[k] and type(v) == "string", "%s: row %d has %s = %s", what, i, show(k), show(v))
    end
    F.check_count(meta.lines[i], "meta.lines[" .. i .. "]")
    check(meta.lines[i] > prev, "%s: row %d starts on line %d, after %d", what, i, meta.lines[i], prev)
    prev = meta.lines[i]
  end
end

local function check_refusal(err, what)
  F.check_error(err, "validation", what)
  F.check_count(err.line, what .. ": err.line")
  F.check_count(err.row, what .. ": err.row", true)
  F.check_count(err.column, what .. ": err.column", true)
end

-- Every row rows.open reads, or nil, err.
local function stream(text, sep)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  local it, reader = rows.open(path, { format = "csv", separator = sep })
  if not it then return nil, reader end
  local list, lines = {}, {}
  while true do
    local row, n, line = reader:next()
    if row == nil then
      if n ~= nil then return nil, n end
      break
    end
    list[#list + 1], lines[#lines + 1] = row, line
  end
  return list, { columns = reader.columns, lines = lines }
end

return function(data)
  local r = F.reader(data)
  local sep = SEPARATORS[r.byte() % #SEPARATORS + 1]
  local text = r.rest()
  local list, meta = rows.parse_csv(text, { separator = sep })
  if list == nil then
    check_refusal(meta, "parse_csv")
  else
    check_parsed(list, meta, "parse_csv")
    if #meta.columns > 0 then
      local again, meta2 = rows.parse_csv(write_csv(meta.columns, list, sep), { separator = sep })
      check(again, "round trip refused: %s", tostring(meta2))
      check(F.equal(meta.columns, meta2.columns), "round trip columns %s, want %s", show(meta2.columns), show(meta.columns))
      check(F.equal(list, again), "round trip rows %s, want %s", show(again), show(list))
    end
  end
  local slist, smeta = stream(text, sep)
  if slist == nil then
    check_refusal(smeta, "open")
    check(list == nil or F.not_utf8(text, smeta), "rows.open refused what parse_csv read: %s", tostring(smeta))
  else
    check(list ~= nil, "parse_csv refused what rows.open read: %s", tostring(meta))
    check(F.equal(meta.columns, smeta.columns), "columns: parse_csv %s, open %s", show(meta.columns), show(smeta.columns))
    check(F.equal(list, slist), "rows: parse_csv %s, open %s", show(list), show(slist))
    check(F.equal(meta.lines, smeta.lines), "lines: parse_csv %s, open %s", show(meta.lines), show(smeta.lines))
  end
end

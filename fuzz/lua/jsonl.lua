--- Fuzz harness: rows.parse_jsonl on any bytes, and the streaming reader
-- (rows.open) on the same bytes written to a file.
-- Properties: nothing raises; a refusal is a validation error with a line;
-- every row is a table with no top-level cjson.null; meta.columns is every
-- key seen, sorted, once; meta.lines rises; rows.open agrees with
-- parse_jsonl (same rows and lines, or both refuse).
local rows = require "modkie.batch.rows"
local cjson = require "cjson"
local F = require "fuzzutil"
local check, show = F.check, F.show

local path = F.tmpname()

local function stream(text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  local it, reader = rows.open(path, { format = "jsonl" })
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
  return list, { lines = lines }
end

return function(text)
  local list, meta = rows.parse_jsonl(text)
  if list == nil then
    F.check_error(meta, "validation", "parse_jsonl")
    F.check_count(meta.line, "err.line")
  else
    local keys = {}
    local prev = 0
    for i, row in ipairs(list) do
      check(type(row) == "table", "row %d is a %s", i, type(row))
      for k, v in pairs(row) do
        check(v ~= cjson.null, "row %d keeps a null at %s", i, show(k))
        keys[k] = true
      end
      F.check_count(meta.lines[i], "meta.lines[" .. i .. "]")
      check(meta.lines[i] > prev, "row %d on line %d, after %d", i, meta.lines[i], prev)
      prev = meta.lines[i]
    end
    local n = 0
    for i, k in ipairs(meta.columns) do
      check(keys[k], "column %s is no row's key", show(k))
      keys[k] = nil
      n = i
      if i > 1 then check(tostring(meta.columns[i - 1]) <= tostring(k), "columns not sorted") end
    end
    check(next(keys) == nil, "key %s missing from the columns", show(next(keys)))
    check(n == #meta.columns, "columns have holes")
  end
  local slist, smeta = stream(text)
  if slist == nil then
    F.check_error(smeta, "validation", "open")
    check(list == nil or F.not_utf8(text, smeta), "rows.open refused what parse_jsonl read: %s", tostring(smeta))
  else
    check(list ~= nil, "parse_jsonl refused what rows.open read: %s", tostring(meta))
    check(F.equal(list, slist), "rows: parse_jsonl %s, open %s", show(list), show(slist))
    check(F.equal(meta.lines, smeta.lines), "lines: parse_jsonl %s, open %s", show(meta.lines), show(smeta.lines))
  end
end

local rows = require "modkie.batch.rows"
local Error = require "modkie.error"

local tmpfiles = {}

-- Write `text` to a fresh temporary file with the given extension.
local function tmpfile(ext, text)
  local base = os.tmpname()
  os.remove(base)
  local path = base .. ext
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  tmpfiles[#tmpfiles + 1] = path
  return path
end

local function csv_err(text, opts)
  local out, err = rows.parse_csv(text, opts)
  assert.is_nil(out)
  assert.is_true(Error.is(err))
  assert.equal("validation", err.kind)
  return err
end

local function jsonl_err(text)
  local out, err = rows.parse_jsonl(text)
  assert.is_nil(out)
  assert.is_true(Error.is(err))
  assert.equal("validation", err.kind)
  return err
end

-- Collect everything `rows.open` yields.
local function stream(path, opts)
  local iter, reader = rows.open(path, opts)
  assert(iter, reader)
  local got, numbers = {}, {}
  for row, n in iter, reader do
    got[#got + 1] = row
    numbers[#numbers + 1] = n
  end
  return got, numbers, reader
end

teardown(function()
  for _, p in ipairs(tmpfiles) do os.remove(p) end
end)

describe("modkie.batch.rows.parse_csv", function()
  it("maps each data row by the header's column names", function()
    local got, meta = rows.parse_csv("prompt,color\na cat,red\na dog,blue\n")
    assert.same({ { prompt = "a cat", color = "red" }, { prompt = "a dog", color = "blue" } }, got)
    assert.same({ "prompt", "color" }, meta.columns)
    assert.same({ 2, 3 }, meta.lines)
    assert.equal("csv", meta.format)
  end)

  it("adds no extra fields to rows", function()
    local got = rows.parse_csv("a\n1\n")
    local keys = {}
    for k in pairs(got[1]) do keys[#keys + 1] = k end
    assert.same({ "a" }, keys)
  end)

  it("reads quoted fields with separators, doubled quotes and newlines", function()
    local text = 'a,b,c\n"x, y","say ""hi""","line1\nline2"\n"","""",plain\n'
    local got, meta = rows.parse_csv(text)
    assert.same({ a = "x, y", b = 'say "hi"', c = "line1\nline2" }, got[1])
    assert.same({ a = "", b = '"', c = "plain" }, got[2])
    assert.same({ 2, 4 }, meta.lines)
  end)

  it("keeps CRLF inside quotes and strips CRLF line ends", function()
    local got = rows.parse_csv('a,b\r\n"1\r\n2",x\r\ny,z\r\n')
    assert.same({ { a = "1\r\n2", b = "x" }, { a = "y", b = "z" } }, got)
  end)

  it("accepts a missing trailing newline, and a last line ending in CR", function()
    assert.same({ { a = "1", b = "2" } }, (rows.parse_csv("a,b\n1,2")))
    assert.same({ { a = "1", b = "2" } }, (rows.parse_csv("a,b\r\n1,2\r")))
    assert.same({ { a = "1", b = "q" } }, (rows.parse_csv('a,b\n1,"q"')))
  end)

  it("drops a UTF-8 BOM", function()
    local got, meta = rows.parse_csv("\239\187\191name,n\nx,1\n")
    assert.same({ "name", "n" }, meta.columns)
    assert.same({ { name = "x", n = "1" } }, got)
  end)

  it("skips blank lines but counts them in line numbers", function()
    local got, meta = rows.parse_csv("\n\na,b\n\n1,2\r\n  \n\t\n3,4\n\n")
    assert.same({ { a = "1", b = "2" }, { a = "3", b = "4" } }, got)
    assert.same({ 5, 8 }, meta.lines)
  end)

  it("preserves spaces in values and trims header names", function()
    local got, meta = rows.parse_csv(" prompt , color\n  a cat  , red \n")
    assert.same({ "prompt", "color" }, meta.columns)
    assert.same({ prompt = "  a cat  ", color = " red " }, got[1])
  end)

  it("keeps empty cells as empty strings and leaves missing trailing fields absent", function()
    local got = rows.parse_csv("a,b,c\n1,,\n2\n,x\n")
    assert.same({ a = "1", b = "", c = "" }, got[1])
    assert.same({ a = "2" }, got[2])
    assert.is_nil(got[2].b)
    assert.same({ a = "", b = "x" }, got[3])
  end)

  it("keeps UTF-8 text and a lone CR inside a field", function()
    local got = rows.parse_csv("titre,x\nété ☀,a\rb\n")
    assert.same({ titre = "été ☀", x = "a\rb" }, got[1])
  end)

  it("returns no rows for empty text or a header alone", function()
    local got, meta = rows.parse_csv("")
    assert.same({}, got)
    assert.same({}, meta.columns)
    got, meta = rows.parse_csv("a,b\n")
    assert.same({}, got)
    assert.same({ "a", "b" }, meta.columns)
  end)

  it("takes ; and tab separators", function()
    assert.same({ { a = "1,5", b = "x;y" } }, (rows.parse_csv('a;b\n1,5;"x;y"\n', { separator = ";" })))
    assert.same({ { a = "1", b = "two words" } }, (rows.parse_csv("a\tb\n1\ttwo words\n", { separator = "\t" })))
    -- a letter or digit is that character, not a pattern class ("%a" is every letter)
    assert.same({ { hat = "cup", lid = "pot" } }, (rows.parse_csv("hatxlid\ncupxpot\n", { separator = "x" })))
    assert.same({ { k = "v w", z = "y" } }, (rows.parse_csv("k|z\nv w|y\n", { separator = "|" })))
  end)

  it("refuses a row with more fields than the header, naming row and line", function()
    local err = csv_err("a,b\n1,2\n\n3,4,5\n")
    assert.equal(2, err.row)
    assert.equal(4, err.line)
    assert.matches("row 2, line 4", err.message, 1, true)
    assert.matches("header has 2 columns", err.message, 1, true)
  end)

  it("refuses a quote never closed, naming the row and the line of the quote", function()
    local err = csv_err('a,b\n1,2\nx,"never closed\nmore\n')
    assert.equal(2, err.row)
    assert.equal(3, err.line)
    assert.equal(3, err.column)
    assert.equal("b", err.field)
    assert.matches("quote not closed", err.message)
  end)

  it("refuses a stray quote in an unquoted field", function()
    local err = csv_err('a,b\n1,2\n3,ab"c\n')
    assert.equal(2, err.row)
    assert.equal(3, err.line)
    assert.equal(5, err.column)
    assert.equal("b", err.field)
    assert.matches("quote inside an unquoted field", err.message)
  end)

  it("refuses text after a closing quote, on the right physical line", function()
    local err = csv_err('a,b\n"multi\nline"x,2\n')
    assert.equal(1, err.row)
    assert.equal(3, err.line)
    assert.equal(6, err.column)
    assert.matches("after a closing quote", err.message)
  end)

  it("refuses duplicate and empty header names, naming them", function()
    local err = csv_err("prompt,color, prompt\n1,2,3\n")
    assert.equal(1, err.line)
    assert.equal("prompt", err.field)
    assert.matches("duplicate column name 'prompt'", err.message)
    err = csv_err("a,,c\n")
    assert.matches("empty column name in the header %(column 2%)", err.message)
    err = csv_err("\n\na,  \n")
    assert.equal(3, err.line)
  end)

  it("refuses a bad header record", function()
    local err = csv_err('a,"b\n')
    assert.equal(1, err.line)
    assert.is_nil(err.row)
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() rows.parse_csv(42) end, "bad argument #1 to 'parse_csv' (string expected, got number)")
    assert.has_error(function() rows.parse_csv("a", { separator = ";;" }) end)
    assert.has_error(function() rows.parse_csv("a", { separator = '"' }) end)
  end)

  it("parses 10,000 rows", function()
    local lines = { "id,prompt,color,style,ratio,duration,resolution,note" }
    for i = 1, 10000 do
      lines[#lines + 1] = i .. ',"a cat, number ' .. i .. '",red,noir,16:9,5,720p,' .. (i % 3 == 0 and '"x\ny"' or "n")
    end
    local got, meta = rows.parse_csv(table.concat(lines, "\r\n"))
    assert.equal(10000, #got)
    assert.equal("a cat, number 10000", got[10000].prompt)
    assert.equal("x\ny", got[9999].note)
    assert.equal(10000 + 1 + 3333, meta.lines[10000])
  end)
end)

describe("modkie.batch.rows.parse_jsonl", function()
  it("keeps JSON types and drops nulls", function()
    local got, meta = rows.parse_jsonl(
      '{"prompt":"a cat","n":5,"f":1.5,"ok":true,"no":false,"gone":null,"tags":["a","b"]}\n')
    local r = got[1]
    assert.equal("a cat", r.prompt)
    assert.equal(5, r.n)
    assert.equal("number", type(r.n))
    assert.equal(1.5, r.f)
    assert.is_true(r.ok)
    assert.is_false(r.no)
    assert.is_nil(r.gone)
    assert.same({ "a", "b" }, r.tags)
    assert.same({ "f", "n", "no", "ok", "prompt", "tags" }, meta.columns)
    assert.equal("jsonl", meta.format)
  end)

  it("skips blank lines, takes CRLF, and numbers rows and lines", function()
    local got, meta = rows.parse_jsonl('\n{"a":1}\r\n   \n{"a":2}')
    assert.same({ { a = 1 }, { a = 2 } }, got)
    assert.same({ 2, 4 }, meta.lines)
  end)

  it("accepts an empty object and empty text", function()
    assert.same({ {} }, (rows.parse_jsonl("{}\n")))
    assert.same({}, (rows.parse_jsonl("")))
  end)

  it("refuses invalid JSON naming the line and row", function()
    local err = jsonl_err('{"a":1}\n\n{"a":\n')
    assert.equal(3, err.line)
    assert.equal(2, err.row)
    assert.matches("line 3", err.message)
    assert.matches("invalid JSON", err.message)
  end)

  it("refuses JSON that is not an object", function()
    for _, line in ipairs({ "[1,2]", "[]", "5", '"text"', "null", "true" }) do
      local err = jsonl_err('{"a":1}\n' .. line .. "\n")
      assert.equal(2, err.line, line)
      assert.matches("not a JSON object", err.message)
    end
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() rows.parse_jsonl(nil) end,
      "bad argument #1 to 'parse_jsonl' (string expected, got nil)")
  end)
end)

describe("modkie.batch.rows.read", function()
  it("returns a Lua table of rows as is", function()
    local src = { { prompt = "a" }, { prompt = "b" } }
    local got, meta = rows.read(src)
    assert.equal(src, got)
    assert.equal("table", meta.format)
  end)

  it("refuses a Lua list with a non-table row, naming it", function()
    local got, err = rows.read({ { a = 1 }, "oops" })
    assert.is_nil(got)
    assert.equal(2, err.row)
    assert.matches("row 2 is a string", err.message)
  end)

  it("reads a .csv file", function()
    local path = tmpfile(".csv", "a,b\n1,2\n")
    local got, meta = rows.read(path)
    assert.same({ { a = "1", b = "2" } }, got)
    assert.equal(path, meta.path)
  end)

  it("reads .jsonl and .ndjson files", function()
    assert.same({ { a = 1 } }, (rows.read(tmpfile(".jsonl", '{"a":1}\n'))))
    assert.same({ { a = 2 } }, (rows.read(tmpfile(".NDJSON", '{"a":2}\n'))))
  end)

  it("reads a .tsv file with tabs", function()
    assert.same({ { a = "x,y", b = "2" } }, (rows.read(tmpfile(".tsv", "a\tb\nx,y\t2\n"))))
  end)

  it("lets opts.format override the extension", function()
    assert.same({ { a = "1" } }, (rows.read(tmpfile(".txt", "a\n1\n"), { format = "csv" })))
    assert.same({ { a = 1 } }, (rows.read(tmpfile(".csv", '{"a":1}\n'), { format = "jsonl" })))
  end)

  it("names the file in errors", function()
    local path = tmpfile(".csv", "a\n1,2\n")
    local _, err = rows.read(path)
    assert.equal(path, err.path)
    assert.equal(1, err.row)
    assert.matches(path, err.message, 1, true)
  end)

  it("refuses an unknown extension and a missing file", function()
    local _, err = rows.read(tmpfile(".txt", "a\n"))
    assert.matches("cannot tell the format", err.message)
    local _, err2 = rows.read("/nonexistent/dir/rows.csv")
    assert.equal("validation", err2.kind)
    assert.matches("cannot open", err2.message)
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() rows.read(5) end, "bad argument #1 to 'read' (table or string expected, got number)")
    assert.has_error(function() rows.read("x.csv", { format = "xml" }) end)
  end)
end)

describe("modkie.batch.rows.open", function()
  it("streams CSV rows with their row numbers", function()
    local path = tmpfile(".csv", '\239\187\191id,text\r\n\r\n1,"multi\r\nline, with comma"\r\n2,plain\r\n')
    local got, numbers, reader = stream(path)
    assert.same({ { id = "1", text = "multi\r\nline, with comma" }, { id = "2", text = "plain" } }, got)
    assert.same({ 1, 2 }, numbers)
    assert.same({ "id", "text" }, reader.columns)
  end)

  it("streams JSON Lines", function()
    local got, numbers = stream(tmpfile(".ndjson", '{"a":1}\n\n{"a":"x","b":null}\n'))
    assert.same({ { a = 1 }, { a = "x" } }, got)
    assert.same({ 1, 2 }, numbers)
  end)

  it("gives rows, numbers and lines from reader:next, then nil", function()
    local _, reader = rows.open(tmpfile(".csv", "a\n\nx\ny\n"))
    assert.same({ { a = "x" }, 1, 3 }, { reader:next() })
    assert.same({ { a = "y" }, 2, 4 }, { reader:next() })
    assert.is_nil(reader:next())
    assert.is_nil(reader:next())
  end)

  it("returns bad data from reader:next as nil, err", function()
    local _, reader = rows.open(tmpfile(".csv", 'a,b\n1,2\n3,"open\nstill open\n'))
    assert.truthy(reader:next())
    local row, err = reader:next()
    assert.is_nil(row)
    assert.equal(2, err.row)
    assert.equal(3, err.line)
    assert.matches("quote not closed", err.message)
  end)

  it("raises the error object from a for loop on bad data", function()
    local path = tmpfile(".jsonl", '{"a":1}\nnot json\n')
    local seen = 0
    local ok, err = pcall(function()
      for _ in rows.open(path) do seen = seen + 1 end
    end)
    assert.is_false(ok)
    assert.equal(1, seen)
    assert.is_true(Error.is(err))
    assert.equal(2, err.line)
  end)

  it("returns nil, err for a missing file or a bad header", function()
    local it1, err1 = rows.open("/nonexistent/rows.csv")
    assert.is_nil(it1)
    assert.matches("cannot open", err1.message)
    local it2, err2 = rows.open(tmpfile(".csv", "a,a\n1,2\n"))
    assert.is_nil(it2)
    assert.matches("duplicate column name 'a'", err2.message)
  end)

  -- fuzz finding csv/blank-cr: open skipped any line of blanks and CRs,
  -- read (like the docs) only blanks before a CRLF's CR: " \r " is data.
  it("regression: agrees with read on what a blank line is (a CR not at the line end is data)", function()
    for _, text in ipairs({ "h\n \r \nx\n", "h\n\r\r\nx\n", "h\n \t\r\n\r\nx\n", "\r\t\nx\n", "h\r\n\t \r" }) do
      local path = tmpfile(".csv", text)
      local want, meta = rows.read(path)
      local iter, reader = rows.open(path)
      if want == nil then
        assert.is_nil(iter, ("%q"):format(text))
        assert.equal(meta.message, reader.message)
      else
        local got = {}
        local lines = {}
        while true do
          local row, _, line = reader:next()
          if not row then break end
          got[#got + 1], lines[#lines + 1] = row, line
        end
        assert.same(want, got, ("%q"):format(text))
        assert.same(meta.lines, lines, ("%q"):format(text))
      end
    end
    assert.same({ { h = " \r " }, { h = "x" } }, (stream(tmpfile(".csv", "h\n \r \nx\n"))))
  end)

  it("streams 10,000 rows", function()
    local lines = { "id,prompt" }
    for i = 1, 10000 do lines[#lines + 1] = i .. ',"p ' .. i .. '"' end
    local got, numbers = stream(tmpfile(".csv", table.concat(lines, "\n") .. "\n"))
    assert.equal(10000, #got)
    assert.equal("p 10000", got[10000].prompt)
    assert.equal(10000, numbers[10000])
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() rows.open({}) end, "bad argument #1 to 'open' (string expected, got table)")
  end)
end)

-- rows.open takes the file's encoding as rows.read and the CLI do (issue 11):
-- a Windows-1252 CSV from a spreadsheet goes out as UTF-8 JSON, and without
-- the option its bytes are refused naming the row, line and byte offset.
describe("modkie.batch.rows.open with encoding", function()
  local helper = require "spec.helper"
  local m
  setup(function() m = helper.mock({ "--job-seconds", "0.1" }) end)
  teardown(function() m.stop() end)

  local CP1252 = "subject,mood\nflat white,calm\ncaf\233 cr\232me,\147bright\148 \128 5\n"

  it("converts each line from cp1252: the gateway gets UTF-8 text", function()
    local path = tmpfile(".csv", CP1252)
    local c = helper.client(m)
    finally(function() c:close() end)
    local jobs, seen = {}, {}
    for row, n in rows.open(path, { encoding = "cp1252" }) do
      seen[n] = row
      local prompt = ("%s, %s [%d %d]"):format(row.subject, row.mood, os.time(), n)
      jobs[n] = assert(c:submit("kling/kling-3-0", { prompt = prompt }))
    end
    assert.equal("caf\195\169 cr\195\168me", seen[2].subject)
    assert.equal("\226\128\156bright\226\128\157 \226\130\172 5", seen[2].mood)
    for _, job in ipairs(jobs) do assert(job:accepted(10)) end
    local _, tasks = m.request("GET", "/__mock/tasks")
    local found = false
    for _, t in ipairs(tasks) do
      if t.taskId == jobs[2].id then
        found = true
        assert.matches("^caf\195\169 cr\195\168me, \226\128\156bright\226\128\157 \226\130\172 5 ", t.prompt)
      end
    end
    assert.is_true(found, "the emulator holds the task")
    -- latin1 too; names in any case
    local _, reader = rows.open(tmpfile(".csv", "a\nna\239ve\n"), { encoding = "LATIN1" })
    assert.equal("na\195\175ve", reader:next().a)
  end)

  it("without it, the same file stops at the bad byte: row, line and offset named, nothing to send", function()
    local path = tmpfile(".csv", CP1252)
    local _, reader = rows.open(path)
    assert.equal("flat white", reader:next().subject)
    local row, err = reader:next()
    assert.is_nil(row)
    assert.equal("validation", err.kind)
    assert.equal(2, err.row)
    assert.equal(3, err.line)
    assert.equal(#"subject,mood\nflat white,calm\ncaf", err.offset)
    assert.matches("row 2, line 3: byte 0xE9 at offset 32 of the file is not UTF-8", err.message, 1, true)
    assert.matches('encoding = "cp1252"', err.message, 1, true)
    assert.is_nil(reader:next())
    -- the loop form raises it
    local ok, raised = pcall(function() for _ in rows.open(path) do end end)
    assert.is_false(ok)
    assert.equal(2, raised.row)
    -- JSON Lines and the header line too
    _, reader = rows.open(tmpfile(".jsonl", '{"a":"ok"}\n{"a":"caf\233"}\n'))
    assert.equal("ok", reader:next().a)
    row, err = reader:next()
    assert.is_nil(row)
    assert.equal(2, err.row)
    local iter
    iter, err = rows.open(tmpfile(".csv", "caf\233\nx\n"))
    assert.is_nil(iter)
    assert.equal(1, err.line)
    -- an unknown encoding is refused, named
    iter, err = rows.open(path, { encoding = "ebcdic" })
    assert.is_nil(iter)
    assert.matches("unknown encoding 'ebcdic'", err.message, 1, true)
  end)
end)

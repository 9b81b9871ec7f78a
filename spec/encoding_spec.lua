-- Text encodings: UTF-8 checked byte by byte, Windows-1252 and Latin-1 converted.
local encoding = require "modkie.encoding"
local rows = require "modkie.batch.rows"
local helper = require "spec.helper"

describe("modkie.encoding", function()
  it("finds the first byte that is not UTF-8", function()
    assert.is_nil(encoding.invalid("plain ascii"))
    assert.is_nil(encoding.invalid("caf\195\169 \226\130\172 \240\159\166\138")) -- é € 🦊
    assert.equal(4, encoding.invalid("caf\233"))                  -- Latin-1 é
    assert.equal(1, encoding.invalid("\192\175"))                 -- overlong "/"
    assert.equal(1, encoding.invalid("\224\128\175"))             -- overlong, 3 bytes
    assert.equal(1, encoding.invalid("\237\160\128"))             -- a surrogate
    assert.equal(1, encoding.invalid("\244\144\128\128"))         -- past U+10FFFF
    assert.equal(3, encoding.invalid("ab\195"))                   -- cut short
    assert.equal(2, encoding.invalid("a\128"))                    -- a lone continuation byte
  end)

  it("converts Windows-1252 and Latin-1 to UTF-8", function()
    assert.equal("caf\195\169 \226\130\172 \226\128\156x\226\128\157",
      encoding.to_utf8("caf\233 \128 \147x\148", "cp1252"))
    assert.equal("\194\128", encoding.to_utf8("\128", "latin1"))
    assert.equal("ok", encoding.to_utf8("ok", "Windows-1252"))
    local s, at, why = encoding.to_utf8("a\129", "cp1252")
    assert.is_nil(s)
    assert.equal(2, at)
    assert.equal("not a Windows-1252 character", why)
    assert.is_false(encoding.known("ebcdic"))
  end)

  it("names the path of a string that is not UTF-8 in a table", function()
    assert.same({ "tags.2", 0xE9, 1 }, { encoding.find_invalid({ prompt = "ok", tags = { "a", "x\233" } }) })
    assert.is_nil(encoding.find_invalid({ prompt = "caf\195\169" }))
  end)

  it("lets rows.read refuse a UTF-16 file and convert a Latin-1 one", function()
    local dir = helper.tmpdir()
    finally(function() helper.rmdir(dir) end)
    helper.write_file(dir .. "/u16.csv", "\255\254a\0,\0b\0\n\0")
    local _, err = rows.read(dir .. "/u16.csv")
    assert.matches("the file is UTF%-16", err.message)
    helper.write_file(dir .. "/l1.csv", "name\ncaf\233\n")
    local r = assert(rows.read(dir .. "/l1.csv", { encoding = "latin1" }))
    assert.equal("caf\195\169", r[1].name)
    helper.write_file(dir .. "/l1.jsonl", '{"name":"caf\233"}\n')
    _, err = rows.read(dir .. "/l1.jsonl")
    assert.equal(1, err.row)
    assert.equal("name", err.field)
    assert.equal(12, err.offset)
  end)
end)

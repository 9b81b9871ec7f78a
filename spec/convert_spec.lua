-- Text to typed values (CSV cells, --set), and the rows' fingerprints.
local convert = require "modkie.batch.convert"
local fingerprint = require "modkie.batch.fingerprint"

describe("modkie.batch.convert", function()
  it("converts numbers, integers and booleans from text, naming the bad value", function()
    assert.equal(5, convert.value("number", "5"))
    assert.equal(7.5, convert.value("number", " 7.5 "))
    assert.equal(-0.25, convert.value("number", "-.25"))
    assert.equal(1500, convert.value("number", "1.5e3"))
    for _, bad in ipairs({ "five", "0x10", "nan", "inf", "1,5", "5s", "--1" }) do
      local v, why = convert.value("number", bad)
      assert.is_nil(v, bad)
      assert.equal('"' .. bad .. '" is not a number', why)
    end
    assert.equal(3, convert.value("integer", "3"))
    assert.equal('"3.5" is not a whole number', select(2, convert.value("integer", "3.5")))
    for _, yes in ipairs({ "true", "TRUE", "yes", "1", "on", " Yes " }) do
      assert.is_true(convert.value("boolean", yes))
    end
    for _, no in ipairs({ "false", "no", "0", "off", "False" }) do assert.is_false(convert.value("boolean", no)) end
    assert.matches("is not a boolean", select(2, convert.value("boolean", "maybe")))
  end)

  it("decodes JSON for table fields, keeps strings, and treats an empty cell as not set", function()
    assert.same({ a = { 1, 2 } }, convert.value("table", '{"a":[1,2]}'))
    assert.matches("is not a JSON object or array", select(2, convert.value("table", "[1,")))
    assert.equal("  spaced  ", convert.value("string", "  spaced  "))
    assert.is_nil(convert.value("number", ""))
    assert.is_nil(select(2, convert.value("number", "")))
    assert.is_nil(convert.value("number", nil))
    assert.equal(12, convert.value("string", 12), "typed values pass through for validation to judge")
    assert.equal("x", convert.value(nil, "x"))
    local _, why = convert.value("number", ("a"):rep(80))
    assert.matches('^"' .. ("a"):rep(37) .. '%.%.%." is not a number$', why)
  end)

  it("reads raw JSON values", function()
    assert.equal(5, convert.json("5"))
    assert.equal("s", convert.json('"s"'))
    assert.is_true(convert.json("true"))
    assert.matches("is not valid JSON", select(2, convert.json("{")))
  end)
end)

describe("modkie.batch.fingerprint", function()
  it("is 16 hex digits, the same whatever the key order or number subtype", function()
    local a = fingerprint.of({ "m", { prompt = "x", duration = 5, audio = true } })
    assert.matches("^%x+$", a)
    assert.equal(16, #a)
    local b = fingerprint.of({ "m", { audio = true, duration = 5.0, prompt = "x" } })
    assert.equal(a, b)
  end)

  it("changes with any value, key or type", function()
    local base = fingerprint.of({ "m", { prompt = "x", duration = 5 } })
    local others = {
      fingerprint.of({ "m", { prompt = "x ", duration = 5 } }),
      fingerprint.of({ "m", { prompt = "x", duration = 6 } }),
      fingerprint.of({ "m", { prompt = "x", duration = "5" } }),
      fingerprint.of({ "m", { prompt = "x", duration = 5, audio = false } }),
      fingerprint.of({ "n", { prompt = "x", duration = 5 } }),
      fingerprint.of({ "m", { prompt = "x", durations = 5 } }),
    }
    local seen = { [base] = true }
    for _, f in ipairs(others) do
      assert.is_nil(seen[f])
      seen[f] = true
    end
    -- length-prefixed strings: no two splits of the same text collide
    assert.are_not.equal(fingerprint.of({ "ab", "c" }), fingerprint.of({ "a", "bc" }))
  end)

  it("writes a canonical text that says what it hashes", function()
    assert.equal("[s1:m{s1:as3:xyzs1:bn5;]]", fingerprint.canonical({ "m", { b = 5, a = "xyz" } }))
    assert.equal("[n0.5;TF]", fingerprint.canonical({ 0.5, true, false }))
  end)
end)

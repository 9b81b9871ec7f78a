local template = require "modkie.batch.template"
local Error = require "modkie.error"
local cjson = require "cjson"

local render, compile, expand = template.render, template.compile, template.expand

-- Render and expect an error; return it.
local function render_err(text, vars, opts)
  local out, err = render(text, vars or {}, opts)
  assert.is_nil(out)
  assert.is_true(Error.is(err))
  assert.equal("validation", err.kind)
  return err
end

local function compile_err(text, opts)
  local fn, err = compile(text, opts)
  assert.is_nil(fn)
  assert.is_true(Error.is(err))
  assert.equal("validation", err.kind)
  return err
end

local function expand_err(text, opts)
  local out, err = expand(text, opts)
  assert.is_nil(out)
  assert.is_true(Error.is(err))
  assert.equal("validation", err.kind)
  return err
end

describe("modkie.batch.template.render", function()
  describe("variables", function()
    it("substitutes names, with or without spaces inside the braces", function()
      assert.equal("Hello Ada and Bob!", render("Hello {{name}} and {{ other }}!", { name = "Ada", other = "Bob" }))
    end)

    it("looks up dotted names through nested tables", function()
      assert.equal("a red car", render("a {{product.color}} car", { product = { color = "red" } }))
      assert.equal("deep", render("{{a.b.c}}", { a = { b = { c = "deep" } } }))
    end)

    it("indexes lists with a numeric segment", function()
      assert.equal("y", render("{{items.2}}", { items = { "x", "y" } }))
      assert.equal("a=b;c=d;", render("{{#pairs}}{{1}}={{2}};{{/pairs}}", { pairs = { { "a", "b" }, { "c", "d" } } }))
    end)

    it("formats numbers without a trailing .0 and booleans as words", function()
      assert.equal("5 5 0.5 -3 true false 1e+20",
        render("{{a}} {{b}} {{c}} {{d}} {{t}} {{f}} {{big}}",
          { a = 5, b = 5.0, c = 0.5, d = -3.0, t = true, f = false, big = 1e20 }))
    end)

    it("keeps strings as they are, with no HTML escaping", function()
      assert.equal([[<b> & "q" 'x']], render("{{s}}", { s = [[<b> & "q" 'x']] }))
    end)

    it("accepts the Mustache triple and ampersand forms as plain variables", function()
      assert.equal("<a> <a>", render("{{{s}}} {{& s}}", { s = "<a>" }))
    end)

    it("reports a missing variable naming it, with line and column", function()
      local err = render_err("first line\nA {{ product.color }} car", { product = {} })
      assert.equal("product.color", err.field)
      assert.equal(2, err.line)
      assert.equal(3, err.column)
      assert.matches("missing variable 'product.color' (line 2, column 3)", err.message, 1, true)
    end)

    it("names the row given in opts.row", function()
      local err = render_err("{{x}}", {}, { row = 7 })
      assert.equal(7, err.row)
      assert.matches("row 7, line 1, column 1", err.message, 1, true)
      assert.matches("row=7", tostring(err), 1, true)
    end)

    it("counts columns in UTF-8 characters", function()
      local err = render_err("héé {{x}}", {})
      assert.equal(5, err.column)
    end)

    it("renders a missing variable as empty when strict is false", function()
      assert.equal("a  b", render("a {{x}} b", {}, { strict = false }))
      assert.equal("a  b", render("a {{x.y}} b", { x = "str" }, { strict = false }))
    end)

    it("treats cjson.null as missing", function()
      local err = render_err("{{x}}", { x = cjson.null })
      assert.equal("x", err.field)
      assert.equal("d", render("{{x | default \"d\"}}", { x = cjson.null }))
    end)

    it("refuses a table where text is expected, naming the variable", function()
      local err = render_err("a {{product}} b", { product = { color = "red" } })
      assert.equal("product", err.field)
      assert.matches("variable 'product' is a table", err.message, 1, true)
    end)

    it("renders a template with no tags, and no vars at all", function()
      assert.equal("plain", render("plain"))
      assert.equal("", render(""))
    end)
  end)

  describe("filters", function()
    it("applies upper, lower and trim", function()
      assert.equal("RED|blue|x y",
        render("{{a | upper}}|{{b|lower}}|{{c | trim}}", { a = "Red", b = "BLUE", c = "  x y \n" }))
    end)

    it("chains filters left to right", function()
      assert.equal("HI", render("{{a | trim | upper}}", { a = "  hi  " }))
      assert.equal("FALLBACK", render('{{a | default "fallback" | upper}}', {}))
      assert.equal("", render('{{a | upper | default "x" | lower | trim}}', { a = "   " }))
    end)

    it("uses default when the variable is missing or empty, not otherwise", function()
      assert.equal("cat", render('{{animal | default "cat"}}', {}))
      assert.equal("cat", render('{{animal | default "cat"}}', { animal = "" }))
      assert.equal("dog", render('{{animal | default "cat"}}', { animal = "dog" }))
      assert.equal("false", render('{{flag | default "x"}}', { flag = false }))
      assert.equal("0", render('{{n | default "x"}}', { n = 0 }))
    end)

    it("unescapes \\\" and \\\\ in a default argument, and allows | inside it", function()
      assert.equal([[say "hi" \ a|b]], render([[{{x | default "say \"hi\" \\ a|b"}}]], {}))
    end)

    it("still refuses a table value when a default is given", function()
      local err = render_err('{{t | default "x"}}', { t = {} })
      assert.equal("t", err.field)
    end)

    it("reports an unknown filter at compile time, naming it", function()
      local err = compile_err("ok\n{{#never}}{{name | shout}}{{/never}}")
      assert.matches("unknown filter 'shout'", err.message, 1, true)
      assert.equal("shout", err.filter)
      assert.equal(2, err.line)
      assert.equal(11, err.column)
    end)

    it("reports bad filter syntax with line and column", function()
      for _, text in ipairs({
        "{{name |}}", "{{name | default}}", "{{name | default x}}", '{{name | default "x}}',
        '{{name | upper "x"}}', "{{name upper}}", '{{name | default "a" "b"}}', "{{ | upper}}",
        '{{name | default "a"b}}', "{{name | 9up}}",
      }) do
        local err = compile_err("  " .. text)
        assert.equal(1, err.line, text)
        assert.equal(3, err.column, text)
      end
    end)
  end)

  describe("sections", function()
    it("renders nothing for false, nil, missing, empty list and empty string", function()
      local t = "[{{#x}}shown{{/x}}]"
      assert.equal("[]", render(t, { x = false }))
      assert.equal("[]", render(t, {}))
      assert.equal("[]", render(t, { x = {} }))
      assert.equal("[]", render(t, { x = "" }))
      assert.equal("[]", render(t, { x = cjson.null }))
    end)

    it("renders once for true", function()
      assert.equal("[shown]", render("[{{#x}}shown{{/x}}]", { x = true }))
    end)

    it("renders once per list element with its fields on the context", function()
      local vars = { who = "Ann", items = { { name = "a" }, { name = "b", who = "Bo" } } }
      assert.equal("a/Ann;b/Bo;", render("{{#items}}{{name}}/{{who}};{{/items}}", vars))
    end)

    it("exposes scalar list elements as {{.}}", function()
      assert.equal("1, 2.5, x, ", render("{{#xs}}{{.}}, {{/xs}}", { xs = { 1, 2.5, "x" } }))
      assert.equal("A B ", render("{{#xs}}{{. | upper}} {{/xs}}", { xs = { "a", "b" } }))
    end)

    it("pushes a non-list table once", function()
      assert.equal("red car", render("{{#p}}{{color}} {{kind}}{{/p}}", { p = { color = "red" }, kind = "car" }))
    end)

    it("renders a non-empty string or number once, as {{.}}", function()
      assert.equal("in noir style", render("{{#style}}in {{.}} style{{/style}}", { style = "noir" }))
      assert.equal("n=0", render("{{#n}}n={{.}}{{/n}}", { n = 0 }))
    end)

    it("nests sections and looks up outer names", function()
      local vars = { groups = { { g = "A", xs = { "1", "2" } }, { g = "B", xs = {} } }, sep = "-" }
      assert.equal("A:1-2-|B:|",
        render("{{#groups}}{{g}}:{{#xs}}{{.}}{{sep}}{{/xs}}|{{/groups}}", vars))
    end)

    it("takes dotted names in sections", function()
      assert.equal("yes", render("{{#a.b}}yes{{/a.b}}", { a = { b = true } }))
    end)

    it("renders inverted sections exactly when the section would not", function()
      local t = "{{^x}}none{{/x}}"
      assert.equal("none", render(t, {}))
      assert.equal("none", render(t, { x = false }))
      assert.equal("none", render(t, { x = {} }))
      assert.equal("none", render(t, { x = "" }))
      assert.equal("", render(t, { x = true }))
      assert.equal("", render(t, { x = { 1 } }))
      assert.equal("", render(t, { x = { k = 1 } }))
      assert.equal("", render(t, { x = "s" }))
    end)

    it("does not treat a missing section variable as an error, even when strict", function()
      assert.equal("", render("{{#x}}a{{/x}}{{^y.z}}{{/y.z}}", {}, { strict = true }))
    end)

    it("still reports a missing variable inside a rendered section", function()
      local err = render_err("{{#xs}}\n  {{name}}{{/xs}}", { xs = { { other = 1 } } })
      assert.equal("name", err.field)
      assert.equal(2, err.line)
      assert.equal(3, err.column)
    end)

    it("renders comments as nothing", function()
      assert.equal("ab", render("a{{! a comment with {{ braces\n and lines }}b", {}))
    end)

    it("removes standalone section and comment lines", function()
      local t = "Items:\n  {{#xs}}\n  - {{.}}\n  {{/xs}}\n{{! note }}\n{{^xs}}\nnone\n{{/xs}}\nend"
      assert.equal("Items:\n  - a\n  - b\nend", render(t, { xs = { "a", "b" } }))
      assert.equal("Items:\nnone\nend", render(t, { xs = {} }))
    end)

    it("removes standalone lines with CRLF endings and at the end of the text", function()
      assert.equal("a\r\nx\r\n", render("a\r\n{{#t}}\r\nx\r\n{{/t}}", { t = true }))
    end)

    it("keeps lines where a section tag shares the line with text", function()
      assert.equal("a x b\n", render("a {{#t}}x{{/t}} b\n", { t = true }))
      assert.equal("x\n", render("{{#t}}x{{/t}}\n", { t = true }))
    end)
  end)

  describe("escapes", function()
    it("renders \\{{ as a literal {{", function()
      assert.equal("use {{name}} here", render("use \\{{name}} here", { name = "X" }))
    end)

    it("renders \\\\{{ as a backslash then a tag", function()
      assert.equal("a\\X", render("a\\\\{{name}}", { name = "X" }))
      assert.equal("a\\{{name}}", render("a\\\\\\{{name}}", { name = "X" }))
    end)

    it("leaves other backslashes and lone braces alone", function()
      assert.equal("C:\\dir {x} }} {", render("C:\\dir {x} }} {", {}))
    end)
  end)

  describe("syntax errors", function()
    it("reports an unclosed tag at the tag", function()
      local err = compile_err("line\nab {{name and more")
      assert.equal(2, err.line)
      assert.equal(4, err.column)
      assert.matches("unclosed tag", err.message)
      assert.matches("(line 2, column 4)", err.message, 1, true)
    end)

    it("reports an unclosed tag followed by another tag", function()
      local err = compile_err("{{a {{b}}")
      assert.equal(1, err.column)
      assert.matches("unclosed tag", err.message)
    end)

    it("reports a mismatched closing tag at the closing tag", function()
      local err = compile_err("{{#a}}\nx {{/b}}")
      assert.equal(2, err.line)
      assert.equal(3, err.column)
      assert.matches("section 'a' (opened at line 1, column 1) closed by {{/b}}", err.message, 1, true)
    end)

    it("reports a section never closed at its opening tag", function()
      local err = compile_err("x\n  {{^a}} y")
      assert.equal(2, err.line)
      assert.equal(3, err.column)
      assert.matches("never closed", err.message)
    end)

    it("reports a closing tag with nothing open", function()
      local err = compile_err("a {{/a}}")
      assert.equal(3, err.column)
      assert.matches("without an open section", err.message)
    end)

    it("reports empty tags and bad names", function()
      assert.equal(2, compile_err("x{{}}").column)
      assert.matches("empty tag name", compile_err("{{  }}").message)
      assert.matches("empty section name", compile_err("{{#}}{{/}}").message)
      assert.matches("bad variable name", compile_err("{{a..b}}").message)
      assert.matches("filters are not allowed", compile_err("{{#a | upper}}{{/a}}").message)
    end)

    it("refuses partials and delimiter changes", function()
      assert.matches("partials", compile_err("{{> other}}").message)
      assert.matches("delimiter", compile_err("{{=<% %>=}}").message)
    end)

    -- like expand/deep-nesting (fuzz finding): rendering sections nested
    -- 100,000 deep in a list raised "stack overflow" out of the renderer
    it("regression: refuses sections nested more than 200 deep, at the 201st", function()
      local deep = ("{{#a}}"):rep(100000) .. "x" .. ("{{/a}}"):rep(100000)
      local err = compile_err("\n" .. deep)
      assert.equal(2, err.line)
      assert.equal(6 * 200 + 1, err.column)
      assert.equal("a", err.field)
      assert.matches("sections nested more than 200 deep", err.message, 1, true)
      assert.matches("sections nested more than 200 deep", render_err(deep, { a = { 1 } }).message, 1, true)
      local ok = ("{{#a}}"):rep(200) .. "{{.}}" .. ("{{/a}}"):rep(200)
      assert.equal("1", render(ok, { a = { 1 } }))
    end)

    it("reports syntax errors from render too, with the row and template name", function()
      local err = render_err("{{#a}}", {}, { row = 4, name = "prompt.txt" })
      assert.equal(4, err.row)
      assert.equal("prompt.txt", err.template)
      assert.matches("^template prompt.txt: ", err.message)
    end)
  end)

  describe("arguments", function()
    it("raises on wrong argument types", function()
      assert.has_error(function() render(42, {}) end, "bad argument #1 to 'render' (string expected, got number)")
      assert.has_error(function() render("x", "y") end, "bad argument #2 to 'render' (table expected, got string)")
      assert.has_error(function() compile({}) end, "bad argument #1 to 'compile' (string expected, got table)")
      local fn = assert(compile("{{x}}"))
      assert.has_error(function() fn(1) end, "bad argument #1 to 'template' (table expected, got number)")
    end)
  end)
end)

describe("modkie.batch.template.compile", function()
  it("returns a function that renders many variable sets", function()
    local fn = assert(compile("{{#t}}{{a}}-{{b | upper}}{{/t}}"))
    assert.equal("function", type(fn))
    assert.equal("1-X", fn({ t = true, a = 1, b = "x" }))
    assert.equal("2-Y", fn({ t = true, a = 2, b = "y" }))
    assert.equal("", fn({ t = false }))
  end)

  it("takes strict and row at compile time, overridable per call", function()
    local fn = assert(compile("[{{x}}]", { strict = false, row = 1 }))
    assert.equal("[]", fn({}))
    local _, err = fn({}, { strict = true, row = 9 })
    assert.equal(9, err.row)
    local strict = assert(compile("[{{x}}]", { row = 3 }))
    local _, err2 = strict({})
    assert.equal(3, err2.row)
  end)

  it("is reusable after an error", function()
    local fn = assert(compile("{{#xs}}{{n}}{{/xs}}"))
    assert.is_nil((fn({ xs = { {} } })))
    assert.equal("12", fn({ xs = { { n = 1 }, { n = 2 } } }))
  end)

  it("compiles a large template and renders it repeatedly", function()
    local parts = {}
    for i = 1, 200 do parts[i] = "{{v" .. i .. "}}" end
    local fn = assert(compile(table.concat(parts, ",")))
    local vars = {}
    for i = 1, 200 do vars["v" .. i] = i end
    for _ = 1, 50 do
      local out = assert(fn(vars))
      assert.equal("1,2,3", out:sub(1, 5))
      assert.equal("199,200", out:sub(-7))
    end
  end)
end)

describe("modkie.batch.template.expand", function()
  it("lists every combination in order, first group slowest", function()
    assert.same({
      "red car on a beach", "red car on a street", "green car on a beach",
      "green car on a street", "blue car on a beach", "blue car on a street",
    }, expand("{red|green|blue} car on a {beach|street}"))
  end)

  it("expands nested groups", function()
    assert.same({ "a x", "a y", "b" }, expand("{a {x|y}|b}"))
    assert.same({ "1ac", "1ad", "1b", "2" }, expand("{1{a{c|d}|b}|2}"))
  end)

  it("allows empty alternatives", function()
    assert.same({ "big", "very big" }, expand("{|very }big"))
    assert.same({ "ab", "b" }, expand("{a|}b"))
  end)

  it("treats a group without | as a single option", function()
    assert.same({ "single" }, expand("{single}"))
    assert.same({ "" }, expand("{}"))
  end)

  it("returns the text itself when there are no groups", function()
    assert.same({ "plain" }, expand("plain"))
    assert.same({ "" }, expand(""))
  end)

  it("honours \\{ \\} \\| \\\\ escapes and a lone | outside groups", function()
    assert.same({ "{x} a|b c\\ {y|z}" }, expand("\\{x\\} a|b c\\\\ \\{y\\|z\\}"))
    assert.same({ "a|1", "b" }, expand("{a\\|1|b}"))
  end)

  it("leaves other backslashes as they are", function()
    assert.same({ "C:\\dir\\n" }, expand("C:\\dir\\n"))
  end)

  it("passes Mustache tags through untouched, filters and all", function()
    assert.same({ "{{x}} red {{y | default \"a\"}}", "{{x}} blue {{y | default \"a\"}}" },
      expand("{{x}} {red|blue} {{y | default \"a\"}}"))
    assert.same({ "a {{#s}}{{.}}{{/s}}", "b" }, expand("{a {{#s}}{{.}}{{/s}}|b}"))
    assert.same({ "{{{raw}}}" }, expand("{{{raw}}}"))
    assert.same({ "\\{{lit}}", "\\\\{{tag}}" }, expand("{\\{{lit}}|\\\\{{tag}}}"))
  end)

  it("reads {{ as a nested group when no }} closes it before another {", function()
    assert.same({ "red car", "blue car", "bike" }, expand("{{red|blue} car|bike}"))
  end)

  it("combines with render: expand first, then render each variant", function()
    local out = {}
    for i, variant in ipairs(assert(expand("{a|the} {{animal | upper}}"))) do
      out[i] = assert(render(variant, { animal = "cat" }))
    end
    assert.same({ "a CAT", "the CAT" }, out)
  end)

  it("combines with render: render first, then expand", function()
    local text = assert(render("{{{adj}}|very {{adj}}} dog", { adj = "big" }))
    assert.equal("{big|very big} dog", text)
    assert.same({ "big dog", "very big dog" }, expand(text))
  end)

  it("expands a group that starts with a tag before rendering", function()
    local out = {}
    for i, v in ipairs(assert(expand("{{{adj}}|very {{adj}}} dog"))) do out[i] = assert(render(v, { adj = "big" })) end
    assert.same({ "big dog", "very big dog" }, out)
  end)

  it("reports an unclosed group at its brace, with line and column", function()
    local err = expand_err("line one\nsome {red|{a|b} car")
    assert.equal(2, err.line)
    assert.equal(6, err.column)
    assert.matches("unclosed '{'", err.message)
  end)

  it("reports an unmatched } with line and column", function()
    local err = expand_err("ab}c")
    assert.equal(1, err.line)
    assert.equal(3, err.column)
    assert.matches("unmatched '}'", err.message)
  end)

  it("refuses more combinations than the limit, naming the count", function()
    local text = string.rep("{a|b|c|d|e|f|g|h|i|j}", 5) -- 100000 combinations
    local err = expand_err(text)
    assert.equal(100000, err.count)
    assert.matches("100000 combinations", err.message)
    assert.matches("limit of 10000", err.message)
    local err2 = expand_err("{a|b}{c|d}", { limit = 3 })
    assert.equal(4, err2.count)
    assert.equal(4, #assert(expand("{a|b}{c|d}", { limit = 4 })))
  end)

  -- fuzz finding expand/deep-nesting: 80,000 '{' raised "stack overflow"
  it("regression: refuses groups nested more than 200 deep with an error, not a raise", function()
    local err = expand_err("ab\n" .. ("{"):rep(80000))
    assert.equal(2, err.line)
    assert.equal(201, err.column)
    assert.matches("groups nested more than 200 deep (line 2, column 201)", err.message, 1, true)
    assert.matches("nested more than 200 deep", expand_err(("{x|"):rep(300) .. ("}"):rep(300)).message)
    assert.same({ ("a"):rep(200) }, expand(("{a"):rep(200) .. ("}"):rep(200)))
  end)

  it("does not overflow the count for huge expansions", function()
    local err = expand_err(string.rep("{a|b|c|d|e|f|g|h|i|j}", 400))
    assert.matches("combinations", err.message)
  end)

  describe("random picks", function()
    local text = "{red|green|blue} car on a {beach|street|hill|road}"

    it("returns N picks, each a valid combination", function()
      local all = {}
      for _, s in ipairs(assert(expand(text))) do all[s] = true end
      local picks = assert(expand(text, { random = 50, seed = 7 }))
      assert.equal(50, #picks)
      for _, p in ipairs(picks) do assert.is_true(all[p], p) end
    end)

    it("is reproducible for a seed, with the same picks on every Lua version", function()
      local a = assert(expand(text, { random = 5, seed = 42 }))
      assert.same(a, assert(expand(text, { random = 5, seed = 42 })))
      -- fixed expectation: the PRNG is pure arithmetic, identical on 5.1-5.4 and LuaJIT
      assert.same({
        "red car on a street", "red car on a street", "blue car on a hill",
        "red car on a street", "blue car on a road",
      }, a)
      assert.same({ "green car on a hill", "blue car on a road", "blue car on a road" },
        assert(expand(text, { random = 3, seed = "batch-1" })))
    end)

    it("differs between seeds and can repeat picks", function()
      local a = table.concat(assert(expand(text, { random = 20, seed = 1 })), ";")
      local b = table.concat(assert(expand(text, { random = 20, seed = 2 })), ";")
      assert.are_not.equal(a, b)
      local picks = assert(expand("{a|b}", { random = 20, seed = 3 }))
      local seen = {}
      for _, p in ipairs(picks) do seen[p] = (seen[p] or 0) + 1 end
      assert.is_true(seen.a > 1 and seen.b > 1)
    end)

    it("picks uniformly over all combinations", function()
      local counts = {}
      for _, p in ipairs(assert(expand("{a {x|y|z}|b}", { random = 3000, seed = 11 }))) do
        counts[p] = (counts[p] or 0) + 1
      end
      for _, k in ipairs({ "a x", "a y", "a z", "b" }) do
        assert.is_true(counts[k] > 600 and counts[k] < 900, k .. "=" .. tostring(counts[k]))
      end
    end)

    it("picks from expansions far over the limit", function()
      local picks = assert(expand(string.rep("{a|b|c|d|e|f|g|h|i|j}", 20), { random = 3, seed = 5 }))
      assert.equal(3, #picks)
      assert.equal(20, #picks[1])
    end)

    it("returns an empty list for random = 0 and refuses more picks than the limit", function()
      assert.same({}, assert(expand(text, { random = 0, seed = 1 })))
      local err = expand_err(text, { random = 11, limit = 10 })
      assert.equal(11, err.count)
    end)
  end)

  it("raises on wrong argument types", function()
    assert.has_error(function() expand(nil) end, "bad argument #1 to 'expand' (string expected, got nil)")
    assert.has_error(function() expand("x", 5) end, "bad argument #2 to 'expand' (table expected, got number)")
    assert.has_error(function() expand("x", { random = 1.5 }) end)
    assert.has_error(function() expand("x", { random = 1, seed = {} }) end)
  end)
end)

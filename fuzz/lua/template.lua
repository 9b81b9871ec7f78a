--- Fuzz harness: template.compile and the renderer it returns, and
-- template.render, on any template text with variables decoded from JSON.
-- Input: a flags byte, the template, a NUL byte, then the variables as JSON
-- (when they do not decode to an object, a fixed set is used).
-- Properties:
--  * nothing raises; a refusal is `nil, err` with a validation error that
--    has a line and a column (and `field`, a string, when a variable is named);
--  * render(text) gives what compile(text)(vars) gives, and rendering
--    twice gives the same text;
--  * a template with no "{{" renders as itself;
--  * a value is never read as template syntax: "<{{v}}>" with v = any
--    string renders as "<" .. v .. ">".
local template = require "modkie.batch.template"
local cjson = require("cjson.safe").new()
local F = require "fuzzutil"
local check, show = F.check, F.show

cjson.decode_max_depth(64)

local DEFAULT_VARS = {
  name = "Ada", n = 5, x = 1.5, yes = true, no = false, empty = "", null = cjson.null,
  list = { { a = "1" }, { a = "2", b = { c = "deep" } } }, words = { "red", "green" },
  product = { color = "blue", ["1"] = "one" }, items = { "first", "second" },
}

local function check_refusal(err, what)
  F.check_error(err, "validation", what)
  F.check_count(err.line, what .. ": err.line")
  F.check_count(err.column, what .. ": err.column")
  check(err.field == nil or type(err.field) == "string", "%s: err.field is %s", what, show(err.field))
end

return function(data)
  local r = F.reader(data)
  local flags = r.byte()
  local text = r.cut("\0")
  local vars = cjson.decode(r.rest())
  if type(vars) ~= "table" then vars = DEFAULT_VARS end
  local strict = flags % 2 == 0
  local opts = { strict = strict }
  if flags & 2 ~= 0 then opts.row, opts.name = 7, "fuzz.tmpl" end

  local fn, err = template.compile(text)
  local out, rerr = template.render(text, vars, opts)
  if not fn then
    check_refusal(err, "compile")
    check(out == nil, "render accepted what compile refused: %s", show(out))
    check_refusal(rerr, "render")
  else
    check(type(fn) == "function", "compile gave a %s", type(fn))
    local a, aerr = fn(vars, opts)
    local b = fn(vars, opts)
    if a == nil then
      check_refusal(aerr, "renderer")
      check(out == nil, "render gave %s where compile's renderer refused (%s)", show(out), tostring(aerr))
    else
      check(type(a) == "string", "renderer gave a %s", type(a))
      check(a == b, "two renders differ: %s / %s", show(a), show(b))
      check(out == a, "render %s, compile's renderer %s", show(out), show(a))
      if not text:find("{{", 1, true) then check(a == text, "no tag, yet %s became %s", show(text), show(a)) end
    end
  end

  local v = text
  local s, serr = template.render("<{{v}}>", { v = v })
  check(s == "<" .. v .. ">", "value %s rendered as %s (%s)", show(v), show(s), tostring(serr))
end

--- Helpers the Lua fuzz harnesses share: property checks that raise (the
-- runner turns a raise into a crash libFuzzer keeps), deep equality, and a
-- reader that takes values off the front of the input.
local M = {}

--- Raise with a formatted message when `cond` is false.
function M.check(cond, fmt, ...)
  if not cond then error("property broken: " .. fmt:format(...), 2) end
  return cond
end

--- Known findings (fuzz/findings/) not yet fixed in the code under test: a
-- harness skips the property `id` names while it is listed here, so that the
-- smoke run stays green and goes on finding new things. FUZZ_STRICT=1 (as
-- `make fuzz-findings` sets) checks them all. Remove an entry once fixed.
M.KNOWN = {}

function M.known(id)
  return M.KNOWN[id] ~= nil and os.getenv("FUZZ_STRICT") == nil
end

--- Deep equality of plain data (NaN equals NaN: the same input gives it on both sides).
function M.equal(a, b)
  if a == b then return true end
  if type(a) == "number" and type(b) == "number" then return a ~= a and b ~= b end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do
    if not M.equal(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

--- A compact rendering of a value, for messages.
function M.show(v, depth)
  depth = depth or 0
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) ~= "table" or depth > 3 then return tostring(v) end
  local parts = {}
  for k, x in pairs(v) do parts[#parts + 1] = "[" .. M.show(k, 9) .. "]=" .. M.show(x, depth + 1) end
  table.sort(parts)
  return "{" .. table.concat(parts, ",") .. "}"
end

--- A returned error must be a modkie.Error of the given kind with a message.
function M.check_error(err, kind, what)
  local Error = require "modkie.error"
  M.check(Error.is(err), "%s: error is not a modkie.Error: %s", what, M.show(err))
  M.check(err.kind == kind, "%s: error kind %s, want %s", what, tostring(err.kind), kind)
  M.check(type(err.message) == "string" and #err.message > 0, "%s: error without a message", what)
end

--- A positive integer (or nil when `optional`).
function M.check_count(v, what, optional)
  if v == nil and optional then return end
  M.check(math.type(v) == "integer" and v >= 1, "%s is %s, not a positive integer", what, tostring(v))
end

local keep = {}

--- A temporary file name, removed when the Lua state closes (the runner
-- closes it at exit).
function M.tmpname()
  local path = os.tmpname()
  keep[#keep + 1] = setmetatable({}, { __gc = function() os.remove(path) end })
  return path
end

--- Input reader: `r:byte()`, `r:rest()`, `r:cut(sep)` (up to the separator).
function M.reader(data)
  local pos = 1
  local r = {}
  function r.byte()
    local b = data:byte(pos) or 0
    pos = pos + 1
    return b
  end
  function r.cut(sep)
    local i = data:find(sep, pos, true)
    local s
    if i then
      s, pos = data:sub(pos, i - 1), i + #sep
    else
      s, pos = data:sub(pos), #data + 1
    end
    return s
  end
  function r.rest()
    local s = data:sub(pos)
    pos = #data + 1
    return s
  end
  return r
end

--- Whether `err` is rows.open refusing `text` because it is not UTF-8: its
-- default encoding is checked, while the in-memory parsers take bytes as they
-- are (rows.read checks them apart).
function M.not_utf8(text, err)
  return require("modkie.encoding").invalid(text) ~= nil and tostring(err):find("is not UTF-8", 1, true) ~= nil
end

return M

--- Turn text (a CSV cell, a `--set key=value`) into the type a model's
-- schema wants for a field: "5" -> 5 for a number, "yes" -> true for a
-- boolean, `[1,2]` -> a table for a table field.
--
-- Only strings are converted: a value that already has a type (from JSON
-- Lines, a Lua table) is passed through unchanged, and `models.validate`
-- says whether it fits. An empty string means "not set" (so an empty CSV
-- cell leaves the field to the batch's `input` defaults).
-- @module modkie.batch.convert

local json = require "modkie.json"

local convert = {}

local TRUE = { ["true"] = true, yes = true, ["1"] = true, on = true }
local FALSE = { ["false"] = true, no = true, ["0"] = true, off = true }

local trim = require("modkie.encoding").trim

local function quote(s)
  if #s > 40 then s = s:sub(1, 37) .. "..." end
  return '"' .. s .. '"'
end

-- A decimal number: digits with an optional fraction and exponent. Hex,
-- "nan" and "inf" are refused even though tonumber reads some of them:
-- a spreadsheet cell saying "inf" is a mistake, not a duration.
local function decimal(s)
  if not (s:match("^[+-]?%d+%.?%d*$") or s:match("^[+-]?%.%d+$")
    or s:match("^[+-]?%d+%.?%d*[eE][+-]?%d+$") or s:match("^[+-]?%.%d+[eE][+-]?%d+$")) then
    return nil
  end
  local n = tonumber(s)
  if not n or n ~= n or n == math.huge or n == -math.huge then return nil end
  return n
end

local CONVERT = {
  string = function(s) return s end,
  number = function(s)
    local n = decimal(trim(s))
    if n == nil then return nil, quote(s) .. " is not a number" end
    return n
  end,
  integer = function(s)
    local n = decimal(trim(s))
    if n == nil or n ~= math.floor(n) then return nil, quote(s) .. " is not a whole number" end
    return n
  end,
  boolean = function(s)
    local w = trim(s):lower()
    if TRUE[w] then return true end
    if FALSE[w] then return false end
    return nil, quote(s) .. " is not a boolean (use true/false, yes/no, 1/0 or on/off)"
  end,
  table = function(s)
    local v = json.decode(s)
    if type(v) ~= "table" then return nil, quote(s) .. " is not a JSON object or array" end
    return v
  end,
}

--- Convert `value` for a field of type `ftype` ("string", "number",
-- "integer", "boolean", "table"; nil: no schema, keep the text).
-- @treturn[1] any the converted value; nil when `value` is nil or "" (not set)
-- @treturn[2] nil
-- @treturn[2] string why it does not convert, e.g. `"five" is not a number`
function convert.value(ftype, value)
  if value == nil or value == "" then return nil end
  if type(value) ~= "string" then return value end
  local fn = CONVERT[ftype]
  if not fn then return value end
  local v, why = fn(value)
  if v == nil then return nil, why end
  return v
end

--- Decode a raw JSON value (`--set key:=JSON`): any JSON, including
-- numbers, booleans and strings.
-- @treturn[1] any
-- @treturn[2] nil
-- @treturn[2] string why it is not JSON
function convert.json(text)
  local v, err = json.decode(text)
  if v == nil then return nil, "is not valid JSON (" .. tostring(err) .. ")" end
  return v
end

return convert

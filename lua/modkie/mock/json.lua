--- JSON for the emulator: lua-cjson, plus the two things cjson 2.1.0 lacks
-- that the wire contract needs: an empty array that encodes as `[]` (cjson
-- writes `{}` for every empty table) and a decode that returns nil instead of
-- raising on bad input.
local cjson = require "cjson"

-- A private instance, so our settings never leak into the client's cjson.
local J = cjson.new and cjson.new() or cjson
-- `NaN`/`Infinity` are not JSON: refuse them on the way in, so a request
-- body can never hold a number we could not encode back.
if J.decode_invalid_numbers then J.decode_invalid_numbers(false) end

local json = {}

json.null = J.null

-- The marker survives cjson.encode as a unique string and is swapped for
-- `[]` afterwards; the plain-text search keeps the common case free.
local MARKER = "\0modkie-mock:empty-array\0"
local MARKER_ENCODED = J.encode(MARKER)
json.empty_array = MARKER

--- Encode `value`; `json.empty_array` anywhere inside becomes `[]`.
function json.encode(value)
  local text = J.encode(value)
  if text:find(MARKER_ENCODED, 1, true) then
    local pieces, from = {}, 1
    while true do
      local s, e = text:find(MARKER_ENCODED, from, true)
      if not s then break end
      pieces[#pieces + 1] = text:sub(from, s - 1)
      pieces[#pieces + 1] = "[]"
      from = e + 1
    end
    pieces[#pieces + 1] = text:sub(from)
    text = table.concat(pieces)
  end
  -- cjson writes "/" as "\/". Every "/" it writes is escaped, so each "\/"
  -- is exactly one such escape and can be undone; URLs then read plainly.
  if text:find("\\/", 1, true) then text = text:gsub("\\/", "/") end
  return text
end

--- A list that encodes as a JSON array even when empty.
function json.array(list)
  if next(list) == nil then return MARKER end
  return list
end

--- Decode `text`; returns the value, or nil and a message.
function json.decode(text)
  local ok, value = pcall(J.decode, text)
  if not ok then return nil, tostring(value) end
  return value
end

--- True when `t` is a decoded JSON object (a table that is not a list).
-- cjson 2.1.0 decodes `[]` and `{}` alike; both count as an object here.
function json.is_object(t)
  return type(t) == "table" and t[1] == nil
end

return json

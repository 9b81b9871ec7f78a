--- JSON for all of modkie: one lua-cjson instance, set up once, and the
-- workarounds lua-cjson 2.1.0 (Debian's) needs, in one place:
--   * `decode` never raises (`nil, message` instead), and refuses nesting
--     deeper than 64 (an untrusted body is not recursed into);
--   * `encode` writes "/" as "/" (cjson writes "\/": valid, but URLs then
--     read badly) and a list marked with `array` as `[]` when empty (cjson
--     writes `{}` for every empty table);
--   * `sorted` writes keys in order and escapes every control character
--     (stable output for people and diffs: the CLI's `--json`, the review page);
--   * `strict_decode` refuses NaN and Infinity (not JSON), for a server
--     that must be able to encode back whatever it accepted (the emulator).
-- Numbers decode as floats on every Lua (`record.number` makes whole ones integers).
-- @module modkie.json

local cjson = require "cjson.safe"
local core = require "modkie.core"
local next = next

local json = {}

local DEPTH = 64

local function instance(strict)
  local j = cjson.new()
  j.decode_max_depth(DEPTH)
  j.encode_max_depth(DEPTH)
  if strict then j.decode_invalid_numbers(false) end
  return j
end

local J, STRICT = instance(false), instance(true)

--- JSON null as decoded values hold it.
json.null = cjson.null

--- Decode `text`: the value, or nil and a message. Never raises.
-- @function decode
json.decode = J.decode

--- `decode`, refusing `NaN`, `Infinity` and hex numbers.
-- @function strict_decode
json.strict_decode = STRICT.decode

-- An empty list marked with `array` is this string until encoded: cjson
-- keeps it whole, and it is swapped for `[]` afterwards (a plain-text search
-- keeps the common case free).
local MARKER = "\0modkie:empty-array\0"
local MARKER_ENCODED = J.encode(MARKER)
-- Whether `array` has made a marker in this Lua state: until then a text
-- holds none (bar a caller's own string spelled exactly as the marker, which
-- then stays a string), and encode skips the search.
local marked = false

--- Mark `list` (a table of values 1..n) as a JSON array, so that it is
-- written `[]` when it is empty (a list with values is one already). Mark
-- a list once it is filled: an empty one comes back as a marker, not as
-- the same table.
-- @tparam[opt] table list
-- @return what to put in the value
function json.array(list)
  if list == nil or next(list) == nil then
    marked = true
    return MARKER
  end
  return list
end

local function swap_markers(text)
  if not marked or not text:find(MARKER_ENCODED, 1, true) then return text end
  local pieces, from = {}, 1
  while true do
    local s, e = text:find(MARKER_ENCODED, from, true)
    if not s then break end
    pieces[#pieces + 1] = text:sub(from, s - 1)
    pieces[#pieces + 1] = "[]"
    from = e + 1
  end
  pieces[#pieces + 1] = text:sub(from)
  return table.concat(pieces)
end

--- Encode `value`: the text, or nil and a message (a NaN, a function, too
-- deep, an excessively sparse array). Never raises.
function json.encode(value)
  local text, err = J.encode(value)
  if not text then return nil, err end
  text = swap_markers(text)
  -- cjson writes "/" as "\/". Every "/" it writes is escaped, so each "\/"
  -- is exactly one such escape and can be undone: in C, one pass and one
  -- copy (none without a "/"), as every request body goes through here
  return core.json_unescape_slashes(text)
end

--- True when `t` is a decoded JSON object (a table that is not a list).
-- cjson 2.1.0 decodes `[]` and `{}` alike; both count as an object here.
function json.is_object(t)
  return type(t) == "table" and t[1] == nil
end

-- ---------------------------------------------------------------- sorted

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
  ["\r"] = "\\r", ["\t"] = "\\t" }

-- Control characters escaped, C1 ones (U+0080-U+009F, as UTF-8) too: a
-- terminal showing the output must not act on a gateway's text.
local function str(s)
  s = s:gsub('[%c"\\]', function(c)
    return ESC[c] or ("\\u%04x"):format(c:byte())
  end)
  return '"' .. s:gsub("\194([\128-\159])", function(c) return ("\\u%04x"):format(c:byte()) end) .. '"'
end

local function is_list(t)
  local n = #t
  if n == 0 then return false end
  local k = next(t)
  while k ~= nil do -- (next, not pairs: submit may run in a finaliser; see modkie.error's Error.new)
    if type(k) ~= "number" or k < 1 or k > n or k ~= math.floor(k) then return false end
    k = next(t, k)
  end
  return true
end

local function enc(v, out, depth)
  if depth > DEPTH then error("json: nested too deep", 0) end
  local t = type(v)
  if v == nil or v == json.null then
    out[#out + 1] = "null"
  elseif v == MARKER then
    out[#out + 1] = "[]"
  elseif t == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      out[#out + 1] = "null"
    elseif v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
      out[#out + 1] = ("%d"):format(v)
    else
      out[#out + 1] = ("%.14g"):format(v)
    end
  elseif t == "string" then
    out[#out + 1] = str(v)
  elseif t == "table" then
    if is_list(v) then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        enc(v[i], out, depth + 1)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      local key = next(v)
      while key ~= nil do -- (next, not pairs: see is_list)
        keys[#keys + 1] = tostring(key)
        key = next(v, key)
      end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = str(k)
        out[#out + 1] = ":"
        local val = v[k]
        if val == nil then val = v[tonumber(k)] end
        enc(val, out, depth + 1)
      end
      out[#out + 1] = "}"
    end
  else
    out[#out + 1] = "null" -- functions, userdata: nothing to say in JSON
  end
end

--- Encode `value` for people and diffs: keys sorted, every control
-- character escaped (C1 too), NaN and infinities as null, functions as
-- null. Raises only past 64 levels of nesting.
-- @treturn string
function json.sorted(value)
  local out = {}
  enc(value, out, 0)
  return table.concat(out)
end

return json

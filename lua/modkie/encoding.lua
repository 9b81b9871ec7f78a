--- Text as modkie takes it: check that text is UTF-8 (the gateway takes
-- JSON, and JSON is UTF-8), convert the encodings spreadsheets save in
-- (Windows-1252, Latin-1) to UTF-8, trim, and write bytes as hex. For every
-- Lua from 5.1 on.
-- @module modkie.encoding

local core = require "modkie.core"
local next = next

local byte, char, find, gsub, match = string.byte, string.char, string.find, string.gsub, string.match
local floor = math.floor

local encoding = {}

--- Lower-case hex of a byte string (a digest, a signature).
-- @tparam string s
-- @treturn string
function encoding.hex(s)
  return (gsub(s, ".", function(c) return ("%02x"):format(byte(c)) end))
end

--- `s` without the white space (`%s`) at its ends. Linear in `#s` (a
-- pattern like `^%s*(.-)%s*$` is quadratic on long runs of spaces, and cells
-- and headers come from files anyone wrote).
-- @tparam string s
-- @treturn string
function encoding.trim(s)
  local first = find(s, "%S")
  if not first then return "" end
  return match(s, ".*%S", first)
end

--- The byte position of the first byte of `s` that is not part of valid
-- UTF-8 (overlong forms, surrogates and code points past U+10FFFF are not
-- valid), or nil when `s` is UTF-8. Checked in C (`core.utf8_invalid`): every
-- request body goes through it.
-- @function invalid
encoding.invalid = core.utf8_invalid

--- The first string in `v` (a string, or tables of them, keys included)
-- that is not UTF-8: its key path ("a.b"; `path` for `v` itself), the bad
-- byte and its offset in the string; nil when all are UTF-8.
-- @treturn string|nil path
-- @treturn number the byte
-- @treturn number its offset (from 0)
function encoding.find_invalid(v, path, depth)
  path = path or ""
  if type(v) == "string" then
    local bad = encoding.invalid(v)
    if bad then return path, byte(v, bad), bad - 1 end
  elseif type(v) == "table" and (depth or 0) < 64 then
    local k, x = next(v)
    while k ~= nil do -- (next, not pairs: submit may run in a finaliser; see modkie.error's Error.new)
      local where = path == "" and tostring(k) or path .. "." .. tostring(k)
      local p, b, at = encoding.find_invalid(k, where, 64)
      if not p then p, b, at = encoding.find_invalid(x, where, (depth or 0) + 1) end
      if p then return p, b, at end
      k, x = next(v, k)
    end
  end
  return nil
end

local function utf8_char(cp)
  if cp < 0x80 then return char(cp) end
  if cp < 0x800 then return char(0xC0 + floor(cp / 64), 0x80 + cp % 64) end
  return char(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
end

-- Windows-1252 bytes 0x80-0x9F (the rest of 0xA0-0xFF is Latin-1);
-- 0x81, 0x8D, 0x8F, 0x90 and 0x9D are not characters.
local CP1252 = {
  [0x80] = 0x20AC, [0x82] = 0x201A, [0x83] = 0x0192, [0x84] = 0x201E, [0x85] = 0x2026, [0x86] = 0x2020,
  [0x87] = 0x2021, [0x88] = 0x02C6, [0x89] = 0x2030, [0x8A] = 0x0160, [0x8B] = 0x2039, [0x8C] = 0x0152,
  [0x8E] = 0x017D, [0x91] = 0x2018, [0x92] = 0x2019, [0x93] = 0x201C, [0x94] = 0x201D, [0x95] = 0x2022,
  [0x96] = 0x2013, [0x97] = 0x2014, [0x98] = 0x02DC, [0x99] = 0x2122, [0x9A] = 0x0161, [0x9B] = 0x203A,
  [0x9C] = 0x0153, [0x9E] = 0x017E, [0x9F] = 0x0178,
}

local function table_for(cp1252)
  local map = {}
  for b = 0x80, 0xFF do
    local cp = b
    if cp1252 and b < 0xA0 then cp = CP1252[b] end
    if cp then map[char(b)] = utf8_char(cp) end
  end
  return map
end

-- name (lower case) -> byte map; nil map: UTF-8 itself
local ENCODINGS = {
  ["utf-8"] = false, utf8 = false,
  cp1252 = "cp1252", ["windows-1252"] = "cp1252", ["win-1252"] = "cp1252",
  latin1 = "latin1", ["latin-1"] = "latin1", ["iso-8859-1"] = "latin1", ["iso8859-1"] = "latin1",
}
local maps = {}

--- The encodings `to_utf8` knows, for messages.
encoding.NAMES = "utf-8, cp1252 (windows-1252) or latin1 (iso-8859-1)"

--- Whether `name` is an encoding `to_utf8` knows (any case).
function encoding.known(name)
  return type(name) == "string" and ENCODINGS[name:lower()] ~= nil
end

--- Convert `s` from encoding `name` to UTF-8 ("utf-8": checked, unchanged).
-- @treturn[1] string
-- @treturn[2] nil
-- @treturn[2] number the byte position `s` cannot be converted at
-- @treturn[2] string why
function encoding.to_utf8(s, name)
  local kind = ENCODINGS[tostring(name):lower()]
  assert(kind ~= nil, "modkie.encoding: unknown encoding " .. tostring(name))
  if not kind then
    local bad = encoding.invalid(s)
    if bad then return nil, bad, "not UTF-8" end
    return s
  end
  if kind == "cp1252" then
    local bad = find(s, "[\129\141\143\144\157]")
    if bad then return nil, bad, "not a Windows-1252 character" end
  end
  maps[kind] = maps[kind] or table_for(kind == "cp1252")
  return (gsub(s, "[\128-\255]", maps[kind]))
end

return encoding

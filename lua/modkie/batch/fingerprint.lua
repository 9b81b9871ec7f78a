--- A short, stable fingerprint of what a batch row would send, so a journal
-- written for one batch is never replayed against another.
--
-- The value is serialised canonically (table keys sorted, strings length-
-- prefixed, integral numbers without ".0") and hashed with two polynomial
-- hashes modulo primes near 2^32: 64 bits, the same on Lua 5.1-5.4 and
-- LuaJIT (every intermediate stays below 2^53, no bit operations). It
-- detects accidental change (an edited CSV or template); it is not a
-- cryptographic hash and does not need to be.
-- @module modkie.batch.fingerprint

local file = require "modkie.file"

local byte, format, sort, concat = string.byte, string.format, table.sort, table.concat
local floor, type, pairs, ipairs = math.floor, type, pairs, ipairs

local fingerprint = {}

local P1, P2 = 4294967291, 4294967279 -- the two largest primes below 2^32
local TWO53 = 2 ^ 53

local function is_list(t)
  local n = #t
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k > n or k ~= floor(k) then return false end
  end
  return true
end

local function canon(v, out, n)
  local t = type(v)
  if t == "string" then
    n = n + 1
    out[n] = "s" .. #v .. ":" .. v
  elseif t == "number" then
    n = n + 1
    if v == floor(v) and v > -TWO53 and v < TWO53 then
      out[n] = format("n%d;", v)
    else
      out[n] = format("n%.17g;", v)
    end
  elseif t == "boolean" then
    n = n + 1
    out[n] = v and "T" or "F"
  elseif file.is(v) then
    -- a file counts by its bytes: the same content under another path, or
    -- uploaded again under a new URL, is the same row
    local facts = v:probe()
    n = n + 1
    out[n] = "F" .. (facts and facts.sha256 or ("?" .. tostring(v.path)))
  elseif t == "table" then
    if is_list(v) then
      n = n + 1
      out[n] = "["
      for i = 1, #v do n = canon(v[i], out, n) end
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = k end
      sort(keys, function(a, b)
        if type(a) == type(b) and (type(a) == "string" or type(a) == "number") then return a < b end
        return type(a) < type(b)
      end)
      n = n + 1
      out[n] = "{"
      for _, k in ipairs(keys) do
        n = canon(k, out, n)
        n = canon(v[k], out, n)
      end
    end
    n = n + 1
    out[n] = "]"
  else -- cjson.null and anything else without a value of its own
    n = n + 1
    out[n] = "N"
  end
  return n
end

--- The canonical text of a value (strings, numbers, booleans, tables).
function fingerprint.canonical(v)
  local out = {}
  local n = canon(v, out, 0)
  return concat(out, "", 1, n)
end

local function hash(s)
  local h1, h2 = 0, 0
  local len = #s
  for i = 1, len, 8 do
    local a, b, c, d, e, f, g, h = byte(s, i, i + 7)
    -- unrolled: a missing byte (end of string) counts as 256, never a real byte
    h1 = (h1 * 257 + a) % P1
    h2 = (h2 * 263 + a) % P2
    h1 = (h1 * 257 + (b or 256)) % P1
    h2 = (h2 * 263 + (b or 256)) % P2
    h1 = (h1 * 257 + (c or 256)) % P1
    h2 = (h2 * 263 + (c or 256)) % P2
    h1 = (h1 * 257 + (d or 256)) % P1
    h2 = (h2 * 263 + (d or 256)) % P2
    h1 = (h1 * 257 + (e or 256)) % P1
    h2 = (h2 * 263 + (e or 256)) % P2
    h1 = (h1 * 257 + (f or 256)) % P1
    h2 = (h2 * 263 + (f or 256)) % P2
    h1 = (h1 * 257 + (g or 256)) % P1
    h2 = (h2 * 263 + (g or 256)) % P2
    h1 = (h1 * 257 + (h or 256)) % P1
    h2 = (h2 * 263 + (h or 256)) % P2
  end
  h1 = (h1 * 257 + len % 65536) % P1
  return format("%08x%08x", h1, h2)
end

--- 16 hex digits identifying `v` (any value canonical accepts).
function fingerprint.of(v)
  return hash(fingerprint.canonical(v))
end

return fingerprint

--- What the command line prints of text it did not write itself: a
-- gateway's states, messages, task ids and URLs, from any command, text or
-- log line. A hostile or broken gateway must not reach the terminal: ESC
-- sequences could move the cursor, clear the screen, retitle the window or
-- print a fake "success" over the real line. Every control character (C0,
-- DEL, C1 as UTF-8), every byte that is not UTF-8, and the bidirectional
-- overrides that reorder what is shown come out as visible escapes
-- (`\x1B`, `\n`); other UTF-8 text is kept as it is.
-- @module modkie.cli.escape

local escape = {}

local NAMED = { [9] = "\\t", [10] = "\\n", [13] = "\\r" }

local function hex(c) return ("\\x%02X"):format(c) end

-- Length of the UTF-8 sequence at i of s whose first byte is c (>= 0x80),
-- or nil when it is not one.
local function sequence(s, i, c)
  local b2, b3, b4 = s:byte(i + 1, i + 3)
  local function cont(b) return b and b >= 0x80 and b <= 0xBF end
  if c >= 0xC2 and c <= 0xDF then return cont(b2) and 2 or nil end
  if c >= 0xE0 and c <= 0xEF then
    local lo, hi = 0x80, 0xBF
    if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
    return b2 and b2 >= lo and b2 <= hi and cont(b3) and 3 or nil
  end
  if c >= 0xF0 and c <= 0xF4 then
    local lo, hi = 0x80, 0xBF
    if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    return b2 and b2 >= lo and b2 <= hi and cont(b3) and cont(b4) and 4 or nil
  end
  return nil
end

-- UTF-8 characters shown escaped: C1 controls (U+0080-U+009F; U+009B is a
-- CSI to many terminals) and the bidirectional overrides (U+202A-U+202E,
-- U+2066-U+2069).
local function hidden(seq)
  local a, b, c = seq:byte(1, 3)
  if a == 0xC2 then return b <= 0x9F end
  if a == 0xE2 and b == 0x80 then return c >= 0xAA and c <= 0xAE end
  if a == 0xE2 and b == 0x81 then return c >= 0xA6 and c <= 0xA9 end
  return false
end

--- `s` (any value; tostring'd) safe to print on a terminal.
-- @treturn string
function escape.text(s)
  s = tostring(s)
  if not s:find("[%z\1-\31\127-\255]") then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = s:byte(i)
    if c < 0x20 or c == 0x7F then
      out[#out + 1] = NAMED[c] or hex(c)
      i = i + 1
    elseif c < 0x80 then
      local j = s:find("[%z\1-\31\127-\255]", i) or n + 1
      out[#out + 1] = s:sub(i, j - 1)
      i = j
    else
      local len = sequence(s, i, c)
      local seq = len and s:sub(i, i + len - 1)
      if seq and not hidden(seq) then
        out[#out + 1] = seq
      else
        len = len or 1
        for k = i, i + len - 1 do out[#out + 1] = hex(s:byte(k)) end
      end
      i = i + len
    end
  end
  return table.concat(out)
end

return escape

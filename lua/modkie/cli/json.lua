--- JSON for `--json` output: keys sorted (stable output, easy diffs), empty
-- lists written as `[]` when marked with `json.array`, "/" not escaped.
-- lua-cjson 2.1 can do neither of the first two.
-- @module modkie.cli.json

local cjson = require "cjson.safe"

local json = {}

local ARRAY = {}
local NULL = cjson.null

--- Mark `t` (default a new table) as a JSON array, so an empty one is `[]`.
function json.array(t)
  return setmetatable(t or {}, ARRAY)
end

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
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k > n or k ~= math.floor(k) then return false end
  end
  return true
end

local function enc(v, out, depth)
  if depth > 64 then error("json: nested too deep", 0) end
  local t = type(v)
  if v == nil or v == NULL then
    out[#out + 1] = "null"
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
    if getmetatable(v) == ARRAY or is_list(v) then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        enc(v[i], out, depth + 1)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
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

--- Encode `v` as JSON text.
function json.encode(v)
  local out = {}
  enc(v, out, 0)
  return table.concat(out)
end

return json

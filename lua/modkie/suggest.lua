--- "Did you mean …": the known name closest to a mistyped one. One helper
-- for every name a user can mistype: options, flags, commands, model ids,
-- input fields, batch columns, template variables.
-- @module modkie.suggest

local suggest = {}

-- Levenshtein distance between two strings.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

-- The names of `known`: a list of strings, or a set (string keys).
local function names(known)
  local list = {}
  if known[1] ~= nil then
    for _, v in ipairs(known) do if type(v) == "string" then list[#list + 1] = v end end
  else
    for k in pairs(known) do if type(k) == "string" then list[#list + 1] = k end end
  end
  return list
end

--- The name of `known` (a set, or a list) nearest to `name`, if within 2
-- edits (1 for names of 3 characters or less, so that short names do not
-- suggest unrelated ones); ties go to the alphabetically first, so the
-- answer does not depend on table order.
-- @treturn string|nil
function suggest.closest(name, known)
  if type(name) ~= "string" then return nil end
  local best, best_d
  for _, k in ipairs(names(known)) do
    if k ~= name then
      local d = distance(name, k)
      if not best_d or d < best_d or (d == best_d and k < best) then best, best_d = k, d end
    end
  end
  local limit = #name <= 3 and 1 or 2
  if best_d and best_d <= limit then return best end
  return nil
end

--- `" (did you mean 'x'?)"` for the closest name, or `""`; `prefix` goes
-- before the suggested name (e.g. `"--"` for flags).
function suggest.hint(name, known, prefix)
  local best = suggest.closest(name, known)
  if not best then return "" end
  prefix = prefix or ""
  return " (did you mean '" .. prefix .. best .. "'?)"
end

local function letters(s)
  return (s:lower():gsub("[^%w]", ""))
end

local function digits(s)
  return (s:gsub("%D", ""))
end

--- The registered model id an unknown `id` most likely mistypes, or nil.
-- Only a mistype: the same id but for case and punctuation
-- (`kling/kling-3.0`), the id without its vendor (`kling-3-0`), or a couple
-- of letters off with the same version numbers. An id whose numbers differ
-- (`kling/kling-3-1`) may be a model modkie does not know yet: not a typo.
-- @tparam string id
-- @tparam table ids the registered ids (a list)
-- @treturn string|nil
function suggest.model(id, ids)
  local best, best_d
  for _, known in ipairs(ids) do
    local d
    if letters(known) == letters(id) or known:match("[^/]+$") == id then
      d = 0
    elseif digits(known) == digits(id) then
      d = distance(id:lower(), known:lower())
      if d > 2 then d = nil end
    end
    if d and (not best_d or d < best_d or (d == best_d and known < best)) then best, best_d = known, d end
  end
  return best
end

return suggest

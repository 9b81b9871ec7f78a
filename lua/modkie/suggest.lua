--- "Did you mean …": the known name closest to a mistyped one.
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

--- The key of `known` (a set) nearest to `name`, if within 2 edits; ties go
-- to the alphabetically first, so the answer does not depend on table order.
-- @treturn string|nil
function suggest.closest(name, known)
  local best, best_d
  for k in pairs(known) do
    if type(k) == "string" then
      local d = distance(name, k)
      if not best_d or d < best_d or (d == best_d and k < best) then best, best_d = k, d end
    end
  end
  if best_d and best_d <= 2 then return best end
  return nil
end

return suggest

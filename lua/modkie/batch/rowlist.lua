--- Rows named compactly: "row 3", "rows 3-7, 9", and lines that say the
-- same thing about many rows grouped into one ("rows 21-60: ambiguous: …"
-- instead of forty near-identical lines).
-- @module modkie.batch.rowlist

local rowlist = {}

local function key_less(a, b)
  if a.row ~= b.row then return a.row < b.row end
  return (a.variant or 0) < (b.variant or 0)
end

--- Name a list of `{ row = n, variant = v? }` (any order): consecutive plain
-- rows become ranges; variants are named `row.variant`.
-- @treturn string e.g. "row 4", "rows 2-5, 9", "rows 3.1, 3.2"
function rowlist.name(items)
  local sorted = {}
  for i, it in ipairs(items) do sorted[i] = it end
  table.sort(sorted, key_less)
  local parts, i = {}, 1
  while i <= #sorted do
    local it = sorted[i]
    if it.variant then
      parts[#parts + 1] = ("%d.%d"):format(it.row, it.variant)
      i = i + 1
    else
      local j = i
      while sorted[j + 1] and not sorted[j + 1].variant and sorted[j + 1].row == sorted[j].row + 1 do j = j + 1 end
      parts[#parts + 1] = j > i and ("%d-%d"):format(it.row, sorted[j].row) or tostring(it.row)
      i = j + 1
    end
  end
  return (#sorted == 1 and "row " or "rows ") .. table.concat(parts, ", ")
end

--- Group `{ row, variant, text, single }` items by `text`, in the order each
-- text first appears. A group of one keeps its own line (`single`, when
-- given, e.g. with the row's task id); larger groups read
-- "rows 2-5 (4 rows): text".
-- @treturn table lines
function rowlist.group(items)
  local groups, order = {}, {}
  for _, it in ipairs(items) do
    local g = groups[it.text]
    if not g then
      g = { text = it.text, items = {} }
      groups[it.text] = g
      order[#order + 1] = g
    end
    g.items[#g.items + 1] = it
  end
  local lines = {}
  for i, g in ipairs(order) do
    if #g.items == 1 then
      local it = g.items[1]
      lines[i] = it.single or (rowlist.name(g.items) .. ": " .. g.text)
    else
      lines[i] = ("%s (%d rows): %s"):format(rowlist.name(g.items), #g.items, g.text)
    end
  end
  return lines
end

return rowlist

--- Fuzz harness: template.expand, every combination and seeded random picks.
-- Input: a flags byte, a limit byte, a count byte, then the text.
-- Properties:
--  * nothing raises; a refusal is `nil, err` with a validation error (with
--    line and column for a syntax error, `count` over the limit);
--  * every combination is a string, at most `limit` of them; text with
--    none of `{ } | \` expands to itself alone;
--  * random picks: exactly `random` strings, each one of the combinations,
--    and the same seed gives the same picks.
local template = require "modkie.batch.template"
local F = require "fuzzutil"
local check, show = F.check, F.show

return function(data)
  local r = F.reader(data)
  local flags, lim, count = r.byte(), r.byte(), r.byte()
  local text = r.rest()
  local limit = (flags & 1 ~= 0) and lim or nil -- nil: the default 10000

  local all, err = template.expand(text, { limit = limit })
  if all == nil then
    F.check_error(err, "validation", "expand")
    if err.count == nil then
      F.check_count(err.line, "err.line")
      F.check_count(err.column, "err.column")
    else
      check(err.count > (limit or 10000), "refused %s combinations under the limit", tostring(err.count))
    end
  else
    check(#all >= 1 and #all <= (limit or 10000), "%d combinations (limit %s)", #all, tostring(limit))
    for i, s in ipairs(all) do check(type(s) == "string", "combination %d is a %s", i, type(s)) end
    if not text:find("[{}|\\]") then
      check(#all == 1 and all[1] == text, "plain text expanded to %s", show(all))
    end
  end

  if flags & 2 ~= 0 then
    local random = count % 32
    local seed = (flags & 4 ~= 0) and text:sub(1, 8) or (lim * 65536 + count)
    local picks, perr = template.expand(text, { random = random, seed = seed, limit = limit })
    if picks == nil then
      F.check_error(perr, "validation", "expand random")
      check(all == nil or random > (limit or 10000), "random picks refused where expand worked: %s", tostring(perr))
    else
      check(#picks == random, "%d picks, asked %d", #picks, random)
      local again = template.expand(text, { random = random, seed = seed, limit = limit })
      check(F.equal(picks, again), "seed %s gave %s, then %s", show(seed), show(picks), show(again))
      if all then
        local set = {}
        for _, s in ipairs(all) do set[s] = true end
        for i, s in ipairs(picks) do check(set[s], "pick %d %s is no combination of %s", i, show(s), show(all)) end
      end
    end
  end
end

-- bench/limits.lua: how close the client came to the gateway's windows, from
-- what the emulator's limiter saw (BENCH_FULL_LIMITS=FILE in bench/run.lua, or
-- GET /__mock/limits of any emulator run with --limits).
--
--   lua5.4 bench/limits.lua FILE
--
-- For each lane and key: requests admitted and refused, and the span of every
-- `limit + 1` arrivals in a row (the window's length is the least that keeps
-- them within the limit): its minimum and low quantiles. A span below the
-- window is a window the client overfilled, by the emulator's clock.
local cjson = require "cjson"

local path = assert(arg[1], "usage: lua5.4 bench/limits.lua FILE")
local f = assert(io.open(path))
local seen = cjson.decode(f:read("a"))
f:close()
assert(seen.enabled ~= false, "the emulator ran without --limits")

for _, lane in ipairs({ "create", "record" }) do
  local l = seen[lane]
  for k, key in ipairs(l and l.keys or {}) do
    local all = {}
    for _, t in ipairs(key.admitted) do all[#all + 1] = t end
    for _, t in ipairs(key.refused) do all[#all + 1] = t end
    table.sort(all)
    local spans = {}
    for i = 1, #all - l.limit do spans[#spans + 1] = all[i + l.limit] - all[i] end
    table.sort(spans)
    local function q(p) return spans[math.max(1, math.floor(#spans * p))] or 0 end
    print(("%-6s key %d (%d per %.3f s): %d admitted, %d refused; span of %d in a row: "
      .. "min %.4f, 0.1 %% %.4f, 1 %% %.4f, median %.4f"):format(lane, k, l.limit, l.window,
      #key.admitted, #key.refused, l.limit + 1, q(0), q(0.001), q(0.01), q(0.5)))
  end
end

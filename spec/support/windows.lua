--- What an emulator's rate limits saw (`--limits`, GET /__mock/limits), for
-- checking a client's windows from the gateway's side: spec/shared_spec.lua
-- and bench/shared.lua.
local windows = {}

--- Every request limit `name` ("create" or "record") counted, admitted or
-- refused, as times; and how many it admitted and refused. `m` is a
-- spec.helper emulator.
function windows.arrivals(m, name)
  local _, limits = m.request("GET", "/__mock/limits")
  local times, admitted, refused = {}, 0, 0
  for _, key in ipairs(limits[name].keys) do
    for _, t in ipairs(key.admitted) do times[#times + 1] = t end
    for _, t in ipairs(key.refused) do times[#times + 1] = t end
    admitted, refused = admitted + #key.admitted, refused + #key.refused
  end
  return times, admitted, refused
end

--- The most of `times` in any `window` seconds (a sliding window; sorts `times`).
function windows.busiest(times, window)
  table.sort(times)
  local most, first = 0, 1
  for last = 1, #times do
    while times[last] - times[first] >= window do first = first + 1 end
    if last - first + 1 > most then most = last - first + 1 end
  end
  return most
end

return windows

-- The script modkie-host runs: a few jobs started on the first frame, the
-- client updated once per frame, their progress shown twice a second, the
-- cost of each update() measured. Returns { frame = fn(dt) -> keep going }.
local root = (arg[0]:match("^(.*)/examples/host/[^/]+$") or ".")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/lua5.4/?.so;" .. package.cpath

local modkie = require "modkie"
local core = require "modkie.core"

local client = modkie.new{ base_url = arg[1] or "http://127.0.0.1:8089", api_key = "demo", poll_interval = 0.25 }
local jobs, frame_no, costs = {}, 0, {}

local game = {}

function game.frame()
  frame_no = frame_no + 1
  if frame_no == 1 then
    for i = 1, 5 do
      jobs[i] = assert(client:submit("kling/kling-3-0", { prompt = "a castle at night, scene " .. i }))
    end
  end
  local t0 = core.now()
  local active = client:update()
  costs[#costs + 1] = core.now() - t0
  if frame_no % 30 == 0 or active == 0 then
    local states = {}
    for i, job in ipairs(jobs) do states[i] = job.state end
    print(("frame %4d: %s"):format(frame_no, table.concat(states, " ")))
  end
  if active == 0 then
    table.sort(costs)
    print(("update(): p50 %.1f us, p99 %.1f us over %d frames"):format(
      costs[math.ceil(#costs * 0.5)] * 1e6, costs[math.ceil(#costs * 0.99)] * 1e6, #costs))
    client:close()
    return false
  end
  return true
end

return game

-- modkie in LÖVE (LuaJIT): press space to start a video job, watch every job's
-- state change each frame; love.update calls client:update() (step(0)), so
-- the game never blocks.
--   make core LUA_INC=/usr/include/luajit-2.1 BUILD=build/luajit
--   lua5.4 bin/modkie mock --port 8089 &
--   love examples/love
local root = love.filesystem.getSource() .. "/../.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/luajit/?.so;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;" .. package.cpath

local modkie = require "modkie"

local client
local jobs = {}
local PROMPTS = { "a dragon over a lake", "a neon city in the rain", "a fox in the snow", "waves at sunset" }

function love.load()
  client = modkie.new{
    base_url = os.getenv("MODKIE_BASE_URL") or "http://127.0.0.1:8089",
    api_key = os.getenv("MODKIE_API_KEY") or "demo",
  }
end

function love.keypressed(key)
  if key == "space" then
    local prompt = PROMPTS[#jobs % #PROMPTS + 1]
    local job, err = client:submit("kling/kling-3-0", { prompt = prompt, aspect_ratio = "16:9" })
    jobs[#jobs + 1] = { job = job, prompt = prompt, started = love.timer.getTime(), err = err }
  elseif key == "escape" then
    love.event.quit()
  end
end

function love.update()
  client:update()
  for _, j in ipairs(jobs) do
    if j.job and j.job.done and not j.ended then j.ended = love.timer.getTime() end
  end
end

function love.draw()
  love.graphics.print("space: new job   escape: quit", 20, 20)
  for i, j in ipairs(jobs) do
    local job, line = j.job
    if not job then
      line = ("%d. %s - refused: %s"):format(i, j.prompt, tostring(j.err))
    else
      local secs = (j.ended or love.timer.getTime()) - j.started
      local res = job.result
      line = ("%d. %-26s %-10s %5.1fs %s"):format(i, j.prompt, job.state, secs,
        res and res.urls[1] or (job.error and job.error.message) or "")
    end
    love.graphics.print(line, 20, 40 + 20 * i)
  end
end

function love.quit()
  client:close()
end

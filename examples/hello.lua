-- The smallest complete job: submit, wait, print where the video is.
-- Run the emulator first (`lua5.4 bin/modkie mock --port 8089 &`) or point
-- MODKIE_BASE_URL and MODKIE_API_KEY at the real gateway:
--   lua5.4 examples/hello.lua
pcall(dofile, (arg and arg[0] or ""):gsub("[^/]*$", "") .. "checkout.lua") -- a checkout's build, if run from one
local modkie = require "modkie"
local client = modkie.new{
  base_url = os.getenv("MODKIE_BASE_URL") or "http://127.0.0.1:8089",  -- the emulator
  api_key = os.getenv("MODKIE_API_KEY") or "test",                      -- any key will do there
}
local job = assert(client:submit("kling/kling-3-0", {
  prompt = "a red fox at dawn", aspect_ratio = "16:9", duration = 5,
}))
local res = assert(job:await())
print(res.id, res.urls[1])

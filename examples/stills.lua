-- Make the three product stills examples/products/rows.csv names (small PNG
-- pictures drawn by the emulator's media module), so the batch has files to
-- upload with no camera and no download:
--   lua5.4 examples/stills.lua DIR     (writes DIR/stills/*.png)
-- make demo copies examples/products/rows.csv and template.txt next to them
-- and runs the batch.
pcall(dofile, (arg and arg[0] or ""):gsub("[^/]*$", "") .. "checkout.lua") -- a checkout's build, if run from one
local media = require "modkie.mock.media"

local dir = (arg and arg[1] or "."):gsub("/+$", "")
assert(os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "/stills'"), "cannot create " .. dir .. "/stills")
for _, name in ipairs({ "mug", "lamp", "vase" }) do
  local path = dir .. "/stills/" .. name .. ".png"
  local f = assert(io.open(path, "wb"))
  assert(f:write(media.png(name, 320, 240)))
  assert(f:close())
  print(path)
end

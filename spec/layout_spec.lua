-- The README's layout section is the tree: every source file is listed under
-- its folder, and every file listed is there.
local helper = require "spec.helper"

local function listed()
  local readme = assert(helper.read_file("README.md"))
  local at = assert(readme:find("### Layout", 1, true), "README has no Layout section")
  local block = assert(readme:match("\n```\n(.-)\n```", at), "no tree in the Layout section")
  local files, folder = {}, nil
  for line in block:gmatch("[^\n]+") do
    local top = line:match("^(%S+/)%s")
    if top then folder = top end
    if line:match("^%s") and folder then
      local names = line:match("^%s+(.-)%s%s") or line:match("^%s+(.-)%s*$")
      for name in names:gmatch("%S+") do
        if name:match("%.lua$") or name:match("%.[ch]$") then files[folder .. name] = true end
      end
    end
  end
  return files
end

local function tree()
  local files = {}
  local p = assert(io.popen("ls lua/modkie/*.lua lua/modkie/*/*.lua src/*.c src/*.h"))
  for path in p:lines() do files[path] = true end
  p:close()
  return files
end

describe("README's layout", function()
  it("lists every source file under its folder, and nothing that is not there", function()
    local want, have = listed(), tree()
    local missing, stale = {}, {}
    for path in pairs(have) do if not want[path] then missing[#missing + 1] = path end end
    for path in pairs(want) do if not have[path] then stale[#stale + 1] = path end end
    table.sort(missing)
    table.sort(stale)
    assert.same({}, missing, "files the README's layout does not list")
    assert.same({}, stale, "files the README's layout lists that are not there")
  end)
end)

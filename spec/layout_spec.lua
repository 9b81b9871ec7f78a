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
  local p = assert(io.popen("ls lua/modkie/*.lua lua/modkie/*/*.lua src/*.c src/*.h src/lib/*.c src/lib/*.h"))
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

describe("require 'modkie': the layers it loads on first use", function()
  -- a fresh module table, so that no earlier spec has loaded a layer into it
  local function fresh_modkie()
    local saved = package.loaded["modkie"]
    package.loaded["modkie"] = nil
    local m = require "modkie"
    package.loaded["modkie"] = saved
    return m
  end

  it("gives batch, template, rows and webhook, from their homes", function()
    local m = fresh_modkie()
    assert.equal(require("modkie.batch"), m.batch)
    assert.equal(require("modkie.batch.template"), m.template)
    assert.equal(require("modkie.batch.rows"), m.rows)
    assert.equal(require("modkie.webhook"), m.webhook)
  end)

  it("requires nothing for another name", function()
    local loaded = false
    package.preload["modkie.probe"] = function() loaded = true return {} end
    finally(function() package.preload["modkie.probe"] = nil end)
    local m = fresh_modkie()
    assert.is_nil(m.probe)
    assert.is_false(loaded)
    assert.is_nil(package.loaded["modkie.probe"])
  end)

  it("lets a layer's load error through", function()
    local saved = package.loaded["modkie.batch.rows"]
    package.loaded["modkie.batch.rows"] = nil
    package.preload["modkie.batch.rows"] = function() error("rows cannot load: boom", 0) end
    finally(function()
      package.preload["modkie.batch.rows"] = nil
      package.loaded["modkie.batch.rows"] = saved
    end)
    local m = fresh_modkie()
    assert.has_error(function() return m.rows end, "rows cannot load: boom")
  end)
end)

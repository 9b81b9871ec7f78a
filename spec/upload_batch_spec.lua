-- Local files in batches and on the command line: a column of local paths
-- (relative to the rows file) uploaded by each row's job, the dry run's
-- list of files, bad files named by row, column and file, the journal's
-- uploads reused by a rerun while fresh and sent again once expired;
-- `--set field=@file`, `modkie upload`, MODKIE_UPLOAD_URL.
local cjson = require "cjson"
local H = require "spec.batch_helper"
local helper = require "spec.helper"
local media = require "modkie.mock.media"
local modkie = require "modkie"

local I2V = "kling/v2-1-standard"
local SCHEMA = "examples/models/kling-v2-1-standard.json"

describe("batches with files", function()
  local m, dir, client
  setup(function()
    assert(modkie.models.load(SCHEMA))
    m = helper.mock({ "--job-seconds", "0.2" })
  end)
  teardown(function() m.stop() end)
  before_each(function()
    m.request("POST", "/__mock/reset")
    dir = helper.tmpdir()
    assert(os.execute("mkdir -p " .. helper.shell_quote(dir .. "/stills")))
    for _, n in ipairs({ "mug", "lamp" }) do
      helper.write_file(dir .. "/stills/" .. n .. ".png", media.png(n, 40, 30))
    end
    H.write(dir .. "/rows.csv",
      "product,image_url\nmug,stills/mug.png\nlamp,stills/lamp.png\nmug again,stills/mug.png\n")
    client = helper.client(m)
  end)
  after_each(function()
    client:close()
    helper.rmdir(dir)
  end)

  local function opts(extra)
    local o = { client = client, model = I2V, rows = dir .. "/rows.csv", template = "the {{product}} turns",
      journal = dir .. "/rows.journal" }
    for k, v in pairs(extra or {}) do o[k] = v end
    if o.client == false then o.client = nil end -- a dry run needs none
    return o
  end

  it("lists in the dry run every file, its size, and what would be uploaded; nothing is sent", function()
    local report = assert(modkie.batch.run(opts({ dry_run = true, client = false })))
    assert.equal(3, #report.files)
    local mug = report.files[1]
    assert.same({ 1, "image_url", "image_url", dir .. "/stills/mug.png", "image/png", true },
      { mug.row, mug.field, mug.column, mug.path, mug.type, mug.upload })
    assert.equal(#helper.read_file(dir .. "/stills/mug.png"), mug.size)
    assert.is_false(report.files[3].upload) -- the same bytes as row 1: uploaded once
    assert.same({ files = 2, bytes = mug.size + report.files[2].size }, report.uploads)
    assert.equal(0, m.stats().upload_requests)
  end)

  it("uploads each file once, sends its URL with the row, and a rerun reuses it from the journal", function()
    local report = assert(modkie.batch.run(opts()))
    assert.equal(3, report.succeeded)
    assert.equal(2, m.stats().upload_requests)
    local journal = H.read(dir .. "/rows.journal")
    local uploads, submits = {}, {}
    for line in journal:gmatch("[^\n]+") do
      local rec = cjson.decode(line)
      if rec.type == "upload" then uploads[#uploads + 1] = rec end
      if rec.type == "submit" then submits[rec.row] = rec end
    end
    assert.equal(2, #uploads)
    assert.matches("^http://", submits[1].input.image_url)
    assert.equal(submits[1].input.image_url, submits[3].input.image_url)
    assert.equal(uploads[1].url, submits[1].input.image_url)
    -- a new row later: the journal's upload of the mug is still fresh, so it is not sent again
    H.write(dir .. "/rows.csv", H.read(dir .. "/rows.csv") .. "mug once more,stills/mug.png\n")
    local c2 = helper.client(m)
    report = assert(modkie.batch.run(opts({ client = c2 })))
    c2:close()
    assert.equal(4, report.succeeded)
    assert.equal(2, m.stats().upload_requests)
    -- the dry run says so too
    local dry = assert(modkie.batch.run(opts({ dry_run = true, client = false })))
    assert.equal(0, dry.uploads.files)
  end)

  it("sends the files again when the journal's URLs have expired (a rerun days later)", function()
    local m2 = helper.mock({ "--job-seconds", "0.1", "--upload-ttl", "1" })
    finally(function() m2.stop() end)
    local c1 = helper.client(m2)
    assert.equal(3, assert(modkie.batch.run(opts({ client = c1 }))).succeeded)
    c1:close()
    assert.equal(2, m2.stats().upload_requests)
    helper.sleep(1.2)
    H.write(dir .. "/rows.csv", H.read(dir .. "/rows.csv") .. "lamp again,stills/lamp.png\n")
    local c2 = helper.client(m2)
    local report = assert(modkie.batch.run(opts({ client = c2 })))
    c2:close()
    assert.equal(4, report.succeeded, tostring(report.rows[4].error))
    assert.equal(3, m2.stats().upload_requests) -- the lamp again, with a live URL
  end)

  it("names the row, the column and the file of every bad file, and sends nothing", function()
    H.write(dir .. "/notes.txt", "not a picture\n")
    H.write(dir .. "/rows.csv", "product,image_url\nmug,stills/mug.png\nghost,stills/ghost.png\nnotes,notes.txt\n"
      .. "folder,stills\n")
    local report, err = modkie.batch.run(opts())
    assert.is_nil(report)
    assert.equal("validation", err.kind)
    local by_row = {}
    for _, p in ipairs(err.problems) do by_row[p.row] = p end
    assert.equal("image_url", by_row[2].column)
    assert.matches("row 2 %(line 3%): column 'image_url': .*stills/ghost%.png does not exist", by_row[2].message)
    assert.matches("notes%.txt is text/plain, not one of image/jpeg, image/png, image/webp", by_row[3].message)
    assert.matches("stills is a directory", by_row[4].message)
    assert.is_nil(by_row[1])
    assert.equal(0, m.stats().upload_requests)
    assert.equal(0, m.stats().create_requests)
  end)
end)

describe("the command line with files", function()
  local m, dir
  setup(function()
    m = helper.mock({ "--job-seconds", "0.2" })
    dir = helper.tmpdir()
    helper.write_file(dir .. "/mug.png", media.png("mug", 40, 30))
  end)
  teardown(function()
    m.stop()
    helper.rmdir(dir)
  end)
  local env
  before_each(function() env = { MODKIE_BASE_URL = m.url, MODKIE_API_KEY = "test-key" } end)

  it("submit --set field=@file uploads the file and sends its URL", function()
    local r = H.cli({ "submit", I2V, "--models", SCHEMA, "--prompt", "turns",
      "--set", "image_url=@" .. dir .. "/mug.png", "--wait", "--json" }, env)
    assert.equal(0, r.code, r.err)
    assert.equal("success", cjson.decode(r.out).state)
    assert.equal(1, m.stats().upload_requests)
    -- a file the field does not accept: refused before anything is sent, naming the field
    local before = m.stats().create_requests
    r = H.cli({ "submit", I2V, "--models", SCHEMA, "--prompt", "p", "--set", "image_url=@" .. SCHEMA }, env)
    assert.equal(2, r.code)
    assert.matches("image_url: " .. SCHEMA:gsub("%p", "%%%0") .. " is ", r.err)
    assert.equal(before, m.stats().create_requests)
  end)

  it("modkie upload prints each file's URL and expiry, checks them all first, and honours MODKIE_UPLOAD_URL", function()
    local up = helper.mock({})
    finally(function() up.stop() end)
    env.MODKIE_UPLOAD_URL = up.url
    local api_before = m.stats().upload_requests
    local r = H.cli({ "upload", dir .. "/mug.png", "--json" }, env)
    assert.equal(0, r.code, r.err)
    local list = cjson.decode(r.out)
    assert.equal(dir .. "/mug.png", list[1].path)
    assert.matches("^" .. up.url:gsub("%p", "%%%0") .. "/tempfile/", list[1].url)
    assert.equal("image/png", list[1].type)
    assert.equal(1, up.stats().upload_requests)
    assert.equal(api_before, m.stats().upload_requests)
    r = H.cli({ "upload", dir .. "/mug.png", dir .. "/missing.png" }, env)
    assert.equal(2, r.code)
    assert.matches("missing.png does not exist", r.err)
    assert.equal(1, up.stats().upload_requests) -- nothing sent
  end)

  it("batch --dry-run lists the files it would upload", function()
    H.write(dir .. "/rows.csv", "product,image_url\nmug,mug.png\n")
    H.write(dir .. "/template.txt", "the {{product}} turns\n")
    local r = H.cli({ "batch", "--models", SCHEMA, "--model", I2V, "--rows", dir .. "/rows.csv", "--template",
      dir .. "/template.txt", "--dry-run" }, {})
    assert.equal(0, r.code, r.err)
    assert.matches("files %(1; 1 to upload", r.out)
    assert.matches("row 1%s+image_url%s+" .. dir:gsub("%p", "%%%0") .. "/mug%.png", r.out)
  end)
end)

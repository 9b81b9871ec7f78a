-- An adversarial read of files in and out (uploads of modkie.file values,
-- downloads of outputs), through the public API against the emulator, a
-- canned server and real sockets. Each test failed before its fix.
local cjson = require "cjson"
local helper = require "spec.helper"
local canned = require "spec.support.canned"
local media = require "modkie.mock.media"
local modkie = require "modkie"

describe("audit: files in", function()
  local m, dir
  setup(function()
    m = helper.mock({ "--job-seconds", "0.05" })
    dir = helper.tmpdir()
  end)
  teardown(function()
    m.stop()
    helper.rmdir(dir)
  end)
  before_each(function() m.request("POST", "/__mock/reset") end)

  it("sends no createTask with an upload the gateway says has already expired", function()
    local later = helper.cleanups(function(fn) finally(fn) end)
    local up = canned.start()
    later(up.stop)
    local png = dir .. "/past.png"
    helper.write_file(png, media.png("past", 32, 32))
    up.answer("file-stream-upload", cjson.encode({ success = true, code = 200, msg = "File uploaded successfully",
      data = { fileName = "x.png", filePath = "modkie/x.png", downloadUrl = "https://files.example/x.png",
        fileSize = #helper.read_file(png), mimeType = "image/png", expiresAt = "2020-01-01T00:00:00Z" } }))
    local c = helper.client(m, { upload_url = up.url, retries = 0 })
    later(function() c:close() end)
    local job = assert(c:submit("acme/x", { prompt = "p", image = modkie.file(png) }))
    local res, err = job:await(10)
    assert.is_nil(res, "the job ran with a dead URL: " .. tostring(job.input.image))
    assert.equal("image", err.field)
    assert.equal(png, err.path)
    assert.matches("expire", err.message)
    assert.equal(0, m.stats().create_requests)
    -- with its upload time, the answer is read by the gateway's own clock (this machine's may be off):
    -- expired no later than uploaded is dead; Kie's documented answer (uploaded 2025-01-15, expiring
    -- three days later) is not, however long ago that was here
    local function answer(uploaded, expires)
      up.answer("file-stream-upload", cjson.encode({ success = true, code = 200, msg = "File uploaded successfully",
        data = { fileName = "x.png", downloadUrl = "https://files.example/x.png", fileSize = #helper.read_file(png),
          mimeType = "image/png", uploadTime = uploaded, expiresAt = expires } }))
    end
    answer("2025-01-15T10:30:00Z", "2025-01-15T10:30:00Z")
    res, err = assert(c:submit("acme/x", { prompt = "p", image = modkie.file(png) })):await(10)
    assert.is_nil(res)
    assert.matches("no later than it was uploaded", err.message, 1, true)
    assert.equal(0, m.stats().create_requests)
    answer("2025-01-15T10:30:00Z", "2025-01-18T10:30:00Z")
    job = assert(c:submit("acme/x", { prompt = "p", image = modkie.file(png) }))
    res, err = job:await(10)
    assert.is_table(res, tostring(err))
    assert.equal("https://files.example/x.png", job.input.image)
    assert.equal(1, m.stats().create_requests)
  end)

  it("a file that changed while uploading can be submitted again with the same input, as the error says", function()
    local png = dir .. "/changing.png"
    helper.write_file(png, media.png("before", 32, 32))
    local c = helper.client(m)
    finally(function() c:close() end)
    local input = { prompt = "p", image = modkie.file(png) }
    local job = assert(c:submit("acme/x", input)) -- checked (hashed) now, uploaded on the client's steps
    local after = media.png("after", 48, 48)
    helper.write_file(png, after)
    local _, err = job:await(10)
    assert.equal("validation", err.kind)
    assert.matches("submit it again", err.message, 1, true)
    -- the file has settled: the same input goes through, with the bytes now on disk
    job, err = c:submit("acme/x", input)
    assert.is_table(job, tostring(err))
    local res
    res, err = job:await(10)
    assert.is_table(res, tostring(err))
    local status, body = m.request("GET", job.input.image:sub(#m.url + 1))
    assert.equal(200, status)
    assert.is_true(body == after, "the URL sent does not serve the file's bytes")
    assert.equal(1, m.stats().create_requests)
  end)

  it("a file removed between submit and its upload is named as such, not as a network error", function()
    local png = dir .. "/removed.png"
    helper.write_file(png, media.png("removed", 32, 32))
    local c = helper.client(m, { retries = 2 })
    finally(function() c:close() end)
    local job = assert(c:submit("acme/x", { prompt = "p", image = modkie.file(png) }))
    os.remove(png)
    local res, err = job:await(20)
    assert.is_nil(res)
    assert.equal("validation", err.kind, err.message)
    assert.equal("image", err.field)
    assert.equal(png, err.path)
    assert.matches(png .. " was removed", err.message, 1, true)
    assert.equal(0, m.stats().create_requests)
  end)
end)

describe("audit: files out", function()
  it("a download that cannot be written (a full disk) names the file, and leaves no part of it", function()
    local later = helper.cleanups(function(fn) finally(fn) end)
    local m = helper.mock({ "--job-seconds", "0.05" })
    later(m.stop)
    local mnt = helper.tmpdir()
    later(function() helper.rmdir(mnt) end)
    -- a 64 KiB file system: the 300 kB output cannot fit (mounting needs root, as the suite runs)
    if not os.execute("mount -t tmpfs -o size=64k tmpfs " .. helper.shell_quote(mnt) .. " 2>/dev/null") then
      pending("cannot mount a tmpfs here (not root)")
      return
    end
    later(function() os.execute("umount " .. helper.shell_quote(mnt)) end)
    local c = helper.client(m, { retries = 1 })
    later(function() c:close() end)
    local job = assert(c:submit("acme/x", { prompt = "p [size=300000]" }))
    assert(job:await(10))
    local paths, err = job:download(mnt)
    assert.is_nil(paths)
    local want = mnt .. "/" .. require("modkie.download").name(job.id, 1, job.result.urls[1])
    assert.equal(want, err.path)
    assert.matches(want, err.message, 1, true)
    assert.matches("No space left on device", err.message, 1, true)
    assert.equal("", io.popen("ls -A " .. helper.shell_quote(mnt)):read("*a"))
  end)
end)

describe("audit: downloads' own timeout", function()
  -- A canned gateway, a client of it and a folder, gone after the test.
  local function start()
    local s = canned.start()
    local dir = helper.tmpdir()
    local c = modkie.new{ base_url = s.url, api_key = "k-files-0123456789", rate = false, poll_interval = 0.02,
      timeout = 30, retries = 0 }
    finally(function()
      c:close()
      s.stop()
      helper.rmdir(dir)
    end)
    return s, c, dir
  end

  -- An expired result link is asked for afresh, once; that second download
  -- used to get the whole timeout again and to go on after the error came back.
  it("holds for the fresh link too, and nothing goes on after the error", function()
    local s, c, dir = start()
    local function envelope(data) return '{"code":200,"msg":"success","data":' .. data .. "}" end
    s.answer("recordInfo", envelope(('{"taskId":"t_gone","state":"success","resultJson":%s}')
      :format(cjson.encode(cjson.encode({ resultUrls = { s.url .. "/files/gone.mp4" } })))))
    s.answer("gone.mp4", "no such file", 404)
    s.answer("download-url", envelope(cjson.encode(s.url .. "/files/slow.mp4")))
    s.answer("slow.mp4", ("v"):rep(4096), 200, "video/mp4", false, { delay = 8 })
    local job = c:job("t_gone")
    assert(job:await(10))
    local now = require("modkie.core").now
    local t0 = now()
    local paths, err = job:download(dir, { timeout = 1.5 })
    local took = now() - t0
    assert.is_nil(paths)
    assert.equal("timeout", err.kind)
    assert.is_true(took < 4, ("download took %.1f s with a 1.5 s timeout"):format(took))
    -- the fresh link's transfer was stopped with the error: nothing left in flight, no file
    assert.equal(0, c:stats().in_flight)
    assert.is_nil(helper.read_file(dir .. "/t_gone-1.mp4"))
    assert.is_nil(helper.read_file(dir .. "/t_gone-1.mp4.part"))
  end)

  -- README: `job:download(dir, { timeout = s })` bounds the whole call. The
  -- wait for the job is part of it: the downloads used to get the whole
  -- timeout again once the job had ended.
  it("counts the wait for the job in the call's timeout", function()
    local s, c, dir = start()
    -- the record comes 2 s after it is asked for; its output takes 8 s more
    s.answer("recordInfo", ('{"code":200,"msg":"success","data":{"taskId":"t_late","state":"success",'
      .. '"resultJson":%s}}'):format(cjson.encode(cjson.encode({ resultUrls = { s.url .. "/files/late.mp4" } }))),
      200, "application/json", false, { delay = 2 })
    s.answer("late.mp4", ("v"):rep(4096), 200, "video/mp4", false, { delay = 8 })
    local job = c:job("t_late")
    local now = require("modkie.core").now
    local t0 = now()
    local paths, err = job:download(dir, { timeout = 3 })
    local took = now() - t0
    assert.is_nil(paths)
    assert.equal("timeout", err.kind)
    assert.matches("within 3 s", err.message, 1, true)
    -- 3 s in all (it took 2 + 3 = 5 s before)
    assert.is_true(took < 4.2, ("download took %.1f s with a 3 s timeout"):format(took))
    assert.equal(0, c:stats().in_flight)
  end)
end)

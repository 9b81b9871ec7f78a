-- The job lifecycle end to end, against the emulator over real sockets.
local helper = require "spec.helper"
local modkie = require "modkie"

local KLING = "kling/kling-3-0"

for _, dialect in ipairs({ "kie", "modkie" }) do
  describe("a job, " .. dialect .. " dialect", function()
    local m, client

    setup(function()
      m = helper.mock({ "--dialect", dialect, "--job-seconds", "0.4" })
    end)
    teardown(function() m.stop() end)
    before_each(function() client = helper.client(m) end)
    after_each(function() client:close() end)

    it("is submitted, polled and returns the one result shape", function()
      local job = assert(client:submit(KLING, { prompt = "a red fox at dawn", aspect_ratio = "16:9", duration = 5 }))
      assert.equal("submitting", job.state)
      assert.is_nil(job.id)
      local res = assert(job:await(10))
      assert.equal("success", job.state)
      assert.equal("success", res.state)
      assert.matches("^task_", res.id)
      assert.equal(job.id, res.id)
      assert.equal(KLING, res.model)
      assert.equal(1, #res.urls)
      assert.matches("^http://127%.0%.0%.1:%d+/files/" .. res.id .. "/0%.mp4$", res.urls[1])
      assert.same({ resultUrls = res.urls }, res.output)
      assert.equal(35, res.credits)
      assert.is_number(res.created_at)
      assert.is_true(res.created_at > 1.7e9 and res.created_at < 1e10, "created_at is in Unix seconds")
      assert.is_true(res.completed_at >= res.created_at)
      assert.is_number(res.cost_time)
      assert.is_table(res.raw)
      assert.equal(res.id, res.raw.taskId)
      assert.is_true(job.polls >= 1)
    end)

    it("moves through the states and reports each change once", function()
      local seen = {}
      local c = helper.client(m, {
        poll_interval = 0.02,
        log = function(_, event, f) if event == "state" then seen[#seen + 1] = f.server_state end end,
      })
      local job = assert(c:submit(KLING, { prompt = "states [seconds=1]" }))
      assert(job:await(10))
      c:close()
      local expected = dialect == "kie" and { "waiting", "queuing", "generating" } or { "pending", "processing" }
      assert.same(expected, seen)
      assert.equal("success", job.server_state)
    end)

    it("returns a failed job as kind 'failed' with failCode as a number and failMsg", function()
      local job = assert(client:submit(KLING, { prompt = "doomed [fail]" }))
      local res, err = job:await(10)
      assert.is_nil(res)
      assert.equal("failed", err.kind)
      assert.equal(501, err.code)
      assert.equal("generation failed", err.message)
      assert.equal(job.id, err.task_id)
      assert.is_true(err.retryable)
      assert.equal("failed", job.state)
      assert.matches("failed", tostring(err))
    end)

    it("decodes a text result (resultObject) with no urls", function()
      local res = assert(assert(client:submit("some/text-model", { prompt = "hello [text]" })):await(10))
      assert.same({}, res.urls)
      assert.is_table(res.output.resultObject)
      assert.is_string(res.output.resultObject.text)
      assert.equal(10, res.credits)
    end)

    it("gives every url of a job with several outputs, and downloads them whole", function()
      local job = assert(client:submit(KLING, { prompt = "three [outputs=3] [size=50000]" }))
      local res = assert(job:await(10))
      assert.equal(3, #res.urls)
      local dir = helper.tmpdir() .. "/out/nested"
      local paths = assert(job:download(dir))
      assert.equal(3, #paths)
      for n, path in ipairs(paths) do
        assert.equal(dir .. "/" .. res.id .. "-" .. n .. ".mp4", path)
        local bytes = helper.read_file(path)
        assert.equal(50000, #bytes)
        assert.equal(helper.file_bytes(m, res.id, n - 1), bytes)
        assert.is_nil(helper.read_file(path .. ".part"))
      end
      helper.rmdir(dir:match("^(.*)/out/nested$"))
    end)

    it("answers record, credits and download_url", function()
      local before = assert(client:credits())
      assert.is_number(before)
      local job = assert(client:submit(KLING, { prompt = "priced" }))
      local res = assert(job:await(10))
      assert.equal(before - 35, assert(client:credits()))
      local rec = assert(client:record(res.id))
      assert.equal(res.id, rec.taskId)
      assert.equal("success", rec.state)
      local link = assert(client:download_url(res.urls[1]))
      assert.matches("^" .. res.urls[1]:gsub("%p", "%%%0") .. "%?token=", link)
    end)

    it("adopts a task created earlier with client:job", function()
      local first = assert(client:submit(KLING, { prompt = "resume me [seconds=0.6]" }))
      while not first.id do client:step(0.05) end
      local id = first.id
      client:close()
      local other = helper.client(m)
      local job = assert(other:job(id, { model = KLING }))
      assert.equal(id, job.id)
      local res = assert(job:await(10))
      assert.equal(id, res.id)
      other:close()
    end)
  end)
end

describe("downloads", function()
  it("never send the API key to a host that is not the gateway's", function()
    local m = helper.mock({ "--job-seconds", "0" })
    local client = helper.client(m)
    local dir = helper.tmpdir()
    finally(function() client:close(); m.stop(); helper.rmdir(dir) end)
    local res = assert(assert(client:submit(KLING, { prompt = "a" })):await(10))
    local path = "/files/" .. res.id .. "/0.mp4"
    -- same server, another host name: another origin, so no key
    local elsewhere = client:download_file("http://localhost:" .. m.port .. path, dir .. "/x.mp4")
    client.scheduler:wait_all({ elsewhere }, 10)
    assert.is_nil(elsewhere.error)
    assert.equal(1, m.stats().files)
    assert.equal(0, m.stats().files_with_auth)
    -- the gateway's own origin is trusted with it
    local own = client:download_file(m.url .. path, dir .. "/y.mp4")
    client.scheduler:wait_all({ own }, 10)
    assert.equal(1, m.stats().files_with_auth)
    assert.equal(helper.read_file(dir .. "/x.mp4"), helper.read_file(dir .. "/y.mp4"))
  end)

  it("keep no partial file when the download fails", function()
    local m = helper.mock({ "--job-seconds", "0" })
    local client = helper.client(m, { retries = 0 })
    local dir = helper.tmpdir()
    finally(function() helper.rmdir(dir); client:close(); m.stop() end)
    local p = client:download_file(m.url .. "/files/task_missing/0.mp4", dir .. "/gone.mp4")
    client.scheduler:wait_all({ p }, 10)
    assert.equal("not_found", p.error.kind)
    assert.is_nil(helper.read_file(dir .. "/gone.mp4"))
    assert.is_nil(helper.read_file(dir .. "/gone.mp4.part"))
  end)
end)

describe("the HTTP engine", function()
  local m
  setup(function() m = helper.mock({ "--job-seconds", "0.2" }) end)
  teardown(function() m.stop() end)

  it("keeps connections alive across many polls", function()
    local maker = helper.client(m)
    local made = {}
    for i = 1, 30 do made[i] = assert(maker:submit(KLING, { prompt = "keepalive " .. i .. " [seconds=0.5]" })) end
    while maker:step(0.05) > 0 and not made[30].id do end
    for i = 1, 30 do while not made[i].id do maker:step(0.05) end end
    maker:close()
    -- another client adopts the 30 tasks and polls them all
    local client = helper.client(m, { max_connections = 4 })
    local before = m.stats().connections
    local jobs = {}
    for i, job in ipairs(made) do jobs[i] = assert(client:job(job.id)) end
    local results, errs = modkie.await_all(jobs, 20)
    for i = 1, 30 do assert.is_table(results[i], errs[i] and tostring(errs[i])) end
    -- at least one poll a job (more when a job was still running: under
    -- valgrind on a loaded machine the 0.5 s jobs can all end before the
    -- adoption, and one poll each then ends them)
    local polls = client:stats().polls
    assert.is_true(polls >= 30, polls .. " polls")
    client:close()
    local opened = m.stats().connections - before - 1 -- this stats request is one
    assert.is_true(opened <= 4, "opened " .. opened .. " connections for " .. polls .. " polls")
  end)

  it("gives each createTask a connection of its own, so libcurl can never re-send one", function()
    local client = helper.client(m, { max_connections = 4 })
    local before = m.stats().connections
    local jobs = {}
    for i = 1, 10 do jobs[i] = assert(client:submit(KLING, { prompt = "fresh " .. i })) end
    modkie.await_all(jobs, 20)
    client:close()
    local opened = m.stats().connections - before - 1
    assert.is_true(opened >= 10 and opened <= 10 + 4, "opened " .. opened .. " connections for 10 jobs")
  end)

  it("sends no Expect: 100-continue, even with a long prompt", function()
    local client = helper.client(m)
    local long = ("a long scene description. "):rep(8000)
    local res = assert(assert(client:submit(KLING, { prompt = long })):await(10))
    assert.is_string(res.id)
    assert.equal(0, m.stats().expect_headers)
    client:close()
  end)

  it("caps the response size: over it the error kind is protocol", function()
    local client = helper.client(m, { max_body = 100 })
    local job = assert(client:submit(KLING, { prompt = "big record" }))
    local res, err = job:await(10)
    assert.is_nil(res)
    assert.equal("protocol", err.kind)
    assert.matches("size cap", err.message)
    client:close()
  end)

  it("runs two clients in one Lua state independently", function()
    local other = helper.mock({ "--dialect", "modkie", "--job-seconds", "0.3" })
    finally(function() other.stop() end)
    local a, b = helper.client(m), helper.client(other)
    local ja = assert(a:submit(KLING, { prompt = "from a" }))
    local jb = assert(b:submit(KLING, { prompt = "from b" }))
    a:close() -- closing one must not disturb the other
    local _, err = ja:await(1)
    assert.equal("cancelled", err.kind)
    local res = assert(jb:await(10))
    assert.equal(jb.id, res.id)
    assert.equal(0, m.stats().submits_by_prompt["from b"] or 0)
    assert.equal(1, other.stats().submits_by_prompt["from b"])
    b:close()
  end)
end)

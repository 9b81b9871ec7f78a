-- Hostile or odd gateway answers, through the public API only, over real
-- sockets: a canned server (spec/support/canned_server.lua) says exactly what
-- each test chooses. What spec/untrusted_spec.lua already covers (wrong types
-- in every field, huge and deep bodies) is not repeated here: these are the
-- answers whose contradictions cost money or send a user the wrong way.
local canned = require "spec.support.canned"
local modkie = require "modkie"
local helper = require "spec.helper"
local cjson = require "cjson"

local KLING = "kling/kling-3-0"

local function envelope(data, code) return '{"code":' .. (code or 200) .. ',"msg":"success","data":' .. data .. "}" end

local function count(s, what)
  local n = 0
  for _, r in ipairs(s.requests()) do if r:find(what, 1, true) then n = n + 1 end end
  return n
end

describe("hostile gateway answers", function()
  local s

  setup(function() s = canned.start() end)
  teardown(function() s.stop() end)

  local function client(opts)
    local o = { base_url = s.url, api_key = "k-hostile-0123456789", rate = false, poll_interval = 0.02,
      deadline = 20, timeout = 5, retries = 3 }
    for k, v in pairs(opts or {}) do o[k] = v end
    return modkie.new(o)
  end

  it("counts the answers that refused: 429 as rate_limited, 455 (service unavailable) as unavailable", function()
    local c = client({ retries = 1 })
    finally(function() c:close() end)
    s.answer("createTask", '{"code":455,"msg":"Service unavailable"}', 455)
    local _, err = assert(c:submit(KLING, { prompt = "the gateway is away" })):await(15)
    assert.equal("server", err.kind)
    s.answer("createTask", '{"code":429,"msg":"Too many requests"}', 200)
    _, err = assert(c:submit(KLING, { prompt = "too many" })):await(15)
    assert.equal("rate_limit", err.kind)
    local st = c:stats()
    assert.same({ 2, 2 }, { st.unavailable, st.rate_limited }) -- each create and its one retry
  end)

  -- A createTask answered "429" or "455" (the HTTP status or the envelope's
  -- code) whose body names the task it created: the task exists, and each
  -- retry created (and billed) another one. The README: createTask is retried
  -- only when no task can have been created.
  it("regression: a createTask refusal (429, 455) whose body names a task is not retried, and keeps the id", function()
    local c = client()
    finally(function() c:close() end)
    local answers = {
      { envelope('{"taskId":"task_made"}'), 429 },
      { envelope('{"taskId":"task_made"}'), 455 },
      { envelope('{"taskId":"task_made"}', 429), 200 },
      { envelope('{"taskId":"task_made"}', 455), 200 },
    }
    for _, a in ipairs(answers) do
      s.answer("createTask", a[1], a[2])
      local before = count(s, "createTask")
      local job = assert(c:submit(KLING, { prompt = "named yet refused" }))
      local res, err = job:await(15)
      local label = ("HTTP %d, body %s"):format(a[2], a[1])
      assert.is_nil(res, label)
      assert.equal(1, count(s, "createTask") - before, label .. ": createTask sent more than once")
      assert.equal("ambiguous", err.kind, label)
      assert.equal("task_made", err.task_id, label)
      assert.matches("task_made", err.message, 1, true)
      assert.equal(KLING, err.model)
    end
  end)

  -- The same for an answer that says both: HTTP 500 with code 200 and the
  -- task's id. It was ambiguous already, but the id the gateway gave was
  -- thrown away: the user could not adopt the task it had paid for.
  it("regression: a createTask answered HTTP 500 with code 200 and a taskId is ambiguous, carrying the id", function()
    local c = client()
    finally(function() c:close() end)
    s.answer("createTask", envelope('{"taskId":"task_500"}'), 500)
    local before = count(s, "createTask")
    local res, err = assert(c:submit(KLING, { prompt = "500 but named" })):await(15)
    assert.is_nil(res)
    assert.equal(1, count(s, "createTask") - before)
    assert.equal("ambiguous", err.kind)
    assert.equal("task_500", err.task_id)
  end)

  -- A taskId over the 1,024 bytes the engine takes: the gateway created a
  -- task (it said so, with code 200) whose id cannot be polled. That is the
  -- definition of ambiguous; it came back as `protocol` without the model
  -- and input, and a batch rerun submits a row that ended so again (no id).
  it("regression: a createTask success with an over-long taskId is ambiguous, with the model and input", function()
    local c = client()
    finally(function() c:close() end)
    s.answer("createTask", envelope('{"taskId":"task_' .. ("x"):rep(2000) .. '"}'))
    local before = count(s, "createTask")
    local input = { prompt = "long id" }
    local res, err = assert(c:submit(KLING, input)):await(15)
    assert.is_nil(res)
    assert.equal(1, count(s, "createTask") - before)
    assert.equal("ambiguous", err.kind)
    assert.equal(KLING, err.model)
    assert.equal("long id", err.input.prompt)
  end)
end)

describe("hostile result links", function()
  local s

  setup(function() s = canned.start() end)
  teardown(function() s.stop() end)

  -- A result URL that is no URL at all (a relative path, a URL with a space
  -- or a line break) was a `network` error, retried `retries` times with
  -- backoff as if a connection had failed. The README: a link that is not
  -- http(s) is `protocol`, not retried.
  it("regression: a result link that is not a URL fails at once as protocol, naming the link", function()
    local retried = 0
    local c = modkie.new{ base_url = s.url, api_key = "k-hostile-0123456789", rate = false, poll_interval = 0.02,
      timeout = 5, retries = 3, log = function(_, event) if event == "retry" then retried = retried + 1 end end }
    local dir = helper.tmpdir()
    finally(function()
      c:close()
      helper.rmdir(dir)
    end)
    for _, link in ipairs({ "/files/a.mp4", s.url .. "/files/a b.mp4", s.url .. "/files/a\r\nX: 1.mp4" }) do
      s.answer("recordInfo", envelope(('{"taskId":"t_link","state":"success","resultJson":%s}')
        :format(cjson.encode(cjson.encode({ resultUrls = { link } })))))
      local job = c:job("t_link")
      local res = assert(job:await(10))
      assert.same({ link }, res.urls)
      retried = 0
      local paths, err = job:download(dir)
      assert.is_nil(paths, link)
      assert.equal("protocol", err.kind, link)
      assert.equal(link, err.url)
      assert.equal(0, retried, link .. ": retried")
      assert.is_nil(helper.read_file(dir .. "/t_link-1.mp4"))
    end
  end)
end)

describe("hostile task ids and downloads", function()
  local s

  setup(function() s = canned.start() end)
  teardown(function() s.stop() end)

  -- The engine takes task ids of up to 1,024 bytes, and job:download names
  -- files <id>-<n>.<ext>: an id over ~245 bytes made a name the file system
  -- refuses (ENAMETOOLONG), so a job that succeeded could not save its
  -- outputs ("config error: could not write the file: File name too long").
  it("regression: a job with a 300-byte task id downloads its outputs under names that fit, one per task", function()
    local c = modkie.new{ base_url = s.url, api_key = "k-hostile-0123456789", rate = false, poll_interval = 0.02,
      timeout = 5, retries = 1 }
    local dir = helper.tmpdir()
    finally(function()
      c:close()
      helper.rmdir(dir)
    end)
    s.answer("a.mp4", "the bytes")
    local names = {}
    for _, last in ipairs({ "1", "2" }) do
      local id = ("t"):rep(299) .. last
      s.answer("recordInfo", envelope(('{"taskId":"%s","state":"success","resultJson":{"resultUrls":["%s"]}}')
        :format(id, s.url .. "/files/a.mp4")))
      local job = c:job(id)
      local paths, err = job:download(dir)
      assert(paths, tostring(err))
      assert.equal("the bytes", helper.read_file(paths[1]))
      local name = paths[1]:match("[^/]+$")
      assert.is_true(#name <= 255, name)
      assert.matches("^ttt", name)
      assert.matches("%-1%.mp4$", name)
      names[#names + 1] = name
    end
    assert.are_not.equal(names[1], names[2])
  end)
end)

describe("a record's ISO 8601 times", function()
  local core = require "modkie.core"
  local function created(t)
    local res = assert(core.read_record(cjson.encode({ code = 200, data = { taskId = "t_iso", state = "success",
      createTime = t, resultJson = cjson.encode({ resultUrls = { "https://files.example/a.png" } }) } })))
    return res.created_at
  end

  it("read their zone in either of ISO 8601's forms, and no time with a signed field", function()
    assert.equal(1710901800, created("2024-03-20T02:30:00Z"))
    assert.equal(1710901800, created("2024-03-20T10:30:00+08:00"))
    assert.equal(1710901800, created("2024-03-20T10:30:00+0800")) -- the basic format
    assert.equal(1710901800, created("2024-03-19T21:30:00-05:00"))
    assert.is_nil(created("2024-03-20T-1:30:00Z")) -- sscanf's %2d took the sign
    assert.is_nil(created("2024-03-20T10:-5:00Z"))
    assert.is_nil(created("2024-03-20T10:30:00+-8:00"))
    assert.is_nil(created("2024-03-20 10:30:00")) -- no zone: no instant
  end)
end)

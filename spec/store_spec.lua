-- rate.shared inside one process: what the stores keep, what they leave
-- alone, and what happens when they cannot be reached. The multi-process
-- runs are spec/shared_spec.lua (#shared) and spec/openresty_spec.lua.
local helper = require "spec.helper"
local redis = require "spec.redis"
local modkie = require "modkie"

local KLING = "kling/kling-3-0"
local KEY = "sk-store-spec-0123456789abcdef"

-- Step clients until every job has ended (or `seconds` pass).
local function drive(clients, jobs, seconds)
  helper.step_until_done(clients, jobs, seconds or 60)
  for i, j in ipairs(jobs) do assert.equal("success", j.state, "job " .. i .. ": " .. tostring(j.error)) end
end

local function client(m, store, opts)
  local events = {}
  local o = {
    base_url = m.url, api_key = KEY, poll_interval = 0.05,
    rate = { submit = { 4, 0.5 }, poll = { 10, 0.2 }, shared = store, clients = 2 },
    log = function(level, event, f)
      if event == "store" then events[#events + 1] = { level = level, state = f.state, message = f.message } end
    end,
  }
  for k, v in pairs(opts or {}) do o[k] = v end
  return modkie.new(o), events
end

local function submit(c, n, tag)
  local jobs = {}
  for i = 1, n do jobs[i] = assert(c:submit(KLING, { prompt = ("%s %d"):format(tag, i) })) end
  return jobs
end

describe("rate.shared in one process", function()
  local m, dir

  -- The emulator's windows are shorter than the clients' (0.2 s for 0.5,
  -- 0.05 for 0.2): two clients that did not share would still send twice its
  -- limit at once, and a slow run (valgrind beside three other CI lanes on
  -- two CPUs) may send its grants late: with 0.4 s and 0.15 s CI once had
  -- one request answered 429 there (file store), with 0.3 s and 0.1 s three
  -- (Redis).
  setup(function() m = helper.mock({ "--job-seconds", "0.2", "--limits", "create=4/0.2,poll=10/0.05" }) end)
  teardown(function() m.stop() end)
  before_each(function()
    m.request("POST", "/__mock/reset")
    dir = helper.tmpdir()
  end)
  after_each(function() helper.rmdir(dir) end)

  it("shares a file store between two clients: 0 answered 429, and the key is not in the file", function()
    local path = dir .. "/windows"
    local a = client(m, "file:" .. path)
    local b = client(m, "file:" .. path)
    local jobs = submit(a, 8, "file a")
    for _, j in ipairs(submit(b, 8, "file b")) do jobs[#jobs + 1] = j end
    drive({ a, b }, jobs)
    assert.equal(0, m.stats().rate_limited)
    assert.equal(0, a:stats().rate_limited + b:stats().rate_limited)
    assert.equal("shared", a:stats().store)
    local bytes = assert(helper.read_file(path))
    assert.is_nil(bytes:find(KEY, 1, true))
    assert.is_nil(bytes:find(KEY:sub(4, 20), 1, true))
    a:close()
    b:close()
  end)

  it("leaves a file that is not its own as it is: local windows, one warning", function()
    local path = dir .. "/notes.txt"
    helper.write_file(path, "my notes, not a window file\n")
    local c, events = client(m, "file:" .. path)
    drive({ c }, submit(c, 4, "foreign"))
    assert.equal("my notes, not a window file\n", helper.read_file(path))
    assert.equal(1, #events)
    assert.equal("warn", events[1].level)
    assert.equal("away", events[1].state)
    assert.matches("not a modkie window file", events[1].message)
    assert.equal("away", c:stats().store)
    assert.is_true(c:stats().local_grants > 0)
    c:close()
  end)

  it("carries on when Redis cannot be reached: one warning, every job done", function()
    local c, events = client(m, ("redis://127.0.0.1:%d/0"):format((helper.held_port(finally))))
    drive({ c }, submit(c, 6, "no redis"))
    assert.equal(1, #events)
    assert.equal("away", events[1].state)
    assert.matches("redis 127%.0%.0%.1:%d+: cannot connect", events[1].message)
    assert.equal(0, m.stats().rate_limited)
    c:close()
  end)

  describe("with Redis", function()
    local r
    setup(function() r = redis.start() end)
    teardown(function() r.stop() end)

    it("shares it between two clients, keyed by a hash: the key is in no key and no value", function()
      local a = client(m, r.url(5))
      local b = client(m, r.url(5))
      local jobs = submit(a, 6, "redis a")
      for _, j in ipairs(submit(b, 6, "redis b")) do jobs[#jobs + 1] = j end
      drive({ a, b }, jobs)
      assert.equal(0, m.stats().rate_limited)
      assert.equal(0, a:stats().local_grants + b:stats().local_grants)
      local dump = assert(io.popen(("redis-cli -p %d -n 5 --scan"):format(r.port))):read("*a")
      local keys = {}
      for k in dump:gmatch("[^\n]+") do keys[#keys + 1] = k end
      table.sort(keys)
      assert.equal(4, #keys) -- clients, create, epoch, poll
      for _, k in ipairs(keys) do
        assert.matches("^modkie:{%x+}:%a+$", k)
        local value = assert(io.popen(("redis-cli -p %d -n 5 --no-raw dump %s | od -c"):format(r.port, k))):read("*a")
        assert.is_nil(value:find(KEY:sub(4, 12), 1, true))
      end
      a:close()
      b:close()
    end)

    it("is driven by update() alone, as in a game loop or OpenResty", function()
      local c, events = client(m, r.url(7))
      local jobs = submit(c, 6, "update only")
      local deadline = helper.now() + 60
      local function left()
        for _, j in ipairs(jobs) do if not j.done then return true end end
        return false
      end
      while left() and helper.now() < deadline do
        c:update()
        helper.sleep(math.min(c:timeout() or 0.01, 0.01))
      end
      for i, j in ipairs(jobs) do assert.equal("success", j.state, "job " .. i) end
      assert.same({}, events) -- never away: the store answered through update()
      assert.equal(0, c:stats().local_grants)
      assert.is_true(c:stats().store_grants >= 12)
      c:close()
    end)

    it("notices a restart that lost its windows, even between questions", function()
      local c, events = client(m, r.url(6))
      drive({ c }, submit(c, 3, "before restart"))
      r.kill9()
      r.start()
      drive({ c }, submit(c, 3, "after restart"))
      assert.same({ "away", "back" }, { events[1].state, events[2].state })
      assert.equal(0, m.stats().rate_limited)
      c:close()
    end)
  end)

  it("keeps a waiting create's place when it comes back from a retry", function()
    local c = client(m, nil, { rate = { submit = { 1, 0.15 }, poll = false } })
    local jobs = { assert(c:submit(KLING, { prompt = "first [fault=create:429x1]" })) }
    for i = 2, 10 do jobs[i] = assert(c:submit(KLING, { prompt = "next " .. i })) end
    drive({ c }, jobs)
    local _, tasks = m.request("GET", "/__mock/tasks")
    local at
    for i, t in ipairs(tasks) do if t.prompt:match("^first") then at = i end end
    -- its retry comes due after ~1 s (Retry-After), while later creates still
    -- wait: it goes before them, not behind the last one
    assert.is_true(at < 10, "created " .. tostring(at) .. "th of 10")
    c:close()
  end)

  it("refuses a store it does not know, naming the option", function()
    assert.has_error(function() modkie.new{ api_key = "k", rate = { shared = "memcached://x" } } end,
      "modkie.new: option 'rate.shared' must be an OpenResty shared dict (ngx.shared.NAME), \"file:/path\" or "
      .. "\"redis://host:port/db\", got another string")
    assert.has_error(function() modkie.new{ api_key = "k", rate = { shared = {} } } end)
    assert.has_error(function() modkie.new{ api_key = "k", rate = { clients = 0 } } end,
      "modkie.new: option 'rate.clients' must be a whole number from 1 to 1e6 (the clients sharing the account)")
    assert.has_error(function() modkie.new{ api_key = "k", rate = { shard = "file:/x" } } end,
      "modkie.new: unknown option 'rate.shard' (did you mean 'rate.shared'?)")
    local ok, err = pcall(modkie.new, { api_key = "k", rate = { shared = "redis://:secret-pw@127.0.0.1:99999/0" } })
    assert.is_false(ok)
    assert.matches("rate.shared: redis: not a redis://%[%[user%]:password@%]host%[:port%]%[/db%] URL", err)
    assert.is_nil(tostring(err):find("secret-pw", 1, true))
    -- the half-made client is collected without an error (Lua 5.2 and 5.3 raise those)
    collectgarbage()
    collectgarbage()
  end)
end)

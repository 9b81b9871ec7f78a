-- How the client drives libcurl (docs/embedding.md, "Two ways of driving
-- libcurl"): by libcurl's own loop (curl_multi_perform + curl_multi_poll)
-- until a host asks for the sockets with client:fds(), then, for good,
-- through libcurl's socket interface. Both ways and the switch, through the
-- emulator: every job ends once, nothing is sent twice.
local helper = require "spec.helper"
local uv = require "luv"

describe("driving libcurl", function()
  local m
  setup(function() m = helper.mock({ "--job-seconds", "0.3" }) end)
  teardown(function() m.stop() end)

  local KLING = "kling/kling-3-0"

  -- n jobs submitted from coroutines of the client; their results by index
  local function submit_all(client, n, results, tag)
    for i = 1, n do
      client:go(function()
        results[i] = { assert(client:submit(KLING, { prompt = tag .. " " .. i })):await(30) }
      end)
    end
  end

  local function assert_all_ended(results, n)
    for i = 1, n do
      assert.is_table(results[i], "job " .. i .. " ended")
      assert.equal("success", results[i][1] and results[i][1].state, tostring(results[i][2]))
    end
  end

  it("a client stepped by itself runs on libcurl's own loop and ends every job once", function()
    local client = helper.client(m, { max_connections = 4 })
    local creates = m.stats().creates
    local results = {}
    submit_all(client, 12, results, "poll drive")
    client:run()
    assert_all_ended(results, 12)
    assert.equal("poll", client:stats().drive)
    assert.equal(creates + 12, m.stats().creates, "each job created once")
    client:close()
  end)

  it("fds() while transfers are in flight lists their sockets at once; the jobs end as before", function()
    local client = helper.client(m, { max_connections = 8 })
    local creates = m.stats().creates
    local results = {}
    submit_all(client, 16, results, "switch")
    local tries = 0
    repeat -- start the createTasks on libcurl's own loop
      client:step(0)
      tries = tries + 1
    until client:stats().in_flight > 0 or tries > 1000
    assert.equal("poll", client:stats().drive)
    local in_flight = client:stats().in_flight
    assert.is_true(in_flight > 0, "createTasks in flight")
    local fds = client:fds()
    assert.equal("sockets", client:stats().drive)
    assert.is_true(#fds >= 1, "the sockets of the transfers in flight are listed")
    for _, s in ipairs(fds) do
      assert.is_number(s.fd)
      assert.matches("^r?w?$", s.events)
    end
    -- a host's own loop from here on: it waits on fds() and timeout()
    local driver = require("modkie.luv").attach(client, uv)
    uv.run()
    driver.close()
    uv.run()
    assert_all_ended(results, 16)
    assert.equal("sockets", client:stats().drive, "the switch is for good")
    assert.equal(creates + 16, m.stats().creates, "each job created once")
    assert.same({}, client:fds())
    client:close()
  end)

  it("a client that switched still blocks in step by itself, and stays switched", function()
    local client = helper.client(m, { max_connections = 4 })
    local results = {}
    submit_all(client, 4, results, "first")
    client:step(0)
    client:step(0)
    client:fds() -- in flight or not: the switch
    assert.equal("sockets", client:stats().drive)
    client:run() -- the engine polls the sockets itself
    assert_all_ended(results, 4)
    results = {}
    submit_all(client, 6, results, "after")
    client:run()
    assert_all_ended(results, 6)
    assert.equal("sockets", client:stats().drive)
    client:close()
  end)
end)

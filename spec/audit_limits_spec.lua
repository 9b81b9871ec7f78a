-- An adversarial read of the rate windows and their stores (rate.shared),
-- through the public API with real processes and real servers: the emulator
-- (bin/modkie mock), redis-server, a full file system (a tmpfs mounted in a
-- private mount namespace: `unshare -rm`; skipped where that is not allowed).
local helper = require "spec.helper"
local cjson = require "cjson"

local LUA = os.getenv("MODKIE_TEST_LUA") or "lua5.4"

-- Run spec/support/rate_worker.lua (one client process of the account),
-- its command line handed through `wrap` (a function returning the shell
-- line to run) if given; returns its report (nil if it printed none), its
-- output, and how it ended (io.popen's close: "exit"/"signal", the number).
local function worker(wrap, url, jobs, store, clients, tag)
  local cmd = ("exec %s spec/support/rate_worker.lua %s %d 20/10 10/1 %s %s 0.05 %s"):format(
    LUA, url, jobs, helper.shell_quote(store), clients or "-", tag or "w")
  local p = assert(io.popen((wrap and wrap(cmd) or cmd) .. " 2>&1", "r"))
  local text = p:read("*a")
  local _, how, code = p:close()
  local ok, report = pcall(cjson.decode, text:match("([^\n]*)\n?$") or "")
  return ok and type(report) == "table" and report or nil, text, how, code
end

local function can_mount()
  return os.execute("unshare -rm sh -c 'mount -t tmpfs -o size=64k none /tmp' >/dev/null 2>&1") == true
end

describe("audit: rate windows and their stores", function()
  local later, start = helper.cleanups(function(fn) finally(fn) end)

  it("a file store on a full file system: away and carried on at 1/N, the process not killed (SIGBUS)", function()
    if not can_mount() then
      pending("cannot mount a tmpfs in a private namespace here (unshare -rm)")
      return
    end
    local m = start({ "--job-seconds", "0.2" })
    local dir = helper.tmpdir()
    later(function() helper.rmdir(dir) end)
    -- a 64 KiB tmpfs filled to the last byte: ftruncate still grows a file
    -- there (a hole), but a write into the hole finds no block
    local function wrap(cmd)
      return ("unshare -rm sh -c %s"):format(helper.shell_quote(
        ("mount -t tmpfs -o size=64k none %s && head -c 65536 /dev/zero > %s/fill 2>/dev/null; %s"):format(
          helper.shell_quote(dir), helper.shell_quote(dir), cmd)))
    end
    local report, text, how, code = worker(wrap, m.url, 3, "file:" .. dir .. "/windows", 2, "full")
    assert.is_table(report, ("the client process ended %s %s: %s"):format(how, code, text))
    assert.same({}, report.errors)
    assert.equal(3, report.ok)
    assert.equal("away", report.store)
    assert.same({ "away" }, report.store_events)
    assert.equal(0, report.rate_limited)
  end)
end)

describe("audit: a Redis store whose clock stepped back #shared", function()
  local redis = require "spec.redis"
  local windows = require "spec.support.windows"
  local modkie = require "modkie"
  local later, start = helper.cleanups(function(fn) finally(fn) end)
  local KEY = "sk-audit-limits-clock"

  local function cli(r, args)
    local p = assert(io.popen(("redis-cli -p %d %s 2>&1"):format(r.port, args)))
    local out = p:read("*a")
    p:close()
    return out
  end

  local drive = helper.step_until_done

  it("counts grants stamped ahead of Redis's clock as given now: never over the limit in a window", function()
    local r = redis.start()
    later(r.stop)
    local m = start({ "--job-seconds", "0.2", "--limits", "create=5/2,poll=100/1" })
    local function client()
      return modkie.new{ base_url = m.url, api_key = KEY, poll_interval = 0.05,
        rate = { submit = { 5, 2 }, poll = { 100, 1 }, shared = r.url(0), clients = 2 } }
    end
    local a, b = client(), client()
    later(function() a:close(); b:close() end)
    local first = {}
    for i = 1, 5 do first[i] = assert(a:submit("kling/kling-3-0", { prompt = "before the step " .. i })) end
    drive({ a }, first, 10)
    -- Redis's host clock steps back an hour (an NTP step, a VM resumed, a
    -- failover to a replica whose clock is behind): the script then reads
    -- the grants it just gave as an hour ahead of its TIME. Shifting the
    -- stamps an hour ahead shows the script exactly that.
    local key = cli(r, "--scan --pattern 'modkie:*:create'"):match("(modkie:%S+:create)")
    assert.truthy(key, "the create lane's key in Redis")
    local stamps = {}
    for s in cli(r, "LRANGE " .. key .. " 0 -1"):gmatch("[%d.]+") do stamps[#stamps + 1] = tonumber(s) end
    assert.equal(5, #stamps)
    for i, s in ipairs(stamps) do cli(r, ("LSET %s %d %.6f"):format(key, i - 1, s + 3600)) end
    local second = {}
    for i = 1, 5 do second[i] = assert(b:submit("kling/kling-3-0", { prompt = "after the step " .. i })) end
    drive({ a, b }, second, 20)
    for i, j in ipairs(second) do assert.equal("success", j.state, "job " .. i .. ": " .. tostring(j.error)) end
    local creates, _, refused = windows.arrivals(m, "create")
    local most = windows.busiest(creates, 2)
    assert.is_true(most <= 5, ("%d creates in one 2 s window (limit 5), %d answered 429"):format(most, refused))
    assert.equal(0, refused, "answered 429")
    assert.equal(10, #creates)
  end)
end)

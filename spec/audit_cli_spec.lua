-- An adversarial read of the command line as scripts and people use it:
-- `bin/modkie` run as a child process against the emulator. Each case is a
-- bug found by the audit (docs/cli.md says what should happen).
local helper = require "spec.helper"
local H = require "spec.batch_helper"
local cjson = require "cjson"

local KLING = "kling/kling-3-0"
local LUA = os.getenv("MODKIE_TEST_LUA") or "lua5.4"
local q = helper.shell_quote

describe("modkie command line (audit)", function()
  local m, env, dir

  setup(function()
    m = helper.mock({ "--job-seconds", "0.2" })
    env = { MODKIE_API_KEY = "test-key", MODKIE_BASE_URL = m.url }
  end)
  teardown(function() m.stop() end)
  before_each(function()
    dir = helper.tmpdir()
    env.MODKIE_STATE_DIR = dir .. "/state"
  end)
  after_each(function() helper.rmdir(dir) end)

  local function modkie(argv, extra) return H.runner(env)(argv, extra) end

  -- a Lua error escaping main: what a user must never see
  local function no_traceback(r)
    assert.not_matches("stack traceback", r.err, 1, true)
    assert.not_matches("bad argument", r.err, 1, true)
  end

  it("status and wait refuse an empty or oversized TASK_ID as a usage error (exit 2), not a traceback", function()
    -- `modkie status "$ID"` with ID unset is what a script does
    for _, c in ipairs({ "status", "wait" }) do
      local r = modkie({ c, "" })
      no_traceback(r)
      assert.equal(2, r.code, r.err)
      assert.matches("modkie " .. c .. ": TASK_ID is empty", r.err, 1, true)
      r = modkie({ c, ("a"):rep(2000) })
      no_traceback(r)
      assert.equal(2, r.code, r.err)
      assert.matches("TASK_ID is 2000 bytes", r.err, 1, true)
    end
  end)

  it("list shows every other task when a record line has fields of the wrong type", function()
    assert(os.execute("mkdir -p " .. q(env.MODKIE_STATE_DIR)))
    H.write(env.MODKIE_STATE_DIR .. "/tasks.jsonl", table.concat({
      '{"id":"task_ok_1","model":"kling/kling-3-0","via":"submit","prompt":"fine","t":1700000000}',
      '{"id":"task_bad_t","t":"yesterday","model":5}',
      '{"id":"task_far","t":1e300,"prompt":{"a":1}}',
      '{"id":"task_neg","t":-1e18}',
      '{"id":"task_ok_2","model":"kling/kling-3-0","via":"submit","prompt":"last","t":1700000100}',
      '{"id":"task_ok_2","state":"success","t":1700000200}',
      '{"id":"task_ok_1","state":5,"t":1700000300}', -- an end of the wrong type: not a new submit
    }, "\n") .. "\n")
    local r = modkie({ "list" })
    no_traceback(r)
    assert.equal(0, r.code, r.err)
    for _, id in ipairs({ "task_ok_1", "task_bad_t", "task_far", "task_neg", "task_ok_2" }) do
      assert.matches("\n?" .. id .. "  ", r.out)
    end
    assert.matches("task_ok_2  %d%d%d%d%-%d%d%-%d%d %d%d:%d%d  kling/kling%-3%-0  success", r.out)
    assert.not_matches("table: 0x", r.out, 1, true)
    r = modkie({ "list", "--json" })
    assert.equal(0, r.code, r.err)
    local list = cjson.decode(r.out)
    assert.equal(5, #list)
    assert.is_nil(list[2].submitted_at) -- "yesterday" is no time
    assert.is_nil(list[2].model)        -- 5 is no model id
    assert.is_nil(list[3].prompt)
    assert.equal(1700000000, list[1].submitted_at)
    assert.equal("kling/kling-3-0", list[1].model) -- not blanked by the bad end line
    assert.equal("fine", list[1].prompt)
    -- wait --last still finds the last task
    r = modkie({ "status", "--last", "--json" })
    assert.equal("task_ok_2", cjson.decode(r.out).id)
  end)

  it("a plain-http --base-url to another host is a usage error (exit 2) naming the flag, not an auth one", function()
    local r = modkie({ "credits", "--base-url", "http://example.com" })
    assert.equal(2, r.code, r.err)
    assert.matches("--base-url", r.err, 1, true)
    assert.not_matches("allow_insecure", r.err, 1, true) -- no flag of the command line
    -- an out-of-range value names the flag, not modkie.new's option
    r = modkie({ "wait", "task_x", "--timeout", "1e9" })
    assert.equal(2, r.code, r.err)
    assert.matches("modkie: --timeout must be", r.err, 1, true)
    r = modkie({ "wait", "task_x", "--poll-interval", "1e9" })
    assert.equal(2, r.code, r.err)
    assert.matches("modkie: --poll-interval must be", r.err, 1, true)
    assert.not_matches("function", r.err, 1, true)
    -- the key's own problem stays exit 3
    r = modkie({ "credits" }, { MODKIE_API_KEY = " spaced" })
    assert.equal(3, r.code, r.err)
  end)

  it("output that cannot be written (stdout on a full disk) is not exit 0; the task is still recorded", function()
    local function to_full(argv)
      local cmd = ("env MODKIE_API_KEY=test-key MODKIE_BASE_URL=%s MODKIE_STATE_DIR=%s %s bin/modkie")
        :format(q(m.url), q(env.MODKIE_STATE_DIR), LUA)
      for _, a in ipairs(argv) do cmd = cmd .. " " .. q(a) end
      local errf = os.tmpname()
      local ok, _, code = os.execute(cmd .. " >/dev/full 2>" .. errf)
      if type(ok) == "number" then code = ok / 256 end
      local err = H.read(errf) or ""
      os.remove(errf)
      return code, err
    end
    local code, err = to_full({ "submit", KLING, "--prompt", "no room for the id" })
    assert.are_not.equal(0, code)
    assert.matches("could not write the output to stdout", err, 1, true)
    -- the id the script never got is in the record
    local r = modkie({ "list", "--json" })
    local list = cjson.decode(r.out)
    assert.equal("no room for the id", list[#list].prompt)
    code, err = to_full({ "models" })
    assert.are_not.equal(0, code)
    assert.matches("could not write the output to stdout", err, 1, true)
  end)

  it("wait --json of a failed job says the error on stderr too, like every other command", function()
    local r = modkie({ "submit", KLING, "--prompt", "fails [fail]" })
    assert.equal(0, r.code, r.err)
    local id = r.out:match("^(%S+)\n$")
    r = modkie({ "wait", id, "--json", "--poll-interval", "0.05" })
    assert.equal(1, r.code)
    assert.equal("failed", cjson.decode(r.out).error.kind)
    assert.matches("modkie: job failed: generation failed (code 501)", r.err, 1, true)
    r = modkie({ "submit", KLING, "--prompt", "fails too [fail]", "--wait", "--json", "--poll-interval", "0.05" })
    assert.equal(1, r.code)
    assert.matches("modkie: job failed: generation failed (code 501)", r.err, 1, true)
  end)

  it("a flag whose value was forgotten does not take the next flag for it (--prompt --wait)", function()
    local before = m.stats().create_requests
    local r = modkie({ "submit", KLING, "--prompt", "--wait" })
    assert.equal(2, r.code)
    assert.matches("--prompt needs a value, got the flag '--wait' (for that very text, write --prompt=--wait)",
      r.err, 1, true)
    assert.equal(before, m.stats().create_requests) -- nothing sent: no job with the prompt "--wait"
    -- the text itself, asked for plainly
    r = modkie({ "submit", KLING, "--prompt=--wait" })
    assert.equal(0, r.code, r.err)
    assert.equal(before + 1, m.stats().create_requests)
  end)

  it("submit --wait-timeout waits (as --download does) rather than being ignored", function()
    local r = modkie({ "submit", KLING, "--prompt", "long [seconds=30]", "--wait-timeout", "0.5",
      "--poll-interval", "0.05" })
    assert.equal(4, r.code, r.err)
    assert.matches("did not end within 0.5 s", r.err, 1, true)
    r = modkie({ "submit", KLING, "--prompt", "short", "--wait-timeout", "20", "--poll-interval", "0.05",
      "--json" })
    assert.equal(0, r.code, r.err)
    assert.equal("success", cjson.decode(r.out).state)
  end)
end)

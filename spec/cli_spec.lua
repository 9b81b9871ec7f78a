-- Every `modkie` command, run as a child process the way a user runs it,
-- against the emulator: what it prints, and its exit code.
local helper = require "spec.helper"
local H = require "spec.batch_helper"
local cjson = require "cjson"

local KLING = "kling/kling-3-0"

describe("bin/modkie", function()
  local m, env, dir
  local seq = 0
  local function tag()
    seq = seq + 1
    return ("c%d-%d"):format(os.time() % 100000, seq)
  end
  local function modkie(argv, extra_env) return H.runner(env)(argv, extra_env) end
  local function submits(prompt) return m.stats().submits_by_prompt[prompt] or 0 end

  setup(function()
    m = helper.mock({ "--job-seconds", "0.2" })
    env = { MODKIE_API_KEY = "test-key", MODKIE_BASE_URL = m.url }
  end)
  teardown(function() m.stop() end)
  before_each(function() dir = helper.tmpdir() end)
  after_each(function() helper.rmdir(dir) end)

  describe("itself", function()
    it("prints its usage with --help (exit 0), and without a command (exit 2)", function()
      local r = modkie({ "--help" })
      assert.equal(0, r.code)
      for _, c in ipairs({ "submit", "status", "wait", "batch", "validate", "credits", "models", "mock" }) do
        assert.matches("\n  " .. c .. " ", r.out, 1, true)
      end
      assert.matches("MODKIE_API_KEY", r.out)
      assert.equal(2, modkie({}).code)
    end)

    it("refuses an unknown command with exit 2", function()
      local r = modkie({ "sumbit" })
      assert.equal(2, r.code)
      assert.matches("unknown command 'sumbit' %(did you mean 'submit'%?%)", r.err)
    end)

    it("has --help on every command", function()
      for _, c in ipairs({ "submit", "status", "wait", "batch", "validate", "credits", "models", "mock" }) do
        local r = modkie({ c, "--help" })
        assert.equal(0, r.code, c)
        assert.matches("usage: modkie " .. c, r.out, 1, true)
      end
    end)

    it("takes no API key from a flag, only from MODKIE_API_KEY", function()
      for _, c in ipairs({ "submit", "batch", "credits" }) do
        local r = modkie({ c, "--api-key", "sk-x" })
        assert.equal(2, r.code)
        assert.matches("no %-%-api%-key flag: the API key comes from the MODKIE_API_KEY environment variable", r.err)
      end
    end)
  end)

  describe("submit", function()
    it("prints the task id and returns at once", function()
      local t = tag()
      local r = modkie({ "submit", KLING, "--prompt", "id only " .. t, "--set", "duration=5" })
      assert.equal(0, r.code, r.err)
      assert.matches("^task_[%w_]+\n$", r.out)
      assert.equal(1, submits("id only " .. t))
    end)

    it("--wait prints the result; --download saves the outputs", function()
      local t = tag()
      local r = modkie({ "submit", KLING, "--prompt", "dl " .. t .. " [outputs=2]", "--download", dir,
        "--poll-interval", "0.05" })
      assert.equal(0, r.code, r.err)
      local id = r.out:match("^id%s+(task_[%w_]+)\n")
      assert.is_string(id)
      assert.matches("\nstate%s+success\n", r.out)
      assert.matches("\nurl%s+http://127%.0%.0%.1:%d+/files/" .. id .. "/0%.mp4\n", r.out)
      assert.matches("\ncredits%s+35\n", r.out)
      assert.matches("\nfile%s+" .. dir:gsub("%p", "%%%0") .. "/" .. id .. "%-2%.mp4\n", r.out)
      assert.same({ id .. "-1.mp4", id .. "-2.mp4" }, H.ls(dir))
      assert.equal(helper.file_bytes(m, id, 1), H.read(dir .. "/" .. id .. "-2.mp4"))
    end)

    it("--json prints the result as JSON; a failed job exits 1 with its error", function()
      local t = tag()
      local r = modkie({ "submit", KLING, "--prompt", "ok " .. t, "--wait", "--json", "--poll-interval", "0.05" })
      assert.equal(0, r.code, r.err)
      local res = cjson.decode(r.out)
      assert.equal("success", res.state)
      assert.equal(1, #res.urls)
      assert.equal(35, res.credits)
      r = modkie({ "submit", KLING, "--prompt", "bad " .. t .. " [fail]", "--wait", "--json",
        "--poll-interval", "0.05" })
      assert.equal(1, r.code)
      res = cjson.decode(r.out)
      assert.equal("failed", res.state)
      assert.equal("failed", res.error.kind)
      assert.equal(501, res.error.code)
    end)

    it("converts --set values to the model's types, and takes raw JSON with :=", function()
      local t = tag()
      local r = modkie({ "submit", KLING, "--prompt", "types " .. t, "--set", "duration=6",
        "--set", "generate_audio=yes", "--set", "aspect_ratio=9:16", "--json" })
      assert.equal(0, r.code, r.err)
      local c = helper.client(m)
      local rec = assert(c:record(cjson.decode(r.out).id))
      c:close()
      assert.same({ prompt = "types " .. t, duration = 6, generate_audio = true, aspect_ratio = "9:16" },
        cjson.decode(rec.param).input)
      r = modkie({ "submit", "acme/custom", "--set", "prompt=raw " .. t, "--set", 'opts:={"a":[1,2]}' })
      assert.equal(0, r.code, r.err)
    end)

    it("refuses invalid input with exit 2, naming the field, and sends nothing", function()
      local before = m.stats().create_requests
      local r = modkie({ "submit", KLING, "--prompt", "x", "--set", "duration=five" })
      assert.equal(2, r.code)
      assert.matches('%-%-set duration=five: "five" is not a number for duration', r.err)
      r = modkie({ "submit", KLING, "--prompt", "x", "--set", "aspect_ratio=2:1" })
      assert.equal(2, r.code)
      assert.matches("aspect_ratio: must be one of", r.err)
      r = modkie({ "submit", KLING, "--prompt", "x", "--set", "novalue" })
      assert.equal(2, r.code)
      assert.matches("write key=value", r.err)
      r = modkie({ "submit", KLING, "--promt", "x" })
      assert.equal(2, r.code)
      assert.matches("unknown option '%-%-promt' %(did you mean '%-%-prompt'%?%)", r.err)
      r = modkie({ "submit" })
      assert.equal(2, r.code)
      assert.matches("missing MODEL", r.err)
      assert.equal(before, m.stats().create_requests)
    end)

    it("exits 3 without a key or with a refused one", function()
      local r = modkie({ "submit", KLING, "--prompt", "x" }, { MODKIE_API_KEY = false })
      assert.equal(3, r.code)
      assert.matches("set the MODKIE_API_KEY environment variable", r.err)
      local strict = helper.mock({ "--api-key", "the-right-key" })
      finally(function() strict.stop() end)
      r = modkie({ "submit", KLING, "--prompt", "x" }, { MODKIE_BASE_URL = strict.url })
      assert.equal(3, r.code)
      assert.matches("access permissions", r.err)
    end)

    it("exits 4 when the gateway cannot be reached", function()
      local r = modkie({ "submit", KLING, "--prompt", "x", "--retries", "0" },
        { MODKIE_BASE_URL = "http://127.0.0.1:" .. helper.held_port(finally) })
      assert.equal(4, r.code)
      assert.matches("connect", r.err)
    end)
  end)

  describe("status and wait", function()
    local function new_task(prompt)
      local r = modkie({ "submit", KLING, "--prompt", prompt })
      assert.equal(0, r.code, r.err)
      return (r.out:gsub("%s+$", ""))
    end

    it("status prints where a job is, and its outputs or error once it ended (exit 0)", function()
      local t = tag()
      local id = new_task("slow " .. t .. " [seconds=30]")
      local r = modkie({ "status", id })
      assert.equal(0, r.code, r.err)
      -- (a loaded machine may ask after the emulator moved it on from waiting to queuing: both are queued)
      local word = r.out:match("^id%s+" .. id:gsub("%p", "%%%0")
        .. "\nstate%s+queued %((%a+)%)\nmodel%s+kling/kling%-3%-0\n$")
      assert.is_truthy(word == "waiting" or word == "queuing", r.out)
      local failed = new_task("doomed " .. t .. " [seconds=0] [fail]")
      r = modkie({ "status", failed })
      assert.equal(0, r.code)
      assert.matches("\nstate%s+failed %(fail%)\n", r.out)
      assert.matches("\nerror%s+generation failed %(code 501%)\n", r.out)
      local done = new_task("quick " .. t .. " [seconds=0]")
      r = modkie({ "status", done, "--json" })
      local s = cjson.decode(r.out)
      assert.equal("success", s.state)
      assert.equal("success", s.server_state)
      assert.equal(1, #s.urls)
      assert.equal(done, s.record.taskId)
    end)

    it("status of an unknown task exits 1", function()
      local r = modkie({ "status", "task_nope" })
      assert.equal(1, r.code)
      assert.matches("not found", r.err)
    end)

    it("wait polls a job to its end: 0 on success (with --download), 1 on failure, 4 on timeout", function()
      local t = tag()
      local id = new_task("waited " .. t)
      local r = modkie({ "wait", id, "--poll-interval", "0.05", "--download", dir })
      assert.equal(0, r.code, r.err)
      assert.matches("\nstate%s+success\n", r.out)
      assert.same({ id .. "-1.mp4" }, H.ls(dir))
      r = modkie({ "wait", new_task("fails " .. t .. " [fail]"), "--poll-interval", "0.05", "--json" })
      assert.equal(1, r.code)
      assert.equal("failed", cjson.decode(r.out).error.kind)
      r = modkie({ "wait", new_task("long " .. t .. " [seconds=60]"), "--poll-interval", "0.05",
        "--wait-timeout", "0.3" })
      assert.equal(4, r.code)
      assert.matches("did not end within 0.3 s; it keeps going", r.err)
    end)
  end)

  describe("batch", function()
    local rows, tpl
    local function write(n, extra)
      local t = tag()
      local lines = { "thing,duration" }
      for i = 1, n do lines[#lines + 1] = ("thing%d %s%s,5"):format(i, t, extra and extra[i] or "") end
      rows = H.write(dir .. "/rows.csv", table.concat(lines, "\n") .. "\n")
      tpl = H.write(dir .. "/t.txt", "a {{thing | upper}}\n")
      return t
    end
    local function args(more)
      local a = { "batch", "--model", KLING, "--rows", rows, "--template", tpl, "--poll-interval", "0.05" }
      for _, x in ipairs(more or {}) do a[#a + 1] = x end
      return a
    end

    it("runs every row: a line per row on stderr, the summary on stdout, exit 0", function()
      write(3)
      local r = modkie(args({ "--download", dir .. "/out" }))
      assert.equal(0, r.code, r.err)
      assert.matches("^batch: 3 jobs from " .. rows:gsub("%p", "%%%0") .. "; journal " .. rows:gsub("%p", "%%%0")
        .. "%.journal\n", r.err)
      for i = 1, 3 do assert.matches("\nrow " .. i .. ": success task_[%w_]+ %(1 file%)\n", r.err) end
      assert.is_nil(r.err:find("\27", 1, true), "no terminal codes when stderr is not a terminal")
      assert.matches("^3 jobs: 3 succeeded, 0 failed, 0 ambiguous\n", r.out)
      assert.matches("\ncredits: 105\n", r.out)
      assert.matches("\nfiles: 3 in " .. dir:gsub("%p", "%%%0") .. "/out\n", r.out)
      assert.same({ ".modkie-batch", "1-1.mp4", "2-1.mp4", "3-1.mp4" }, H.ls(dir .. "/out")) -- and its owner
      assert.is_string(H.read(rows .. ".journal"), "the journal defaults to ROWS.journal")
    end)

    it("resumes from its journal when run again, submitting nothing twice", function()
      local t = write(2)
      assert.equal(0, modkie(args()).code)
      local r = modkie(args())
      assert.equal(0, r.code)
      assert.matches("2 done in an earlier run", r.err)
      assert.matches("%(2 done in an earlier run%)", r.out)
      assert.equal(1, submits("a THING1 " .. t:upper()))
      assert.equal(1, submits("a THING2 " .. t:upper()))
      r = modkie(args({ "--no-journal" }))
      assert.equal(0, r.code)
      assert.equal(2, submits("a THING1 " .. t:upper()), "without a journal a run starts afresh")
    end)

    it("exits 1 when a row fails, listing it; --json gives the whole report", function()
      write(3, { [2] = " [fail]" })
      local r = modkie(args({ "--json", "--no-journal" }))
      assert.equal(1, r.code)
      local report = cjson.decode(r.out)
      assert.equal(3, report.total)
      assert.equal(2, report.succeeded)
      assert.equal(1, report.failed)
      assert.equal("failed", report.rows[2].state)
      assert.equal(501, report.rows[2].error.code)
      assert.equal(2, report.rows[2].row)
      assert.same({}, report.rows[1].files or {})
      r = modkie(args({ "--no-journal" }))
      assert.equal(1, r.code)
      assert.matches("\nproblems:\n  row 2: failed task_[%w_]+: generation failed\n", r.out)
      assert.matches("row 2: failed task_[%w_]+: generation failed", r.err)
    end)

    it("says once what many rows share: one summary line naming the rows", function()
      write(5, { [2] = " [fail]", [3] = " [fail]", [4] = " [fail]" })
      local r = modkie(args({ "--no-journal" }))
      assert.equal(1, r.code)
      assert.matches("\nproblems:\n  rows 2%-4 %(3 rows%): failed: generation failed\n", r.out)
      local _, lines = r.out:gsub("generation failed", "")
      assert.equal(1, lines)
    end)

    it("exits 2 on invalid rows, listing each by row and line, and sends nothing", function()
      local before = m.stats().create_requests
      rows = H.write(dir .. "/rows.csv", "thing,duration\nok,5\nbad,five\nworse,0\n")
      tpl = H.write(dir .. "/t.txt", "{{thing}}")
      local r = modkie(args())
      assert.equal(2, r.code)
      assert.matches("2 problems in 3 rows, nothing was sent", r.err)
      assert.matches("row 2 %(line 3%): column 'duration': \"five\" is not a number", r.err)
      assert.matches("row 3 %(line 4%): column 'duration': must be at least 1, got 0", r.err)
      assert.equal(before, m.stats().create_requests)
      assert.is_nil(H.read(rows .. ".journal"), "no journal for a batch that never started")
    end)

    it("--dry-run renders, validates and estimates with no key, sending nothing", function()
      local before = m.stats().create_requests
      write(3)
      local r = modkie(args({ "--dry-run" }), { MODKIE_API_KEY = false })
      assert.equal(0, r.code, r.err)
      assert.matches("row 1: ok  a THING1", r.out)
      assert.matches("\n3 jobs, 0 invalid rows; 3 to submit; about 105 credits\nnothing was sent %(dry run%)\n", r.out)
      rows = H.write(dir .. "/rows.csv", "thing,duration\nok,5\nbad,x\n")
      r = modkie(args({ "--dry-run", "--json" }))
      assert.equal(2, r.code)
      local report = cjson.decode(r.out)
      assert.equal(1, report.invalid)
      assert.equal(2, report.problems[1].row)
      assert.equal(before, m.stats().create_requests)
    end)

    it("checks its flags", function()
      write(1)
      local cases = {
        { { "batch", "--rows", rows }, "%-%-model is required" },
        { { "batch", "--model", KLING }, "%-%-rows is required" },
        { args({ "--concurrency", "0" }), "%-%-concurrency must be a whole number >= 1, got '0'" },
        { args({ "--journal", "j", "--no-journal" }), "give %-%-journal or %-%-no%-journal, not both" },
        { args({ "--random", "2" }), "%-%-random and %-%-seed go with %-%-expand" },
        { args({ "--concurrency" }), "%-%-concurrency needs a value" },
        { args({ "--concurrency", "--dry-run" }),
          "%-%-concurrency needs a value, got the flag '%-%-dry%-run' %(for that very text, write "
          .. "%-%-concurrency=%-%-dry%-run%)" },
        { args({ "--dry-run=yes" }), "%-%-dry%-run takes no value" },
      }
      for _, c in ipairs(cases) do
        local r = modkie(c[1])
        assert.equal(2, r.code, c[2])
        assert.matches(c[2], r.err)
      end
      local r = modkie(args({ "--rows", dir .. "/missing.csv" }))
      assert.equal(2, r.code)
      assert.matches("given twice", r.err)
    end)

    it("--listen takes the gateway's callbacks: every job ends by its callback, none is polled", function()
      write(3)
      local secret = "whsec-cli-" .. tag()
      local cm = helper.mock({ "--job-seconds", "0.3", "--webhook-secret", secret })
      finally(cm.stop)
      local a = { "batch", "--model", KLING, "--rows", rows, "--template", tpl, "--no-journal",
        "--listen", "127.0.0.1:0", "--webhook-scheme", "kie" }
      local r = modkie(a, { MODKIE_BASE_URL = cm.url, MODKIE_WEBHOOK_SECRET = secret })
      assert.equal(0, r.code, r.err)
      assert.matches("^3 jobs: 3 succeeded, 0 failed, 0 ambiguous\n", r.out)
      assert.matches("\ncallbacks: 3 ended a job, 0 refused, 0 repeated or late\n", r.out)
      assert.equal(0, cm.stats().polls)
      assert.is_nil(r.out:find(secret, 1, true))
      assert.is_nil(r.err:find(secret, 1, true))
      -- the secret only from the environment; the scheme checked
      r = modkie(a, { MODKIE_BASE_URL = cm.url, MODKIE_WEBHOOK_SECRET = "" })
      assert.equal(2, r.code)
      assert.matches("%-%-listen needs the webhook secret in MODKIE_WEBHOOK_SECRET", r.err)
      r = modkie(args({ "--listen", "127.0.0.1:0", "--webhook-scheme", "hmac" }), { MODKIE_WEBHOOK_SECRET = secret })
      assert.equal(2, r.code)
      assert.matches("%-%-webhook%-scheme must be kie or modkie", r.err)
    end)

    it("exits 3 and stops submitting when the credits run out", function()
      write(4)
      local key = "broke-" .. tag()
      m.request("POST", "/__mock/credits", cjson.encode({ key = key, balance = 0 }))
      local r = modkie(args({ "--concurrency", "1", "--no-journal", "--no-balance-check" }), { MODKIE_API_KEY = key })
      assert.equal(3, r.code)
      assert.matches("1 failed, 0 ambiguous, 3 not started", r.out)
      assert.matches("\nstopped submitting: [^\n]*insufficient credits\n", r.out)
    end)

    it("draws a progress bar on a terminal", function()
      if not os.execute("command -v script >/dev/null 2>&1") then
        pending("no `script` to give the command a terminal")
        return
      end
      write(3)
      local cmd = ("env MODKIE_API_KEY=test-key MODKIE_BASE_URL=%s lua5.4 bin/modkie batch --model %s --rows %s "
        .. "--template %s --poll-interval 0.05 --no-journal"):format(m.url, KLING, rows, tpl)
      local p = io.popen("script -qec " .. helper.shell_quote(cmd) .. " /dev/null 2>&1")
      local text = p:read("*a")
      p:close()
      assert.matches("\r\27%[K%[#+%] 3/3", text)
      assert.matches("0/3", text)
      assert.matches("3 jobs: 3 succeeded", text)
      assert.is_nil(text:find("row 1: success", 1, true), "no per-row lines under the bar")
    end)
  end)

  describe("validate, credits, models", function()
    it("validate says valid (exit 0) or lists every problem (exit 2), offline", function()
      local r = modkie({ "validate", KLING, "--prompt", "x", "--set", "duration=5" }, { MODKIE_API_KEY = false })
      assert.equal(0, r.code)
      assert.equal("valid\n", r.out)
      r = modkie({ "validate", KLING, "--set", "duration=0", "--set", "resolution=4k" })
      assert.equal(2, r.code)
      assert.equal("duration: must be at least 1, got 0\nprompt: is required\n"
        .. "resolution: must be one of 480p, 720p, got \"4k\"\n", r.out)
      r = modkie({ "validate", KLING, "--set", "nope=1", "--json" })
      assert.equal(2, r.code)
      local out = cjson.decode(r.out)
      assert.is_false(out.valid)
      assert.equal(2, #out.problems)
      r = modkie({ "validate", "acme/custom", "--set", "x=1" })
      assert.equal(0, r.code)
      assert.matches("not checked", r.out)
    end)

    it("credits prints the balance", function()
      local key = "rich-" .. tag()
      m.request("POST", "/__mock/credits", cjson.encode({ key = key, balance = 1234 }))
      local r = modkie({ "credits" }, { MODKIE_API_KEY = key })
      assert.equal(0, r.code, r.err)
      assert.equal("1234\n", r.out)
      r = modkie({ "credits", "--json" }, { MODKIE_API_KEY = key })
      assert.same({ credits = 1234 }, cjson.decode(r.out))
      assert.equal(3, modkie({ "credits" }, { MODKIE_API_KEY = false }).code)
    end)

    it("models lists the known models, and one model's fields", function()
      local r = modkie({ "models" }, { MODKIE_API_KEY = false })
      assert.equal(0, r.code)
      assert.matches("^kling/kling%-3%-0%s+Kling 3%.0", r.out)
      r = modkie({ "models", KLING })
      assert.equal(0, r.code)
      assert.matches("\n  prompt%s+string, required", r.out)
      assert.matches("\n  aspect_ratio%s+string: 16:9, 9:16, 4:3, 1:1, 3:4, 21:9\n", r.out)
      r = modkie({ "models", KLING, "--json" })
      local s = cjson.decode(r.out)
      assert.equal(35, s.credits)
      assert.equal("number", s.fields.duration.type)
      r = modkie({ "models", "acme/unknown" })
      assert.equal(2, r.code)
      assert.matches("no schema for 'acme/unknown'", r.err)
    end)
  end)

  it("never prints the API key or writes it to the journal, in success or failure", function()
    local canary = "sk-canary-" .. tag() .. "-secret"
    local strict = helper.mock({ "--api-key", canary .. "-other" })
    finally(function() strict.stop() end)
    local seen = {}
    local function run(argv, e)
      local r = modkie(argv, e)
      seen[#seen + 1] = r.out .. r.err
      return r
    end
    local ce = { MODKIE_API_KEY = canary }
    local r = run({ "submit", KLING, "--prompt", "canary", "--wait", "--json", "--poll-interval", "0.05" }, ce)
    local id = cjson.decode(r.out).id
    run({ "status", id }, ce)
    run({ "wait", id, "--poll-interval", "0.05" }, ce)
    run({ "credits" }, ce)
    local rows_path = H.write(dir .. "/rows.csv", "prompt\ncanary one\ncanary two [fail]\n")
    run({ "batch", "--model", KLING, "--rows", rows_path, "--poll-interval", "0.05", "--download", dir .. "/o" }, ce)
    run({ "batch", "--model", KLING, "--rows", rows_path, "--json" }, ce)
    -- the same commands against a gateway that refuses the key
    local bad = { MODKIE_API_KEY = canary, MODKIE_BASE_URL = strict.url }
    assert.equal(3, run({ "submit", KLING, "--prompt", "x" }, bad).code)
    assert.equal(3, run({ "credits" }, bad).code)
    run({ "status", id }, bad)
    run({ "batch", "--model", KLING, "--rows", rows_path, "--no-journal" }, bad)
    -- a malformed key is refused without being echoed
    local r2 = run({ "credits" }, { MODKIE_API_KEY = canary .. " with space" })
    assert.equal(3, r2.code)
    assert.matches("the API key contains spaces", r2.err)
    for i, text in ipairs(seen) do
      assert.is_nil(text:find(canary, 1, true), "command " .. i .. " printed the key")
    end
    local journal_text = assert(H.read(rows_path .. ".journal"))
    assert.matches('"type":"done"', journal_text)
    assert.is_nil(journal_text:find(canary, 1, true))
  end)
end)

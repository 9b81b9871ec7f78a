-- A new user's first hour (issue 11): nothing lost on Ctrl-C, mistakes
-- caught before paying, errors that point to the fix. Each command runs as
-- a child process against the emulator, the way a user runs it.
local helper = require "spec.helper"
local H = require "spec.batch_helper"
local cjson = require "cjson"

local KLING = "kling/kling-3-0"

describe("first hour", function()
  local m, env, dir, state
  local seq = 0
  local function tag()
    seq = seq + 1
    return ("f%d-%d"):format(os.time() % 100000, seq)
  end
  local function modkie_cli(argv, extra)
    local e = { MODKIE_STATE_DIR = state }
    for k, v in pairs(extra or {}) do e[k] = v end
    return H.runner(env)(argv, e)
  end
  local function creates() return m.stats().create_requests end
  local function submits(prompt) return m.stats().submits_by_prompt[prompt] or 0 end

  setup(function()
    m = helper.mock({ "--job-seconds", "0.3" })
    env = { MODKIE_API_KEY = "sk-canary-7f3a9", MODKIE_BASE_URL = m.url }
  end)
  teardown(function() m.stop() end)
  before_each(function()
    dir = helper.tmpdir()
    state = dir .. "/state"
  end)
  after_each(function() helper.rmdir(dir) end)

  describe("no task id is lost", function()
    it("submit --wait says the id on stderr at once; Ctrl-C says how to go on; list and wait --last find it",
      function()
        local prompt = "long " .. tag() .. " [seconds=3]"
        local p = H.spawn({ "submit", KLING, "--prompt", prompt, "--wait", "--poll-interval", "0.05" },
          { MODKIE_API_KEY = env.MODKIE_API_KEY, MODKIE_BASE_URL = m.url, MODKIE_STATE_DIR = state })
        local t0 = helper.now()
        while not p.err():find("accepted", 1, true) do
          assert(p.running(), p.err())
          assert(helper.now() - t0 < 10, "no id on stderr")
          helper.sleep(0.02)
        end
        local id = p.err():match("modkie: task (%S+) accepted")
        assert.truthy(id, p.err())
        assert.matches("'modkie wait " .. id:gsub("%p", "%%%0") .. "'", p.err())
        p.signal("INT")
        assert.equal(130, p.wait(10))
        assert.matches("interrupted; task " .. id:gsub("%p", "%%%0") .. " keeps running %(and billing%) at the "
          .. "gateway: follow it with 'modkie wait " .. id:gsub("%p", "%%%0") .. "'", p.err())
        assert.equal("", p.out())
        p.clean()

        local r = modkie_cli({ "list" })
        assert.equal(0, r.code, r.err)
        assert.matches(id:gsub("%p", "%%%0") .. "  %d%d%d%d%-%d%d%-%d%d %d%d:%d%d  " .. KLING:gsub("%p", "%%%0")
          .. "  submitted %s*" .. prompt:gsub("%p", "%%%0"), r.out)
        r = modkie_cli({ "wait", "--last", "--poll-interval", "0.05", "--json" })
        assert.equal(0, r.code, r.err)
        local res = cjson.decode(r.out)
        assert.equal(id, res.id)
        assert.equal("success", res.state)
        assert.is_number(res.elapsed)
        r = modkie_cli({ "list", "--json" })
        local list = cjson.decode(r.out)
        assert.equal(id, list[#list].id)
        assert.equal("success", list[#list].state, "the end wait saw is recorded")
        assert.equal(1, submits(prompt))
      end)

    it("keeps every task of submit and batch in an append-only record without the key", function()
      local t = tag()
      local r = modkie_cli({ "submit", KLING, "--prompt", "rec " .. t })
      assert.equal(0, r.code, r.err)
      local id = r.out:match("^(%S+)\n$")
      local rows = H.write(dir .. "/rows.csv", "prompt\nrow1 " .. t .. "\nrow2 " .. t .. "\n")
      r = modkie_cli({ "batch", "--model", KLING, "--rows", rows, "--poll-interval", "0.05", "--quiet" })
      assert.equal(0, r.code, r.err)
      local text = H.read(state .. "/tasks.jsonl")
      assert.is_nil(text:find(env.MODKIE_API_KEY, 1, true), "the key is never written")
      r = modkie_cli({ "list", "--json" })
      local list = cjson.decode(r.out)
      assert.equal(3, #list)
      assert.equal(id, list[1].id)
      assert.equal("submit", list[1].via)
      assert.equal(m.url, list[1].gateway)
      assert.equal("batch " .. rows, list[2].via)
      assert.equal("batch " .. rows, list[3].via)
      r = modkie_cli({ "list", "--limit", "1" })
      assert.equal(1, select(2, r.out:gsub("\n", "")))
      -- --last with nothing recorded yet is a usage error naming the record
      r = modkie_cli({ "status", "--last" }, { MODKIE_STATE_DIR = dir .. "/empty" })
      assert.equal(2, r.code)
      assert.matches("no task recorded yet", r.err)
    end)

    it("a state folder that cannot be written warns, and the id still reaches stdout", function()
      H.write(dir .. "/file", "x")
      local r = modkie_cli({ "submit", KLING, "--prompt", "nostate " .. tag() },
        { MODKIE_STATE_DIR = dir .. "/file/s" })
      assert.equal(0, r.code, r.err)
      assert.matches("^task_%S+\n$", r.out)
      assert.matches("could not keep a record of task task_%S+ in " .. dir:gsub("%p", "%%%0") .. "/file/s/tasks%.jsonl",
        r.err)
    end)
  end)

  describe("mistakes are caught before paying", function()
    local tpl
    before_each(function() tpl = H.write(dir .. "/t.txt", "a {{colour}} {{product}}\n") end)
    local function batch(rows, more)
      local a = { "batch", "--model", KLING, "--rows", rows, "--template", tpl, "--poll-interval", "0.05",
        "--no-journal" }
      for _, x in ipairs(more or {}) do a[#a + 1] = x end
      return modkie_cli(a)
    end

    it("a column that nothing uses is an error naming it and the field it resembles", function()
      local t = tag()
      local rows = H.write(dir .. "/rows.csv", "product,colour,aspect_ratio,durration\nmug " .. t .. ",red,16:9,5\n")
      local before = creates()
      local r = batch(rows)
      assert.equal(2, r.code)
      assert.matches("column 'durration' is not a field of kling/kling%-3%-0, and the template does not use it "
        .. "%(did you mean 'duration'%?%)", r.err)
      r = batch(rows, { "--dry-run" })
      assert.equal(2, r.code)
      assert.matches("header: column 'durration'", r.out)
      assert.equal(before, creates())
      r = batch(rows, { "--allow-extra-columns" })
      assert.equal(0, r.code, r.err)
      assert.equal(1, submits("a red mug " .. t))
    end)

    it("text that is not UTF-8 is refused with row, column and offset, or converted with --encoding", function()
      local t = tag()
      local rows = H.write(dir .. "/rows.csv", "product,colour\ncaf\233 " .. t .. ",red\n")
      local before = creates()
      local r = batch(rows)
      assert.equal(2, r.code)
      assert.matches("row 1, line 2: column 'product': byte 0xE9 at offset 18 of the file is not UTF%-8", r.err)
      assert.matches("%-%-encoding cp1252", r.err)
      assert.equal(before, creates())
      r = batch(rows, { "--encoding", "cp1252" })
      assert.equal(0, r.code, r.err)
      assert.equal(1, submits("a red caf\195\169 " .. t), "sent as UTF-8")
      r = batch(rows, { "--encoding", "ebcdic" })
      assert.equal(2, r.code)
      assert.matches("unknown encoding 'ebcdic'", r.err)
      -- and a prompt from the command line
      r = modkie_cli({ "submit", KLING, "--prompt", "caf\233" })
      assert.equal(2, r.code)
      assert.matches("prompt.*not UTF%-8", r.err)
    end)

    it("a download folder that cannot take files is found before any createTask", function()
      local t = tag()
      local afile = H.write(dir .. "/afile", "x")
      local rows = H.write(dir .. "/rows.csv", "product,colour\nmug " .. t .. ",red\n")
      local before = creates()
      local r = batch(rows, { "--download", afile })
      assert.equal(2, r.code)
      assert.matches("download folder " .. afile:gsub("%p", "%%%0") .. ": cannot create it", r.err)
      r = modkie_cli({ "submit", KLING, "--prompt", "x " .. t, "--download", afile .. "/sub" })
      assert.equal(2, r.code)
      assert.matches("download folder", r.err)
      assert.equal(before, creates())
    end)

    it("a batch estimated over the balance is refused before sending; --no-balance-check goes ahead", function()
      local t = tag()
      local key = "forty-" .. t
      m.request("POST", "/__mock/credits", cjson.encode({ key = key, balance = 40 }))
      local rows = H.write(dir .. "/rows.csv", "product,colour\na " .. t .. ",red\nb " .. t .. ",red\nc " .. t
        .. ",red\n")
      local before = creates()
      local r = modkie_cli({ "batch", "--model", KLING, "--rows", rows, "--template", tpl, "--no-journal" },
        { MODKIE_API_KEY = key })
      assert.equal(3, r.code)
      assert.matches("about 105 credits are needed for 3 jobs %(35 each, the model's estimate%), but the balance "
        .. "is 40; nothing was sent", r.err)
      assert.equal(before, creates())
      r = modkie_cli({ "batch", "--model", KLING, "--rows", rows, "--template", tpl, "--no-journal",
        "--no-balance-check", "--poll-interval", "0.05" }, { MODKIE_API_KEY = key })
      assert.equal(1, submits("a red a " .. t), r.err)
    end)
  end)

  describe("suggestions and errors that point to the fix", function()
    local modkie = require "modkie"

    it("a mistyped model id is refused with the one it resembles; a new version is not a typo", function()
      local ok, err = modkie.validate("kling/kling-3.0", { prompt = "x" })
      assert.is_nil(ok)
      assert.equal("model", err.field)
      assert.matches("unknown model 'kling/kling%-3%.0' %(did you mean 'kling/kling%-3%-0'%?%)", err.message)
      assert.equal("kling/kling-3-0", modkie.models.suggest("Kling/Kling-3-0"))
      assert.equal("kling/kling-3-0", modkie.models.suggest("kling-3-0"))
      assert.is_nil(modkie.models.suggest("kling/kling-3-1"), "other numbers: maybe a model modkie does not know")
      assert.is_true(modkie.validate("kling/kling-3-1", { anything = 1 }))
      local before = creates()
      local r = modkie_cli({ "submit", "kling/kling-3.0", "--prompt", "x" })
      assert.equal(2, r.code)
      assert.matches("did you mean 'kling/kling%-3%-0'", r.err)
      r = modkie_cli({ "models", "kling/klingg-3-0" })
      assert.matches("no schema for 'kling/klingg%-3%-0' %(did you mean 'kling/kling%-3%-0'%?%)", r.err)
      assert.equal(before, creates())
    end)

    it("fields, options and commands get the closest name", function()
      local _, err = modkie.validate(KLING, { prompt = "x", durration = 5 })
      assert.matches("durration is not a field of kling/kling%-3%-0 %(did you mean 'duration'%?%)", err.message)
      assert.has_error(function() modkie.batch.run{ model = KLING, rows = {}, dry_run = true, concurency = 2 } end,
        "modkie.batch.run: unknown option 'concurency' (did you mean 'concurrency'?)")
      local r = modkie_cli({ "sumbit" })
      assert.matches("unknown command 'sumbit' %(did you mean 'submit'%?%)", r.err)
      local out, terr = modkie.template.render("a {{color}} car", { colour = "red" })
      assert.is_nil(out)
      assert.matches("missing variable 'color' %(did you mean 'colour'%?%)", terr.message)
    end)

    it("validate lists every problem at once, conversions included", function()
      local r = modkie_cli({ "validate", KLING, "--set", "duration=five", "--set", "generate_audio=maybe",
        "--set", "resolution=4k", "--set", "durration=5" })
      assert.equal(2, r.code)
      assert.matches('%-%-set duration=five: "five" is not a number', r.out)
      assert.matches('%-%-set generate_audio=maybe: "maybe" is not a boolean', r.out)
      assert.matches("resolution: must be one of 480p, 720p", r.out)
      assert.matches("durration: is not a field of kling/kling%-3%-0 %(did you mean 'duration'%?%)", r.out)
      assert.matches("prompt: is required", r.out)
      assert.equal(5, select(2, r.out:gsub("\n", "")))
      r = modkie_cli({ "validate", KLING, "--set", "duration=five", "--json" })
      local out = cjson.decode(r.out)
      assert.equal(2, #out.problems)
    end)

    it("a missing template variable: one line for all rows, the columns there are, and empty cells named", function()
      local rows = H.write(dir .. "/rows.csv", "product,colour\nmug,red\ncup,red\nbowl,red\npot,\n")
      local tpl = H.write(dir .. "/t.txt", "a {{color}} {{product}}\n")
      local r = modkie_cli({ "batch", "--model", KLING, "--rows", rows, "--template", tpl, "--dry-run" })
      assert.equal(2, r.code)
      assert.matches("rows 1%-4 %(4 rows%): template [^\n]*missing variable 'color' %(did you mean 'colour'%? the "
        .. "columns are product, colour%)\n", r.out)
      assert.equal(1, select(2, r.out:gsub("missing variable", "")))
      tpl = H.write(dir .. "/t.txt", "a {{colour}} {{product}}\n")
      r = modkie_cli({ "batch", "--model", KLING, "--rows", rows, "--template", tpl, "--dry-run" })
      assert.equal(2, r.code)
      assert.matches("row 4 %(line 5%): template [^\n]*missing variable 'colour' %(its cell is empty in this row",
        r.out)
      tpl = H.write(dir .. "/t.txt", "a {{colour | default \"plain\"}} {{product}}\n")
      r = modkie_cli({ "batch", "--model", KLING, "--rows", rows, "--template", tpl, "--dry-run" })
      assert.equal(0, r.code, r.err)
      assert.matches("row 4: ok  a plain pot", r.out)
    end)

    it("a base_url ending in /api/v1 is the gateway's root; a 404 shows the URL it asked", function()
      local c = modkie.new{ base_url = m.url .. "/api/v1/", api_key = "k" }
      assert.equal(m.url, c.base_url)
      assert.is_number(c:credits())
      c:close()
      c = modkie.new{ base_url = m.url .. "/v2", api_key = "k", retries = 0 }
      local _, err = c:credits()
      assert.equal(404, err.status)
      assert.matches("%(GET " .. (m.url .. "/v2/api/v1/chat/credit"):gsub("%p", "%%%0") .. "%)", err.message)
      local job = assert(c:submit(KLING, { prompt = "lost" }))
      _, err = job:await(10)
      assert.matches("%(POST " .. (m.url .. "/v2/api/v1/jobs/createTask"):gsub("%p", "%%%0") .. "%)", err.message)
      c:close()
    end)

    it("401 names MODKIE_API_KEY; nothing listening on this machine names the emulator; an empty key says so",
      function()
        local strict = helper.mock({ "--api-key", "right" })
        local port, release = helper.held_port()
        finally(function() strict.stop(); release() end)
        local c = modkie.new{ base_url = strict.url, api_key = "wrong" }
        local _, err = c:credits()
        assert.equal("auth", err.kind)
        assert.matches("check the API key %(MODKIE_API_KEY", err.message)
        c:close()
        c = modkie.new{ base_url = "http://127.0.0.1:" .. port, api_key = "k", retries = 0 }
        _, err = c:credits()
        assert.equal("network", err.kind)
        assert.matches("nothing listens at http://127%.0%.0%.1:" .. port .. ": to try modkie without a gateway, start "
          .. "the emulator there %(modkie mock %-%-port " .. port .. ", or from a checkout: lua5%.4 bin/modkie mock "
          .. "%-%-port " .. port .. "%)", err.message)
        c:close()
        c = modkie.new{ base_url = m.url, api_key = "" }
        _, err = c:submit(KLING, { prompt = "x" })
        assert.equal("config", err.kind)
        assert.matches("the API key is empty %(api_key = \"\"", err.message)
        c:close()
        local r = modkie_cli({ "credits" }, { MODKIE_API_KEY = "" })
        assert.equal(3, r.code)
      end)
  end)

  describe("what users of other clients expect", function()
    local modkie = require "modkie"
    local client
    before_each(function() client = helper.client(m) end)
    after_each(function() client:close() end)

    it("client:generate submits, waits and downloads in one call", function()
      local t = tag()
      local res, err, job = client:generate(KLING, { prompt = "one call " .. t }, { download = dir .. "/gen" })
      assert.is_nil(err)
      assert.equal("success", res.state)
      assert.equal(job.id, res.id)
      assert.equal(dir .. "/gen/" .. res.id .. "-1.mp4", res.files[1])
      assert.equal(helper.file_bytes(m, res.id, 0), H.read(res.files[1]))
      -- a failure, and a timeout that leaves the job going
      local _, ferr = client:generate(KLING, { prompt = "fails " .. t .. " [fail]" })
      assert.equal("failed", ferr.kind)
      local _, terr, slow = client:generate(KLING, { prompt = "slow " .. t .. " [seconds=2]" }, { timeout = 0.1 })
      assert.equal("timeout", terr.kind)
      assert.is_false(slow.done)
      assert.equal("success", assert(slow:await(10)).state)
      -- a bad folder is refused before anything is sent
      local before = creates()
      local _, derr = client:generate(KLING, { prompt = "x" }, { download = H.write(dir .. "/afile", "x") })
      assert.equal("config", derr.kind)
      assert.equal(before, creates())
      assert.has_error(function() client:generate(KLING, {}, { timout = 1 }) end,
        "generate: unknown option 'timout' (did you mean 'timeout'?)")
    end)

    it("completed yields each job once as it ends, with its index; the rest time out at the end", function()
      local t = tag()
      local jobs = {
        assert(client:submit(KLING, { prompt = "c1 " .. t .. " [seconds=1.2]" })),
        assert(client:submit(KLING, { prompt = "c2 " .. t .. " [seconds=0.2]" })),
        assert(client:submit(KLING, { prompt = "c3 " .. t .. " [seconds=0.6] [fail]" })),
        assert(client:submit(KLING, { prompt = "c4 " .. t .. " [seconds=30]" })),
      }
      local order = {}
      for job, res, err, i in modkie.completed(jobs, 4) do
        assert.equal(jobs[i], job)
        order[#order + 1] = { i = i, ok = res ~= nil, kind = err and err.kind }
      end
      assert.same({ { i = 2, ok = true }, { i = 3, ok = false, kind = "failed" }, { i = 1, ok = true },
        { i = 4, ok = false, kind = "timeout" } }, order)
      assert.is_false(jobs[4].done, "a job that timed out keeps going")
      jobs[4]:cancel()
    end)

    it("await_any returns the index too, and never the same finished job twice", function()
      local t = tag()
      local jobs = {
        assert(client:submit(KLING, { prompt = "a1 " .. t .. " [seconds=0.6]" })),
        assert(client:submit(KLING, { prompt = "a2 " .. t .. " [seconds=0.1]" })),
      }
      local job, res, err, i = modkie.await_any(jobs, 10)
      assert.equal(jobs[2], job)
      assert.equal(2, i)
      assert.is_nil(err)
      assert.equal("success", res.state)
      local _
      job, _, _, i = modkie.await_any(jobs, 10)
      assert.equal(jobs[1], job, "the next to end, not the same one again")
      assert.equal(1, i)
      assert.is_nil((modkie.await_any(jobs, 1)), "none left for this list")
      assert.equal(jobs[2], (modkie.await_any({ jobs[2], jobs[1] })), "another list starts afresh")
    end)

    it("timeout() is nil (a value) when idle; a method called with a dot says to use a colon", function()
      assert.equal(1, select("#", client:timeout()))
      assert.is_nil(client:timeout())
      assert.has_error(function() client.submit(KLING, { prompt = "x" }) end,
        "bad self to 'submit' (call it with a colon, client:submit(…), not client.submit(…))")
      local job = assert(client:submit(KLING, { prompt = "dot " .. tag() }))
      assert.has_error(function() job.await(5) end, "bad self to 'await' (call it with a colon, job:await(…), "
        .. "not job.await(…))")
      assert.is_false(job.done)
      assert.truthy(job:await(10))
      assert.is_true(job.done)
    end)
  end)

  describe("the command line's polish", function()
    local COMMANDS = { "submit", "status", "wait", "list", "batch", "validate", "credits", "models", "review" }

    -- The command line in this process, its output captured: for checks that
    -- stop at the arguments (no key, no network, nothing written).
    local function in_process(argv)
      local out, err = {}, {}
      local function sink(t)
        return { write = function(self, ...) for _, x in ipairs({ ... }) do t[#t + 1] = tostring(x) end return self end,
          flush = function() end }
      end
      local so, se = io.stdout, io.stderr
      io.stdout, io.stderr = sink(out), sink(err) -- luacheck: ignore 122
      local ok, code = pcall(require("modkie.cli").main, argv)
      io.stdout, io.stderr = so, se -- luacheck: ignore 122
      assert(ok, code)
      return { code = code, out = table.concat(out), err = table.concat(err) }
    end

    it("each command's --help lists exactly the flags it takes", function()
      local all = {}
      local helps = {}
      for _, c in ipairs(COMMANDS) do
        local r = in_process({ c, "--help" })
        assert.equal(0, r.code, c)
        helps[c] = {}
        for flag in r.out:gmatch("\n  %-%-([%w%-]+)") do helps[c][flag], all[flag] = true, true end
      end
      all.help = nil
      for _, c in ipairs(COMMANDS) do
        for flag in pairs(all) do
          -- too many arguments: a flag it takes ends in a usage error, before anything runs
          local r = in_process({ c, "--" .. flag, "1", "x", "y", "z" })
          assert.equal(2, r.code)
          local refused = r.err:find("unknown option '%-%-" .. flag:gsub("%-", "%%-") .. "'") ~= nil
          assert.equal(not helps[c][flag], refused, ("%s --%s: listed %s, refused %s"):format(c, flag,
            tostring(helps[c][flag] or false), tostring(refused)))
        end
      end
      assert.is_nil(helps.status["poll-interval"], "status polls nothing")
      assert.is_nil(helps.credits["poll-interval"])
    end)

    it("status --json has the record's times; a failed job reads 'job failed: … (code 501)'", function()
      local r = modkie_cli({ "submit", KLING, "--prompt", "times " .. tag() .. " [fail]", "--wait",
        "--poll-interval", "0.05" })
      assert.equal(1, r.code)
      assert.matches("\nerror    generation failed %(code 501%)\nelapsed  0:%d%d\n", r.out)
      assert.matches("modkie: job failed: generation failed %(code 501%)\n", r.err)
      local id = r.out:match("^id%s+(%S+)")
      r = modkie_cli({ "status", id, "--json" })
      local out = cjson.decode(r.out)
      assert.is_number(out.created_at)
      assert.is_number(out.completed_at)
      assert.is_true(out.completed_at >= out.created_at)
      assert.is_true(math.abs(out.created_at - os.time()) < 60, "Unix seconds")
      r = modkie_cli({ "status", "--last" })
      assert.matches("^id       " .. id:gsub("%p", "%%%0") .. "\nstate    failed", r.out)
    end)
  end)

  describe("private files", function()
    -- `stat -c %a`: the permission bits, in octal
    local function mode(path)
      local f = assert(io.popen("stat -c %a " .. helper.shell_quote(path) .. " 2>/dev/null"))
      local m_ = f:read("*l")
      f:close()
      return m_
    end
    -- bin/modkie argv… under umask 000, as a careless shell has it
    local function careless(argv)
      local cmd = { "umask 000;", "MODKIE_API_KEY=" .. env.MODKIE_API_KEY, "MODKIE_BASE_URL=" .. m.url,
        "MODKIE_STATE_DIR=" .. helper.shell_quote(state), os.getenv("MODKIE_TEST_LUA") or "lua5.4", "bin/modkie" }
      for _, a in ipairs(argv) do cmd[#cmd + 1] = helper.shell_quote(a) end
      local ok = os.execute(table.concat(cmd, " ") .. " >/dev/null 2>&1")
      return ok == true or ok == 0
    end

    it("the record of tasks is 0600 in a 0700 folder, and a batch's new journal 0600, whatever the umask", function()
      assert.is_true(careless({ "submit", KLING, "--prompt", "private " .. tag() }))
      assert.equal("700", mode(state))
      assert.equal("600", mode(state .. "/tasks.jsonl"))
      -- an older record, left readable by others: private again once written
      os.execute("chmod 644 " .. helper.shell_quote(state .. "/tasks.jsonl"))
      assert.is_true(careless({ "submit", KLING, "--prompt", "private again " .. tag() }))
      assert.equal("600", mode(state .. "/tasks.jsonl"))
      local r = modkie_cli({ "list" })
      assert.equal(0, r.code, r.err)
      assert.matches("private again", r.out, 1, true)

      local rows, journal = dir .. "/rows.csv", dir .. "/out/batch.journal"
      H.write(rows, "prompt\nprivate row " .. tag() .. "\n")
      assert.is_true(careless({ "batch", "--model", KLING, "--rows", rows, "--journal", journal, "--quiet" }))
      assert.equal("600", mode(journal))
    end)
  end)
end)

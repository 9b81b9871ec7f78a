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
  local function modkie(argv, extra)
    local e = { MODKIE_STATE_DIR = state }
    for k, v in pairs(env) do e[k] = v end
    for k, v in pairs(extra or {}) do e[k] = v end
    return H.cli(argv, e)
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

        local r = modkie({ "list" })
        assert.equal(0, r.code, r.err)
        assert.matches(id:gsub("%p", "%%%0") .. "  %d%d%d%d%-%d%d%-%d%d %d%d:%d%d  " .. KLING:gsub("%p", "%%%0")
          .. "  submitted %s*" .. prompt:gsub("%p", "%%%0"), r.out)
        r = modkie({ "wait", "--last", "--poll-interval", "0.05", "--json" })
        assert.equal(0, r.code, r.err)
        local res = cjson.decode(r.out)
        assert.equal(id, res.id)
        assert.equal("success", res.state)
        assert.is_number(res.elapsed)
        r = modkie({ "list", "--json" })
        local list = cjson.decode(r.out)
        assert.equal(id, list[#list].id)
        assert.equal("success", list[#list].state, "the end wait saw is recorded")
        assert.equal(1, submits(prompt))
      end)

    it("keeps every task of submit and batch in an append-only record without the key", function()
      local t = tag()
      local r = modkie({ "submit", KLING, "--prompt", "rec " .. t })
      assert.equal(0, r.code, r.err)
      local id = r.out:match("^(%S+)\n$")
      local rows = H.write(dir .. "/rows.csv", "prompt\nrow1 " .. t .. "\nrow2 " .. t .. "\n")
      r = modkie({ "batch", "--model", KLING, "--rows", rows, "--poll-interval", "0.05", "--quiet" })
      assert.equal(0, r.code, r.err)
      local text = H.read(state .. "/tasks.jsonl")
      assert.is_nil(text:find(env.MODKIE_API_KEY, 1, true), "the key is never written")
      r = modkie({ "list", "--json" })
      local list = cjson.decode(r.out)
      assert.equal(3, #list)
      assert.equal(id, list[1].id)
      assert.equal("submit", list[1].via)
      assert.equal(m.url, list[1].gateway)
      assert.equal("batch " .. rows, list[2].via)
      assert.equal("batch " .. rows, list[3].via)
      r = modkie({ "list", "--limit", "1" })
      assert.equal(1, select(2, r.out:gsub("\n", "")))
      -- --last with nothing recorded yet is a usage error naming the record
      r = modkie({ "status", "--last" }, { MODKIE_STATE_DIR = dir .. "/empty" })
      assert.equal(2, r.code)
      assert.matches("no task recorded yet", r.err)
    end)

    it("a state folder that cannot be written warns, and the id still reaches stdout", function()
      H.write(dir .. "/file", "x")
      local r = modkie({ "submit", KLING, "--prompt", "nostate " .. tag() }, { MODKIE_STATE_DIR = dir .. "/file/s" })
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
      return modkie(a)
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
      r = modkie({ "submit", KLING, "--prompt", "caf\233" })
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
      r = modkie({ "submit", KLING, "--prompt", "x " .. t, "--download", afile .. "/sub" })
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
      local r = modkie({ "batch", "--model", KLING, "--rows", rows, "--template", tpl, "--no-journal" },
        { MODKIE_API_KEY = key })
      assert.equal(3, r.code)
      assert.matches("about 105 credits are needed for 3 jobs %(35 each, the model's estimate%), but the balance "
        .. "is 40; nothing was sent", r.err)
      assert.equal(before, creates())
      r = modkie({ "batch", "--model", KLING, "--rows", rows, "--template", tpl, "--no-journal",
        "--no-balance-check", "--poll-interval", "0.05" }, { MODKIE_API_KEY = key })
      assert.equal(1, submits("a red a " .. t), r.err)
    end)
  end)
end)

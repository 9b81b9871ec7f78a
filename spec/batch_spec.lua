-- modkie.batch.run end to end against the emulator, over real sockets.
local helper = require "spec.helper"
local H = require "spec.batch_helper"
local modkie = require "modkie"
local batch = require "modkie.batch"
local journal = require "modkie.batch.journal"
local fingerprint = require "modkie.batch.fingerprint"
local cjson = require "cjson"

local KLING = "kling/kling-3-0"

describe("modkie.batch.run", function()
  local m, client, dir
  local seq = 0
  -- a tag unique to this test run, so prompts never collide between tests
  local function tag()
    seq = seq + 1
    return ("t%d-%d"):format(os.time() % 100000, seq)
  end
  local function stats() return m.stats() end
  local function submits(prompt) return stats().submits_by_prompt[prompt] or 0 end
  -- what the gateway received for a task: the create request's input
  local function sent_input(id)
    local rec = assert(client:record(id))
    return cjson.decode(rec.param).input
  end

  setup(function() m = helper.mock({ "--job-seconds", "0.2" }) end)
  teardown(function() m.stop() end)
  before_each(function()
    client = helper.client(m)
    dir = helper.tmpdir()
  end)
  after_each(function()
    client:close()
    helper.rmdir(dir)
  end)

  describe("rows and input", function()
    it("sends model-field columns as typed input and the other columns as template variables", function()
      local t = tag()
      local rows = H.write(dir .. "/rows.csv", "product,duration,generate_audio,aspect_ratio,mood\n"
        .. "red car " .. t .. ",5,true,16:9,calm\nblue bike " .. t .. ",7.5,no,9:16,\n")
      local report = assert(batch.run{
        client = client, model = KLING, rows = rows, input = { resolution = "720p", duration = 3 },
        template = "A {{mood | default \"plain\"}} shot of a {{product | upper}} ({{aspect_ratio}}, {{resolution}})",
      })
      assert.equal(2, report.succeeded)
      local first = sent_input(report.rows[1].id)
      assert.same({ prompt = "A calm shot of a RED CAR " .. t:upper() .. " (16:9, 720p)", duration = 5,
        generate_audio = true, aspect_ratio = "16:9", resolution = "720p" }, first)
      local second = sent_input(report.rows[2].id)
      assert.equal(7.5, second.duration)
      assert.is_false(second.generate_audio)
      assert.equal("A plain shot of a BLUE BIKE " .. t:upper() .. " (9:16, 720p)", second.prompt)
      assert.is_nil(second.mood, "a column that is not a model field is not sent")
      assert.same(first, report.rows[1].input)
    end)

    it("leaves an empty cell to the input defaults", function()
      local rows = H.write(dir .. "/rows.csv", "prompt,duration\nx " .. tag() .. ",\n")
      local report = assert(batch.run{ client = client, model = KLING, rows = rows, input = { duration = 4 } })
      assert.equal(4, sent_input(report.rows[1].id).duration)
    end)

    it("names the row, line and column of a value that does not convert, and sends nothing", function()
      local before = stats().create_requests
      local rows = H.write(dir .. "/rows.csv",
        "prompt,duration,generate_audio\nok,5,true\n\"two\nlines\",five,true\nthree,5,maybe\n")
      local report, err = batch.run{ client = client, model = KLING, rows = rows }
      assert.is_nil(report)
      assert.equal("validation", err.kind)
      assert.equal(2, #err.problems)
      local p1, p2 = err.problems[1], err.problems[2]
      assert.equal(2, p1.row)
      assert.equal(3, p1.line)
      assert.equal("duration", p1.column)
      assert.equal(3, p2.row)
      assert.equal(5, p2.line, "the quoted newline in row 2 moves row 3 to line 5")
      assert.equal("generate_audio", p2.field)
      assert.matches('row 2 %(line 3%): column \'duration\': "five" is not a number', err.message)
      assert.matches("row 3 %(line 5%): column 'generate_audio': \"maybe\" is not a boolean", err.message)
      assert.matches("nothing was sent", err.message)
      assert.equal(2, err.row)
      assert.equal(before, stats().create_requests)
    end)

    it("names the row and the variable a template misses", function()
      local _, err = batch.run{ client = client, model = KLING, template = "a {{color}} car",
        rows = { { color = "red" }, { colour = "blue" } }, extra_columns = true }
      assert.equal(1, #err.problems)
      assert.equal(2, err.problems[1].row)
      assert.equal("color", err.problems[1].field)
      assert.matches("row 2: template template, line 1, column 3: missing variable 'color' %(did you "
        .. "mean 'colour'%? the columns are color, colour%)", err.message)
    end)

    it("gives a template syntax error its line and column (and the file name)", function()
      local tpl = H.write(dir .. "/t.txt", "a car\n  {{#wheels}} round")
      local report, err = batch.run{ client = client, model = KLING, template_file = tpl, rows = { {} } }
      assert.is_nil(report)
      assert.equal("validation", err.kind)
      assert.equal(2, err.line)
      assert.equal(3, err.column)
      assert.matches(tpl, err.message, 1, true)
      local _, ferr = batch.run{ client = client, model = KLING, template_file = dir .. "/none.txt", rows = { {} } }
      assert.matches("cannot read the template file", ferr.message)
    end)

    it("checks every row against the model's schema and lists every problem", function()
      local rows = H.write(dir .. "/rows.csv", "prompt,aspect_ratio,duration\na,2:1,5\nb,16:9,5\n,16:9,0\n")
      local _, err = batch.run{ client = client, model = KLING, rows = rows }
      assert.equal(3, #err.problems)
      assert.same({ 1, 3, 3 }, { err.problems[1].row, err.problems[2].row, err.problems[3].row })
      assert.matches("row 1 %(line 2%): column 'aspect_ratio': must be one of 16:9", err.message)
      assert.matches("row 3 %(line 4%): column 'duration': must be at least 1, got 0", err.message)
      assert.matches("row 3 %(line 4%): column 'prompt': is required", err.message)
    end)

    it("reads CSV quoting, embedded newlines, CRLF and a BOM exactly", function()
      local t = tag()
      local rows = H.write(dir .. "/rows.csv", "\239\187\191name,note\r\n"
        .. "\"Smith, Jane\",\"says \"\"hi\"\"\"\r\n"
        .. "plain " .. t .. ",\"two\r\nlines\"\r\n")
      local report = assert(batch.run{ client = client, model = KLING, rows = rows,
        template = "{{name}}: {{note}} " .. t })
      assert.equal('Smith, Jane: says "hi" ' .. t, report.rows[1].prompt)
      assert.equal("plain " .. t .. ": two\r\nlines " .. t, report.rows[2].prompt)
      assert.equal(1, submits('Smith, Jane: says "hi" ' .. t))
      assert.equal(1, submits("plain " .. t .. ": two\r\nlines " .. t))
    end)

    it("reads JSON Lines with their types, and Lua tables with lists for sections", function()
      local t = tag()
      local rows = H.write(dir .. "/rows.jsonl",
        '{"product":"car","duration":6,"tags":["fast","red"]}\n\n{"product":"bike","tags":[]}\n')
      local tpl = "{{product}}{{#tags}} #{{.}}{{/tags}}{{^tags}} (no tags){{/tags}} " .. t
      local report = assert(batch.run{ client = client, model = KLING, rows = rows, template = tpl })
      assert.equal("car #fast #red " .. t, report.rows[1].prompt)
      assert.equal("bike (no tags) " .. t, report.rows[2].prompt)
      assert.equal(6, sent_input(report.rows[1].id).duration)
      local r2 = assert(batch.run{ client = client, model = KLING, template = tpl,
        rows = { { product = "boat", tags = { "blue" } } } })
      assert.equal("boat #blue " .. t, r2.rows[1].prompt)
    end)

    it("sends extra columns as input for a model without a schema (fields option)", function()
      local t = tag()
      local report = assert(batch.run{ client = client, model = "acme/custom", fields = { "seed" },
        rows = { { prompt = "custom " .. t, seed = 42, note = "x" } }, extra_columns = true })
      assert.equal("success", report.rows[1].state)
      assert.same({ prompt = "custom " .. t, seed = 42 }, sent_input(report.rows[1].id))
    end)
  end)

  describe("running", function()
    it("returns every row in order with id, state, prompt, urls, files and error", function()
      local t = tag()
      local rows = {}
      for i = 1, 4 do rows[i] = { n = i } end
      rows[3].extra = " [fail]"
      local report = assert(batch.run{ client = client, model = KLING, rows = rows,
        template = "job {{n}} " .. t .. "{{extra | default \"\"}}" })
      assert.equal(4, report.total)
      assert.equal(3, report.succeeded)
      assert.equal(1, report.failed)
      assert.equal(0, report.ambiguous)
      assert.equal(0, report.skipped)
      assert.equal(0, report.pending)
      assert.equal(105, report.credits)
      for i, e in ipairs(report.rows) do
        assert.equal(i, e.row)
        assert.matches("^task_", e.id)
      end
      local ok, bad = report.rows[1], report.rows[3]
      assert.equal("success", ok.state)
      assert.equal("job 1 " .. t, ok.prompt)
      assert.equal(1, #ok.urls)
      assert.equal(35, ok.credits)
      assert.is_nil(ok.error)
      assert.is_nil(ok.files, "no download folder, no files")
      assert.equal("failed", bad.state)
      assert.equal("failed", bad.error.kind)
      assert.equal(501, bad.error.code)
      assert.equal(3, bad.error.row)
      assert.equal(bad.id, bad.error.task_id)
    end)

    it("keeps at most `concurrency` jobs in flight, and reports progress and each result", function()
      local t = tag()
      local in_flight, most = 0, 0
      local c = helper.client(m, { log = function(_, event)
        if event == "submit" then
          in_flight = in_flight + 1
          if in_flight > most then most = in_flight end
        elseif event == "done" then
          in_flight = in_flight - 1
        end
      end })
      local rows = {}
      for i = 1, 8 do rows[i] = { prompt = ("c%d %s"):format(i, t) } end
      local results, last = {}, nil
      local report = assert(batch.run{ client = c, model = KLING, rows = rows, concurrency = 3,
        on_result = function(e, res, err)
          assert.is_nil(err)
          assert.equal(e.id, res.id)
          results[#results + 1] = e.row
        end,
        on_progress = function(p)
          assert.is_true(p.running <= 3)
          last = p
        end })
      c:close()
      assert.equal(8, report.succeeded)
      assert.equal(3, most)
      assert.equal(8, #results)
      table.sort(results)
      assert.same({ 1, 2, 3, 4, 5, 6, 7, 8 }, results)
      assert.equal(8, last.done)
      assert.equal(8, last.total)
      assert.equal(0, last.running)
    end)

    it("downloads each row's outputs as <row>-<n>.<ext>, whole", function()
      local t = tag()
      local out = dir .. "/out/deeper"
      local report = assert(batch.run{ client = client, model = KLING, download = out,
        rows = { { prompt = "one " .. t .. " [outputs=2] [ext=png] [size=70000]" }, { prompt = "two " .. t } } })
      assert.equal(2, report.succeeded)
      assert.equal(3, report.files)
      assert.same({ "1-1.png", "1-2.png", "2-1.mp4" }, H.ls(out))
      local r1 = report.rows[1]
      assert.same({ out .. "/1-1.png", out .. "/1-2.png" }, r1.files)
      assert.equal(helper.file_bytes(m, r1.id, 0, "png"), H.read(out .. "/1-1.png"))
      assert.equal(helper.file_bytes(m, r1.id, 1, "png"), H.read(out .. "/1-2.png"))
      assert.equal(70000, #H.read(out .. "/1-2.png"))
    end)

    it("expands {a|b} alternatives into one job per combination", function()
      local t = tag()
      local report = assert(batch.run{ client = client, model = KLING, expand = true, download = dir,
        template = "a {red|blue} {{thing}} " .. t, rows = { { thing = "car" }, { thing = "boat" } } })
      assert.equal(4, report.total)
      assert.equal(4, report.succeeded)
      local got = {}
      for i, e in ipairs(report.rows) do got[i] = { e.row, e.variant, e.key, e.prompt } end
      assert.same({
        { 1, 1, "1.1", "a red car " .. t }, { 1, 2, "1.2", "a blue car " .. t },
        { 2, 1, "2.1", "a red boat " .. t }, { 2, 2, "2.2", "a blue boat " .. t },
      }, got)
      assert.same({ "1_1-1.mp4", "1_2-1.mp4", "2_1-1.mp4", "2_2-1.mp4" }, H.ls(dir))
    end)

    it("makes the same random picks for the same seed, different ones per row", function()
      local function prompts(seed)
        local r = assert(batch.run{ dry_run = true, model = KLING, expand = { random = 3, seed = seed },
          template = "{a|b|c|d|e|f|g|h} {1|2|3|4|5|6|7|8} {{n}}", rows = { { n = 1 }, { n = 2 } } })
        local out = {}
        for i, e in ipairs(r.rows) do out[i] = e.prompt end
        return out
      end
      local a, b = prompts(7), prompts(7)
      assert.same(a, b)
      assert.equal(6, #a)
      local row1, row2 = {}, {}
      for i = 1, 3 do row1[i] = a[i]:gsub(" 1$", "") end
      for i = 1, 3 do row2[i] = a[i + 3]:gsub(" 2$", "") end
      assert.are_not.same(row1, row2)
    end)

    it("stops submitting after a credits refusal, and the same journal resumes once credits are back", function()
      local t = tag()
      local key = "poor-" .. t
      m.request("POST", "/__mock/credits", cjson.encode({ key = key, balance = 0 }))
      local poor = helper.client(m, { api_key = key })
      local rows = {}
      for i = 1, 6 do rows[i] = { prompt = ("p%d %s"):format(i, t) } end
      local j = dir .. "/j.jsonl"
      -- past the balance check (its own spec), as when a balance shrinks under a running batch
      local report = assert(batch.run{ client = poor, model = KLING, rows = rows, concurrency = 2, journal = j,
        check_balance = false })
      assert.equal("credits", report.halted.kind)
      assert.equal(0, report.succeeded)
      assert.equal(2, report.failed)
      assert.equal(4, report.pending)
      assert.equal("error", report.rows[1].state)
      assert.equal("credits", report.rows[1].error.kind)
      assert.equal("pending", report.rows[6].state)
      m.request("POST", "/__mock/credits", cjson.encode({ key = key, balance = 1000 }))
      report = assert(batch.run{ client = poor, model = KLING, rows = rows, concurrency = 2, journal = j })
      poor:close()
      assert.is_nil(report.halted)
      assert.equal(6, report.succeeded)
      for i = 1, 6 do assert.equal(1, submits(rows[i].prompt)) end
    end)

    it("reports a createTask whose answer was lost as ambiguous and never sends it again", function()
      local t = tag()
      -- the emulator creates the task, then holds the answer past the client's timeout
      local lost = "lost " .. t .. " [fault=create:stall]"
      local rows = { { prompt = "fine " .. t }, { prompt = lost } }
      local j = dir .. "/j.jsonl"
      local c = helper.client(m, { timeout = 1 })
      local report = assert(batch.run{ client = c, model = KLING, rows = rows, journal = j })
      assert.equal(1, report.succeeded)
      assert.equal(1, report.ambiguous)
      assert.equal("ambiguous", report.rows[2].state)
      assert.equal("ambiguous", report.rows[2].error.kind)
      assert.equal(1, submits(lost), "the emulator created it once (and the answer never came)")
      report = assert(batch.run{ client = c, model = KLING, rows = rows, journal = j })
      c:close()
      assert.equal(1, report.ambiguous)
      assert.is_true(report.rows[2].restored)
      assert.equal(1, submits(lost))
      local st = assert(journal.read(j))
      assert.equal("ambiguous", st.jobs["2"].state)
      assert.equal(1, st.jobs["2"].submits)
    end)

    -- libcurl re-sends a request whose reused connection died before any
    -- answer: for createTask that would make a second task (fixed in the
    -- core: createTask gets a connection of its own).
    it("reports a createTask reset on a reused connection as ambiguous, never sent twice", function()
      local t = tag()
      local lost = "reset " .. t .. " [fault=create:reset]"
      assert(client:credits()) -- a warm keep-alive connection
      local report = assert(batch.run{ client = client, model = KLING, rows = { { prompt = lost } } })
      assert.equal(1, submits(lost))
      assert.equal("ambiguous", report.rows[1].state)
    end)

    it("runs inside a coroutine of the client (client:run) without blocking it", function()
      local t = tag()
      local report, other
      client:run(function()
        -- another job of the same client progresses while the batch runs
        client:go(function()
          other = assert(assert(client:submit(KLING, { prompt = "beside " .. t })):await(10))
        end)
        report = assert(batch.run{ client = client, model = KLING, download = dir, journal = dir .. "/j",
          concurrency = 2, rows = { { prompt = "s1 " .. t .. " [outputs=2]" }, { prompt = "s2 " .. t },
            { prompt = "s3 " .. t .. " [fail]" } } })
      end)
      assert.equal(2, report.succeeded)
      assert.equal(1, report.failed)
      assert.equal(3, report.files)
      assert.equal("success", other.state)
    end)

    it("runs in a foreign coroutine with the client's wait function", function()
      local t = tag()
      local c = helper.client(m, { wait = function() coroutine.yield() end })
      local co = coroutine.create(function()
        return batch.run{ client = c, model = KLING, rows = { { prompt = "u1 " .. t }, { prompt = "u2 " .. t } } }
      end)
      local ok, report
      local yields = -1
      repeat
        ok, report = coroutine.resume(co)
        assert(ok, report)
        yields = yields + 1
      until coroutine.status(co) == "dead"
      c:close()
      assert.equal(2, report.succeeded)
      assert.is_true(yields > 0, "it gave control back while waiting")
    end)

    it("propagates an error raised by a callback, and the journal still resumes", function()
      local t = tag()
      local rows = { { prompt = "a " .. t }, { prompt = "b " .. t } }
      local j = dir .. "/j.jsonl"
      assert.has_error(function()
        batch.run{ client = client, model = KLING, rows = rows, journal = j, concurrency = 1,
          on_result = function() error("boom in on_result") end }
      end, "boom in on_result")
      local report = assert(batch.run{ client = client, model = KLING, rows = rows, journal = j })
      assert.equal(2, report.succeeded)
      assert.equal(1, submits("a " .. t))
      assert.equal(1, submits("b " .. t))
    end)
  end)

  describe("dry run", function()
    it("renders and validates every row, estimates credits, and sends nothing", function()
      local before = stats().create_requests
      local rows = H.write(dir .. "/rows.csv", "thing,duration\ncar,5\nboat,zero\nplane,6\n")
      local report = assert(batch.run{ dry_run = true, client = client, model = KLING, rows = rows,
        template = "a {{thing}}" })
      assert.is_true(report.dry_run)
      assert.equal(3, report.total)
      assert.equal(2, report.valid)
      assert.equal(1, report.invalid)
      assert.equal(70, report.credits)
      assert.equal(1, #report.problems)
      assert.equal(2, report.problems[1].row)
      assert.same({ "valid", "invalid", "valid" },
        { report.rows[1].state, report.rows[2].state, report.rows[3].state })
      assert.equal("a car", report.rows[1].prompt)
      assert.equal(5, report.rows[1].input.duration)
      assert.equal(2, report.rows[2].error.row)
      assert.equal(before, stats().create_requests)
    end)

    it("needs no client, and tells which rows a journal already holds", function()
      local t = tag()
      local rows = { { prompt = "x " .. t }, { prompt = "y " .. t } }
      local j = dir .. "/j.jsonl"
      assert(batch.run{ client = client, model = KLING, rows = { rows[1] }, journal = j })
      local report = assert(batch.run{ dry_run = true, model = KLING, rows = rows, journal = j })
      assert.equal("journaled", report.rows[1].state)
      assert.equal("valid", report.rows[2].state)
      assert.equal(1, report.skipped)
      assert.equal(1, report.to_submit)
      assert.equal(35, report.credits)
    end)
  end)

  describe("with a journal", function()
    local function rows_of(t, n)
      local rows = {}
      for i = 1, n do rows[i] = { thing = ("thing%d %s"):format(i, t) } end
      return rows
    end

    it("restores a finished batch without sending anything", function()
      local t = tag()
      local rows, j = rows_of(t, 3), dir .. "/j.jsonl"
      rows[2].thing = rows[2].thing .. " [fail]"
      local first = assert(batch.run{ client = client, model = KLING, rows = rows, template = "{{thing}}",
        journal = j, download = dir .. "/out" })
      local before = stats()
      local called = 0
      local again = assert(batch.run{ client = client, model = KLING, rows = rows, template = "{{thing}}",
        journal = j, download = dir .. "/out", on_result = function() called = called + 1 end })
      local after = stats()
      assert.equal(before.create_requests, after.create_requests)
      assert.equal(before.polls, after.polls)
      assert.equal(before.files, after.files)
      assert.equal(0, called)
      assert.equal(3, again.skipped)
      assert.equal(2, again.succeeded)
      assert.equal(1, again.failed)
      assert.equal(70, again.credits)
      assert.equal("70", tostring(again.credits), "an integer, as in the first run")
      for i = 1, 3 do
        assert.equal(first.rows[i].id, again.rows[i].id)
        assert.equal(first.rows[i].state, again.rows[i].state)
        assert.is_true(again.rows[i].restored)
      end
      assert.same(first.rows[1].urls, again.rows[1].urls)
      assert.same(first.rows[1].files, again.rows[1].files)
      assert.equal("failed", again.rows[2].error.kind)
      assert.equal(501, again.rows[2].error.code)
    end)

    it("refuses to mix batches: a changed row, a changed template, a removed row", function()
      local t = tag()
      local rows, j = rows_of(t, 3), dir .. "/j.jsonl"
      assert(batch.run{ client = client, model = KLING, rows = rows, template = "{{thing}}", journal = j })
      local before = stats().create_requests

      local changed = rows_of(t, 3)
      changed[2].thing = "something else " .. t
      local r, err = batch.run{ client = client, model = KLING, rows = changed, template = "{{thing}}", journal = j }
      assert.is_nil(r)
      assert.equal("validation", err.kind)
      assert.equal(2, err.row)
      assert.matches("belongs to another batch: row 2 changed since the journal was written", err.message)

      r, err = batch.run{ client = client, model = KLING, rows = rows, template = "a {{thing}}", journal = j }
      assert.is_nil(r)
      assert.matches("row 1 changed", err.message)

      r, err = batch.run{ client = client, model = KLING, rows = rows, template = "{{thing}}", journal = j,
        input = { duration = 9 } }
      assert.is_nil(r)
      assert.matches("row 1 changed", err.message)

      r, err = batch.run{ client = client, model = KLING, rows = rows_of(t, 2), template = "{{thing}}", journal = j }
      assert.is_nil(r)
      assert.matches("job 3 %(journal line %d+%) is not in this batch", err.message)
      assert.equal(before, stats().create_requests)
    end)

    it("submits only the rows appended since the journal was written", function()
      local t = tag()
      local j = dir .. "/j.jsonl"
      assert(batch.run{ client = client, model = KLING, rows = rows_of(t, 2), template = "{{thing}}", journal = j })
      local report = assert(batch.run{ client = client, model = KLING, rows = rows_of(t, 3),
        template = "{{thing}}", journal = j })
      assert.equal(3, report.succeeded)
      assert.equal(2, report.skipped)
      for i = 1, 3 do assert.equal(1, submits(("thing%d %s"):format(i, t))) end
    end)

    -- A journal as a run killed at a chosen moment leaves it.
    local function journal_with(j, records)
      local w = assert(journal.open(j))
      w:append({ type = "run", v = 1, model = KLING })
      for _, rec in ipairs(records) do w:append(rec) end
      assert(w:close())
    end
    local function fp_of(input) return fingerprint.of({ KLING, input }) end

    it("reports a row recorded as submitting with no answer as ambiguous, and resubmits it only when asked", function()
      local t = tag()
      local rows, j = rows_of(t, 3), dir .. "/j.jsonl"
      journal_with(j, { { type = "submit", job = "2", row = 2, fp = fp_of({ thing = nil, prompt = rows[2].thing }) } })
      local report = assert(batch.run{ client = client, model = KLING, rows = rows, template = "{{thing}}",
        journal = j })
      assert.equal(2, report.succeeded)
      assert.equal(1, report.ambiguous)
      local e = report.rows[2]
      assert.equal("ambiguous", e.state)
      assert.equal("ambiguous", e.error.kind)
      assert.equal(2, e.error.row)
      assert.matches("resubmit_ambiguous", e.error.message)
      assert.equal(0, submits(rows[2].thing))
      report = assert(batch.run{ client = client, model = KLING, rows = rows, template = "{{thing}}",
        journal = j, resubmit_ambiguous = true })
      assert.equal(3, report.succeeded)
      assert.equal(1, submits(rows[2].thing))
      assert.equal(1, submits(rows[1].thing))
    end)

    it("adopts a task accepted in an earlier run instead of submitting it again", function()
      local t = tag()
      local rows, j = rows_of(t, 2), dir .. "/j.jsonl"
      local earlier = assert(client:submit(KLING, { prompt = rows[1].thing }))
      while not earlier.id do client:step(1) end
      journal_with(j, {
        { type = "submit", job = "1", row = 1, fp = fp_of({ prompt = rows[1].thing }) },
        { type = "accepted", job = "1", id = earlier.id },
      })
      earlier:cancel()
      local report = assert(batch.run{ client = client, model = KLING, rows = rows, template = "{{thing}}",
        journal = j, download = dir .. "/out" })
      assert.equal(2, report.succeeded)
      assert.equal(earlier.id, report.rows[1].id)
      assert.is_true(report.rows[1].adopted)
      assert.equal(1, submits(rows[1].thing), "only the earlier submit")
      assert.equal(helper.file_bytes(m, earlier.id, 0), H.read(dir .. "/out/1-1.mp4"))
      local st = assert(journal.read(j))
      assert.equal("success", st.jobs["1"].state)
      assert.equal(1, st.jobs["1"].submits)
    end)

    it("restores failed rows, and submits them again with retry_failed", function()
      local t = tag()
      local rows = { { prompt = "flaky " .. t .. " [fail]" } }
      local j = dir .. "/j.jsonl"
      assert.equal(1, assert(batch.run{ client = client, model = KLING, rows = rows, journal = j }).failed)
      local again = assert(batch.run{ client = client, model = KLING, rows = rows, journal = j })
      assert.equal(1, again.failed)
      assert.equal(1, submits(rows[1].prompt))
      again = assert(batch.run{ client = client, model = KLING, rows = rows, journal = j, retry_failed = true })
      assert.equal(1, again.failed)
      assert.is_nil(again.rows[1].restored)
      assert.equal(2, submits(rows[1].prompt))
    end)

    it("downloads on resume only the files that are missing", function()
      local t = tag()
      local rows = { { prompt = "a " .. t .. " [outputs=2]" }, { prompt = "b " .. t } }
      local j, out = dir .. "/j.jsonl", dir .. "/out"
      assert(batch.run{ client = client, model = KLING, rows = rows, journal = j, download = out })
      local kept = H.inode(out .. "/1-1.mp4")
      os.remove(out .. "/1-2.mp4")
      local before = stats().files
      local report = assert(batch.run{ client = client, model = KLING, rows = rows, journal = j, download = out })
      assert.equal(before + 1, stats().files)
      assert.equal(kept, H.inode(out .. "/1-1.mp4"))
      assert.same({ ".modkie-batch", "1-1.mp4", "1-2.mp4", "2-1.mp4" }, H.ls(out)) -- (the folder's owner)
      assert.equal(helper.file_bytes(m, report.rows[1].id, 1), H.read(out .. "/1-2.mp4"))
      assert.same({ out .. "/1-1.mp4", out .. "/1-2.mp4" }, report.rows[1].files)
    end)

    it("downloads rows finished in an earlier run without a download folder", function()
      local t = tag()
      local rows, j = { { prompt = "late " .. t } }, dir .. "/j.jsonl"
      assert(batch.run{ client = client, model = KLING, rows = rows, journal = j })
      local report = assert(batch.run{ client = client, model = KLING, rows = rows, journal = j,
        download = dir .. "/out" })
      assert.same({ ".modkie-batch", "1-1.mp4" }, H.ls(dir .. "/out"))
      assert.equal(1, report.files)
      assert.equal(1, submits(rows[1].prompt))
    end)

    it("never writes the API key into the journal", function()
      local canary = "sk-canary-" .. tag() .. "-do-not-log"
      local c = helper.client(m, { api_key = canary })
      local j = dir .. "/j.jsonl"
      assert(batch.run{ client = c, model = KLING, journal = j, download = dir .. "/out",
        rows = { { prompt = "k1 " .. canary:sub(-3) }, { prompt = "k2 [fail]" }, { prompt = "k3 [fault=poll:500]" } } })
      c:close()
      local text = H.read(j)
      assert.is_true(#text > 200)
      assert.is_nil(text:find(canary, 1, true))
    end)

    it("creates the journal's folder, and fails with a config error when it cannot", function()
      local t = tag()
      assert(batch.run{ client = client, model = KLING, rows = { { prompt = "deep " .. t } },
        journal = dir .. "/a/b/j.jsonl" })
      assert.matches('"type":"done"', H.read(dir .. "/a/b/j.jsonl"))
      H.write(dir .. "/file", "")
      local r, err = batch.run{ client = client, model = KLING, rows = { { prompt = "x" } },
        journal = dir .. "/file/j.jsonl" }
      assert.is_nil(r)
      assert.equal("config", err.kind)
      assert.matches("file/j.jsonl: cannot create its folder", err.message, 1, true)
    end)
  end)

  describe("programmer errors", function()
    it("raise, naming the option", function()
      assert.has_error(function() batch.run{ client = client, model = KLING, rows = {}, concurency = 2 } end,
        "modkie.batch.run: unknown option 'concurency' (did you mean 'concurrency'?)")
      assert.has_error(function() batch.run{ model = KLING, rows = {} } end,
        "modkie.batch.run: option 'client' is required (a modkie client) unless dry_run")
      assert.has_error(function() batch.run{ client = client, model = KLING, rows = {}, concurrency = 0 } end,
        "modkie.batch.run: option 'concurrency' must be a whole number >= 1, got 0")
      assert.has_error(function()
        batch.run{ client = client, model = KLING, rows = {}, template = "x", template_file = "y" }
      end, "modkie.batch.run: give 'template' or 'template_file', not both")
      assert.has_error(function() batch.run{ client = client, model = 5, rows = {} } end,
        "modkie.batch.run: option 'model' must be a string, got number")
      assert.has_error(function() batch.run{ client = client, model = KLING } end)
    end)

    it("is reachable as modkie.batch", function()
      assert.equal(batch, modkie.batch)
    end)
  end)
end)

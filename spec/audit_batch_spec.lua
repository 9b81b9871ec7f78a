-- An adversarial read of the batch layer with the messy input a real user
-- brings: `modkie batch` run as a child process against the emulator, and
-- modkie.batch.run over real sockets. Each test is a finding of that read
-- (it failed before its fix).
local helper = require "spec.helper"
local H = require "spec.batch_helper"
local batch = require "modkie.batch"

local KLING = "kling/kling-3-0"

describe("batch with a user's messy input", function()
  local m, env, dir
  local seq = 0
  local function tag()
    seq = seq + 1
    return ("ab%d-%d"):format(os.time() % 100000, seq)
  end
  local function modkie(argv) return H.runner(env)(argv) end
  local function submits(prompt) return m.stats().submits_by_prompt[prompt] or 0 end

  setup(function()
    m = helper.mock({ "--job-seconds", "0.1" })
    env = { MODKIE_API_KEY = "test-key", MODKIE_BASE_URL = m.url }
  end)
  teardown(function() m.stop() end)
  before_each(function() dir = helper.tmpdir() end)
  after_each(function() helper.rmdir(dir) end)

  it("--journal naming the rows file (a tab completion away from ROWS.journal) leaves the rows file alone", function()
    local t = tag()
    local csv = "product,duration\nmug " .. t .. ",5\n"
    local rows = H.write(dir .. "/rows.csv", csv)
    local tpl = H.write(dir .. "/t.txt", "A {{product}}.\n")
    local r = modkie({ "batch", "--model", KLING, "--rows", rows, "--template", tpl, "--journal", rows,
      "--poll-interval", "0.05" })
    assert.equal(csv, H.read(rows)) -- no journal record appended to the user's CSV
    assert.equal(2, r.code, r.err)
    assert.matches("journal " .. rows:gsub("%p", "%%%0") .. ": line 1 is not a journal record", r.err)
    assert.equal(0, submits("A mug " .. t .. "."))
    -- nor to a JSON Lines rows file, even one with a `type` column
    local jsonl = '{"type":"video","product":"lamp ' .. t .. '","duration":5}\n'
    local jrows = H.write(dir .. "/rows.jsonl", jsonl)
    r = modkie({ "batch", "--model", KLING, "--rows", jrows, "--template", tpl, "--journal", jrows,
      "--allow-extra-columns", "--poll-interval", "0.05" })
    assert.equal(jsonl, H.read(jrows))
    assert.equal(2, r.code, r.err)
    assert.matches("line 1 is not a journal record", r.err)
    assert.equal(0, submits("A lamp " .. t .. "."))
  end)

  it("--template naming a folder is an error, not a batch that silently drops the template", function()
    local t = tag()
    local rows = H.write(dir .. "/rows.csv", "prompt,duration\nraw " .. t .. ",5\n")
    os.execute("mkdir -p " .. helper.shell_quote(dir .. "/templates"))
    local r = modkie({ "batch", "--model", KLING, "--rows", rows, "--template", dir .. "/templates",
      "--poll-interval", "0.05" })
    assert.equal(2, r.code, r.out .. r.err)
    assert.matches("cannot read the template file", r.err)
    assert.equal(0, submits("raw " .. t))
  end)

  it("a template saved with a UTF-8 BOM (Windows Notepad) does not put the BOM into every prompt", function()
    local t = tag()
    local rows = H.write(dir .. "/rows.csv", "product,duration\nmug " .. t .. ",5\n")
    local tpl = H.write(dir .. "/t.txt", "\239\187\191A {{product}}.\r\n")
    local r = modkie({ "batch", "--model", KLING, "--rows", rows, "--template", tpl, "--poll-interval", "0.05" })
    assert.equal(0, r.code, r.err)
    assert.equal(1, submits("A mug " .. t .. "."))
    assert.equal(0, submits("\239\187\191A mug " .. t .. "."))
  end)

  it("--dry-run with a journal of another batch says so, as the run itself would, instead of 'ok'", function()
    local t = tag()
    local rows = H.write(dir .. "/rows.csv", "product,duration\nmug " .. t .. ",5\nlamp " .. t .. ",5\n")
    local tpl = H.write(dir .. "/t.txt", "A {{product}}.\n")
    local argv = { "batch", "--model", KLING, "--rows", rows, "--template", tpl, "--poll-interval", "0.05" }
    assert.equal(0, modkie(argv).code)
    H.write(rows, "product,duration\ncup " .. t .. ",5\nlamp " .. t .. ",5\n") -- row 1 edited
    local dry = { "--dry-run" }
    for i = #argv, 1, -1 do table.insert(dry, 1, argv[i]) end
    local r = modkie(dry)
    assert.equal(2, r.code, r.out)
    assert.matches("belongs to another batch: row 1 changed", r.err)
    -- the run refuses it the same way, and sends nothing
    local run = modkie(argv)
    assert.equal(2, run.code)
    assert.matches("belongs to another batch: row 1 changed", run.err)
    assert.equal(0, submits("A cup " .. t .. "."))
    -- from Lua: the dry run returns the run's error
    local report, err = batch.run{ model = KLING, rows = rows, template_file = tpl, dry_run = true,
      journal = rows .. ".journal" }
    assert.is_nil(report)
    assert.equal("validation", err.kind)
    assert.equal(1, err.row)
  end)

  it("--review naming the journal or the rows file does not replace it with the page", function()
    local t = tag()
    local csv = "product,duration\nmug " .. t .. ",5\n"
    local rows = H.write(dir .. "/rows.csv", csv)
    local tpl = H.write(dir .. "/t.txt", "A {{product}}.\n")
    local j = rows .. ".journal"
    local argv = { "batch", "--model", KLING, "--rows", rows, "--template", tpl, "--poll-interval", "0.05" }
    local function with(...)
      local a = { table.unpack(argv) }
      for _, x in ipairs({ ... }) do a[#a + 1] = x end
      return a
    end
    local r = modkie(with("--review", j))
    assert.equal(0, r.code, r.err) -- the batch itself went well
    assert.matches("is not a review page", r.err)
    assert.matches('^{"type":"run"', H.read(j)) -- the journal is still the journal
    r = modkie(with("--review", rows))
    assert.equal(csv, H.read(rows))
    -- so a rerun restores the row rather than lose track of it
    assert.equal(0, r.code, r.err)
    assert.matches("1 done in an earlier run", r.out)
    assert.equal(1, submits("A mug " .. t .. "."))
    -- from Lua too; a page it wrote is refreshed
    local review = require "modkie.batch.review"
    local page, err = review.write(j, j)
    assert.is_nil(page)
    assert.equal("config", err.kind)
    assert(review.write(j, dir .. "/p.html"))
    assert(review.write(j, dir .. "/p.html"))
  end)

  it("an error of the review page says 'review:' once", function()
    local t = tag()
    local rows = H.write(dir .. "/rows.csv", "product,duration\nmug " .. t .. ",5\n")
    local tpl = H.write(dir .. "/t.txt", "A {{product}}.\n")
    local r = modkie({ "batch", "--model", KLING, "--rows", rows, "--template", tpl, "--poll-interval", "0.05",
      "--review", rows .. ".journal" })
    assert.equal(0, r.code, r.err)
    assert.matches("modkie: review: [^\n]* is not a review page", r.err)
    assert.not_matches("review: review:", r.err)
  end)

  it("a second batch saving into the download folder of another is refused before it sends anything", function()
    local t = tag()
    local a = H.write(dir .. "/a.csv", "product,duration\nmug " .. t .. ",5\n")
    local b = H.write(dir .. "/b.csv", "product,duration\nlamp " .. t .. ",5\n")
    local tpl = H.write(dir .. "/t.txt", "A {{product}}.\n")
    local v = dir .. "/v"
    local function run(rows, ...)
      local argv = { "batch", "--model", KLING, "--rows", rows, "--template", tpl, "--download", v,
        "--poll-interval", "0.05", ... }
      return modkie(argv)
    end
    local r = run(a)
    assert.equal(0, r.code, r.err)
    local bytes = assert(H.read(v .. "/1-1.mp4"))
    local ja = assert(require("modkie.core").realpath(a .. ".journal"))
    -- batch B: refused, nothing sent, A's video untouched
    r = run(b)
    assert.equal(2, r.code, r.out .. r.err)
    assert.matches("download folder " .. v .. " holds the outputs of another batch, whose journal is " .. ja, r.err,
      1, true)
    assert.matches("another folder", r.err)
    assert.equal(0, submits("A lamp " .. t .. "."))
    assert.equal(bytes, H.read(v .. "/1-1.mp4"))
    -- the folder names its owner
    assert.same({ ".modkie-batch", "1-1.mp4" }, H.ls(v))
    assert.matches(ja, H.read(v .. "/.modkie-batch"), 1, true)
    -- its dry run says so too
    r = run(b, "--dry-run")
    assert.equal(2, r.code, r.out .. r.err)
    assert.matches("holds the outputs of another batch", r.err)
    -- A again (the same journal): resumes
    r = run(a)
    assert.equal(0, r.code, r.err)
    assert.matches("1 done in an earlier run", r.out)
    -- from Lua: another journal, or none, is refused the same way
    local client = helper.client(m)
    for _, j in ipairs({ dir .. "/c.journal", false }) do
      local report, err = batch.run{ client = client, model = KLING, rows = b, template_file = tpl,
        journal = j or nil, download = v }
      assert.is_nil(report)
      assert.equal("config", err.kind)
      assert.matches("download folder " .. v, err.message, 1, true)
    end
    client:close()
    assert.equal(0, submits("A lamp " .. t .. "."))
    assert.equal(1, submits("A mug " .. t .. "."))
    -- a folder made before markers: adopted by the batch whose journal saved
    -- into it, refused to any other
    os.remove(v .. "/.modkie-batch")
    r = run(b)
    assert.equal(2, r.code, r.out .. r.err)
    assert.matches("already holds the outputs of a batch (1-1.mp4", r.err, 1, true)
    os.remove(v .. "/.modkie-batch")
    r = run(a)
    assert.equal(0, r.code, r.err)
    assert.matches(ja, H.read(v .. "/.modkie-batch"), 1, true)
    assert.equal(bytes, H.read(v .. "/1-1.mp4"))
    assert.equal(0, submits("A lamp " .. t .. "."))
  end)

  it("a CSV separated by ';' (a spreadsheet where the decimal mark is a comma) is read as such", function()
    local t = tag()
    local rows = H.write(dir .. "/rows.csv", "\239\187\191product;duration;note\r\n\"mug, blue " .. t
      .. "\";5;1,5 l\r\n")
    local tpl = H.write(dir .. "/t.txt", "A {{product}} ({{note}}).\n")
    local argv = { "batch", "--model", KLING, "--rows", rows, "--template", tpl, "--poll-interval", "0.05" }
    local r = modkie(argv)
    assert.equal(0, r.code, r.err)
    assert.equal(1, submits("A mug, blue " .. t .. " (1,5 l)."))
    -- a tab-separated file named .csv too, from Lua
    local tabbed = H.write(dir .. "/tabs.csv", "product\tduration\nlamp " .. t .. "\t5\n")
    local report = assert(batch.run{ model = KLING, rows = tabbed, template = "A {{product}}.", dry_run = true })
    assert.equal(1, report.valid)
    assert.equal("A lamp " .. t .. ".", report.rows[1].prompt)
    -- forced to read it with commas: the error says what the file looks like and what to pass
    table.insert(argv, "--separator")
    table.insert(argv, ",")
    r = modkie(argv)
    assert.equal(2, r.code, r.err)
    assert.matches("the header is one column, 'product;duration;note': the file looks separated by ';'", r.err,
      1, true)
    assert.matches("--separator ';'", r.err, 1, true)
    local _, err = batch.run{ model = KLING, rows = tabbed, template = "A {{product}}.", dry_run = true,
      separator = "," }
    assert.equal("validation", err.kind)
    assert.matches("looks separated by a tab", err.message)
    -- and told the separator, it reads it
    r = modkie({ "batch", "--model", KLING, "--rows", rows, "--template", tpl, "--separator", ";", "--dry-run" })
    assert.equal(0, r.code, r.err)
    report = assert(batch.run{ model = KLING, rows = tabbed, template = "A {{product}}.", dry_run = true,
      separator = "\t" })
    assert.equal(1, report.valid)
    -- one column whose quoted name holds a ';': read with the ';' the hint names, it is that column (the hint
    -- used to come back whatever was passed: the file could not be read at all)
    local quoted = H.write(dir .. "/quoted.csv", '"prompt; max 200 chars"\nlamp ' .. t .. "\n")
    report = assert(batch.run{ model = "acme/x", rows = quoted, template = "A {{prompt; max 200 chars}}.",
      dry_run = true, separator = ";" })
    assert.equal(1, report.valid)
    assert.equal("A lamp " .. t .. ".", report.rows[1].prompt)
  end)

  it("columns named with spaces or dots, as spreadsheets name them, are template variables", function()
    local t = tag()
    local rows = H.write(dir .. "/rows.csv", "Product Name,product.name,Size (cm),duration\nmug " .. t
      .. ",Ada,12,5\n")
    local tpl = H.write(dir .. "/t.txt", "A {{Product Name}} called {{ product.name }}, {{Size (cm)}} cm, "
      .. "{{ Product Name | upper }}.\n")
    local argv = { "batch", "--model", KLING, "--rows", rows, "--template", tpl, "--poll-interval", "0.05" }
    local r = modkie(argv)
    assert.equal(0, r.code, r.err)
    assert.equal(1, submits("A mug " .. t .. " called Ada, 12 cm, MUG " .. t:upper() .. "."))
    -- a name off by a letter is the usual missing variable, with the column it resembles
    local report = assert(batch.run{ model = KLING, rows = rows, template = "A {{Product Nme}} {{product.name}} "
      .. "{{Size (cm)}}.", dry_run = true, extra_columns = true })
    assert.equal(1, report.invalid)
    local msg = report.problems[1].message
    assert.matches("missing variable 'Product Nme'", msg, 1, true)
    assert.matches("did you mean 'Product Name'?", msg, 1, true)
    -- a JSON column's fields still work through dots
    report = assert(batch.run{ model = KLING, rows = { { product = { name = "cup" } } },
      template = "A {{product.name}}.", dry_run = true })
    assert.equal("A cup.", report.rows[1].prompt)
  end)
end)

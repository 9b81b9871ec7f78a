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
end)

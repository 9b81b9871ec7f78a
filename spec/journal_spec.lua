-- The journal file: its lines, its replay, and what a crash can leave in it.
local journal = require "modkie.batch.journal"
local cjson = require "cjson"
local H = require "spec.batch_helper"

local function tmp()
  local p = os.tmpname()
  os.remove(p)
  return p
end

describe("modkie.batch.journal", function()
  local path
  before_each(function() path = tmp() end)
  after_each(function() os.remove(path) end)

  it("writes one JSON object per line, type and job first, URLs readable", function()
    local j = assert(journal.open(path))
    assert(j:write({ type = "run", v = 1, model = "kling/kling-3-0", jobs = 2 }))
    assert(j:write({ type = "done", job = "2", state = "success", id = "task_1",
      urls = { "http://h/files/task_1/0.mp4" }, credits = 35 }))
    assert(j:close())
    local text = H.read(path)
    local lines = {}
    for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal(2, #lines)
    assert.equal("\n", text:sub(-1))
    assert.matches('^{"type":"run",', lines[1])
    assert.matches('^{"type":"done","job":"2",', lines[2])
    assert.matches("http://h/files/task_1/0.mp4", lines[2], 1, true)
    local rec = cjson.decode(lines[2])
    assert.same({ "http://h/files/task_1/0.mp4" }, rec.urls)
    assert.equal(35, rec.credits)
    assert.is_number(rec.t)
  end)

  it("keeps a backslash before a slash intact through the unescaping of '/'", function()
    local line = assert(journal.encode({ type = "x", job = "1", s = "a\\/b\\\\/c/" }))
    assert.equal("a\\/b\\\\/c/", cjson.decode(line).s)
  end)

  it("replays each job to its last state", function()
    local j = assert(journal.open(path))
    j:append({ type = "run", v = 1 })
    j:append({ type = "submit", job = "1", row = 1, fp = "aa" })
    j:append({ type = "submit", job = "2", row = 2, fp = "bb" })
    j:append({ type = "accepted", job = "1", id = "task_1" })
    j:append({ type = "submit", job = "3", row = 3, fp = "cc" })
    j:append({ type = "accepted", job = "3", id = "task_3" })
    j:append({ type = "done", job = "3", state = "failed", id = "task_3", error = { kind = "failed", message = "x" } })
    j:append({ type = "submit", job = "4", row = 4, fp = "dd" })
    j:append({ type = "accepted", job = "4", id = "task_4" })
    j:append({ type = "done", job = "4", state = "success", id = "task_4", urls = { "u" } })
    j:append({ type = "files", job = "4", files = { "4-1.mp4" } })
    assert(j:close())
    local st = assert(journal.read(path))
    assert.equal(1, st.runs)
    assert.equal("accepted", st.jobs["1"].state)
    assert.equal("task_1", st.jobs["1"].id)
    assert.equal("submitting", st.jobs["2"].state)
    assert.is_nil(st.jobs["2"].id)
    assert.equal("bb", st.jobs["2"].fp)
    assert.equal(3, st.jobs["2"].line)
    assert.equal("failed", st.jobs["3"].state)
    assert.equal("success", st.jobs["4"].state)
    assert.same({ "4-1.mp4" }, st.jobs["4"].files)
    assert.equal(1, st.jobs["4"].submits)
    assert.is_nil(st.jobs["5"])
  end)

  it("starts a job afresh when it is submitted again (counting the submits)", function()
    local j = assert(journal.open(path))
    j:append({ type = "submit", job = "1", row = 1, fp = "aa" })
    j:append({ type = "done", job = "1", state = "ambiguous", error = { kind = "ambiguous", message = "?" } })
    j:append({ type = "submit", job = "1", row = 1, fp = "aa" })
    j:append({ type = "accepted", job = "1", id = "task_9" })
    assert(j:close())
    local st = assert(journal.read(path))
    assert.equal("accepted", st.jobs["1"].state)
    assert.is_nil(st.jobs["1"].done)
    assert.equal(2, st.jobs["1"].submits)
  end)

  it("reads a missing journal as an empty one", function()
    local st = assert(journal.read(path .. ".nope"))
    assert.same({}, st.jobs)
    assert.equal(0, st.runs)
  end)

  it("ignores a last line torn by a crash, and ends it before appending", function()
    H.write(path, '{"type":"run","v":1}\n{"type":"submit","job":"1","row":1,"fp":"aa"}\n{"type":"acc')
    local st = assert(journal.read(path))
    assert.equal("submitting", st.jobs["1"].state)
    assert.equal(1, st.torn)
    local j = assert(journal.open(path))
    assert(j:write({ type = "run", v = 1 }))
    assert(j:write({ type = "accepted", job = "1", id = "task_1" }))
    j:close()
    st = assert(journal.read(path))
    assert.equal("accepted", st.jobs["1"].state)
    assert.equal(2, st.runs)
    assert.equal(1, st.torn)
  end)

  -- fuzz finding journal/double-tear: a run killed while writing its first
  -- line, right after a run killed mid-write, left a journal that no batch
  -- could resume without a hand edit ("line 3 is damaged").
  it("regression: ignores the torn lines of two and three crashes in a row", function()
    H.write(path, '{"type":"run","v":1,"t":1}\n{"type":"submit","job":"1","row":1,"fp":"a"}\n'
      .. '{"type":"done","job":"1","sta')
    for crash = 2, 3 do
      -- the next run ends the torn line and writes its `run` record...
      local j = assert(journal.open(path))
      assert(j:write({ type = "run", v = 1, model = "m", jobs = 2 }))
      j:close()
      -- ...and is killed while writing it
      local f = assert(io.open(path, "rb"))
      local text = f:read("*a")
      f:close()
      H.write(path, text:sub(1, #text - 12))
      local st = assert(journal.read(path))
      assert.equal(crash, st.torn)
      assert.equal(1, st.runs)
      assert.equal("submitting", st.jobs["1"].state)
    end
    -- a fourth run goes through: every torn line before it is ignored
    local j = assert(journal.open(path))
    assert(j:write({ type = "run", v = 1 }))
    assert(j:write({ type = "accepted", job = "1", id = "task_1" }))
    j:close()
    local st = assert(journal.read(path))
    assert.same({ 3, 2, 7 }, { st.torn, st.runs, st.lines })
    assert.equal("accepted", st.jobs["1"].state)
  end)

  it("still refuses torn-looking lines that a crash cannot leave", function()
    local head = '{"type":"run","v":1}\n{"type":"submit","job":"1"}\n{"type":"acc\n'
    for _, c in ipairs({
      -- a torn `run` line followed by anything but a run
      { head .. '{"type":"run","v\n{"type":"submit","job":"2"}\n', 4 },
      -- a torn line followed by a torn line that is not a `run`, then a run
      { head .. '{"type":"submit","jo\n{"type":"run","v":1}\n', 3 },
      { head .. 'garbage\n{"type":"run","v":1}\n{"type":"submit","job":"2"}\n', 3 },
    }) do
      H.write(path, c[1])
      local st, err = journal.read(path)
      assert.is_nil(st, c[1])
      assert.equal(c[2], err.line)
      assert.matches("line " .. c[2] .. " is damaged", err.message)
    end
    -- only torn lines up to the end: each may be a crash
    H.write(path, head .. '{"type":"run","v":1,"t\n{"type":"submit","jo\n{"ty')
    assert.equal(4, assert(journal.read(path)).torn)
  end)

  it("refuses a damaged line in the middle, naming the file and line", function()
    H.write(path, '{"type":"run","v":1}\n{"type":"submit","job":"1"}\ngarbage here\n{"type":"submit","job":"2"}\n')
    local st, err = journal.read(path)
    assert.is_nil(st)
    assert.equal("validation", err.kind)
    assert.equal(3, err.line)
    assert.matches("line 3 is damaged", err.message)
    assert.matches(path, err.message, 1, true)
    local j, oerr = journal.open(path)
    assert.is_nil(j)
    assert.equal(3, oerr.line)
  end)

  it("refuses a record without a job key, and a journal from a newer version", function()
    H.write(path, '{"type":"submit","row":1}\n{"type":"run","v":1}\n')
    local _, err = journal.read(path)
    -- a line that is JSON but lacks its job is damage, not a torn write
    assert.matches("line 1 is damaged %(no job key%)", err.message)
    H.write(path, '{"type":"run","v":99}\n')
    _, err = journal.read(path)
    assert.matches("newer modkie", err.message)
  end)

  it("skips record types it does not know (written by a later version)", function()
    H.write(path, '{"type":"run","v":1}\n{"type":"note","job":"1","text":"hi"}\n{"type":"submit","job":"1","fp":"a"}\n')
    local st = assert(journal.read(path))
    assert.equal("submitting", st.jobs["1"].state)
  end)

  it("reports a journal it cannot open for writing as a config error", function()
    local j, err = journal.open("/nonexistent-dir-for-modkie/j.jsonl")
    assert.is_nil(j)
    assert.equal("config", err.kind)
    assert.matches("cannot open it for writing", err.message)
  end)

  it("is locked while open: a second batch on the same journal is refused, not mixed in", function()
    local j = assert(journal.open(path))
    local lua = os.getenv("MODKIE_TEST_LUA") or "lua5.4"
    local script = ("package.path, package.cpath = %q, %q "
      .. "local j, err = require('modkie.batch.journal').open(%q) io.write(j and 'opened' or err.message)")
      :format(package.path, package.cpath, path)
    local other = assert(io.popen(lua .. " -e " .. require("spec.helper").shell_quote(script))):read("*a")
    assert.matches("cannot lock it", other)
    assert(j:close())
    local again = assert(journal.open(path))
    assert(again:close())
  end)

  it("makes appended records durable only on sync (and write = append + sync)", function()
    local j = assert(journal.open(path))
    assert(j:append({ type = "submit", job = "1", fp = "a" }))
    assert.is_true(j.dirty)
    assert(j:sync())
    assert.is_false(j.dirty)
    -- what sync made durable is in the file, whole, even before close
    assert.matches('"job":"1"', H.read(path))
    j:close()
    assert.is_true(j:close()) -- twice is fine
  end)
end)

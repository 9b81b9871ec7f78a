-- A batch run as a real child process (`bin/modkie batch`), killed with
-- SIGKILL mid-run, several times, then run again with the same journal.
-- The emulator counts how many times each row's prompt was submitted.
local helper = require "spec.helper"
local H = require "spec.batch_helper"
local journal = require "modkie.batch.journal"
local modkie = require "modkie"
local cjson = require "cjson"

local KLING = "kling/kling-3-0"

-- Jobs caught between "submitting" and the gateway's recorded answer: a
-- kill now would leave them ambiguous.
local function in_window(st)
  for _, js in pairs(st.jobs) do
    if js.state == "submitting" then return true end
  end
  return false
end

local function count(st, state)
  local n = 0
  for _, js in pairs(st.jobs) do
    if js.state == state then n = n + 1 end
  end
  return n
end

-- Freeze the child, look at its journal, and SIGKILL it (or send `sig`,
-- then let it go on to take it) when `moment(st)` holds and no createTask
-- is in flight; else let it run a little more. Returns its exit code.
local function kill_at(p, jpath, moment, what, sig)
  local t0 = helper.now()
  while true do
    assert(p.running(), "the batch ended before " .. what .. "\n" .. p.err())
    p.signal("STOP")
    local st = journal.read(jpath)
    if st and moment(st) and not in_window(st) then
      p.signal(sig or "KILL")
      if sig then p.signal("CONT") end
      return p.wait(20)
    end
    p.signal("CONT")
    assert(helper.now() - t0 < 60, "never reached: " .. what)
    helper.sleep(0.003)
  end
end

local function whole_files(dir)
  local out = {}
  for _, name in ipairs(H.ls(dir)) do
    if not name:find("%.part$") then out[name] = H.inode(dir .. "/" .. name) end
  end
  return out
end

describe("a batch killed with SIGKILL #slow", function()
  local m, dir, rows_path, tpl_path, jpath, out
  local env

  setup(function()
    m = helper.mock({ "--job-seconds", "0.5", "--stall-seconds", "3" })
    env = { MODKIE_API_KEY = "test-key", MODKIE_BASE_URL = m.url }
  end)
  teardown(function() m.stop() end)
  before_each(function()
    dir = helper.tmpdir()
    rows_path, tpl_path = dir .. "/rows.csv", dir .. "/template.txt"
    jpath, out = dir .. "/journal.jsonl", dir .. "/videos"
  end)
  after_each(function() helper.rmdir(dir) end)

  local function batch_argv(extra)
    local argv = { "batch", "--model", KLING, "--rows", rows_path, "--template", tpl_path,
      "--journal", jpath, "--download", out, "--concurrency", "3", "--poll-interval", "0.05", "--quiet" }
    for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
    return argv
  end

  -- 12 rows with unique prompts; `extra[i]` adds directives to row i.
  local function write_batch(name, extra)
    local lines = { "n,subject,extra" }
    for i = 1, 12 do lines[#lines + 1] = ("%d,%s subject %d,%s"):format(i, name, i, extra and extra[i] or "") end
    H.write(rows_path, table.concat(lines, "\n") .. "\n")
    H.write(tpl_path, "{{subject}} (row {{n}}) [outputs=2] [size=300000] {{extra | default \"\"}}\n")
    local prompts = {}
    for i = 1, 12 do
      prompts[i] = ("%s subject %d (row %d) [outputs=2] [size=300000] %s"):format(name, i, i, extra and extra[i] or "")
      prompts[i] = prompts[i]:gsub("%s+$", "")
    end
    return prompts
  end

  local function final_report(argv)
    local r = H.cli(argv, env)
    local ok, report = pcall(cjson.decode, r.out)
    assert(ok, "no JSON report: " .. r.out .. r.err)
    return r, report
  end

  it("at chosen moments, resumes with every row submitted exactly once, no result lost, whole files kept", function()
    local name = "exact" .. os.time() % 100000
    -- the first file of rows 5 and 9 is held 3 s by the emulator: a kill then
    -- lands mid-save, with the row's other file already whole on disk
    local prompts = write_batch(name, { [5] = "[fault=files:stall]", [9] = "[fault=files:stall]" })
    local kept, kills = {}, {}

    local p = H.spawn(batch_argv(), env)
    kills[1] = kill_at(p, jpath, function(st)
      return count(st, "accepted") >= 2 and count(st, "success") == 0
    end, "tasks accepted and running")
    p.clean()

    local function mid_save(key)
      return function(st)
        local js = st.jobs[key]
        return js and js.state == "success" and not js.files
          and H.read(out .. "/" .. key .. "-2.mp4") ~= nil and H.read(out .. "/" .. key .. "-1.mp4") == nil
      end
    end
    for _, key in ipairs({ "5", "9" }) do
      p = H.spawn(batch_argv(), env)
      kills[#kills + 1] = kill_at(p, jpath, mid_save(key), "row " .. key .. " saving its first file")
      for n, inode in pairs(whole_files(out)) do kept[n] = inode end
      p.clean()
    end
    assert.same({ 137, 137, 137 }, kills, "each run ended by SIGKILL")
    assert.is_true(next(kept) ~= nil)

    local r, report = final_report(batch_argv({ "--json" }))
    assert.equal(0, r.code, r.err)
    assert.equal(12, report.total)
    assert.equal(12, report.succeeded)
    assert.equal(24, report.files)

    local stats = m.stats()
    for i = 1, 12 do
      assert.equal(1, stats.submits_by_prompt[prompts[i]], "row " .. i .. " submitted once")
      local e = report.rows[i]
      assert.equal("success", e.state)
      for n = 1, 2 do
        assert.equal(out .. ("/%d-%d.mp4"):format(i, n), e.files[n])
        assert.equal(helper.file_bytes(m, e.id, n - 1), H.read(e.files[n]), "row " .. i .. " file " .. n)
      end
    end
    local names = H.ls(out)
    -- the 24 outputs and the folder's marker (.modkie-batch)
    assert.equal(25, #names, "no .part file left: " .. table.concat(names, " "))
    for n, inode in pairs(kept) do
      assert.equal(inode, H.inode(out .. "/" .. n), n .. " was whole before a kill and must not be fetched again")
    end
    -- the journal: one submit per row across all four runs
    local st = assert(journal.read(jpath))
    assert.equal(4, st.runs)
    for i = 1, 12 do assert.equal(1, st.jobs[tostring(i)].submits) end
  end)

  it("at random moments, never submits a row twice and reports any row it cannot vouch for", function()
    local name = "chaos" .. os.time() % 100000
    local prompts = write_batch(name)
    local seed = os.time()
    math.randomseed(seed)
    for _ = 1, 5 do
      local p = H.spawn(batch_argv(), env)
      helper.sleep(0.05 + math.random() * 0.6)
      p.signal("KILL")
      p.wait(10)
      p.clean()
    end
    local r, report = final_report(batch_argv({ "--json" }))
    assert.is_true(r.code == 0 or r.code == 1, r.err)
    local stats = m.stats()
    local ambiguous = 0
    for i = 1, 12 do
      local e, n = report.rows[i], stats.submits_by_prompt[prompts[i]] or 0
      assert.is_true(n <= 1, ("seed %d: row %d submitted %d times"):format(seed, i, n))
      if e.state == "success" then
        assert.equal(1, n)
      else
        assert.equal("ambiguous", e.state, ("seed %d: row %d is %s"):format(seed, i, e.state))
        ambiguous = ambiguous + 1
      end
    end
    assert.equal(ambiguous, report.ambiguous)
    assert.equal(12, report.succeeded + report.ambiguous)
  end)

  it("inside the createTask window, leaves the row ambiguous until told to resubmit it", function()
    local name = "window" .. os.time() % 100000
    -- row 4's createTask is answered only after 3 s (the task exists at once)
    local prompts = write_batch(name, { [4] = "[fault=create:stall]" })
    local p = H.spawn(batch_argv(), env)
    local t0 = helper.now()
    while m.stats().submits_by_prompt[prompts[4]] ~= 1 do
      assert(helper.now() - t0 < 20, "row 4 was never submitted")
      helper.sleep(0.01)
    end
    -- freeze it to read the journal the kill will leave: with 3 in flight,
    -- rows besides row 4 may be caught mid-createTask too
    p.signal("STOP")
    local st = assert(journal.read(jpath))
    assert.equal("submitting", st.jobs["4"].state)
    local caught, before = {}, {}
    for key, js in pairs(st.jobs) do
      if js.state == "submitting" then caught[tonumber(key)] = true end
    end
    p.signal("KILL")
    assert.equal(137, p.wait(10))
    p.clean()
    helper.sleep(0.2) -- a request already written reaches the emulator all the same
    local n_caught = 0
    for i in pairs(caught) do
      n_caught = n_caught + 1
      before[i] = m.stats().submits_by_prompt[prompts[i]] or 0
    end

    local r, report = final_report(batch_argv({ "--json" }))
    assert.equal(1, r.code, "an ambiguous row is not a success")
    assert.equal(12 - n_caught, report.succeeded)
    assert.equal(n_caught, report.ambiguous)
    for i = 1, 12 do
      assert.equal(caught[i] and "ambiguous" or "success", report.rows[i].state, "row " .. i)
    end
    assert.equal(1, m.stats().submits_by_prompt[prompts[4]])

    -- the user checked and decided: submit them again (a second task)
    r, report = final_report(batch_argv({ "--json", "--resubmit-ambiguous" }))
    assert.equal(0, r.code, r.err)
    assert.equal(12, report.succeeded)
    local stats = m.stats()
    assert.equal(2, stats.submits_by_prompt[prompts[4]])
    for i = 1, 12 do
      assert.equal(caught[i] and before[i] + 1 or 1, stats.submits_by_prompt[prompts[i]], "row " .. i)
    end
  end)
end)

-- Rows waiting on the client's own submit rate limit were never sent: a
-- kill or Ctrl-C then must not leave them ambiguous (issue 11, item 1).
describe("a batch stopped while rows wait on the submit rate limit #slow", function()
  local m, dir, rows_path, tpl_path, jpath, env
  local ROWS = 30 -- the client's default limit sends 20 at once, the other 10 wait ~10 s

  setup(function()
    m = helper.mock({ "--job-seconds", "0.3" })
    env = { MODKIE_API_KEY = "test-key", MODKIE_BASE_URL = m.url }
  end)
  teardown(function() m.stop() end)
  before_each(function()
    dir = helper.tmpdir()
    rows_path, tpl_path, jpath = dir .. "/rows.csv", dir .. "/template.txt", dir .. "/journal.jsonl"
  end)
  after_each(function() helper.rmdir(dir) end)

  local function write_rows(name)
    local lines, prompts = { "subject" }, {}
    for i = 1, ROWS do
      lines[#lines + 1] = ("%s %d"):format(name, i)
      prompts[i] = ("%s %d at dawn"):format(name, i)
    end
    H.write(rows_path, table.concat(lines, "\n") .. "\n")
    H.write(tpl_path, "{{subject}} at dawn\n")
    return prompts
  end

  local function argv(extra)
    local a = { "batch", "--model", KLING, "--rows", rows_path, "--template", tpl_path, "--journal", jpath,
      "--concurrency", tostring(ROWS), "--poll-interval", "0.05", "--quiet" }
    for _, x in ipairs(extra or {}) do a[#a + 1] = x end
    return a
  end

  -- Stop the batch (`sig`, or SIGKILL) once the first 20 were accepted and
  -- the rest wait on the rate limit, with no createTask in flight; check
  -- the journal recorded only the rows that were sent.
  local function stop_while_waiting(prompts, sig)
    local p = H.spawn(argv(), env)
    local code = kill_at(p, jpath, function(st)
      return count(st, "accepted") + count(st, "success") >= 20
    end, "20 rows accepted", sig)
    local st = assert(journal.read(jpath))
    local recorded, sent = 0, 0
    for _, js in pairs(st.jobs) do recorded = recorded + js.submits end
    for i = 1, ROWS do sent = sent + (m.stats().submits_by_prompt[prompts[i]] or 0) end
    -- 20 at once, 10 more ~10 s later: stopped before those, unless the machine crawls
    assert.is_true(sent >= 20 and sent < ROWS, ("%d rows were sent before the stop"):format(sent))
    assert.equal(sent, recorded, "only rows handed to the network are recorded as submitting")
    return code, p
  end

  local function resume_all_once(prompts)
    local r = H.cli(argv({ "--json" }), env)
    local report = cjson.decode(r.out)
    assert.equal(0, r.code, r.err)
    assert.equal(ROWS, report.succeeded)
    assert.equal(0, report.ambiguous)
    local stats = m.stats()
    for i = 1, ROWS do assert.equal(1, stats.submits_by_prompt[prompts[i]], "row " .. i .. " submitted once") end
  end

  it("SIGKILL: the rows never sent are submitted on resume, without --resubmit-ambiguous", function()
    local prompts = write_rows("waitkill" .. os.time() % 100000)
    local code, p = stop_while_waiting(prompts)
    p.clean()
    assert.equal(137, code)
    resume_all_once(prompts)
  end)

  it("SIGINT: exit 130, the same journal resumes every row exactly once", function()
    local prompts = write_rows("waitint" .. os.time() % 100000)
    local code, p = stop_while_waiting(prompts, "INT")
    assert.equal(130, code, p.err())
    assert.matches("interrupted", p.err())
    assert.matches("run the same command again to resume", p.err())
    p.clean()
    resume_all_once(prompts)
  end)
end)

-- A createTask answered 429 ("nothing created") is retried after a backoff;
-- the retry passes the door as the first attempt did, and the journal says
-- the row is unsent again meanwhile (issue 11's follow-up): a kill in the
-- backoff leaves it plainly unsent, not ambiguous.
describe("a batch killed while createTasks answered 429 wait to be retried", function()
  local m, dir, env
  local ROWS = 3

  setup(function()
    -- the injected 429 says Retry-After: 30, so the backoff is long (10 s, the cap)
    m = helper.mock({ "--job-seconds", "0.2", "--retry-after", "30" })
    env = { MODKIE_API_KEY = "test-key", MODKIE_BASE_URL = m.url }
  end)
  teardown(function() m.stop() end)
  before_each(function() dir = helper.tmpdir() end)
  after_each(function() helper.rmdir(dir) end)

  it("SIGKILL in the backoff: the rows resume without --resubmit-ambiguous, one accepted create each", function()
    local name = "bounce" .. os.time() % 100000
    local lines, prompts = { "subject" }, {}
    for i = 1, ROWS do
      lines[#lines + 1] = ("%s %d"):format(name, i)
      prompts[i] = ("[fault=create:429x1] %s %d"):format(name, i)
    end
    local rows_path, tpl_path, jpath = dir .. "/rows.csv", dir .. "/template.txt", dir .. "/journal.jsonl"
    H.write(rows_path, table.concat(lines, "\n") .. "\n")
    H.write(tpl_path, "[fault=create:429x1] {{subject}}\n")
    local argv = { "batch", "--model", KLING, "--rows", rows_path, "--template", tpl_path, "--journal", jpath,
      "--poll-interval", "0.05", "--quiet", "--json" }
    local before = m.stats().faults.create["429"] or 0
    local p = H.spawn(argv, env)
    -- every row's first createTask was answered 429: each waits out its backoff
    local t0 = helper.now()
    while (m.stats().faults.create["429"] or 0) < before + ROWS do
      assert(p.running(), "the batch ended before its createTasks were answered 429\n" .. p.err())
      assert(helper.now() - t0 < 30, "the emulator never answered 429 to every row")
      helper.sleep(0.01)
    end
    helper.sleep(0.3) -- the answers reach the batch, well inside the 10 s backoff
    p.signal("KILL")
    assert.equal(137, p.wait(20))
    p.clean()
    -- nothing was accepted, and the journal says no row may have reached the gateway
    local st = assert(journal.read(jpath))
    for i = 1, ROWS do
      assert.is_nil(m.stats().submits_by_prompt[prompts[i]], "row " .. i .. " was not accepted before the kill")
      local js = st.jobs[tostring(i)]
      assert.equal("new", js and js.state, "row " .. i .. " is recorded as unsent")
    end
    local r = H.cli(argv, env)
    assert.equal(0, r.code, r.err)
    local report = cjson.decode(r.out)
    assert.equal(ROWS, report.succeeded)
    assert.equal(0, report.ambiguous)
    local stats = m.stats()
    for i = 1, ROWS do
      assert.equal(1, stats.submits_by_prompt[prompts[i]], "row " .. i .. ": one accepted createTask")
    end
  end)

  it("each attempt waits at the door: nothing goes out again until job:send(), and the batch journals it", function()
    local quick = helper.mock({ "--job-seconds", "0.2", "--retry-after", "0" })
    local c = helper.client(quick, { rate = false })
    finally(function() c:close(); quick.stop() end)
    local job = assert(c:submit(KLING, { prompt = "[fault=create:429x2] door" }, { hold = true }))
    local sends = 0
    local t0 = helper.now()
    while not job.done and helper.now() - t0 < 20 do
      if job.held then
        -- held: the emulator has seen exactly the attempts let go so far
        assert.equal(sends, (quick.stats().faults.create["429"] or 0) + (job.id and 1 or 0))
        assert.equal(sends, job.bounced or 0)
        sends = sends + 1
        assert.is_true(job:send())
      end
      c:step(0.05)
      if job.id and not job.done then break end
    end
    assert.truthy(job.id, "accepted")
    assert.equal(3, sends) -- two answered 429, the third accepted
    assert.equal(2, job.bounced)
    -- a batch writes submit, retry, submit, retry, submit, accepted for such a row
    local jpath = dir .. "/door.jsonl"
    local report = assert(modkie.batch.run{ client = c, model = KLING, journal = jpath,
      rows = { { prompt = "[fault=create:429x2] door row" } } })
    assert.equal(1, report.succeeded)
    local types = {}
    for line in io.lines(jpath) do
      local rec = cjson.decode(line)
      if rec.job == "1" then types[#types + 1] = rec.type end
    end
    assert.same({ "submit", "retry", "submit", "retry", "submit", "accepted", "done" }, types)
  end)
end)

--- `modkie batch`: rows and a template in, one job per row, a summary out.
-- @module modkie.cli.batch

local args = require "modkie.cli.args"
local common = require "modkie.cli.common"
local Progress = require "modkie.cli.progress"
local text = require("modkie.cli.escape").text

local batch_cli = {}

local EXIT = common.EXIT

batch_cli.USAGE = [[
usage: modkie batch --model MODEL --rows FILE [--template FILE] [options]

Run one job per row of FILE (.csv, .tsv, .jsonl): columns that are fields of
the model go into its input, the others are template variables; the
template renders the prompt. Safe to interrupt: run the same command again
and it resumes from the journal without submitting a row twice.

options:
  --model MODEL           the model, e.g. kling/kling-3-0
  --rows FILE             the rows: CSV with a header row, or JSON Lines
  --template FILE         the prompt template ({{column}}, filters, sections)
  --set KEY=VALUE         an input default for every row (KEY:=JSON for raw
                          JSON); repeatable
  --field NAME            also send column NAME as an input field (for models
                          modkie has no schema for); repeatable
  --prompt-field NAME     the input field the template renders (default prompt)
  --expand                one job per combination of {a|b} in the template
  --random N              with --expand: N seeded random picks per row instead
  --seed S                the seed of --random (default 0)
  --concurrency N         jobs in flight at once (default 8)
  --journal FILE          the journal (default: FILE.journal next to --rows)
  --no-journal            run without a journal (an interrupted run cannot resume)
  --download DIR          save each row's outputs as DIR/<row>-<n>.<ext>
  --dry-run               render and validate every row, estimate the credits,
                          send nothing
  --resubmit-ambiguous    submit again rows whose earlier createTask had no
                          recorded answer (a task may exist: it may run twice)
  --retry-failed          submit again rows whose job failed in an earlier run
  --deadline S            seconds each job may take (default 900)
  --callback-url URL      the gateway POSTs each result there
  --quiet                 no line per row (errors and the summary still print)
  --json                  print the report as JSON on stdout
]] .. common.CLIENT_HELP .. [[

Progress goes to stderr: a bar on a terminal, a line per row otherwise.
The API key comes from MODKIE_API_KEY. Exit codes: 0 every row succeeded,
1 a row failed or is ambiguous, 2 usage or invalid rows/template,
3 auth or credits, 4 network or timeout, 130 interrupted.
]]

local FLAGS = {
  help = {}, json = {}, quiet = {},
  model = { value = "nonempty" }, rows = { value = "nonempty" }, template = { value = "nonempty" },
  set = { value = "string", many = true }, field = { value = "nonempty", many = true },
  ["prompt-field"] = { value = "nonempty" }, expand = {}, random = { value = "count" },
  seed = { value = "string" }, concurrency = { value = "count" }, journal = { value = "nonempty" },
  ["no-journal"] = {}, download = { value = "nonempty" }, ["dry-run"] = {},
  ["resubmit-ambiguous"] = {}, ["retry-failed"] = {}, deadline = { value = "positive" },
  ["callback-url"] = { value = "nonempty" },
}
for k, v in pairs(common.CLIENT_FLAGS) do FLAGS[k] = v end

local function entry_name(e)
  if e.variant then return ("row %d.%d"):format(e.row, e.variant) end
  return "row " .. tostring(e.row)
end

local function entry_json(e)
  return {
    row = e.row, variant = e.variant, id = e.id, state = e.state, prompt = e.prompt, input = e.input,
    urls = e.urls and common.array(e.urls) or nil, files = e.files and common.array(e.files) or nil,
    credits = e.credits, restored = e.restored, error = common.error_json(e.error),
    download_error = common.error_json(e.download_error),
  }
end

local function report_json(report)
  local out = {}
  for k, v in pairs(report) do
    if k ~= "rows" and k ~= "problems" and k ~= "halted" then out[k] = v end
  end
  out.halted = common.error_json(report.halted)
  out.rows = common.array()
  for i, e in ipairs(report.rows) do out.rows[i] = entry_json(e) end
  if report.problems then
    out.problems = common.array()
    for i, p in ipairs(report.problems) do
      out.problems[i] = { row = p.row, line = p.line, field = p.field, column = p.column, message = p.message }
    end
  end
  return out
end

local function print_dry(report, w)
  for _, e in ipairs(report.rows) do
    if e.state == "invalid" then
      w(("%s: invalid\n"):format(entry_name(e)))
    else
      local prompt = tostring(e.prompt or ""):gsub("%s+", " ")
      if #prompt > 100 then prompt = prompt:sub(1, 97) .. "..." end
      prompt = text(prompt)
      w(("%s: %s  %s\n"):format(entry_name(e), e.state == "journaled" and "done earlier" or "ok", prompt))
    end
  end
  for _, p in ipairs(report.problems) do w("  ", text(p.message), "\n") end
  local jobs = report.total - report.invalid
  w(("\n%d %s, %d invalid %s; %d to submit"):format(jobs, jobs == 1 and "job" or "jobs", report.invalid,
    report.invalid == 1 and "row" or "rows", report.to_submit))
  if report.skipped > 0 then w((", %d already in the journal"):format(report.skipped)) end
  if report.credits then w(("; about %s credits"):format(tostring(report.credits))) end
  w("\nnothing was sent (dry run)\n")
end

local function print_summary(report, w)
  w(("%d %s: %d succeeded, %d failed, %d ambiguous"):format(report.total,
    report.total == 1 and "job" or "jobs", report.succeeded, report.failed, report.ambiguous))
  if report.pending > 0 then w((", %d not started"):format(report.pending)) end
  if report.skipped > 0 then w((" (%d done in an earlier run)"):format(report.skipped)) end
  w("\n")
  w(("credits: %s\n"):format(tostring(report.credits)))
  if report.download then
    w(("files: %d in %s"):format(report.files, report.download))
    if report.download_failed > 0 then w((" (%d rows could not be saved)"):format(report.download_failed)) end
    w("\n")
  end
  if report.journal then w(("journal: %s\n"):format(report.journal)) end
  local problems = {}
  for _, e in ipairs(report.rows) do
    if e.state ~= "success" and e.state ~= "pending" then
      problems[#problems + 1] = ("  %s: %s%s: %s"):format(entry_name(e), e.state, e.id and (" " .. text(e.id)) or "",
        text(e.error and e.error.message or "?"))
    elseif e.download_error then
      problems[#problems + 1] = ("  %s: saving failed: %s"):format(entry_name(e), text(e.download_error.message))
    end
  end
  if #problems > 0 then
    w("problems:\n", table.concat(problems, "\n"), "\n")
  end
  if report.halted then
    w(("stopped submitting: %s\n"):format(text(report.halted.message)))
  end
  if report.ambiguous > 0 then
    w("ambiguous rows may or may not have a task at the gateway: check them, then run again with "
      .. "--resubmit-ambiguous to submit them anyway\n")
  end
end

-- 0 when every row succeeded and was saved; else the most telling code.
local function exit_code(report)
  if report.halted then return common.exit_for(report.halted) end
  local only_transient, bad = true, false
  for _, e in ipairs(report.rows) do
    if e.state ~= "success" or e.download_error then
      bad = true
      local err = e.error or e.download_error
      if not (err and common.transient(err)) then only_transient = false end
    end
  end
  if not bad then return EXIT.ok end
  return only_transient and EXIT.network or EXIT.failed
end

function batch_cli.main(argv)
  local opts, perr = args.parse(argv, { flags = FLAGS })
  if not opts then return common.usage("batch", perr) end
  if opts.help then io.stdout:write(batch_cli.USAGE) return EXIT.ok end
  if not opts.model then return common.usage("batch", "--model is required") end
  if not opts.rows then return common.usage("batch", "--rows is required") end
  if opts.journal and opts.no_journal then return common.usage("batch", "give --journal or --no-journal, not both") end
  if (opts.random or opts.seed) and not opts.expand then
    return common.usage("batch", "--random and --seed go with --expand")
  end
  local input, ierr = common.parse_sets(opts.model, opts.set)
  if not input then return common.fail(ierr) end
  local journal = opts.journal
  if not journal and not opts.no_journal then journal = opts.rows .. ".journal" end

  local client
  if not opts.dry_run then
    local kok, kerr = common.need_key()
    if not kok then return common.fail(kerr) end
    local cerr
    client, cerr = common.client(opts)
    if not client then return common.fail(cerr) end
  end

  local tty = common.tty()
  local progress = Progress.new({ tty = tty, lines = not opts.quiet and not opts.json })
  local expand = opts.expand or nil
  if opts.random then expand = { random = opts.random, seed = opts.seed } end
  local announced = false
  local bopts = {
    client = client, model = opts.model, template_file = opts.template, rows = opts.rows, input = input,
    fields = opts.field, prompt_field = opts.prompt_field, expand = expand, concurrency = opts.concurrency,
    journal = journal, download = opts.download, dry_run = opts.dry_run or nil,
    resubmit_ambiguous = opts.resubmit_ambiguous, retry_failed = opts.retry_failed,
    deadline = opts.deadline, callback_url = opts.callback_url,
    on_progress = function(p)
      if not announced then
        announced = true
        if not opts.quiet and not opts.json then
          local msg = ("batch: %d %s from %s"):format(p.total, p.total == 1 and "job" or "jobs", opts.rows)
          if p.skipped > 0 then msg = msg .. (", %d done in an earlier run"):format(p.skipped) end
          if journal then msg = msg .. "; journal " .. journal end
          progress:say(msg)
        end
      end
      progress:update(p)
    end,
    on_result = function(e) progress:result(e) end,
  }
  local ok, report, err = pcall(require("modkie.batch").run, bopts)
  progress:finish()
  if client then client:close() end
  if not ok then
    if tostring(report):find("interrupted", 1, true) then
      io.stderr:write("\nmodkie batch: interrupted", journal and ("; the journal " .. journal
        .. " holds every submitted row: run the same command again to resume") or "", "\n")
      return EXIT.interrupted
    end
    error(report, 0)
  end
  if not report then return common.fail(err) end

  if opts.json then
    io.stdout:write(common.json(report_json(report)), "\n")
  elseif report.dry_run then
    print_dry(report, function(...) io.stdout:write(...) end)
  else
    print_summary(report, function(...) io.stdout:write(...) end)
  end
  if report.dry_run then return report.invalid > 0 and EXIT.usage or EXIT.ok end
  return exit_code(report)
end

return batch_cli

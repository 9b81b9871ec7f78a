--- `modkie batch`: rows and a template in, one job per row, a summary out.
-- @module modkie.cli.batch

local args = require "modkie.cli.args"
local common = require "modkie.cli.common"
local Error = require "modkie.error"
local file = require "modkie.file"
local Progress = require "modkie.cli.progress"
local text = require("modkie.cli.escape").text
local rowlist = require "modkie.batch.rowlist"
local plan = require "modkie.batch.plan"
local rows_mod = require "modkie.batch.rows"
local tasks = require "modkie.cli.tasks"

local batch_cli = {}

local EXIT = common.EXIT

local BATCH = args.command {
  usage = "modkie batch --model MODEL --rows FILE [--template FILE] [options]",
  about = "Run one job per row of FILE (.csv, .tsv, .jsonl): columns that are fields of\n"
    .. "the model go into its input, the others are template variables; the\n"
    .. "template renders the prompt. Safe to interrupt: run the same command again\n"
    .. "and it resumes from the journal without submitting a row twice.",
  flags = common.flags({
    { name = "model", value = "nonempty", arg = "MODEL", help = "the model, e.g. kling/kling-3-0" },
    { name = "rows", value = "nonempty", arg = "FILE", help = "the rows: CSV with a header row, or JSON Lines" },
    { name = "template", value = "nonempty", arg = "FILE",
      help = "the prompt template ({{column}}, filters, sections)" },
    { name = "set", value = "string", many = true, arg = "KEY=VALUE",
      help = "an input default for every row (KEY:=JSON for raw\nJSON); repeatable" },
    { name = "field", value = "nonempty", many = true, arg = "NAME",
      help = "also send column NAME as an input field (for models\nmodkie has no schema for); repeatable" },
    { name = "allow-extra-columns", help = "allow columns that are neither model fields nor used\nby the template "
      .. "(by default they are an error: a typo)" },
    { name = "encoding", value = "nonempty", arg = "NAME",
      help = "the rows file's text encoding: utf-8 (default),\ncp1252 (Windows, Excel) or latin1; converted to UTF-8" },
    { name = "separator", value = "nonempty", arg = "C",
      help = "the CSV's separator: , ; or tab (default: the header's,\na comma unless it has only ; or tabs)" },
    { name = "prompt-field", value = "nonempty", arg = "NAME",
      help = "the input field the template renders (default prompt)" },
    { name = "expand", help = "one job per combination of {a|b} in the template" },
    { name = "random", value = "count", arg = "N", help = "with --expand: N seeded random picks per row instead" },
    { name = "seed", value = "string", arg = "S", help = "the seed of --random (default 0)" },
    { name = "concurrency", value = "count", arg = "N", help = "jobs in flight at once (default 8)" },
    { name = "journal", value = "nonempty", arg = "FILE", help = "the journal (default: FILE.journal next to --rows)" },
    { name = "no-journal", help = "run without a journal (an interrupted run cannot resume)" },
    { name = "download", value = "nonempty", arg = "DIR", help = "save each row's outputs as DIR/<row>-<n>.<ext>" },
    { name = "review", value = "nonempty", arg = "PAGE",
      help = "write a review page (HTML) of the batch, refreshed\nas it runs and written whole when it ends: each\n"
      .. "row's output, prompt, values, state and timings\n(`modkie review JOURNAL` rebuilds it at any time)" },
    { name = "review-by", value = "nonempty", arg = "COLUMN",
      help = "on that page, group the rows by a column's value" },
    { name = "dry-run", help = "render and validate every row, estimate the credits,\nsend nothing" },
    { name = "no-balance-check", help = "submit even when the estimate is over the balance" },
    { name = "resubmit-ambiguous", help = "submit again rows whose earlier createTask had no\n"
      .. "recorded answer (a task may exist: it may run twice)" },
    { name = "retry-failed", help = "submit again rows whose job failed in an earlier run" },
    { name = "deadline", value = "positive", arg = "S", help = "seconds each job may take (default 900)" },
    { name = "callback-url", value = "nonempty", arg = "URL", help = "the gateway POSTs each result there" },
    { name = "listen", value = "nonempty", arg = "HOST:PORT",
      help = "take the gateway's callbacks here (needs\nMODKIE_WEBHOOK_SECRET): a job ends when its callback\n"
      .. "comes, polls are the fallback; --callback-url is the\naddress the gateway reaches it at (default\n"
      .. "http://HOST:PORT/)" },
    { name = "webhook-scheme", value = "nonempty", arg = "S",
      help = "the scheme the gateway signs callbacks with: kie or\nmodkie (default: the one whose header is there)" },
    { name = "quiet", help = "no line per row (errors and the summary still print)" },
    { name = "json", help = "print the report as JSON on stdout" },
  }, common.MODELS, common.GATEWAY, common.POLL),
  footer = "Progress goes to stderr: a bar on a terminal, a line per row otherwise.\n"
    .. "The API key comes from MODKIE_API_KEY. Exit codes: 0 every row succeeded,\n"
    .. "1 a row failed or is ambiguous, 2 usage or invalid rows/template,\n"
    .. "3 auth or credits, 4 network or timeout, 130 interrupted.",
}
batch_cli.USAGE = BATCH.help

local function entry_name(e)
  if e.variant then return ("row %d.%d"):format(e.row, e.variant) end
  return "row " .. tostring(e.row)
end

local function entry_json(e)
  return {
    row = e.row, variant = e.variant, id = e.id, state = e.state, prompt = e.prompt,
    input = e.input and file.replace(e.input, function(f) return f.path or f.name end),
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
  if report.dry_run then out.files = common.array(report.files) end -- (a run's `files` counts outputs)
  out.halted = common.error_json(report.halted)
  local rows = {}
  for i, e in ipairs(report.rows) do rows[i] = entry_json(e) end
  out.rows = common.array(rows)
  if report.problems then
    local problems = {}
    for i, p in ipairs(report.problems) do
      problems[i] = { row = p.row, line = p.line, field = p.field, column = p.column, message = p.message }
    end
    out.problems = common.array(problems)
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
  for _, line in ipairs(plan.lines(report.problems)) do w("  ", text(line), "\n") end
  if #report.files > 0 then
    w(("\nfiles (%d; %d to upload, %s):\n"):format(#report.files, report.uploads.files,
      file.size_text(report.uploads.bytes)))
    for _, f in ipairs(report.files) do
      local row = f.variant and ("%d.%d"):format(f.row, f.variant) or tostring(f.row)
      w(("  row %-5s %-14s %s  %s %s  %s\n"):format(row, text(f.field), text(f.path or "?"),
        f.size and file.size_text(f.size) or "?", text(f.type or "?"),
        f.upload and "upload" or (f.url and "uploaded earlier (journal)" or "same bytes as above")))
    end
  end
  local jobs = report.total - report.invalid
  w(("\n%d %s, %d invalid %s; %d to submit"):format(jobs, jobs == 1 and "job" or "jobs", report.invalid,
    report.invalid == 1 and "row" or "rows", report.to_submit))
  if report.skipped > 0 then w((", %d already in the journal"):format(report.skipped)) end
  if report.credits then w(("; about %s credits"):format(tostring(report.credits))) end
  if report.uploads.files > 0 then
    w(("; %d %s to upload (%s)"):format(report.uploads.files, report.uploads.files == 1 and "file" or "files",
      file.size_text(report.uploads.bytes)))
  end
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
  -- rows that say the same thing share a line (ids are in --json and the journal)
  local problems = {}
  for _, e in ipairs(report.rows) do
    if e.state ~= "success" and e.state ~= "pending" then
      local why = text(e.error and e.error.message or "?")
      problems[#problems + 1] = { row = e.row, variant = e.variant, text = e.state .. ": " .. why,
        single = ("%s: %s%s: %s"):format(entry_name(e), e.state, e.id and (" " .. text(e.id)) or "", why) }
    elseif e.download_error then
      problems[#problems + 1] = { row = e.row, variant = e.variant,
        text = "saving failed: " .. text(e.download_error.message) }
    end
  end
  if #problems > 0 then
    w("problems:\n  ", table.concat(rowlist.group(problems), "\n  "), "\n")
  end
  if report.halted then
    w(("stopped submitting: %s\n"):format(text(report.halted.message)))
  end
  if report.ambiguous > 0 then
    w("ambiguous rows may or may not have a task at the gateway: check them, then run again with "
      .. "--resubmit-ambiguous to submit them anyway\n")
  end
end

-- The review page from the journal; its trouble is said, not fatal (the
-- batch's own outcome decides the exit code). `finished`: no batch runs on
-- the journal any more (the last page, said on stderr); else a refresh
-- during the run, quiet.
local function write_review(journal, opts, finished)
  local page, data = require("modkie.batch.review").write(journal, opts.review,
    { by = opts.review_by, download = opts.download, finished = finished })
  if page and finished then
    io.stderr:write(require("modkie.cli.review").summary(page, data))
  elseif not page and finished then
    -- the page's own errors say "review: " already
    local said = Error.is(data) and tostring(data.message):sub(1, 8) == "review: "
    common.fail(data, not said and "review: " or nil)
  end
end

-- Refresh the review page while the batch runs, so a browser reloading it
-- follows along: every 5 s, or less often when building it takes longer
-- (at most a tenth of the time goes to it).
local function review_refresher(journal, opts)
  local now = require("modkie.core").now
  local next_at, every = now() + 5, 5
  return function()
    local t = now()
    if t < next_at then return end
    write_review(journal, opts, false)
    every = math.max(5, (now() - t) * 10)
    next_at = now() + every
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
  local opts, perr = args.parse(argv, BATCH.spec)
  if not opts then return common.usage("batch", perr) end
  if opts.help then io.stdout:write(BATCH.help) return EXIT.ok end
  if not opts.model then return common.usage("batch", "--model is required") end
  if not opts.rows then return common.usage("batch", "--rows is required") end
  if opts.journal and opts.no_journal then return common.usage("batch", "give --journal or --no-journal, not both") end
  if (opts.random or opts.seed) and not opts.expand then
    return common.usage("batch", "--random and --seed go with --expand")
  end
  local lok, lerr = common.load_models(opts)
  if not lok then return common.fail(lerr) end
  local input, ierr = common.parse_sets(opts.model, opts.set)
  if not input then return common.fail(ierr) end
  local sep = opts.separator
  if sep == "tab" or sep == "\\t" then sep = "\t" end
  if sep and not rows_mod.valid_separator(sep) then
    return common.usage("batch", "--separator takes one character (such as ';'), or tab")
  end
  local journal = opts.journal
  if not journal and not opts.no_journal then journal = opts.rows .. ".journal" end
  if (opts.review or opts.review_by) and not journal then
    return common.usage("batch", "--review builds the page from the journal: drop --no-journal")
  end
  if opts.review_by and not opts.review then return common.usage("batch", "--review-by goes with --review") end
  local webhook
  if opts.webhook_scheme and opts.webhook_scheme ~= "kie" and opts.webhook_scheme ~= "modkie" then
    return common.usage("batch", "--webhook-scheme must be kie or modkie")
  end
  if opts.webhook_scheme and not opts.listen then
    return common.usage("batch", "--webhook-scheme goes with --listen")
  end
  if opts.listen and not opts.dry_run then
    local secret = os.getenv("MODKIE_WEBHOOK_SECRET")
    if not secret or secret == "" then -- never on the command line, where ps shows it
      return common.usage("batch", "--listen needs the webhook secret in MODKIE_WEBHOOK_SECRET: a callback is "
        .. "believed only once its signature is checked")
    end
    webhook = { secret = secret, scheme = opts.webhook_scheme }
  end

  local client
  if not opts.dry_run then
    local kok, kerr = common.need_key()
    if not kok then return common.fail(kerr) end
    local cerr, base_url
    local via = "batch " .. opts.rows
    -- every task the gateway accepts goes into the command line's record of tasks
    client, cerr = common.client(opts, { listen = webhook and opts.listen, webhook = webhook,
      callback_url = webhook and opts.callback_url, log = function(_, event, f)
        if event == "accepted" then
          tasks.add({ id = f.task_id, model = f.model, gateway = base_url, via = via })
        end
      end })
    if not client then return common.fail(cerr) end
    base_url = client.base_url
  end

  local tty = common.tty()
  local progress = Progress.new({ tty = tty, lines = not opts.quiet and not opts.json })
  local expand = opts.expand or nil
  if opts.random then expand = { random = opts.random, seed = opts.seed } end
  local announced = false
  local refresh = opts.review and not opts.dry_run and review_refresher(journal, opts)
  local bopts = {
    client = client, model = opts.model, template_file = opts.template, rows = opts.rows, input = input,
    fields = opts.field, prompt_field = opts.prompt_field, expand = expand, concurrency = opts.concurrency,
    journal = journal, download = opts.download, dry_run = opts.dry_run or nil,
    resubmit_ambiguous = opts.resubmit_ambiguous, retry_failed = opts.retry_failed,
    -- with --listen the client's callback URL (its listener, or --callback-url) is every job's
    deadline = opts.deadline, callback_url = not webhook and opts.callback_url or nil,
    -- a column the review page groups by is used
    extra_columns = opts.allow_extra_columns or (opts.review_by and { opts.review_by }) or nil,
    encoding = opts.encoding, separator = sep, check_balance = not opts.no_balance_check,
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
      if refresh then refresh() end
    end,
    on_result = function(e) progress:result(e) end,
  }
  local ok, report, err = pcall(require("modkie.batch").run, bopts)
  progress:finish()
  local callbacks = webhook and client and client:stats().callbacks
  if client then client:close() end
  -- the page, also after an interruption (the journal holds what happened)
  if opts.review and not opts.dry_run and (not ok or report) then
    write_review(journal, opts, true)
  end
  if not ok then
    if tostring(report):find("interrupted", 1, true) then
      io.stderr:write("\nmodkie batch: interrupted", journal and ("; the journal " .. journal
        .. " holds every row whose createTask was sent: run the same command again to resume (rows not "
        .. "sent yet are submitted then)") or "; no journal: tasks already created are in 'modkie list'", "\n")
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
    if callbacks then
      io.stdout:write(("callbacks: %d ended a job, %d refused, %d repeated or late\n"):format(callbacks.delivered,
        callbacks.refused, callbacks.duplicate + callbacks.late))
    end
  end
  if report.dry_run then return #report.problems > 0 and EXIT.usage or EXIT.ok end
  return exit_code(report)
end

return batch_cli

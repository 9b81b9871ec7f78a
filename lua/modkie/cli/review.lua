--- `modkie review JOURNAL`: a batch's review page, built from its journal
-- at any time (also while the batch runs).
-- @module modkie.cli.review

local args = require "modkie.cli.args"
local common = require "modkie.cli.common"

local review_cli = {}

local REVIEW = args.command {
  usage = "modkie review JOURNAL [--out PAGE] [--by COLUMN] [--download DIR]",
  about = "Write one static HTML page that shows what a batch made, row by row: the\n"
    .. "video (or image, audio, text), the rendered prompt, the row's values, the\n"
    .. "model input, the state, task id, credits, duration and notice delay; failed\n"
    .. "and ambiguous rows with their error and what to do. It reads only the\n"
    .. "journal and the download folder, so it works at any time, also while the\n"
    .. "batch runs (run it again to refresh). The page needs no server and no\n"
    .. "network: open it from disk, or zip its folder and share it.",
  positionals = { "JOURNAL" }, min = 1,
  flags = {
    { name = "out", value = "nonempty", arg = "PAGE", help = "where the page goes (default: review.html in the\n"
      .. "batch's download folder, else JOURNAL.html)" },
    { name = "by", value = "nonempty", arg = "COLUMN", help = "group the rows by a column's value, side by side\n"
      .. "(default: a row's --expand variants together)" },
    { name = "download", value = "nonempty", arg = "DIR",
      help = "the download folder, if it moved since the batch ran" },
    { name = "json", help = "print what the page shows (totals, path) as JSON" },
  },
}
review_cli.USAGE = REVIEW.help

--- One line for the terminal: the page and its totals.
function review_cli.summary(page, data)
  local t = data.totals
  local parts = { ("%d jobs: %d succeeded, %d failed, %d ambiguous"):format(t.jobs, t.succeeded, t.failed,
    t.ambiguous) }
  if t.running > 0 then parts[#parts + 1] = ("%d running"):format(t.running) end
  if t.not_started > 0 then parts[#parts + 1] = ("%d not started"):format(t.not_started) end
  return ("review: %s (%s)\n"):format(page, table.concat(parts, ", "))
end

function review_cli.main(argv)
  local opts, perr = args.parse(argv, REVIEW.spec)
  if not opts then return common.usage("review", perr) end
  if opts.help then io.stdout:write(REVIEW.help) return common.EXIT.ok end
  local journal = opts[1]
  local review = require "modkie.batch.review"
  local path, data = review.write(journal, opts.out, { by = opts.by, download = opts.download })
  if not path then return common.fail(data) end
  if opts.json then
    local t = data.totals
    io.stdout:write(common.json({ page = path, jobs = t.jobs, succeeded = t.succeeded, failed = t.failed,
      ambiguous = t.ambiguous, running = t.running, not_started = t.not_started, credits = t.credits,
      wall = t.wall, files = t.files }), "\n")
  else
    io.stdout:write(review_cli.summary(path, data))
  end
  return common.EXIT.ok
end

return review_cli

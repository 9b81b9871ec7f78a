-- A batch from Lua: one video per row of examples/batch/rows.csv, the prompt
-- rendered from examples/batch/template.txt, outputs saved into a folder.
-- Run the emulator first (`lua5.4 bin/modkie mock --port 8089 --job-seconds 2 &`)
-- or point MODKIE_BASE_URL and MODKIE_API_KEY at the real gateway.
--   lua5.4 examples/batch.lua [output-dir]
-- Interrupt it and run it again: the journal makes it resume where it was,
-- without submitting any row twice.
pcall(dofile, (arg and arg[0] or ""):gsub("[^/]*$", "") .. "checkout.lua") -- a checkout's build, if run from one
local modkie = require "modkie"

local here = (arg and arg[0] or ""):match("^(.*)/[^/]+$") or "."
local out = arg and arg[1] or "batch-output"

local client = modkie.new{
  base_url = os.getenv("MODKIE_BASE_URL") or "http://127.0.0.1:8089",
  api_key = os.getenv("MODKIE_API_KEY") or "test",
}

local batch = {
  model = "kling/kling-3-0",
  rows = here .. "/batch/rows.csv",                -- aspect_ratio, duration: model fields; the rest: variables
  template_file = here .. "/batch/template.txt",
  input = { resolution = "720p" },                 -- defaults for every row
}

-- First a dry run: every row rendered and validated, credits estimated, nothing sent.
batch.dry_run = true
local plan = assert(modkie.batch.run(batch))
if plan.invalid > 0 then
  for _, p in ipairs(plan.problems) do print(p.message) end
  os.exit(2)
end
print(("%d jobs, about %s credits; first prompt:\n  %s\n"):format(plan.total, tostring(plan.credits),
  (plan.rows[1].prompt:gsub("\n", "\n  "))))

-- Then the real run.
batch.dry_run = nil
batch.client = client
batch.concurrency = 4
batch.journal = out .. "/journal.jsonl"
batch.download = out
batch.on_result = function(e, _, err)
  if err then
    print(("row %2d  %-8s %s"):format(e.row, e.state, err.message))
  else
    print(("row %2d  %-8s %s -> %s"):format(e.row, e.state, e.id, table.concat(e.files or e.urls, ", ")))
  end
end

local report = assert(modkie.batch.run(batch))
print(("\n%d succeeded, %d failed, %d ambiguous (%d from an earlier run); %s credits; files in %s/"):format(
  report.succeeded, report.failed, report.ambiguous, report.skipped, tostring(report.credits), out))
client:close()

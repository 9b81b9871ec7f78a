-- A tour in one run: start the gateway emulator, submit several jobs at once,
-- show their states as they change, download the outputs, print a summary.
-- No key and no network needed:   lua5.4 examples/demo.lua [output-dir]
pcall(dofile, (arg and arg[0] or ""):gsub("[^/]*$", "") .. "checkout.lua") -- a checkout's build, if run from one
local modkie = require "modkie"

local out_dir = arg[1] or "demo-output"
local here = (arg[0]:match("^(.*)/[^/]+$") or ".") .. "/.."

-- The emulator is its own process, a real HTTP server on a free port: the
-- checkout's bin/modkie, or the installed `modkie` command.
local bin, checkout = "modkie", io.open(here .. "/bin/modkie")
if checkout then checkout:close() bin = "lua5.4 " .. here .. "/bin/modkie" end
local mock = assert(io.popen("exec " .. bin .. " mock --port 0 --job-seconds 4"))
local line = assert(mock:read("*l"), "the emulator did not start")
local url, pid = line:match("(http://[%d.]+:%d+)"), line:match("pid=(%d+)")

local t0 = os.time()
local function say(fmt, ...) io.write(("[%3ds] "):format(os.time() - t0), fmt:format(...), "\n") end

local client = modkie.new{
  base_url = url,
  api_key = "demo-key",
  log = function(_, event, f)
    if event == "accepted" then say("%-20s accepted", f.task_id)
    elseif event == "state" then say("%-20s %s (%s)", f.task_id, f.state, f.server_state)
    elseif event == "done" then say("%-20s ended: %s%s", f.task_id, f.state, f.message and " - " .. f.message or "")
    end
  end,
}

local prompts = {
  { prompt = "a red fox at dawn, mist over the meadow", aspect_ratio = "16:9", duration = 5 },
  { prompt = "a lighthouse in a storm, waves crashing [outputs=2]", aspect_ratio = "9:16", duration = 5 },
  { prompt = "a paper boat drifting down a rainy street", aspect_ratio = "1:1", resolution = "720p" },
  { prompt = "a cat astronaut floating past the moon", generate_audio = true },
  { prompt = "this one is scripted to fail [fail]", aspect_ratio = "4:3" },
}

say("emulator at %s; submitting %d jobs", url, #prompts)
local jobs = {}
for i, input in ipairs(prompts) do
  jobs[i] = assert(client:submit("kling/kling-3-0", input))
end

-- Each job waits and downloads in its own coroutine; the client runs them all.
local summary = {}
client:run(function()
  for i, job in ipairs(jobs) do
    client:go(function()
      local files, err = job:download(out_dir)
      summary[i] = files and ("%d file(s): %s"):format(#files, table.concat(files, ", ")) or tostring(err)
    end)
  end
end)

print()
print("summary")
local ok = 0
for i, job in ipairs(jobs) do
  if job.state == "success" then ok = ok + 1 end
  print(("  %d. %-8s %-20s %s"):format(i, job.state, job.id or "-", summary[i]))
end
print(("%d of %d jobs succeeded; credits left: %s"):format(ok, #jobs, tostring(client:credits())))

client:close()
os.execute("kill " .. pid)
mock:close()

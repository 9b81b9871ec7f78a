-- A tour in one run: start the gateway emulator, submit several jobs at once,
-- show their states as they change, download the outputs, print a summary.
-- No key and no network needed:   lua5.4 examples/demo.lua [output-dir]
pcall(dofile, (arg and arg[0] or ""):gsub("[^/]*$", "") .. "checkout.lua") -- a checkout's build, if run from one
local modkie = require "modkie"

local out_dir = arg[1] or "demo-output"
local here = (arg[0]:match("^(.*)/[^/]+$") or ".") .. "/.."

-- The emulator is its own process, a real HTTP server on a free port: the
-- checkout's bin/modkie, or the installed `modkie` command. It runs in the
-- background, its start line in a file: no pipe to it that closing would
-- wait on, so the demo never hangs on it, whatever becomes of it.
local bin, checkout = "modkie", io.open(here .. "/bin/modkie")
if checkout then checkout:close() bin = "lua5.4 '" .. here:gsub("'", "'\\''") .. "/bin/modkie'" end
local log = os.tmpname()
os.execute(("%s mock --port 0 --job-seconds 4 >%s 2>&1 </dev/null &"):format(bin, log))

local function pause(seconds) os.execute("sleep " .. seconds) end
local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local text = f:read("*a") or ""
  f:close()
  return text
end
-- Whether process `pid` still runs (a zombie has ended: "Z" in /proc's stat).
local function running(pid)
  local stat = io.open("/proc/" .. pid .. "/stat")
  if stat then
    local state = (stat:read("*l") or ""):match("^%d+ %b() (%a)")
    stat:close()
    return state ~= nil and state ~= "Z"
  end
  local ok = os.execute("kill -0 " .. pid .. " 2>/dev/null")
  return ok == true or ok == 0
end

-- The start line, within 30 s (lua5.4 and the emulator's modules load first).
local url, pid
for _ = 1, 300 do
  local text = slurp(log)
  url, pid = text:match("(http://[%d.]+:%d+)"), text:match("pid=(%d+)")
  if pid or text:find("\n", 1, true) then break end
  pause(0.1)
end
if not (url and pid) then
  io.stderr:write("demo: the emulator did not start: ", slurp(log), "\n")
  os.remove(log)
  os.exit(1)
end

-- Stop the emulator: SIGTERM, then SIGKILL, each given a few seconds. True
-- once it is gone; else a message that says what is left running.
local function stop_emulator()
  for _, sig in ipairs({ "TERM", "KILL" }) do
    os.execute(("kill -%s %s 2>/dev/null"):format(sig, pid))
    for _ = 1, 50 do
      if not running(pid) then
        os.remove(log)
        return true
      end
      pause(0.1)
    end
  end
  io.stderr:write(("demo: the emulator (pid %s, %s) did not stop; stop it yourself: kill -9 %s\n")
    :format(pid, url, pid))
  return false
end

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
if not stop_emulator() then os.exit(1) end

-- bench/upload.lua: what an upload of a large file costs the client process.
--   lua5.4 bench/upload.lua [MB]        (default 200; run from the checkout after make)
-- Makes a sparse file of MB megabytes, starts the emulator (--max-upload big
-- enough), and uploads the file from a fresh process each way:
--   stream   client:upload(path): the C core streams it from disk (libcurl's
--            mime API reads it piece by piece as the request goes out)
--   memory   the baseline: the file read into a Lua string first, then
--            uploaded from memory (modkie.file{ data = … })
-- and prints each process's peak resident memory (VmHWM) before and after,
-- the time the upload took, and the time the probe (SHA-256 + type) took.
-- A benchmark prints numbers: it never fails on them.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/lua5.4/?.so;" .. package.cpath

local function kib(field)
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

if arg[1] == "child" then
  local mode, path, url = arg[2], arg[3], arg[4]
  local core = require "modkie.core"
  local modkie = require "modkie"
  local client = modkie.new({ base_url = url, api_key = "bench", max_upload = 1e12, rate = false })
  local source
  local before = kib("VmHWM")
  local t0 = core.now()
  if mode == "memory" then
    local f = assert(io.open(path, "rb"))
    source = modkie.file({ data = f:read("a"), name = "big.bin" })
    f:close()
  else
    source = modkie.file(path)
  end
  assert(source:probe(1e12))
  local probed = core.now() - t0
  local url_got, err = client:upload(source)
  local took = core.now() - t0
  assert(url_got, tostring(err))
  client:close()
  io.write(("%d %d %.3f %.3f\n"):format(before, kib("VmHWM"), probed, took))
  os.exit(0)
end

local socket = require "socket"
local mb = tonumber(arg[1]) or 200
local path = os.tmpname()
assert(os.execute(("truncate -s %dM %s"):format(mb, path)))

local pipe = assert(io.popen(("exec lua5.4 bin/modkie mock --port 0 --max-upload %d 2>/dev/null"):format(
  (mb + 16) * 1048576)))
local line = assert(pipe:read("*l"), "the emulator did not start")
local url = assert(line:match("(http://[%d%.]+:%d+)"))
local pid = assert(line:match("pid=(%d+)"))

print(("upload of a %d MB sparse file from a fresh client process (peak RSS = VmHWM, MiB)"):format(mb))
print(("%-8s %10s %10s %10s %10s %10s"):format("mode", "RSS before", "RSS after", "grew", "probe s", "total s"))
for _, mode in ipairs({ "stream", "memory" }) do
  local p = assert(io.popen(("lua5.4 bench/upload.lua child %s %s %s"):format(mode, path, url)))
  local out = p:read("a")
  p:close()
  local before, after, probed, took = out:match("(%d+) (%d+) ([%d.]+) ([%d.]+)")
  if before then
    print(("%-8s %10.1f %10.1f %10.1f %10.2f %10.2f"):format(mode, before / 1024, after / 1024,
      (after - before) / 1024, tonumber(probed), tonumber(took)))
  else
    print(mode .. ": " .. out)
  end
  socket.sleep(0.2)
end
os.execute("kill " .. pid)
pipe:close()
os.remove(path)

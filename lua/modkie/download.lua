--- Saving a job's outputs to disk.
--
-- The C core streams each file to `<path>.part` and renames it into place
-- only when whole, so a crash or a cut connection never leaves a partial file
-- under the final name. The API key is sent only to the gateway's own origin,
-- never to the hosts that serve the files.
-- @module modkie.download

local core = require "modkie.core"
local encoding = require "modkie.encoding"
local Error = require "modkie.error"
local scheduler = require "modkie.scheduler"

local download = {}

--- The extension of a URL's path when it is a plain one ("mp4", "png"), else "bin".
function download.extension(url)
  local path = tostring(url):gsub("[?#].*$", "")
  local ext = path:match("/[^/]*%.([%w]+)$")
  if ext and #ext <= 5 then return ext:lower() end
  return "bin"
end

-- The longest prefix a file name keeps whole: task ids may be 1,024 bytes,
-- file names only 255.
local MAX_PREFIX = 200

--- A safe file name `<prefix>-<n>.<ext>`: the prefix keeps only letters,
-- digits, `-`, `_` and `.`, so nothing from the network can name a path. A
-- prefix over 200 bytes keeps its first 183 and 16 hex digits of its
-- SHA-256-based digest, so that the name fits and two prefixes stay apart.
function download.name(prefix, n, url)
  local safe = tostring(prefix):gsub("[^%w%-_%.]", "_"):gsub("^%.+", "_")
  if #safe > MAX_PREFIX then
    local digest = core.hmac_sha256("modkie.download.name", tostring(prefix)):sub(1, 8)
    safe = safe:sub(1, MAX_PREFIX - 17) .. "_" .. encoding.hex(digest)
  end
  return ("%s-%d.%s"):format(safe, n, download.extension(url))
end

--- Create `dir` and its parents. Returns true or nil, message.
function download.mkdir_p(dir)
  local path = dir:sub(1, 1) == "/" and "/" or ""
  for part in dir:gmatch("[^/]+") do
    path = path .. part
    local ok, err = core.mkdir(path)
    if not ok then return nil, err end
    path = path .. "/"
  end
  return true
end

--- Make sure outputs can be saved in `dir` before anything is paid for:
-- create it (and its parents), then write and remove a small probe file.
-- @treturn[1] true
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "config" naming the folder
function download.check_dir(dir)
  local ok, msg = download.mkdir_p(dir)
  if not ok then
    return nil, Error.new("config", ("download folder %s: cannot create it (%s)"):format(dir, msg), { path = dir })
  end
  local probe = ("%s/.modkie-probe-%d"):format(dir:gsub("/+$", ""), math.floor(core.now() * 1e6) % 1000000007)
  local f, err = io.open(probe, "wb")
  if f then
    ok, err = f:write("x")
    f:close()
    os.remove(probe)
  end
  if not (f and ok) then
    return nil, Error.new("config", ("download folder %s: cannot write in it (%s)"):format(dir, tostring(err)),
      { path = dir })
  end
  return true
end

local function check_name(name)
  return type(name) == "string" and name ~= "" and name ~= "." and name ~= ".."
    and not name:find("[/\\%z]")
end

--- Download `urls` into `dir` in parallel.
-- @param client the client whose engine does the transfers
-- @tparam table urls
-- @tparam string dir
-- @tparam table opts `name(n, url)` -> file name (required), `timeout` seconds,
--   `deadline` (`core.now()` seconds: the end of a `timeout` the caller already
--   spent part of, as job:download's await does; the error still says `timeout`)
-- @treturn[1] table paths in the order of `urls`
-- @treturn[2] nil
-- @treturn[2] modkie.Error with `err.files` the paths that did arrive whole, `err.path` the one that did not
function download.files(client, urls, dir, opts)
  local ok, msg = download.mkdir_p(dir)
  if not ok then return nil, Error.new("config", "cannot create the download folder: " .. msg, { field = "dir" }) end
  local pending, paths = {}, {}
  for n, url in ipairs(urls) do
    local name = opts.name(n, url)
    if not check_name(name) then
      error("modkie: download file name must be a plain file name, got " .. tostring(name), 3)
    end
    paths[n] = dir:gsub("/+$", "") .. "/" .. name
    pending[n] = client:download_file(url, paths[n])
  end
  local sched = client.scheduler
  -- `timeout` is for the whole call, the fresh links' downloads included
  local deadline = opts.deadline or (opts.timeout and core.now() + opts.timeout)
  local function left() return deadline and math.max(0, deadline - core.now()) end
  local function stop_all() -- nothing goes on once the call has returned
    for _, p in ipairs(pending) do sched:drop(p) end
  end
  if not sched:wait_all(pending, left()) then
    stop_all()
    return nil, scheduler.timeout_error("download", opts.timeout)
  end
  -- A result URL may have expired: ask the gateway for a fresh link, once.
  for n, p in ipairs(pending) do
    if p.error and p.error.kind == "not_found" and left() ~= 0 then
      local fresh = client:download_url(urls[n])
      if fresh then
        pending[n] = client:download_file(fresh, paths[n])
        sched:wait_all({ pending[n] }, left())
      end
    end
  end
  local done = {}
  for n, p in ipairs(pending) do
    if p.done and not p.error then done[#done + 1] = paths[n] end
  end
  for n, p in ipairs(pending) do
    if not p.done or p.error then
      stop_all()
      local err = p.error or scheduler.timeout_error("download", opts.timeout)
      err.files, err.url, err.path = done, urls[n], err.path or paths[n]
      return nil, err
    end
  end
  return paths
end

return download

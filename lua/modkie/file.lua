--- `modkie.file`: a local file (or bytes) that goes into a job's input.
--
--     client:submit("kling/v2-1-standard", {
--       prompt = "the mug turns slowly", image_url = modkie.file("stills/mug.png"),
--     })
--
-- Anywhere in an input, alone or in a list, a file value is uploaded before
-- the job's createTask and replaced by its URL (see modkie.uploads). This
-- module knows what a file is before anything is sent: it exists, is a
-- readable regular file, is not too large, and what type its bytes say (the
-- C core's probe: libmagic, never the extension), and it walks inputs to
-- find file values and put URLs in their place.
-- @module modkie.file

local core = require "modkie.core"
local Error = require "modkie.error"
local next = next

local file = {}

local File = {}
File.__index = File
File.__name = "modkie.File"
file.File = File

-- One libmagic handle per Lua state, made on first use.
local sniffer

local function get_sniffer()
  if not sniffer then
    local s, err = core.sniffer()
    if not s then return nil, err end
    sniffer = s
  end
  return sniffer
end

--- A file value. `spec` is a path, or `{ path = }`, or `{ data = bytes,
-- name = "still.png", type = "image/png" }` (bytes in memory; `name` gives
-- the upload an extension when the bytes do not say, `type` a type when
-- libmagic cannot tell). Raises on a wrong argument (a programmer error).
-- @tparam string|table spec
-- @treturn modkie.File
function file.new(spec)
  if type(spec) == "string" then spec = { path = spec } end
  if type(spec) ~= "table" then
    error("bad argument #1 to 'modkie.file' (a path or { data =, name =, type = } expected, got "
      .. type(spec) .. ")", 2)
  end
  for k in pairs(spec) do
    if k ~= "path" and k ~= "data" and k ~= "name" and k ~= "type" then
      error("bad argument #1 to 'modkie.file' (unknown key '" .. tostring(k) .. "': path, data, name, type)", 2)
    end
  end
  local has_path, has_data = spec.path ~= nil, spec.data ~= nil
  if has_path == has_data then
    error("bad argument #1 to 'modkie.file' (give a path or data, not both and not neither)", 2)
  end
  if has_path and (type(spec.path) ~= "string" or spec.path == "") then
    error("bad argument #1 to 'modkie.file' (path must be a non-empty string)", 2)
  end
  if has_data and type(spec.data) ~= "string" then
    error("bad argument #1 to 'modkie.file' (data must be a string of bytes)", 2)
  end
  for _, k in ipairs({ "name", "type" }) do
    if spec[k] ~= nil and type(spec[k]) ~= "string" then
      error("bad argument #1 to 'modkie.file' (" .. k .. " must be a string)", 2)
    end
  end
  if spec.type and not spec.type:match("^[%w!#$&^_.+-]+/[%w!#$&^_.+-]+$") then
    error("bad argument #1 to 'modkie.file' (type must be a MIME type such as image/png)", 2)
  end
  return setmetatable({ path = spec.path, data = spec.data, name = spec.name, type = spec.type }, File)
end

--- True when `v` is a file value.
function file.is(v)
  return getmetatable(v) == File
end

function File:__tostring()
  return "modkie.file(" .. self:label() .. ")"
end

--- How messages name the file: its path, or its name (bytes in memory).
function File:label()
  if self.path then return self.path end
  return (self.name or "data") .. " (" .. #self.data .. " bytes in memory)"
end

-- ---------------------------------------------------------------- types

-- libmagic's words (and common variants) for one type, as the fields'
-- `accept` lists say it.
local ALIASES = {
  ["image/jpg"] = "image/jpeg", ["image/pjpeg"] = "image/jpeg", ["image/x-png"] = "image/png",
  ["audio/x-wav"] = "audio/wav", ["audio/wave"] = "audio/wav", ["audio/vnd.wave"] = "audio/wav",
  ["audio/mp3"] = "audio/mpeg", ["audio/x-mpeg"] = "audio/mpeg", ["audio/x-m4a"] = "audio/mp4",
  ["audio/m4a"] = "audio/mp4", ["audio/x-flac"] = "audio/flac", ["video/x-m4v"] = "video/mp4",
  ["application/x-empty"] = "application/octet-stream",
}

-- The extension an upload of each type gets (its name is its content hash).
local EXTENSIONS = {
  ["image/png"] = "png", ["image/jpeg"] = "jpg", ["image/webp"] = "webp", ["image/gif"] = "gif",
  ["image/bmp"] = "bmp", ["image/tiff"] = "tif", ["image/heic"] = "heic", ["image/avif"] = "avif",
  ["video/mp4"] = "mp4", ["video/quicktime"] = "mov", ["video/webm"] = "webm", ["video/x-matroska"] = "mkv",
  ["audio/mpeg"] = "mp3", ["audio/wav"] = "wav", ["audio/ogg"] = "ogg", ["audio/flac"] = "flac",
  ["audio/mp4"] = "m4a", ["audio/aac"] = "aac", ["application/pdf"] = "pdf", ["text/plain"] = "txt",
}

--- One spelling per type: `image/jpg` and `image/jpeg` are one type.
function file.canonical_type(t)
  t = tostring(t):lower()
  return ALIASES[t] or t
end

--- Whether type `t` is in `accept` (a list of types, `image/*` for any image).
function file.accepts(accept, t)
  t = file.canonical_type(t)
  for _, a in ipairs(accept) do
    a = file.canonical_type(a)
    if a == t or (a:sub(-2) == "/*" and t:sub(1, #a - 1) == a:sub(1, -2)) then return true end
  end
  return false
end

-- ---------------------------------------------------------------- probing

local function size_text(n)
  if n >= 1024 * 1024 then return ("%.1f MiB"):format(n / 1048576) end
  if n >= 1024 then return ("%.1f KiB"):format(n / 1024) end
  return ("%d bytes"):format(n)
end
file.size_text = size_text

local REASONS = {
  missing = "does not exist",
  unreadable = "cannot be read",
  directory = "is a directory, not a file",
  not_regular = "is not a regular file (a device, a pipe or a socket)",
  io = "could not be read to the end",
  no_memory = "could not be read (out of memory)",
}

--- What the bytes are: `{ size, sha256, mime, dev, ino, mtime }`, read once
-- and kept (a file is read again only by a new file value, or after
-- `forget`). `max_size`
-- (bytes, nil: none) is checked before the file is read.
-- @treturn[1] table the facts
-- @treturn[2] nil
-- @treturn[2] string why, e.g. "still.png does not exist" (the caller adds the field)
function File:probe(max_size)
  local facts = self._facts
  if not facts then
    local s, serr = get_sniffer()
    if not s then return nil, serr end
    if self.data then
      facts = s:data(self.data)
    else
      local why, reason, size
      facts, why, reason, size = s:file(self.path, max_size)
      if not facts then
        if reason == "too_large" then
          return nil, ("%s is %s, over the limit of %s"):format(self.path, size_text(size), size_text(max_size)),
            reason
        end
        local text = REASONS[reason] or "cannot be read"
        if why and why ~= "" and reason ~= "missing" and reason ~= "directory" then
          text = text .. " (" .. why .. ")"
        end
        return nil, self.path .. " " .. text, reason
      end
    end
    local sniffed = file.canonical_type(facts.mime)
    -- libmagic could not tell: the type the program declared (never the extension)
    if sniffed == "application/octet-stream" and self.type then sniffed = file.canonical_type(self.type) end
    facts.mime = sniffed
    self._facts = facts
  end
  if max_size and facts.size > max_size then
    return nil, ("%s is %s, over the limit of %s"):format(self:label(), size_text(facts.size), size_text(max_size)),
      "too_large"
  end
  if facts.size == 0 then return nil, self:label() .. " is empty", "empty" end
  return facts
end

--- The facts of the last probe, or nil before one.
function File:facts()
  return self._facts
end

--- Forget the last probe: the next one reads the file again (it changed
-- while it was uploaded, and the same input may be submitted again).
function File:forget()
  self._facts = nil
end

--- True when the file on disk is no longer the one probed (its size,
-- inode or modification time changed): its upload may not match its name.
function File:changed()
  local f = self._facts
  if not (self.path and f) then return false end
  local now = core.identity(self.path)
  return not now or now.size ~= f.size or now.ino ~= f.ino or now.dev ~= f.dev or now.mtime ~= f.mtime
end

--- The upload's file name: its content hash and an extension from its
-- type (or its own extension when the type has none). Letters, digits, "."
-- only: safe in any path, and the same bytes always get the same name.
function File:upload_name()
  local f = assert(self._facts, "probe first")
  local ext = EXTENSIONS[f.mime]
  if not ext then
    local own = (self.path or self.name or ""):match("%.([%w]+)$")
    ext = own and #own <= 5 and own:lower() or "bin"
  end
  return f.sha256:sub(1, 32) .. "." .. ext
end

-- ---------------------------------------------------------------- inputs

local MAX_DEPTH = 64

-- Whether any table under `v` (a table at `depth`) holds a file value where
-- file.find's walk would reach it: a table is looked into when its depth is
-- at most MAX_DEPTH, from the shallowest place it is met (`seen`: table ->
-- that depth, made only when `v` holds a table). The common input, strings
-- and numbers, costs one pass and no table.
local function holds_file(v, depth, seen)
  local k, x = next(v)
  while k ~= nil do -- (next, not pairs: submit may run in a finaliser; see Error.new)
    if type(x) == "table" then
      if getmetatable(x) == File then return true, seen end
      local at = depth + 1
      seen = seen or {}
      if at <= MAX_DEPTH and (seen[x] == nil or seen[x] > at) then
        seen[x] = at
        local found
        found, seen = holds_file(x, at, seen)
        if found then return true, seen end
      end
    end
    k, x = next(v, k)
  end
  return false, seen
end

-- False when `input` is a table that holds no file value (the usual case: no list made).
local function may_hold_file(input)
  return not (type(input) == "table" and not file.is(input) and not holds_file(input, 0))
end

--- Every file value in `input`, in a stable order: `{ { field = "image_urls[1]",
-- file = f }, … }`. Fields are named as a user reads them: `a.b`, lists
-- counted from 1.
function file.find(input)
  if not may_hold_file(input) then return {} end
  local found, seen = {}, {}
  local function walk(v, path, depth)
    if file.is(v) then
      found[#found + 1] = { field = path, file = v }
      return
    end
    if type(v) ~= "table" or seen[v] or depth > MAX_DEPTH then return end
    seen[v] = true
    local n = #v
    for i = 1, n do walk(v[i], ("%s[%d]"):format(path, i), depth + 1) end
    local keys = {}
    local key = next(v)
    while key ~= nil do -- (next, not pairs: submit may run in a finaliser; see Error.new)
      if not (type(key) == "number" and key >= 1 and key <= n and key == math.floor(key)) then keys[#keys + 1] = key end
      key = next(v, key)
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      walk(v[k], path == "" and tostring(k) or (path .. "." .. tostring(k)), depth + 1)
    end
    seen[v] = nil
  end
  walk(input, "", 0)
  return found
end

--- A copy of `input` with each file value replaced by `url_of(file)`: the
-- caller's table is left as it was (it may submit it again).
function file.replace(input, url_of)
  local function copy(v, depth)
    if file.is(v) then return url_of(v) end
    if type(v) ~= "table" or depth > MAX_DEPTH then return v end
    local out = {}
    for k, x in pairs(v) do out[k] = copy(x, depth + 1) end
    return setmetatable(out, getmetatable(v)) -- cjson's array markers stay
  end
  return copy(input, 0)
end

local NONE = {} -- probe_all's list when there is no file (read, never written)

--- Probe every file of `input` (as `file.find` lists them), checking the
-- size limit: the list, or a validation error naming the first bad field
-- (`err.problems` lists every one).
-- @treturn[1] table the found list (each with `facts`)
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "validation"
function file.probe_all(input, max_size)
  if not may_hold_file(input) then return NONE end
  local found = file.find(input)
  if #found == 0 then return found end
  local problems = {}
  for _, f in ipairs(found) do
    local facts, why = f.file:probe(max_size)
    if facts then f.facts = facts
    else problems[#problems + 1] = { field = f.field, message = why, path = f.file.path } end
  end
  if #problems == 0 then return found end
  local lines = {}
  for i, p in ipairs(problems) do lines[i] = p.field .. ": " .. p.message end
  return nil, Error.new("validation", table.concat(lines, "; "),
    { field = problems[1].field, path = problems[1].path, problems = problems })
end

return file

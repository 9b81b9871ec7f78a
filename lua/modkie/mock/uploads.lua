--- The emulator's file upload API, as the gateway's docs show it
-- (docs.kie.ai/file-upload-api; copies of the answers in spec/conformance/):
--   POST /api/file-stream-upload   multipart/form-data: file, uploadPath, fileName?
--   POST /api/file-base64-upload   JSON: base64Data (plain or a data: URL), uploadPath, fileName?
--   POST /api/file-url-upload      JSON: fileUrl, uploadPath, fileName? (fetched, 30 s timeout)
-- Answers: HTTP 200 {"success":true,"code":200,"msg":"File uploaded
-- successfully","data":{fileName, filePath, downloadUrl, fileSize, mimeType,
-- uploadedAt, expiresAt}}; errors as HTTP 400/401/500 with {"success":false,
-- "code":N,"msg":…}. The same fileName in the same uploadPath overwrites.
-- What was uploaded is served under its downloadUrl (GET /tempfile/…) until
-- it expires (`--upload-ttl`, default 24 h), then 404; a createTask whose
-- input holds a URL of this emulator's uploads that is unknown or has
-- expired is refused with 422 (the gateway could not fetch it).
-- Choices where the docs are silent: files live in memory; uploads are kept
-- apart per API key; `expiresAt` (the quickstart's field) is sent beside the
-- endpoint pages' fields; a file URL on another host is fetched with LuaSocket
-- (plain http only: the emulator speaks no TLS), one of this emulator's own
-- URLs is read directly.
-- @module modkie.mock.uploads

local json = require "modkie.json"
local files = require "modkie.mock.files"

local uploads = {}

uploads.DEFAULT_TTL = 24 * 3600
uploads.MAX_BYTES = 100 * 1024 * 1024 -- a request body on the upload routes (--max-upload)
local FETCH_TIMEOUT = 30
local PREFIX = "/tempfile/"

local Uploads = {}
Uploads.__index = Uploads

--- opts: ttl (seconds a file lives), max_bytes.
function uploads.new(gateway, opts)
  local self = setmetatable({ gw = gateway, ttl = opts.ttl or uploads.DEFAULT_TTL,
    max_bytes = opts.max_bytes or uploads.MAX_BYTES }, Uploads)
  self:reset()
  return self
end

function Uploads:reset()
  self.by_path = {}  -- URL path -> { bytes, mime, size, uploaded, expires, file_path, name }
  self.stats = { upload_requests = 0, uploads = 0, upload_bytes = 0, uploaded_files_served = 0 }
end

-- ---------------------------------------------------------------- answers

local HEADERS = { ["Content-Type"] = "application/json" }

local function fail(status, msg)
  return { status = status, headers = HEADERS, body = json.encode { success = false, code = status, msg = msg } }
end
uploads.fail = fail

--- The answer to an upload request without a valid key (the docs' 401).
function uploads.unauthorized()
  return fail(401, "Authentication failed: Invalid API Key")
end

local function iso(t)
  local ms = math.floor((t % 1) * 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t)) .. string.format(".%03dZ", ms)
end

-- A short tag per key: uploads of one key never overwrite another's.
local function scope(key)
  local h = 5381
  for i = 1, #key do h = (h * 33 + key:byte(i)) % 4294967296 end
  return string.format("k%08x", h)
end

-- ---------------------------------------------------------------- types

local SIGNATURES = {
  { "^\137PNG\r\n\26\n", "image/png" }, { "^\255\216\255", "image/jpeg" }, { "^GIF8[79]a", "image/gif" },
  { "^RIFF....WEBP", "image/webp" }, { "^RIFF....WAVE", "audio/wav" }, { "^....ftyp", "video/mp4" },
  { "^ID3", "audio/mpeg" }, { "^\255[\250\251\242\243]", "audio/mpeg" }, { "^%%PDF%-", "application/pdf" },
  { "^OggS", "audio/ogg" }, { "^fLaC", "audio/flac" }, { "^\26\69\223\163", "video/webm" },
}

-- The type of `bytes` as the gateway says it ("Automatic MIME type recognition").
local function sniff(bytes, declared)
  local head = bytes:sub(1, 16)
  for _, s in ipairs(SIGNATURES) do
    if head:find(s[1]) then return s[2] end
  end
  if declared and declared:match("^[%w.+-]+/[%w.+-]+$") then return declared:lower() end
  return "application/octet-stream"
end

-- ---------------------------------------------------------------- names

-- uploadPath: "without leading or trailing slashes" (the docs); no "." or ".." parts.
local function check_path(p)
  if type(p) ~= "string" or p == "" then return "Missing required parameter: uploadPath" end
  if p:find("^/") or p:find("/$") then return "uploadPath must not start or end with a slash" end
  for part in (p .. "/"):gmatch("([^/]*)/") do
    if part == "" or part == "." or part == ".." or not part:match("^[%w._%-]+$") then
      return "uploadPath has an invalid part: '" .. part .. "'"
    end
  end
end

local function check_name(n)
  if n == "." or n == ".." or #n > 255 or not n:match("^[%w._%-]+$") then
    return "fileName must be a plain file name (letters, digits, '.', '_', '-')"
  end
end

local random_seq = 0
local function random_name(ext)
  random_seq = random_seq + 1
  return string.format("%x%04x.%s", math.floor(os.time()), random_seq % 65536, ext)
end

local EXT = { ["image/png"] = "png", ["image/jpeg"] = "jpg", ["image/gif"] = "gif", ["image/webp"] = "webp",
  ["audio/wav"] = "wav", ["video/mp4"] = "mp4", ["audio/mpeg"] = "mp3", ["application/pdf"] = "pdf" }

--- Keep `bytes` under `upload_path`/`name` for `key`; the success answer.
function Uploads:store(ctx, bytes, upload_path, name, declared)
  local gw, now = self.gw, ctx.now
  local mime = sniff(bytes, declared)
  if name == nil or name == "" then name = random_name(EXT[mime] or "bin") end
  local bad = check_name(name)
  if bad then return fail(400, bad) end
  local file_path = upload_path .. "/" .. name
  local path = PREFIX .. scope(ctx.key) .. "/" .. file_path
  local u = { bytes = bytes, mime = mime, size = #bytes, uploaded = now, expires = now + self.ttl,
    file_path = file_path, name = name }
  self.by_path[path] = u
  self.stats.uploads = self.stats.uploads + 1
  self.stats.upload_bytes = self.stats.upload_bytes + #bytes
  local base = gw.files_base or gw.own_base or ""
  return { status = 200, headers = HEADERS, body = json.encode {
    success = true, code = 200, msg = "File uploaded successfully",
    data = { fileName = name, filePath = file_path, downloadUrl = base .. path, fileSize = #bytes,
      mimeType = mime, uploadedAt = iso(now), expiresAt = iso(u.expires) },
  } }
end

-- ---------------------------------------------------------------- multipart

-- The parts of a multipart/form-data body: { name, filename, type, data }.
local function multipart(body, content_type)
  local boundary = content_type:match('[Bb]oundary="([^"]+)"') or content_type:match("[Bb]oundary=([^;%s]+)")
  if not boundary then return nil, "the multipart body has no boundary" end
  local delim = "--" .. boundary
  local s, e = body:find(delim, 1, true)
  if not s then return nil, "the multipart body has no parts" end
  local parts, pos = {}, e + 1
  while body:sub(pos, pos + 1) ~= "--" do
    if body:sub(pos, pos + 1) ~= "\r\n" then return nil, "malformed multipart body" end
    local head_end = body:find("\r\n\r\n", pos + 2, true)
    if not head_end then return nil, "malformed multipart part headers" end
    local head = body:sub(pos + 2, head_end - 1)
    local stop = body:find("\r\n" .. delim, head_end + 4, true)
    if not stop then return nil, "the multipart body is cut short" end
    local part = { data = body:sub(head_end + 4, stop - 1) }
    for line in (head .. "\r\n"):gmatch("(.-)\r\n") do
      local hname, value = line:match("^([^:]+):%s*(.*)$")
      hname = hname and hname:lower()
      if hname == "content-disposition" then
        part.name = value:match('[; ]name="([^"]*)"')
        part.filename = value:match('filename="([^"]*)"')
      elseif hname == "content-type" then
        part.type = value
      end
    end
    parts[#parts + 1] = part
    pos = stop + 2 + #delim
  end
  return parts
end

-- ---------------------------------------------------------------- endpoints

local function stream(self, ctx)
  local ct = ctx.req.headers["content-type"] or ""
  if not ct:lower():find("^multipart/form%-data") then
    return fail(400, "Content-Type must be multipart/form-data")
  end
  local parts, why = multipart(ctx.req.body or "", ct)
  if not parts then return fail(400, why) end
  local fields, filepart = {}, nil
  for _, p in ipairs(parts) do
    if p.name == "file" and p.filename then filepart = p
    elseif p.name then fields[p.name] = p.data end
  end
  if not filepart then return fail(400, "Missing required parameter: file") end
  local bad = check_path(fields.uploadPath)
  if bad then return fail(400, bad) end
  return self:store(ctx, filepart.data, fields.uploadPath, fields.fileName, filepart.type)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local B64_VALUE = {}
for i = 1, #B64 do B64_VALUE[B64:byte(i)] = i - 1 end

local function base64_decode(s)
  s = s:gsub("%s", "")
  if #s % 4 ~= 0 or s:find("[^%w+/=]") or s:find("=[^=]") then return nil end
  local out, n = {}, 0
  for i = 1, #s, 4 do
    local a, b, c, d = s:byte(i, i + 3)
    local va, vb = B64_VALUE[a], B64_VALUE[b]
    local vc, vd = c ~= 61 and B64_VALUE[c] or 0, d ~= 61 and B64_VALUE[d] or 0
    if not (va and vb and vc and vd) then return nil end
    local v = ((va * 64 + vb) * 64 + vc) * 64 + vd
    n = n + 1
    out[n] = string.char(math.floor(v / 65536) % 256)
    if c ~= 61 then n = n + 1; out[n] = string.char(math.floor(v / 256) % 256) end
    if d ~= 61 then n = n + 1; out[n] = string.char(v % 256) end
  end
  return table.concat(out)
end

local function json_body(ctx)
  local body = json.decode(ctx.req.body or "")
  if not json.is_object(body) then return nil, fail(400, "request body must be a JSON object") end
  return body
end

local function base64(self, ctx)
  local body, err = json_body(ctx)
  if not body then return err end
  local data = body.base64Data
  if type(data) ~= "string" or data == "" then return fail(400, "Missing required parameter: base64Data") end
  local bad = check_path(body.uploadPath)
  if bad then return fail(400, bad) end
  local declared, payload = data:match("^data:([^;,]*);base64,(.*)$")
  local bytes = base64_decode(payload or data)
  if not bytes then return fail(400, "Base64 decoding failed: Invalid Base64 format") end
  local name = type(body.fileName) == "string" and body.fileName or nil
  return self:store(ctx, bytes, body.uploadPath, name, declared)
end

-- The bytes at `url`: this emulator's own files are read directly (it cannot
-- ask itself over HTTP: it serves one request at a time); others over plain http.
function Uploads:fetch(url, now)
  local gw = self.gw
  for _, base in ipairs({ gw.files_base or "", gw.own_base or "" }) do
    if base ~= "" and url:sub(1, #base + 1) == base .. "/" then
      local path = url:sub(#base + 1):gsub("[?#].*$", "")
      local u = self:live(path, now)
      if u then return u.bytes, u.mime end
      local task, n = gw:file_of(path, now)
      if task then return files.content(task.id, n, task.size), files.content_type(task.ext) end
      return nil, "the file URL answered 404"
    end
  end
  if not url:match("^http://") then return nil, "the emulator fetches plain http:// URLs only" end
  local http = require "socket.http"
  local ltn12 = require "ltn12"
  local out = {}
  http.TIMEOUT = FETCH_TIMEOUT
  local ok, status, headers = http.request { url = url, sink = ltn12.sink.table(out) }
  if not ok then return nil, "could not download the file: " .. tostring(status) end
  if status ~= 200 then return nil, "the file URL answered " .. tostring(status) end
  return table.concat(out), headers and headers["content-type"]
end

local function from_url(self, ctx)
  local body, err = json_body(ctx)
  if not body then return err end
  local url = body.fileUrl
  if type(url) ~= "string" or url == "" then return fail(400, "Missing required parameter: fileUrl") end
  if not url:match("^[Hh][Tt][Tt][Pp][Ss]?://[^%s]+$") then
    return fail(400, "fileUrl must be a valid HTTP or HTTPS address")
  end
  local bad = check_path(body.uploadPath)
  if bad then return fail(400, bad) end
  local bytes, declared = self:fetch(url, ctx.now)
  if not bytes then return fail(400, declared) end
  local name = type(body.fileName) == "string" and body.fileName or url:match("([^/?#]+)%f[?#%z]") or nil
  return self:store(ctx, bytes, body.uploadPath, name, declared)
end

--- Routes for the gateway's table: path -> { name, method, api, counter, fn(gateway, ctx) }.
function uploads.routes()
  local function route(name, fn)
    return { name = name, method = "POST", api = true, upload = true, counter = "upload_requests",
      fn = function(gw, ctx) return fn(gw.uploads, ctx) end }
  end
  return {
    ["/api/file-stream-upload"] = route("upload_stream", stream),
    ["/api/file-base64-upload"] = route("upload_base64", base64),
    ["/api/file-url-upload"] = route("upload_url", from_url),
  }
end

-- ---------------------------------------------------------------- serving and checking

--- The upload at URL path `path` if it has not expired.
function Uploads:live(path, now)
  local u = self.by_path[path]
  if u and now < u.expires then return u end
  return nil
end

--- GET /tempfile/…: the bytes, or 404 once expired.
function Uploads:serve(ctx)
  local u = self:live(ctx.req.path, ctx.now)
  if not u then return self.gw:http_error(404, "file not found (uploaded files are deleted after they expire)") end
  self.stats.uploaded_files_served = self.stats.uploaded_files_served + 1
  return { status = 200, headers = { ["Content-Type"] = u.mime }, body = u.bytes }
end

--- True when `path` is where this emulator serves uploads.
function uploads.is_file_path(path)
  return path:sub(1, #PREFIX) == PREFIX
end

--- Why a createTask `input` cannot run (a URL of this emulator's uploads
-- that it never issued, or that has expired), or nil.
function Uploads:check_input(input, now)
  local gw = self.gw
  local bases = {}
  for _, b in ipairs({ gw.files_base or "", gw.own_base or "" }) do
    if b ~= "" then bases[#bases + 1] = b .. PREFIX end
  end
  local problem
  local function walk(v, where, depth)
    if problem or depth > 64 then return end
    if type(v) == "string" then
      for _, b in ipairs(bases) do
        if v:sub(1, #b) == b then
          local path = v:sub(#b - #PREFIX + 1):gsub("[?#].*$", "")
          local u = self.by_path[path]
          if not u then
            problem = ("%s: %s is not a file uploaded to this gateway"):format(where, v)
          elseif now >= u.expires then
            problem = ("%s: the uploaded file %s has expired (uploaded files are deleted after a while); upload "
              .. "it again"):format(where, v)
          end
          return
        end
      end
    elseif type(v) == "table" then
      if #v > 0 then
        for i = 1, #v do walk(v[i], ("%s[%d]"):format(where, i - 1), depth + 1) end
      else
        for k, x in pairs(v) do walk(x, where .. "." .. tostring(k), depth + 1) end
      end
    end
  end
  walk(input, "input", 0)
  return problem
end

--- GET /__mock/uploads: what is stored (no bytes).
function Uploads:list(now)
  local out = {}
  for path, u in pairs(self.by_path) do
    out[#out + 1] = { path = path, filePath = u.file_path, size = u.size, mimeType = u.mime,
      expired = now >= u.expires, expiresIn = u.expires - now }
  end
  table.sort(out, function(a, b) return a.path < b.path end)
  return json.array(out)
end

--- POST /__mock/uploads/expire: every upload expires now (a test's 24 hours later).
function Uploads:expire_all(now)
  local n = 0
  for _, u in pairs(self.by_path) do
    u.expires = math.min(u.expires, now)
    n = n + 1
  end
  return n
end

return uploads

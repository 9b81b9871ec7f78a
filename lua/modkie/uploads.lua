--- A client's uploads: local files sent to the gateway's upload API
-- (`POST /api/file-stream-upload` on `upload_url`), once per content.
--
-- Each file is named after the SHA-256 of its bytes (modkie.file), so the
-- same bytes are uploaded once: a second job with them (or a batch journal
-- that recorded them) reuses the URL while it has life left, and uploads
-- them again after. An upload in flight is shared by everyone who needs the
-- same bytes. Uploaded files live a limited time (the gateway's docs say 24
-- hours in one place and 3 days in another): modkie plans for 24 hours, or
-- less when the answer says so (`expiresAt`), and reuses a URL only while
-- more than an hour (a quarter of its life, if that is shorter) is left, so a
-- job never starts with a URL about to die.
-- @module modkie.uploads

local core = require "modkie.core"
local Error = require "modkie.error"
local record = require "modkie.record"

local uploads = {}

--- Seconds an uploaded file is planned to live.
uploads.LIFETIME = 24 * 3600
--- The folder (`uploadPath`) modkie's uploads go into.
uploads.UPLOAD_PATH = "modkie"
local MARGIN = 3600
local PROGRESS_EVERY = 1 -- seconds between progress events of one upload

local Uploads = {}
Uploads.__index = Uploads

--- The uploads of `client` (its engine, scheduler and log).
function uploads.new(client, upload_url)
  return setmetatable({ client = client, url = upload_url .. "/api/file-stream-upload",
    cache = {}, flight = {}, active = 0 }, Uploads)
end

-- ---------------------------------------------------------------- times

-- Days since 1970-01-01 of a civil date (proleptic Gregorian).
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * (m + (m > 2 and -3 or 9)) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

--- Unix seconds of an ISO 8601 time (`2025-01-01T12:00:00.000Z`, an offset
-- such as `+08:00`, or none: UTC), or of a number (seconds or milliseconds,
-- as records give them); nil when it is neither.
function uploads.time(v)
  if type(v) == "number" then return record.seconds(v) end
  if type(v) ~= "string" then return nil end
  local y, mo, d, h, mi, s, frac, zone = v:match(
    "^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)([.,]?%d*)(.-)%s*$")
  if not y then return nil end
  local t = days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400
    + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s)
  if #frac > 1 then t = t + (tonumber("0." .. frac:sub(2)) or 0) end
  if zone ~= "" and zone ~= "Z" and zone ~= "z" then
    local sign, zh, zm = zone:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    local off = tonumber(zh) * 3600 + tonumber(zm) * 60
    t = sign == "+" and t - off or t + off
  end
  return t
end

--- When an upload answered with `data` at `now` (Unix seconds) dies: the
-- earliest of its `expiresAt`, its upload time + 24 h, and now + 24 h.
-- @treturn number expires_at
-- @treturn number uploaded_at
function uploads.expiry(data, now)
  local uploaded = uploads.time(data.uploadedAt) or uploads.time(data.uploadTime) or now
  local expires = math.min(uploaded + uploads.LIFETIME, now + uploads.LIFETIME)
  local said = uploads.time(data.expiresAt)
  if said and said < expires then expires = said end
  return expires, uploaded
end

--- Whether an upload (`{ url, expires_at, uploaded_at }`) may still go into a job.
function uploads.fresh(entry, now)
  local life = entry.expires_at - (entry.uploaded_at or entry.expires_at - uploads.LIFETIME)
  return now < entry.expires_at - math.min(MARGIN, life / 4)
end

-- ---------------------------------------------------------------- the cache

--- Remember an upload (`{ sha256, url, expires_at, uploaded_at, size }`,
-- e.g. from a batch journal): reused while fresh.
function Uploads:remember(entry)
  if type(entry) ~= "table" or type(entry.sha256) ~= "string" or type(entry.url) ~= "string"
    or type(entry.expires_at) ~= "number" then return end
  local old = self.cache[entry.sha256]
  if not old or old.expires_at < entry.expires_at then self.cache[entry.sha256] = entry end
end

--- The fresh upload of these bytes, or nil.
function Uploads:cached(sha256)
  local e = self.cache[sha256]
  if e and uploads.fresh(e, core.time()) then return e end
  return nil
end

-- ---------------------------------------------------------------- sending

local function emit(self, level, fields)
  self.client:_emit(level, "upload", fields)
end

--- Start uploading probed file `f` (modkie.file), or find its bytes uploaded
-- (cached) or on their way (in flight). Returns a pending of the client's
-- scheduler: once done, `entry` (`{ sha256, url, expires_at, uploaded_at,
-- size, mime }`) or `upload_error` is set, and `cached` says nothing was sent.
function Uploads:start(f)
  local facts = assert(f:facts(), "probe first")
  local sha = facts.sha256
  local entry = self:cached(sha)
  if entry then
    emit(self, "info", { state = "reused", file = f:label(), size = facts.size, url = entry.url,
      expires_at = entry.expires_at })
    return { done = true, entry = entry, cached = true, waiters = {} }
  end
  local p = self.flight[sha]
  if p then return p end
  local client = self.client
  local h = client._engine:upload(f.path, f.data, uploads.UPLOAD_PATH, f:upload_name(), facts.mime)
  p = client.scheduler:pending(h)
  p.file, p.sha256, p.request, p.logged = f, sha, "POST " .. self.url, core.now()
  p.on_finish = function(done) self:finished(done) end
  self.flight[sha] = p
  self.active = self.active + 1
  emit(self, "info", { state = "start", file = f:label(), size = facts.size, type = facts.mime,
    name = f:upload_name() })
  return p
end

local function http_url(v)
  return type(v) == "string" and v:match("^[Hh][Tt][Tt][Pp][Ss]?://[^%s%c]+$") ~= nil
end

-- An upload's engine work ended (called as the client finishes its pending).
function Uploads:finished(p)
  self.flight[p.sha256] = nil
  self.active = self.active - 1
  local f, facts = p.file, p.file:facts()
  local err = p.error
  local data = not err and p.result
  if f:changed() then
    -- (first: a failed send, or a size the gateway stored, may be this file's doing)
    -- the next probe of this file value reads the file again, so submitting it again works
    f:forget()
    if core.identity(f.path) then
      err = Error.new("validation", f.path .. " changed while it was uploaded (its content no longer matches "
        .. "what was checked); submit it again")
    else
      err = Error.new("validation", f.path .. " was removed after it was checked, "
        .. "before its upload ended")
    end
  elseif not err then
    if type(data) ~= "table" or not http_url(data.downloadUrl) then
      err = Error.new("protocol", "file-stream-upload: the answer has no downloadUrl (an http(s) URL)")
    elseif type(data.fileSize) == "number" and data.fileSize ~= facts.size then
      err = Error.new("protocol", ("file-stream-upload: the gateway stored %s bytes of a %d-byte file")
        :format(tostring(data.fileSize), facts.size), { retryable = true })
    end
  end
  local now = core.time()
  local said = not err and uploads.time(data.expiresAt)
  -- the gateway says the URL is dead: no job is sent with it (README, "Once
  -- per content"). Dead by the gateway's own clock when the answer has its
  -- upload time (this machine's clock may be off: an answer is read as it
  -- was meant), else by this machine's.
  local at = said and (uploads.time(data.uploadedAt) or uploads.time(data.uploadTime) or now)
  if said and said <= at then
    err = Error.new("protocol", ("file-stream-upload: the answer says the file expired at %s, %s; a job sent "
      .. "with its URL would not find it"):format(os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(said)),
      at == now and "already past" or "no later than it was uploaded"))
  end
  if err then
    p.upload_error = err
    emit(self, "warn", { state = "failed", file = f:label(), kind = err.kind, message = err.message })
    return
  end
  local expires, uploaded = uploads.expiry(data, now)
  local entry = { sha256 = p.sha256, url = data.downloadUrl, expires_at = expires, uploaded_at = uploaded,
    size = facts.size, mime = facts.mime }
  p.entry = entry
  self:remember(entry)
  emit(self, "info", { state = "done", file = f:label(), size = facts.size, url = entry.url,
    expires_at = expires })
end

--- Say how the uploads in flight are going (at most once a second each).
function Uploads:tick()
  local now = core.now()
  for _, p in pairs(self.flight) do
    if now - p.logged >= PROGRESS_EVERY then
      p.logged = now
      local sent, total = self.client._engine:progress(self.client.scheduler:handle(p))
      if sent then
        emit(self, "info", { state = "sending", file = p.file:label(), sent = sent,
          total = total > 0 and total or nil, size = p.file:facts().size })
      end
    end
  end
end

return uploads

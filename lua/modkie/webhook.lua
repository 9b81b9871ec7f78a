--- Callbacks: check that a POST to your `callback_url` came from the gateway,
-- and turn its body into the result `job:await()` would have given.
--
-- Two signing schemes (docs/design.md §1):
--
-- * **Kie**: `X-Webhook-Timestamp: <Unix seconds>` and `X-Webhook-Signature:
--   base64(HMAC-SHA256(taskId .. "." .. timestamp, secret))`. Only the task id
--   and the time are signed, not the rest of the body.
-- * **ModKie**: `X-ModKie-Signature: sha256=<hex HMAC-SHA256(raw body, secret)>`.
--   The whole body is signed, but no time: freshness cannot be checked.
--
--     local ok, err = modkie.webhook.verify{ headers = h, body = raw, secret = s }
--     if not ok then return 401 end          -- err.kind == "auth", err.reason says why
--     local res, jerr = modkie.webhook.parse(raw)
--
-- Every refusal is kind `auth`: the request is not proven to come from the
-- gateway. `err.reason` is one of "missing", "malformed", "signature",
-- "stale", "future"; `err.field` names the header (or "body"). No message
-- ever holds the secret or the signature that was expected.
-- @module modkie.webhook

local core = require "modkie.core"
local encoding = require "modkie.encoding"
local Error = require "modkie.error"
local json = require "modkie.json"
local options = require "modkie.options"
local record = require "modkie.record"

local webhook = {}

local null = json.null

webhook.DEFAULT_TOLERANCE = 300

local KIE_SIGNATURE, KIE_TIMESTAMP = "X-Webhook-Signature", "X-Webhook-Timestamp"
local MODKIE_SIGNATURE = "X-ModKie-Signature"

-- ---------------------------------------------------------------- encodings

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local ENC, DEC = {}, {}
for i = 1, 64 do
  local c = B64:sub(i, i)
  ENC[i - 1], DEC[c:byte()] = c, i - 1
end
DEC[("-"):byte()], DEC[("_"):byte()] = 62, 63 -- the URL-safe alphabet decodes too

local floor = math.floor

--- Base64 (standard alphabet, padded) of a byte string. Pure arithmetic: no
-- bit library, so it runs on Lua 5.1 to 5.4 and LuaJIT alike.
-- @tparam string s
-- @treturn string
function webhook.base64_encode(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    out[#out + 1] = ENC[floor(n / 262144)] .. ENC[floor(n / 4096) % 64]
      .. (b and ENC[floor(n / 64) % 64] or "=") .. (c and ENC[n % 64] or "=")
  end
  return table.concat(out)
end

--- Bytes from base64, standard or URL-safe alphabet, padding optional.
-- @tparam string s
-- @treturn string|nil nil when `s` is not base64
function webhook.base64_decode(s)
  if type(s) ~= "string" then return nil end
  local body, pad = s:match("^([^=]*)(=*)$")
  if not body or #pad > 2 or (#pad > 0 and (#body + #pad) % 4 ~= 0) or #body % 4 == 1 then return nil end
  local out = {}
  for i = 1, #body, 4 do
    local n, k = 0, 0
    for j = i, math.min(i + 3, #body) do
      local v = DEC[body:byte(j)]
      if not v then return nil end
      n, k = n * 64 + v, k + 1
    end
    for _ = k + 1, 4 do n = n * 64 end
    local b1, b2, b3 = floor(n / 65536), floor(n / 256) % 256, n % 256
    if k == 4 then out[#out + 1] = string.char(b1, b2, b3)
    elseif k == 3 then out[#out + 1] = string.char(b1, b2)
    else out[#out + 1] = string.char(b1) end
  end
  return table.concat(out)
end

--- Lower-case hex of a byte string (modkie.encoding's).
webhook.hex = encoding.hex

local function unhex(s)
  if #s % 2 ~= 0 or s:find("[^%x]") then return nil end
  return (s:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

-- ---------------------------------------------------------------- the body

local function present(v)
  if v == nil or v == null then return nil end
  return v
end

--- The task id a callback body names: `data.taskId`, `data.task_id` (Kie's
-- own verification example reads that one), then top-level `taskId`/`task_id`.
-- @tparam table doc the decoded body
-- @treturn string|nil the id
-- @treturn string|nil what is wrong when there is none
local function task_id_of(doc)
  local places = {}
  if type(doc.data) == "table" then places[1] = doc.data end
  places[#places + 1] = doc
  for _, t in ipairs(places) do
    for _, k in ipairs({ "taskId", "task_id" }) do
      local v = present(t[k])
      if v ~= nil then
        if type(v) ~= "string" or v == "" then return nil, k .. " is not a non-empty string" end
        return v
      end
    end
  end
  return nil, "no taskId"
end

local function decode(body)
  if type(body) == "table" then return body end
  local doc = json.decode(body)
  if type(doc) ~= "table" then return nil end
  return doc
end

-- ---------------------------------------------------------------- headers

local function name_of(k)
  return (k:lower():gsub("_", "-"))
end

--- A header's value, whatever the case of its name (and `_` for `-`, as some
-- servers present them). A repeated header is refused rather than guessed at.
-- @treturn string|nil the value, trimmed
-- @treturn string|nil "repeated" or "malformed" when it cannot be used
local function header(headers, name)
  local want, found = name:lower(), nil
  for k, v in pairs(headers) do
    if type(k) == "string" and name_of(k) == want then
      if found ~= nil then return nil, "repeated" end
      found = v
    end
  end
  if type(found) == "table" then -- OpenResty's get_headers() lists a repeated header
    if #found ~= 1 then return nil, "repeated" end
    found = found[1]
  end
  if found == nil then return nil end
  if type(found) ~= "string" then return nil, "malformed" end
  return encoding.trim(found)
end

-- Whether a header is there at all, usable or not.
local function has(headers, name)
  local want = name:lower()
  for k in pairs(headers) do
    if type(k) == "string" and name_of(k) == want then return true end
  end
  return false
end

local function refuse(reason, field, message)
  return nil, Error.new("auth", "webhook: " .. message, { reason = reason, field = field })
end

-- A header that is there but unusable: say which, and how.
local function unusable(field, problem)
  if problem == "repeated" then return refuse("malformed", field, field .. " is sent more than once") end
  return refuse("malformed", field, field .. " is not a string")
end

-- ---------------------------------------------------------------- verify

local VERIFY_OPTIONS = { headers = true, body = true, secret = true, tolerance = true, now = true, scheme = true }

local function check_opts(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'webhook.verify' (table expected, got " .. type(opts) .. ")", 3)
  end
  options.check("webhook.verify", opts, VERIFY_OPTIONS, 3) -- names here; the values below, each its own way
  local function bad(field, want, v) -- level 4: the caller of verify
    error(("webhook.verify: option '%s' must be %s, got %s"):format(field, want, type(v)), 4)
  end
  if type(opts.headers) ~= "table" then bad("headers", "a table of header name -> value", opts.headers) end
  if opts.body ~= nil and type(opts.body) ~= "string" then bad("body", "the raw body, a string", opts.body) end
  local secret = opts.secret
  local secrets = type(secret) == "table" and secret or { secret }
  if #secrets == 0 then bad("secret", "a non-empty string, or a list of them", secret) end
  for _, s in ipairs(secrets) do
    -- never show the secret, not even a malformed one: name only its type
    if type(s) ~= "string" or s == "" then bad("secret", "a non-empty string, or a list of them", s) end
  end
  local tol = opts.tolerance
  if tol ~= nil and (type(tol) ~= "number" or tol ~= tol or tol < 0) then
    error("webhook.verify: option 'tolerance' must be a number of seconds >= 0, got " .. tostring(tol), 3)
  end
  if opts.now ~= nil and (type(opts.now) ~= "number" or opts.now ~= opts.now) then
    bad("now", "a number (Unix seconds)", opts.now)
  end
  if opts.scheme ~= nil and opts.scheme ~= "kie" and opts.scheme ~= "modkie" then
    error("webhook.verify: option 'scheme' must be \"kie\" or \"modkie\", got " .. tostring(opts.scheme), 3)
  end
  return secrets
end

-- True when `mac` (raw bytes) equals the HMAC of `msg` under one of the
-- secrets. Every secret is tried: the time does not say which one matched.
local function matches(secrets, msg, mac)
  local ok = false
  for _, s in ipairs(secrets) do
    if core.equal(core.hmac_sha256(s, msg), mac) then ok = true end
  end
  return ok
end

local function verify_modkie(headers, body, secrets)
  local sig, problem = header(headers, MODKIE_SIGNATURE)
  if problem then return unusable(MODKIE_SIGNATURE, problem) end
  if not sig then return refuse("missing", MODKIE_SIGNATURE, "no " .. MODKIE_SIGNATURE .. " header") end
  local hex = sig:match("^[Ss][Hh][Aa]256=(%x+)$")
  local mac = hex and #hex == 64 and unhex(hex)
  if not mac then
    return refuse("malformed", MODKIE_SIGNATURE, MODKIE_SIGNATURE .. " is not 'sha256=' and 64 hex digits")
  end
  if not matches(secrets, body, mac) then
    return refuse("signature", MODKIE_SIGNATURE,
      "the signature does not match the body (a wrong secret, or a body changed on the way)")
  end
  local doc = decode(body)
  return true, { scheme = "modkie", body_signed = true, task_id = doc and (task_id_of(doc)) or nil }
end

local function verify_kie(headers, body, secrets, tolerance, now)
  local ts, tproblem = header(headers, KIE_TIMESTAMP)
  local sig, sproblem = header(headers, KIE_SIGNATURE)
  if sproblem then return unusable(KIE_SIGNATURE, sproblem) end
  if tproblem then return unusable(KIE_TIMESTAMP, tproblem) end
  if not sig then return refuse("missing", KIE_SIGNATURE, "no " .. KIE_SIGNATURE .. " header") end
  if not ts then return refuse("missing", KIE_TIMESTAMP, "no " .. KIE_TIMESTAMP .. " header") end
  if not ts:match("^%d+$") or #ts > 12 then
    return refuse("malformed", KIE_TIMESTAMP, KIE_TIMESTAMP .. " is not a whole number of Unix seconds")
  end
  local mac = webhook.base64_decode(sig)
  if not mac or #mac ~= 32 then
    return refuse("malformed", KIE_SIGNATURE, KIE_SIGNATURE .. " is not the base64 of a 32-byte HMAC-SHA256")
  end
  local doc = decode(body)
  if not doc then return refuse("malformed", "body", "the body is not a JSON object, so it names no task id") end
  local id, why = task_id_of(doc)
  if not id then return refuse("malformed", "body", "the body has no usable task id (" .. why .. ")") end
  -- the timestamp exactly as sent: the gateway signed its text
  if not matches(secrets, id .. "." .. ts, mac) then
    return refuse("signature", KIE_SIGNATURE,
      "the signature does not match the task id and timestamp (a wrong secret, or a changed id or time)")
  end
  local age = now - tonumber(ts)
  if age > tolerance then
    return refuse("stale", KIE_TIMESTAMP, ("the timestamp is %.0f s old, more than the tolerance of %.0f s "
      .. "(a replay, or a clock off)"):format(age, tolerance))
  elseif -age > tolerance then
    return refuse("future", KIE_TIMESTAMP, ("the timestamp is %.0f s in the future, more than the tolerance of %.0f s "
      .. "(a clock off?)"):format(-age, tolerance))
  end
  return true, { scheme = "kie", body_signed = false, task_id = id, timestamp = tonumber(ts) }
end

--- Check that a callback request was signed by the gateway.
--
-- The scheme is the one whose header is there (`X-ModKie-Signature` first),
-- unless `scheme` pins it: pin it in production, so that a request stripped
-- of the stronger scheme's header is refused rather than checked the weaker way.
--
-- With the Kie scheme only the task id and the timestamp are signed: trust
-- the id, and fetch the result with `client:record(id)` (or `client:job(id)`)
-- rather than trusting the rest of the body. With the ModKie scheme the body is
-- signed but not its time: a captured callback can be sent again, unchanged;
-- make the handler idempotent by task id.
-- @tparam table opts
--   `headers` (name -> value, any case; OpenResty's `ngx.req.get_headers()` as is),
--   `body` (the raw body, byte for byte; nil counts as empty),
--   `secret` (a string, or a list of strings while rotating),
--   `tolerance` (seconds a Kie timestamp may be off, default 300),
--   `now` (Unix seconds, default `os.time()`),
--   `scheme` ("kie" or "modkie"; default: from the headers)
-- @treturn[1] true
-- @treturn[1] table `{ scheme, task_id, body_signed, timestamp }`
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "auth", with `reason` and `field`
function webhook.verify(opts)
  local secrets = check_opts(opts)
  local headers, body = opts.headers, opts.body or ""
  local scheme = opts.scheme
  if not scheme then
    if has(headers, MODKIE_SIGNATURE) then
      scheme = "modkie"
    elseif has(headers, KIE_SIGNATURE) or has(headers, KIE_TIMESTAMP) then
      scheme = "kie"
    else
      return refuse("missing", MODKIE_SIGNATURE, "no signature: expected " .. MODKIE_SIGNATURE .. ", or "
        .. KIE_SIGNATURE .. " with " .. KIE_TIMESTAMP)
    end
  end
  if scheme == "modkie" then return verify_modkie(headers, body, secrets) end
  return verify_kie(headers, body, secrets, opts.tolerance or webhook.DEFAULT_TOLERANCE, opts.now or os.time())
end

--- The headers the gateway would send for `body`: for tests of your own
-- callback handler, and for servers that relay callbacks.
-- @tparam table opts `body` (string), `secret`, `scheme` ("kie" or "modkie"),
--   `timestamp` (Kie: Unix seconds, default now)
-- @treturn table header name -> value
function webhook.sign(opts)
  Error.check(1, "webhook.sign", opts, "table")
  Error.check(1, "webhook.sign", opts.body, "string")
  if type(opts.secret) ~= "string" or opts.secret == "" then
    Error.argument(1, "webhook.sign", "secret must be a non-empty string")
  end
  if opts.scheme == "modkie" then
    return { [MODKIE_SIGNATURE] = "sha256=" .. webhook.hex(core.hmac_sha256(opts.secret, opts.body)) }
  elseif opts.scheme == "kie" then
    local doc = decode(opts.body)
    local id = doc and task_id_of(doc)
    if not id then Error.argument(1, "webhook.sign", "the body names no task id") end
    local ts = ("%d"):format(opts.timestamp or os.time())
    return {
      [KIE_TIMESTAMP] = ts,
      [KIE_SIGNATURE] = webhook.base64_encode(core.hmac_sha256(opts.secret, id .. "." .. ts)),
    }
  end
  Error.argument(1, "webhook.sign", "scheme must be \"kie\" or \"modkie\"")
end

-- ---------------------------------------------------------------- parse

--- Turn a callback body (either dialect) into what `job:await()` returns.
-- Call it after `verify`. The body is untrusted: anything that is not the
-- contract is a `protocol` error, never a Lua error. It reads the body with
-- the same reader as the poll path (`modkie.record.read`, in C), so a callback
-- and a recordInfo answer of the same JSON read the same way.
-- @tparam string|table body the raw body (or a table already decoded from it)
-- @treturn[1] table the result: `{ id, model, state = "success", urls, output,
--   credits, created_at, completed_at, updated_at, cost_time, progress, raw }`
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "failed" (the job ran and failed: `code`,
--   `message`, `task_id`), or "protocol" (not a callback of the contract, or a
--   task not yet ended: then `err.server_state` says its state)
function webhook.parse(body)
  if type(body) ~= "string" and type(body) ~= "table" then
    Error.argument(1, "webhook.parse", "string expected, got " .. type(body))
  end
  local res, err = record.read(body)
  if err and err.kind == "protocol" then
    err.message = "webhook: " .. err.message
    if err.server_state then err.message = err.message .. ": a callback reports a final state" end
  end
  return res, err
end

return webhook

--- Fuzz harness: modkie.webhook on an untrusted callback: any headers,
-- body and secret to `verify` (both schemes), any body to `parse`, and the
-- base64 codec. The HMAC is the C core's, built into the harness.
-- Input: a flags byte, then secret, signature, timestamp (each up to a NUL
-- byte), then the body.
-- Properties:
--  * nothing raises (options are always valid);
--  * a refusal is kind "auth" with a documented reason and a field, and its
--    message never holds the secret;
--  * what webhook.sign makes verifies (ModKie always; Kie when the body
--    names a task id, at the signed time), and fails under another secret;
--  * parse gives a sane result (as record.result) or a "failed"/"protocol"
--    error; never a success with a code other than 200;
--  * base64_decode(base64_encode(s)) == s.
local webhook = require "modkie.webhook"
local Error = require "modkie.error"
local F = require "fuzzutil"
local check, show = F.check, F.show

local NOW = 1700000000
local REASONS = { missing = true, malformed = true, signature = true, stale = true, future = true }
local NAMES = {
  { "X-ModKie-Signature", "X-Webhook-Signature", "X-Webhook-Timestamp" },
  { "x-modkie-signature", "x-webhook-signature", "x-webhook-timestamp" },
  { "X_MODKIE_SIGNATURE", "X_WEBHOOK_SIGNATURE", "X_WEBHOOK_TIMESTAMP" },
}

local function check_refusal(ok, err, secret, what)
  if ok then return end
  F.check_error(err, "auth", what)
  check(REASONS[err.reason], "%s: reason %s", what, show(err.reason))
  check(type(err.field) == "string", "%s: field %s", what, show(err.field))
  check(not err.message:find(secret, 1, true), "%s: the message shows the secret: %s", what, err.message)
end

local function check_parse(body)
  local res, err = webhook.parse(body)
  if res == nil then
    check(Error.is(err) and (err.kind == "failed" or err.kind == "protocol"), "parse: error %s", show(err))
    check(type(err.message) == "string", "parse: error without a message")
    return
  end
  check(res.state == "success" and type(res.urls) == "table", "parse: result %s", show(res))
  check(type(res.id) == "string", "parse: id %s", show(res.id))
  for i, u in ipairs(res.urls) do check(type(u) == "string" and u ~= "", "parse: urls[%d] = %s", i, show(u)) end
  local doc = require("cjson.safe").decode(body)
  local code = type(doc) == "table" and doc.code
  if type(code) == "number" or type(code) == "string" then
    check(tonumber(code) == 200, "parse: success with code %s", show(code))
  end
end

return function(data)
  local r = F.reader(data)
  local flags = r.byte()
  local secret, sig, ts = r.cut("\0"), r.cut("\0"), r.cut("\0")
  local body = r.rest()
  -- a byte no message has by itself: finding the secret in one is a leak
  secret = "whsec\1" .. secret
  local names = NAMES[flags % 3 + 1]
  local headers = {}
  if flags & 4 ~= 0 then headers[names[1]] = sig end
  if flags & 8 ~= 0 then headers[names[2]] = sig end
  if flags & 16 ~= 0 then headers[names[3]] = ts end
  if flags & 32 ~= 0 then headers[NAMES[(flags + 1) % 3 + 1][2]] = sig end -- the same header twice
  local scheme = ({ nil, "kie", "modkie" })[(flags >> 6) % 3 + 1]

  local ok, info = webhook.verify({ headers = headers, body = body, secret = secret, now = NOW, scheme = scheme })
  check_refusal(ok, info, secret, "verify")
  if ok then check(type(info) == "table" and (info.scheme == "kie" or info.scheme == "modkie"), "info %s", show(info)) end

  -- ModKie: the body signed as is
  local signed = webhook.sign({ body = body, secret = secret, scheme = "modkie" })
  local good, gerr = webhook.verify({ headers = signed, body = body, secret = secret, scheme = "modkie" })
  check(good == true, "a ModKie-signed body refused: %s", tostring(gerr))
  local bad, berr = webhook.verify({ headers = signed, body = body, secret = secret .. "x", scheme = "modkie" })
  check(bad == nil and berr.reason == "signature", "ModKie: another secret accepted (%s)", show(berr))
  -- Kie: only when the body names a task id (else sign refuses, an argument error)
  local kok, kie = pcall(webhook.sign, { body = body, secret = secret, scheme = "kie", timestamp = NOW })
  if kok then
    local kgood, kerr = webhook.verify({ headers = kie, body = body, secret = secret, now = NOW + 10, scheme = "kie" })
    check(kgood == true, "a Kie-signed body refused: %s", tostring(kerr))
    local kbad, kberr = webhook.verify({ headers = kie, body = body, secret = { "other" }, now = NOW, scheme = "kie" })
    check(kbad == nil and kberr.reason == "signature", "Kie: another secret accepted (%s)", show(kberr))
  else
    check(tostring(kie):find("names no task id", 1, true), "sign raised %s", tostring(kie))
  end

  check_parse(body)
  check(webhook.base64_decode(webhook.base64_encode(sig)) == sig, "base64 round trip of %s", show(sig))
  local raw = webhook.base64_decode(sig)
  check(raw == nil or type(raw) == "string", "base64_decode gave %s", show(raw))
end

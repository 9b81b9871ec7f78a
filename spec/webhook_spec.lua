-- Callbacks: signatures of both schemes checked against vectors computed
-- apart from modkie (RFC 4231, RFC 4648, the openssl command), and bodies of
-- both dialects turned into await's result shape.
local helper = require "spec.helper"
local modkie = require "modkie"
local core = require "modkie.core"
local webhook = require "modkie.webhook"

local SECRET = "whsec-test-Kq93"

-- the openssl command, on a message written to a file (no shell quoting of bytes)
local function openssl_hmac(key, msg)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(msg)
  f:close()
  local p = assert(io.popen(("openssl dgst -sha256 -hmac %s -binary < %s | openssl base64 -A; echo; "
    .. "openssl dgst -sha256 -hmac %s -hex < %s"):format(helper.shell_quote(key), path, helper.shell_quote(key), path)))
  local b64 = p:read("*l")
  local hex = p:read("*l"):match("(%x+)%s*$")
  p:close()
  os.remove(path)
  assert(#b64 == 44 and #hex == 64, "openssl gave nothing usable")
  return b64, hex
end

local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local KIE_BODY = '{"code":200,"msg":"Playground task completed successfully.","data":{"taskId":"task_kie_7e1",'
  .. '"model":"kling/kling-3-0","state":"success","param":"{\\"prompt\\":\\"a fox\\"}",'
  .. '"resultJson":"{\\"resultUrls\\":[\\"https://cdn.example/v/7e1.mp4\\"]}","failCode":null,"failMsg":null,'
  .. '"costTime":8123,"completeTime":1755599644000,"createTime":1755599634000,"creditsConsumed":35}}'
local TS = 1755599650

describe("modkie.webhook", function()
  it("is reached through modkie.webhook", function()
    assert.equal(webhook, modkie.webhook)
  end)

  describe("encodings", function()
    it("base64 matches RFC 4648's vectors, both ways", function()
      local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==", fooba = "Zm9vYmE=",
        foobar = "Zm9vYmFy" }
      for plain, encoded in pairs(vectors) do
        assert.equal(encoded, webhook.base64_encode(plain))
        assert.equal(plain, webhook.base64_decode(encoded))
      end
    end)

    it("base64 agrees with openssl on every byte value", function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local all = table.concat(bytes) .. "\255\254"
      local path = os.tmpname()
      local f = assert(io.open(path, "wb"))
      f:write(all)
      f:close()
      local p = assert(io.popen("openssl base64 -A < " .. path))
      local expected = p:read("*a")
      p:close()
      os.remove(path)
      assert.equal(expected, webhook.base64_encode(all))
      assert.equal(all, webhook.base64_decode(expected))
    end)

    it("base64 decodes the URL-safe alphabet and unpadded text, and refuses the rest", function()
      assert.equal("\251\255", webhook.base64_decode("-_8"))
      assert.equal("\251\255", webhook.base64_decode("+/8="))
      assert.equal("foob", webhook.base64_decode("Zm9vYg"))
      for _, bad in ipairs({ "Zm9vY", "Zm9v!g==", "Zg===", "Z===", "=Zg=", "Zm 9v" }) do
        assert.is_nil(webhook.base64_decode(bad), bad)
      end
    end)

    it("HMAC-SHA256 of the core matches RFC 4231 test cases 1, 2 and 6", function()
      assert.equal("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        webhook.hex(core.hmac_sha256(("\11"):rep(20), "Hi There")))
      assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        webhook.hex(core.hmac_sha256("Jefe", "what do ya want for nothing?")))
      assert.equal("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        webhook.hex(core.hmac_sha256(("\170"):rep(131), "Test Using Larger Than Block-Size Key - Hash Key First")))
    end)
  end)

  describe("verify, Kie scheme", function()
    local sig
    setup(function() sig = openssl_hmac(SECRET, "task_kie_7e1." .. TS) end)

    local function verify(headers, o)
      o = o or {}
      return webhook.verify{ headers = headers, body = o.body or KIE_BODY, secret = o.secret or SECRET,
        now = o.now or TS + 5, tolerance = o.tolerance, scheme = o.scheme }
    end

    it("accepts the signature openssl computes over taskId.timestamp", function()
      local ok, info = verify({ ["X-Webhook-Timestamp"] = tostring(TS), ["X-Webhook-Signature"] = sig })
      assert.is_true(ok)
      assert.same({ scheme = "kie", task_id = "task_kie_7e1", body_signed = false, timestamp = TS }, info)
    end)

    it("reads header names in any case, with - or _ (as servers present them)", function()
      for _, names in ipairs({ { "x-webhook-timestamp", "x-webhook-signature" },
        { "X-WEBHOOK-TIMESTAMP", "X-WEBHOOK-SIGNATURE" }, { "x_webhook_timestamp", "X_Webhook_Signature" } }) do
        assert.is_true((verify({ [names[1]] = tostring(TS), [names[2]] = " " .. sig .. " " })), names[1])
      end
    end)

    it("takes one-element lists as OpenResty's get_headers() gives them, refuses a repeated header", function()
      assert.is_true((verify({ ["x-webhook-timestamp"] = { tostring(TS) }, ["x-webhook-signature"] = { sig } })))
      local ok, err = verify({ ["x-webhook-timestamp"] = tostring(TS), ["x-webhook-signature"] = { sig, sig } })
      assert.is_nil(ok)
      assert.equal("malformed", err.reason)
      assert.matches("X%-Webhook%-Signature is sent more than once", err.message)
      ok, err = verify({ ["X-Webhook-Timestamp"] = tostring(TS), ["x-webhook-timestamp"] = tostring(TS),
        ["X-Webhook-Signature"] = sig })
      assert.is_nil(ok)
      assert.equal("X-Webhook-Timestamp", err.field)
    end)

    it("accepts the signature URL-safe or unpadded", function()
      local alt = sig:gsub("%+", "-"):gsub("/", "_"):gsub("=+$", "")
      assert.is_true((verify({ ["X-Webhook-Timestamp"] = tostring(TS), ["X-Webhook-Signature"] = alt })))
    end)

    it("takes the task id from data.task_id too (Kie's own example reads that)", function()
      local body = '{"code":200,"data":{"task_id":"task_kie_7e1","state":"success"}}'
      assert.is_true((verify({ ["X-Webhook-Timestamp"] = tostring(TS), ["X-Webhook-Signature"] = sig },
        { body = body })))
      body = '{"taskId":"task_kie_7e1","state":"success"}'
      assert.is_true((verify({ ["X-Webhook-Timestamp"] = tostring(TS), ["X-Webhook-Signature"] = sig },
        { body = body })))
    end)

    it("refuses a wrong secret, without saying what was expected or what the secret is", function()
      local ok, err = verify({ ["X-Webhook-Timestamp"] = tostring(TS), ["X-Webhook-Signature"] = sig },
        { secret = "whsec-other" })
      assert.is_nil(ok)
      assert.equal("auth", err.kind)
      assert.equal("signature", err.reason)
      assert.equal("X-Webhook-Signature", err.field)
      local text = tostring(err)
      assert.is_nil(text:find("whsec", 1, true))
      assert.is_nil(text:find(sig, 1, true))
      assert.is_nil(text:find(openssl_hmac("whsec-other", "task_kie_7e1." .. TS), 1, true))
    end)

    it("refuses a changed task id or timestamp", function()
      local body = KIE_BODY:gsub("task_kie_7e1", "task_kie_7e2")
      local ok, err = verify({ ["X-Webhook-Timestamp"] = tostring(TS), ["X-Webhook-Signature"] = sig },
        { body = body })
      assert.is_nil(ok)
      assert.equal("signature", err.reason)
      ok, err = verify({ ["X-Webhook-Timestamp"] = tostring(TS + 1), ["X-Webhook-Signature"] = sig })
      assert.is_nil(ok)
      assert.equal("signature", err.reason)
    end)

    it("signs only the id and time: a changed result still verifies, and says the body is unsigned", function()
      local body = KIE_BODY:gsub("7e1%.mp4", "evil.mp4")
      local ok, info = verify({ ["X-Webhook-Timestamp"] = tostring(TS), ["X-Webhook-Signature"] = sig },
        { body = body })
      assert.is_true(ok)
      assert.is_false(info.body_signed)
    end)

    it("refuses a stale or future timestamp beyond the tolerance (300 s by default)", function()
      local h = { ["X-Webhook-Timestamp"] = tostring(TS), ["X-Webhook-Signature"] = sig }
      assert.is_true((verify(h, { now = TS + 300 })))
      assert.is_true((verify(h, { now = TS - 300 })))
      local ok, err = verify(h, { now = TS + 301 })
      assert.is_nil(ok)
      assert.equal("auth", err.kind)
      assert.equal("stale", err.reason)
      assert.equal("X-Webhook-Timestamp", err.field)
      assert.matches("301 s old, more than the tolerance of 300 s", err.message)
      ok, err = verify(h, { now = TS - 301 })
      assert.is_nil(ok)
      assert.equal("future", err.reason)
      ok, err = verify(h, { now = TS + 11, tolerance = 10 })
      assert.is_nil(ok)
      assert.equal("stale", err.reason)
      assert.is_true((verify(h, { now = TS + 10, tolerance = 10 })))
    end)

    it("checks the timestamp against the clock when now is not given", function()
      local now = os.time()
      local h = { ["X-Webhook-Timestamp"] = tostring(now), ["X-Webhook-Signature"] =
        openssl_hmac(SECRET, "task_kie_7e1." .. now) }
      assert.is_true((webhook.verify{ headers = h, body = KIE_BODY, secret = SECRET }))
      local old = now - 3600
      h = { ["X-Webhook-Timestamp"] = tostring(old),
        ["X-Webhook-Signature"] = openssl_hmac(SECRET, "task_kie_7e1." .. old) }
      local ok, err = webhook.verify{ headers = h, body = KIE_BODY, secret = SECRET }
      assert.is_nil(ok)
      assert.equal("stale", err.reason)
    end)

    it("names the missing header", function()
      local ok, err = verify({ ["X-Webhook-Timestamp"] = tostring(TS) })
      assert.is_nil(ok)
      assert.same({ "auth", "missing", "X-Webhook-Signature" }, { err.kind, err.reason, err.field })
      ok, err = verify({ ["X-Webhook-Signature"] = sig })
      assert.is_nil(ok)
      assert.same({ "auth", "missing", "X-Webhook-Timestamp" }, { err.kind, err.reason, err.field })
      ok, err = verify({ ["Content-Type"] = "application/json" })
      assert.is_nil(ok)
      assert.equal("missing", err.reason)
      assert.matches("expected X%-ModKie%-Signature, or X%-Webhook%-Signature with X%-Webhook%-Timestamp", err.message)
    end)

    it("refuses malformed headers and bodies that name no task", function()
      local cases = {
        { { ["X-Webhook-Timestamp"] = "soon", ["X-Webhook-Signature"] = sig }, "X-Webhook-Timestamp" },
        { { ["X-Webhook-Timestamp"] = TS .. ".5", ["X-Webhook-Signature"] = sig }, "X-Webhook-Timestamp" },
        { { ["X-Webhook-Timestamp"] = "-" .. TS, ["X-Webhook-Signature"] = sig }, "X-Webhook-Timestamp" },
        { { ["X-Webhook-Timestamp"] = ("9"):rep(40), ["X-Webhook-Signature"] = sig }, "X-Webhook-Timestamp" },
        { { ["X-Webhook-Timestamp"] = tostring(TS), ["X-Webhook-Signature"] = "not base64!" }, "X-Webhook-Signature" },
        { { ["X-Webhook-Timestamp"] = tostring(TS), ["X-Webhook-Signature"] = sig:sub(1, 40) }, "X-Webhook-Signature" },
        { { ["X-Webhook-Timestamp"] = tostring(TS), ["X-Webhook-Signature"] = 42 }, "X-Webhook-Signature" },
      }
      for i, c in ipairs(cases) do
        local ok, err = verify(c[1])
        assert.is_nil(ok, i)
        assert.same({ "auth", "malformed", c[2] }, { err.kind, err.reason, err.field }, i)
      end
      local h = { ["X-Webhook-Timestamp"] = tostring(TS), ["X-Webhook-Signature"] = sig }
      for _, body in ipairs({ "", "not json", "[1,2]", '{"data":{"taskId":42}}', '{"data":{"state":"success"}}',
        '{"data":{"taskId":""}}', ("["):rep(10000) }) do
        local ok, err = verify(h, { body = body })
        assert.is_nil(ok, body)
        assert.same({ "auth", "malformed", "body" }, { err.kind, err.reason, err.field })
      end
    end)

    it("accepts any of several secrets while one is rotated out", function()
      local h = { ["X-Webhook-Timestamp"] = tostring(TS), ["X-Webhook-Signature"] = sig }
      assert.is_true((verify(h, { secret = { "whsec-new", SECRET } })))
      assert.is_nil((verify(h, { secret = { "whsec-new", "whsec-newer" } })))
    end)
  end)

  describe("verify, ModKie scheme", function()
    local hex
    setup(function() hex = select(2, openssl_hmac(SECRET, KIE_BODY)) end)

    local function verify(headers, o)
      o = o or {}
      local body = KIE_BODY
      if o.body ~= nil then body = o.body end
      return webhook.verify{ headers = headers, body = body, secret = o.secret or SECRET, scheme = o.scheme,
        now = o.now }
    end

    it("accepts sha256=<hex> over the raw body, as openssl computes it", function()
      local ok, info = verify({ ["X-ModKie-Signature"] = "sha256=" .. hex })
      assert.is_true(ok)
      assert.same({ scheme = "modkie", task_id = "task_kie_7e1", body_signed = true }, info)
      assert.is_true((verify({ ["x-modkie-signature"] = "SHA256=" .. hex:upper() })))
    end)

    it("refuses a body changed by one byte, a wrong secret, and keeps both out of the message", function()
      local changed = { KIE_BODY .. "\n", (KIE_BODY:gsub("7e1%.mp4", "evil.mp4")), (KIE_BODY:gsub("35}}$", "36}}")) }
      for _, body in ipairs(changed) do
        local ok, err = verify({ ["X-ModKie-Signature"] = "sha256=" .. hex }, { body = body })
        assert.is_nil(ok)
        assert.same({ "auth", "signature", "X-ModKie-Signature" }, { err.kind, err.reason, err.field })
      end
      local ok, err = verify({ ["X-ModKie-Signature"] = "sha256=" .. hex }, { secret = "whsec-other" })
      assert.is_nil(ok)
      assert.equal("signature", err.reason)
      assert.is_nil(tostring(err):find("whsec", 1, true))
      assert.is_nil(tostring(err):find(hex, 1, true))
    end)

    it("refuses a malformed header", function()
      for _, v in ipairs({ hex, "sha1=" .. hex, "sha256=" .. hex:sub(3), "sha256=" .. hex .. "00",
        "sha256=" .. hex:sub(2) .. "g", "" }) do
        local ok, err = verify({ ["X-ModKie-Signature"] = v })
        assert.is_nil(ok, v)
        assert.same({ "auth", "malformed", "X-ModKie-Signature" }, { err.kind, err.reason, err.field })
      end
    end)

    it("has no timestamp: an old callback still verifies (replays are the handler's to absorb)", function()
      assert.is_true((verify({ ["X-ModKie-Signature"] = "sha256=" .. hex }, { now = 0 })))
    end)

    it("signs an empty body too (nil counts as empty)", function()
      local _, empty = openssl_hmac(SECRET, "")
      assert.is_true((webhook.verify{ headers = { ["X-ModKie-Signature"] = "sha256=" .. empty }, secret = SECRET }))
      assert.is_true((verify({ ["X-ModKie-Signature"] = "sha256=" .. empty }, { body = "" })))
    end)

    it("prefers the ModKie header when both schemes' headers are there; a pinned scheme needs its own", function()
      local kie = openssl_hmac(SECRET, "task_kie_7e1." .. TS)
      local both = { ["X-ModKie-Signature"] = "sha256=" .. hex, ["X-Webhook-Timestamp"] = tostring(TS),
        ["X-Webhook-Signature"] = kie }
      local ok, info = verify(both, { now = TS })
      assert.is_true(ok)
      assert.equal("modkie", info.scheme)
      -- a changed body with the ModKie header stripped: auto falls back to Kie and passes; pinned, it is refused
      local changed = KIE_BODY:gsub("7e1%.mp4", "evil.mp4")
      local stripped = { ["X-Webhook-Timestamp"] = tostring(TS), ["X-Webhook-Signature"] = kie }
      assert.is_true((verify(stripped, { body = changed, now = TS })))
      local err
      ok, err = verify(stripped, { body = changed, now = TS, scheme = "modkie" })
      assert.is_nil(ok)
      assert.same({ "missing", "X-ModKie-Signature" }, { err.reason, err.field })
      ok, info = verify(both, { now = TS, scheme = "kie" })
      assert.is_true(ok)
      assert.equal("kie", info.scheme)
    end)
  end)

  describe("verify's arguments", function()
    it("raises on programmer errors, never showing the secret", function()
      local h = { ["X-ModKie-Signature"] = "sha256=00" }
      assert.has_error(function() webhook.verify("x") end,
        "bad argument #1 to 'webhook.verify' (table expected, got string)")
      assert.has_error(function() webhook.verify{ headers = h, body = "", secret = SECRET, tolerence = 5 } end,
        "webhook.verify: unknown option 'tolerence' (did you mean 'tolerance'?)")
      assert.has_error(function() webhook.verify{ headers = h, body = "" } end,
        "webhook.verify: option 'secret' must be a non-empty string, or a list of them, got nil")
      assert.has_error(function() webhook.verify{ headers = h, body = "", secret = "" } end,
        "webhook.verify: option 'secret' must be a non-empty string, or a list of them, got string")
      assert.has_error(function() webhook.verify{ headers = h, body = "", secret = {} } end)
      assert.has_error(function() webhook.verify{ headers = h, body = "", secret = { SECRET, 5 } } end)
      assert.has_error(function() webhook.verify{ headers = "x", body = "", secret = SECRET } end)
      assert.has_error(function() webhook.verify{ headers = h, body = {}, secret = SECRET } end)
      assert.has_error(function() webhook.verify{ headers = h, body = "", secret = SECRET, tolerance = -1 } end)
      assert.has_error(function() webhook.verify{ headers = h, body = "", secret = SECRET, tolerance = 0 / 0 } end)
      assert.has_error(function() webhook.verify{ headers = h, body = "", secret = SECRET, now = "now" } end)
      assert.has_error(function() webhook.verify{ headers = h, body = "", secret = SECRET, scheme = "stripe" } end,
        'webhook.verify: option \'scheme\' must be "kie" or "modkie", got stripe')
      local ok, msg = pcall(webhook.verify, { headers = h, body = 5, secret = "whsec-canary-91" })
      assert.is_false(ok)
      assert.is_nil(msg:find("canary", 1, true))
    end)
  end)

  describe("sign", function()
    it("makes the headers openssl agrees with, and verify accepts", function()
      local b64, hex = openssl_hmac(SECRET, "task_kie_7e1." .. TS)
      assert.same({ ["X-Webhook-Timestamp"] = tostring(TS), ["X-Webhook-Signature"] = b64 },
        webhook.sign{ scheme = "kie", body = KIE_BODY, secret = SECRET, timestamp = TS })
      assert.equal(unhex(hex), webhook.base64_decode(b64))
      local _, bhex = openssl_hmac(SECRET, KIE_BODY)
      assert.same({ ["X-ModKie-Signature"] = "sha256=" .. bhex },
        webhook.sign{ scheme = "modkie", body = KIE_BODY, secret = SECRET })
      for _, scheme in ipairs({ "kie", "modkie" }) do
        local h = webhook.sign{ scheme = scheme, body = KIE_BODY, secret = SECRET }
        assert.is_true((webhook.verify{ headers = h, body = KIE_BODY, secret = SECRET, scheme = scheme }))
      end
      assert.has_error(function() webhook.sign{ scheme = "kie", body = "{}", secret = SECRET } end)
      assert.has_error(function() webhook.sign{ scheme = "x", body = "{}", secret = SECRET } end)
    end)
  end)

  describe("parse", function()
    it("turns a Kie success into await's result", function()
      local res = assert(webhook.parse(KIE_BODY))
      assert.equal("task_kie_7e1", res.id)
      assert.equal("kling/kling-3-0", res.model)
      assert.equal("success", res.state)
      assert.same({ "https://cdn.example/v/7e1.mp4" }, res.urls)
      assert.same({ resultUrls = { "https://cdn.example/v/7e1.mp4" } }, res.output)
      assert.equal(35, res.credits)
      assert.equal(1755599634, res.created_at)
      assert.equal(1755599644, res.completed_at)
      assert.near(8.123, res.cost_time, 1e-9)
      assert.equal("success", res.raw.state)
    end)

    it("turns a ModKie success (resultJson an object) into the same shape; takes a decoded table too", function()
      local body = '{"code":200,"message":"success","data":{"taskId":"task_mk_1","model":"m","state":"success",'
        .. '"resultJson":{"resultUrls":["https://cdn.example/a.png","https://cdn.example/b.png"]},'
        .. '"creditsCharged":12,"createTime":1755599634000}}'
      local res = assert(webhook.parse(body))
      assert.equal("task_mk_1", res.id)
      assert.same({ "https://cdn.example/a.png", "https://cdn.example/b.png" }, res.urls)
      assert.equal(12, res.credits)
      assert.same(res.urls, assert(webhook.parse(require("cjson").decode(body))).urls)
    end)

    it("turns a failed job into kind 'failed' with code and message, either dialect", function()
      local _, err = webhook.parse('{"code":501,"msg":"generation failed","data":{"taskId":"task_f1",'
        .. '"state":"fail","failCode":"500","failMsg":"Internal Error, Please try again later."}}')
      assert.equal("failed", err.kind)
      assert.equal(500, err.code)
      assert.equal("Internal Error, Please try again later.", err.message)
      assert.equal("task_f1", err.task_id)
      assert.equal("fail", err.server_state)
      assert.is_true(err.retryable)
      _, err = webhook.parse('{"code":501,"message":"content policy","data":{"taskId":"task_f2","state":"failed",'
        .. '"failCode":null,"failMsg":null,"resultJson":null}}')
      assert.same({ "failed", 501, "content policy", "task_f2" }, { err.kind, err.code, err.message, err.task_id })
      _, err = webhook.parse('{"code":200,"data":{"taskId":"task_f3","state":"fail","failCode":422}}')
      assert.same({ "failed", 422, "the job failed" }, { err.kind, err.code, err.message })
    end)

    it("reads a bare record and data.task_id", function()
      assert.equal("task_b", assert(webhook.parse('{"taskId":"task_b","state":"success"}')).id)
      assert.equal("task_c", assert(webhook.parse('{"code":200,"data":{"task_id":"task_c","state":"success"}}')).id)
    end)

    it("says a task that has not ended is not a final callback", function()
      local res, err = webhook.parse('{"code":200,"data":{"taskId":"task_r","state":"generating"}}')
      assert.is_nil(res)
      assert.equal("protocol", err.kind)
      assert.equal("generating", err.server_state)
      assert.equal("task_r", err.task_id)
    end)

    it("answers a body that is not the contract with kind 'protocol', never a Lua error", function()
      local bodies = {
        "", "not json", "null", "42", '"text"', "[]", "[1,2]", "{}", '{"code":200}', '{"code":200,"data":"x"}',
        '{"code":200,"data":[1,2]}', '{"code":200,"data":{"state":"success"}}',
        '{"code":200,"data":{"taskId":7,"state":"success"}}', '{"code":200,"data":{"taskId":"t","state":7}}',
        '{"code":200,"data":{"taskId":"t","state":{"x":1}}}', '{"code":200,"data":{"taskId":"t","state":null}}',
        '{"code":"abc","data":{"taskId":"t","state":"success"}}', '{"code":[],"data":{"taskId":"t","state":"success"}}',
        '{"code":500,"data":{"taskId":"t","state":"success"}}', ("["):rep(10000) .. ("]"):rep(10000),
        ('{"a":'):rep(10000) .. "1" .. ("}"):rep(10000), "\255\254\0garbage",
      }
      for _, body in ipairs(bodies) do
        local ok, res, err = pcall(webhook.parse, body)
        assert.is_true(ok, res)
        assert.is_nil(res, body:sub(1, 60))
        assert.equal("protocol", err.kind, body:sub(1, 60))
      end
      assert.has_error(function() webhook.parse(nil) end)
    end)

    it("keeps odd field types sane: numbers stay numbers or nil, urls strings", function()
      local res = assert(webhook.parse('{"code":"200","data":{"taskId":"t","state":"success","resultJson":42,'
        .. '"createTime":"yesterday","creditsConsumed":"7","costTime":{},"failCode":{"a":1},'
        .. '"resultUrls":["https://cdn.example/x.mp4",5,{},""]}}'))
      assert.same({ "https://cdn.example/x.mp4" }, res.urls)
      assert.is_nil(res.created_at)
      assert.equal(7, res.credits)
      assert.is_nil(res.cost_time)
      local _, err = webhook.parse('{"data":{"taskId":"t","state":"fail","failCode":{"a":1},"failMsg":7}}')
      assert.same({ "failed", "the job failed" }, { err.kind, err.message })
      assert.is_nil(err.code)
    end)
  end)

  -- the record the emulator's recordInfo returns, sent as a callback, gives
  -- exactly what await gave for the same job
  for _, dialect in ipairs({ "kie", "modkie" }) do
    it("parse gives what await gives, " .. dialect .. " dialect", function()
      local m = helper.mock({ "--dialect", dialect, "--job-seconds", "0" })
      local client = helper.client(m)
      finally(function() client:close(); m.stop() end)
      local cjson = require "cjson"
      local ok_job = assert(client:submit("kling/kling-3-0", { prompt = "callback twin [outputs=2]" }))
      local fail_job = assert(client:submit("kling/kling-3-0", { prompt = "callback twin [fail]" }))
      local res = assert(ok_job:await(10))
      local _, ferr = fail_job:await(10)
      assert.equal("failed", ferr.kind)
      local raw_ok = assert(client:record(res.id))
      local raw_fail = assert(client:record(fail_job.id))
      local pres = assert(webhook.parse(cjson.encode({ code = 200, msg = "success", data = raw_ok })))
      pres.raw, res.raw = nil, nil
      assert.same(res, pres)
      local _, perr = webhook.parse(cjson.encode({ code = 200, msg = "success", data = raw_fail }))
      assert.same({ ferr.kind, ferr.code, ferr.message, ferr.task_id },
        { perr.kind, perr.code, perr.message, perr.task_id })
    end)
  end
end)

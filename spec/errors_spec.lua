-- Errors a user can meet, each with its kind, before or after the network.
local helper = require "spec.helper"
local modkie = require "modkie"

local KLING = "kling/kling-3-0"

describe("bad input", function()
  local m, client
  setup(function() m = helper.mock({ "--job-seconds", "0.2" }) end)
  teardown(function() m.stop() end)
  before_each(function() client = helper.client(m) end)
  after_each(function() client:close() end)

  it("lists every bad field and sends nothing", function()
    local before = m.stats().create_requests
    local job, err = client:submit(KLING, { aspect_ratio = "2:1", duration = "5", resolution = 720, extra = true })
    assert.is_nil(job)
    assert.equal("validation", err.kind)
    local fields = {}
    for i, p in ipairs(err.problems) do fields[i] = p.field end
    assert.same({ "aspect_ratio", "duration", "extra", "prompt", "resolution" }, fields)
    assert.equal("aspect_ratio", err.field)
    assert.matches("prompt is required", err.message)
    assert.matches("duration must be a number, got string", err.message)
    assert.equal(before, m.stats().create_requests)
  end)

  it("validates through modkie.validate the same way", function()
    assert.is_true(modkie.validate(KLING, { prompt = "ok", aspect_ratio = "9:16", generate_audio = true }))
    local ok, err = modkie.validate(KLING, { prompt = "   " })
    assert.is_nil(ok)
    assert.same({ { field = "prompt", message = "must not be empty" } }, err.problems)
    assert.is_true(modkie.validate("someone/custom-model", { anything = { 1, 2 } }))
  end)

  it("models.register names a mistyped key with the closest one, at the caller's line", function()
    local function register(schema)
      local function call() modkie.models.register("acme/typo", schema) end -- (the error points at this line)
      local ok, msg = pcall(call)
      assert.is_false(ok, "registered")
      local where = debug.getinfo(call, "S")
      return assert(msg:match("^" .. where.short_src:gsub("%p", "%%%0") .. ":" .. where.linedefined .. ": (.*)$"), msg)
    end
    assert.equal("modkie.models.register('acme/typo'): unknown schema key 'feilds' (did you mean 'fields'?)",
      register({ feilds = { prompt = { type = "string" } } }))
    assert.equal("modkie.models.register('acme/typo'): field 'prompt' has unknown key 'requried' "
      .. "(did you mean 'required'?)", register({ fields = { prompt = { type = "string", requried = true } } }))
    assert.equal("modkie.models.register('acme/typo'): field 'prompt' has unknown key 'tpye' (did you mean 'type'?)",
      register({ fields = { prompt = { tpye = "string" } } }))
    assert.equal("modkie.models.register('acme/typo'): field 'prompt' has unknown type 'strng' "
      .. "(did you mean 'string'?)", register({ fields = { prompt = { type = "strng" } } }))
    assert.is_nil(modkie.models.get("acme/typo"))
    -- a models file says the same, naming the file and the model
    local path = os.tmpname()
    finally(function() os.remove(path) end)
    local f = assert(io.open(path, "w"))
    f:write('{ "models": { "acme/typo": { "feilds": { "prompt": { "type": "string" } } } } }')
    f:close()
    local ok, err = modkie.models.load(path)
    assert.is_nil(ok)
    assert.equal("models file " .. path .. ": model 'acme/typo': unknown schema key 'feilds' (did you mean 'fields'?)",
      err.message)
  end)

  it("submits an unknown model without validating it", function()
    local res = assert(assert(client:submit("someone/custom-model", { whatever = 1, prompt = "x" })):await(10))
    assert.matches("^task_", res.id)
  end)

  it("raises on wrong argument types, naming the argument", function()
    assert.has_error(function() client:submit(42, {}) end,
      "bad argument #1 to 'submit' (string expected, got number)")
    assert.has_error(function() client:submit(KLING, "prompt") end,
      "bad argument #2 to 'submit' (table expected, got string)")
    assert.has_error(function() client:submit(KLING, { prompt = "x" }, { dedline = 3 }) end,
      "submit: unknown option 'dedline' (did you mean 'deadline'?)")
    assert.has_error(function() client:record(5) end, "bad argument #1 to 'record' (string expected, got number)")
    local job = assert(client:submit(KLING, { prompt = "x" }))
    assert.has_error(function() job:await("soon") end, "bad argument #1 to 'await' (number expected, got string)")
  end)

  it("refuses unknown and mistyped client options", function()
    assert.has_error(function() modkie.new{ timout = 5 } end,
      "modkie.new: unknown option 'timout' (did you mean 'timeout'?)")
    assert.has_error(function() modkie.new{ timeout = "5" } end,
      "modkie.new: option 'timeout' must be a number, got string")
    assert.has_error(function() modkie.new{ timeout = -1 } end,
      "modkie.new: option 'timeout' must be a number of seconds from 0.001 to 1e6, got -1")
    assert.has_error(function() modkie.new{ retries = 1.5 } end,
      "modkie.new: option 'retries' must be a whole number from 0 to 1000, got 1.5")
    assert.has_error(function() modkie.new{ deadline = true } end)
    assert.has_error(function() modkie.new{ rate = { submit = { 0, 10 } } } end)
    assert.has_error(function() modkie.new{ rate = { sumbit = { 1, 10 } } } end)
    assert.has_error(function() modkie.new{ base_url = "ftp://x" } end)
    assert.has_error(function() modkie.new{ base_url = "http://gateway.example.com" } end,
      "modkie.new: base_url 'http://gateway.example.com' is plain http to another host: the API key would cross the "
      .. "network unencrypted; use https, or pass allow_insecure = true")
    assert.is_table(modkie.new{ base_url = "http://gateway.example.com", allow_insecure = true })
  end)

  it("never echoes a malformed API key", function()
    local ok, msg = pcall(modkie.new, { api_key = "sk-secret\nX-Injected: 1" })
    assert.is_false(ok)
    assert.not_matches("sk%-secret", msg)
  end)

  it("makes a missing API key a config error at submit, with nothing sent", function()
    local before = m.stats().create_requests
    local keyless = helper.client(m, { api_key = false })
    local job, err = keyless:submit(KLING, { prompt = "x" })
    assert.is_nil(job)
    assert.equal("config", err.kind)
    assert.matches("MODKIE_API_KEY", err.message)
    local n, cerr = keyless:credits()
    assert.is_nil(n)
    assert.equal("config", cerr.kind)
    assert.equal(before, m.stats().create_requests)
    keyless:close()
  end)

  it("refuses input that cannot be JSON", function()
    local job, err = client:submit("custom/model", { prompt = "x", f = function() end })
    assert.is_nil(job)
    assert.equal("validation", err.kind)
    assert.equal("input", err.field)
  end)
end)

for _, dialect in ipairs({ "kie", "modkie" }) do
  describe("errors from the gateway, " .. dialect .. " dialect", function()
    local m
    setup(function() m = helper.mock({ "--dialect", dialect, "--job-seconds", "0.2", "--api-key", "right-key" }) end)
    teardown(function() m.stop() end)

    local function http_status(code)
      -- kie answers errors as HTTP 200 with a code in the body; modkie with the HTTP status
      return dialect == "kie" and 200 or code
    end

    it("auth: a refused key ends the job with kind 'auth', not retried", function()
      local client = helper.client(m, { api_key = "wrong-key" })
      local before = m.stats().create_requests
      local res, err = assert(client:submit(KLING, { prompt = "x" })):await(10)
      assert.is_nil(res)
      assert.equal("auth", err.kind)
      assert.equal(401, err.code)
      assert.equal(http_status(401), err.status)
      assert.is_false(err.retryable)
      assert.equal(before + 1, m.stats().create_requests)
      local n, cerr = client:credits()
      assert.is_nil(n)
      assert.equal("auth", cerr.kind)
      client:close()
    end)

    it("credits: 402 when the balance is too low", function()
      m.request("POST", "/__mock/credits", '{"key":"right-key","balance":10}')
      local client = helper.client(m, { api_key = "right-key" })
      local _, err = assert(client:submit(KLING, { prompt = "x" })):await(10)
      assert.equal("credits", err.kind)
      assert.equal(402, err.code)
      assert.equal(10, assert(client:credits()))
      m.request("POST", "/__mock/credits", '{"key":"right-key","balance":10000}')
      client:close()
    end)

    it("validation: 422 from the gateway when client validation is off", function()
      local client = helper.client(m, { api_key = "right-key" })
      local job = assert(client:submit(KLING, { prompt = "x", aspect_ratio = "2:1" }, { validate = false }))
      local _, err = job:await(10)
      assert.equal("validation", err.kind)
      assert.equal(422, err.code)
      assert.matches("aspect_ratio", err.message)
      client:close()
    end)

    it("not_found: an unknown task", function()
      local client = helper.client(m, { api_key = "right-key" })
      local rec, err = client:record("task_does_not_exist")
      assert.is_nil(rec)
      assert.equal("not_found", err.kind)
      assert.equal(404, err.code)
      local _, jerr = assert(client:job("task_does_not_exist")):await(10)
      assert.equal("not_found", jerr.kind)
      assert.equal("task_does_not_exist", jerr.task_id)
      client:close()
    end)
  end)
end

describe("transport errors", function()
  it("network: nothing listens; createTask retried (nothing was sent) then given up", function()
    local nowhere = "http://127.0.0.1:" .. helper.held_port(finally)
    local client = modkie.new{ base_url = nowhere, api_key = "k", retries = 2, rate = false }
    local retries = 0
    client._log = function(_, event) if event == "retry" then retries = retries + 1 end end
    local res, err = assert(client:submit(KLING, { prompt = "x" })):await(30)
    assert.is_nil(res)
    assert.equal("network", err.kind)
    assert.equal(2, retries)
    assert.is_true(err.retryable)
    assert.matches("gave up after 2 retries", err.message)
    client:close()
  end)

  it("ambiguous: createTask sent, the connection reset after the task was made; never sent twice", function()
    local m = helper.mock({ "--job-seconds", "0" })
    local client = helper.client(m)
    finally(function() client:close(); m.stop() end)
    assert(client:credits()) -- a warm keep-alive connection libcurl would like to reuse
    local input = { prompt = "lost answer [fault=create:reset]", duration = 5 }
    local job = assert(client:submit(KLING, input))
    local res, err = job:await(10)
    assert.is_nil(res)
    assert.equal("ambiguous", err.kind)
    assert.matches("may have been created", err.message)
    assert.equal(KLING, err.model)
    assert.same(input, err.input)
    assert.equal(1, m.stats().submits_by_prompt[input.prompt])
  end)

  it("protocol: a body that is not the contract", function()
    -- bytes, not JSON (an edge proxy's page), where the API's envelope belongs
    local m = helper.mock({ "--job-seconds", "0" })
    finally(function() m.stop() end)
    m.replay("/api/v1/chat/credit", nil, { { status = 200, body = "<html>bad gateway</html>" } })
    local odd = helper.client(m, { retries = 1 })
    local n, err = odd:credits()
    assert.is_nil(n)
    assert.equal("protocol", err.kind)
    assert.matches("not the API's JSON envelope", err.message)
    odd:close()
  end)

  it("rate_limit: a 429's Retry-After, in any case of the header's name, is the error's retry_after", function()
    local m = helper.mock({ "--job-seconds", "0" })
    finally(function() m.stop() end)
    local busy = helper.client(m, { retries = 0 })
    for _, case in ipairs({ { "Retry-After", "7" }, { "retry-after", "3" }, { "RETRY-AFTER", "0" } }) do
      m.replay("/api/v1/chat/credit", nil, { { status = 429, headers = { [case[1]] = case[2],
        ["Referrer-Policy"] = "no-referrer" }, body = '{"code":429,"msg":"slow down"}' } })
      local n, err = busy:credits()
      assert.is_nil(n)
      assert.equal("rate_limit", err.kind, case[1])
      assert.equal(tonumber(case[2]), err.retry_after, case[1])
    end
    busy:close()
  end)
end)

describe("modkie.Error", function()
  it("has every kind of the contract and reads well", function()
    for _, kind in ipairs({ "validation", "config", "auth", "credits", "rate_limit", "not_found", "server",
      "network", "timeout", "deadline", "failed", "protocol", "cancelled", "ambiguous" }) do
      local err = modkie.Error.new(kind, "what happened", { status = 500, task_id = "task_1" })
      assert.is_true(modkie.Error.is(err))
      assert.equal("modkie " .. kind .. " error: what happened status=500 task_id=task_1", tostring(err))
    end
    assert.has_error(function() modkie.Error.new("nonsense", "x") end)
  end)
end)

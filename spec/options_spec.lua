-- Every option of modkie.new, submit and job is checked: a wrong name or
-- type raises naming the option (spec/errors_spec.lua has the first few).
local modkie = require "modkie"

local function refused(opts, message)
  local ok, err = pcall(modkie.new, opts)
  assert(not ok, "accepted: " .. tostring(next(opts)))
  if message then assert.equal(message, (err:gsub("^[^:]*:%d+: ", ""))) end
  return err
end

describe("modkie.new options", function()
  it("refuses a wrong type for each option, naming it", function()
    local cases = {
      { { api_key = 5 }, "option 'api_key' must be a string, got number" },
      { { base_url = 5 }, "option 'base_url' must be a string, got number" },
      { { connect_timeout = "1" }, "option 'connect_timeout' must be a number, got string" },
      { { poll_interval = "2" }, [[option 'poll_interval' must be seconds, a function or "learn", got "2"]] },
      { { poll_interval = 2, poll_history = {} },
        [[option 'poll_history' goes with the default schedule or poll_interval = "learn"]] },
      { { time_scale = "0.1" }, "option 'time_scale' must be a number, got string" },
      { { webhook = "secret" }, "option 'webhook' must be a table, got string" },
      { { listen = 8080 }, "option 'listen' must be a string, got number" },
      { { callback_url = true }, "option 'callback_url' must be a string, got boolean" },
      { { callback_url = "ftp://x" }, "option 'callback_url' must be an http:// or https:// URL with no spaces" },
      { { webhook = { secret = "s", scheme = "hmac" } }, [[option 'webhook.scheme' must be "kie" or "modkie"]] },
      { { webhook = { secret = "s", tolerance = -1 } },
        "option 'webhook.tolerance' must be a number of seconds from 0 to 1e6" },
      { { webhook = { secret = "s", shared = {} } },
        "option 'webhook.shared' must be an OpenResty shared dict (ngx.shared.NAME)" },
      { { max_connections = "8" }, "option 'max_connections' must be a number, got string" },
      { { wait = true }, "option 'wait' must be a function, got boolean" },
      { { log = "print" }, "option 'log' must be a function, got string" },
      { { user_agent = 5 }, "option 'user_agent' must be a string, got number" },
      { { ca_file = 5 }, "option 'ca_file' must be a string, got number" },
      { { max_body = "8M" }, "option 'max_body' must be a number, got string" },
      { { max_download = "1MB" }, "option 'max_download' must be a number, got string" },
      { { allow_insecure = "yes" }, "option 'allow_insecure' must be a boolean, got string" },
      { { seed = "1" }, "option 'seed' must be a number, got string" },
      { { rate = "fast" }, "option 'rate' must be a boolean or table, got string" },
      { { retries = "3" }, "option 'retries' must be a number, got string" },
      { { deadline = "900" }, "option 'deadline' must be a boolean or number, got string" },
    }
    for _, c in ipairs(cases) do refused(c[1], "modkie.new: " .. c[2]) end
  end)

  it("refuses numbers out of range, NaN and infinities where they make no sense", function()
    local nan = 0 / 0
    for _, o in ipairs({
      { connect_timeout = 0 }, { connect_timeout = -1 }, { connect_timeout = nan },
      { poll_interval = -1 }, { poll_interval = nan },
      { max_connections = 0 }, { max_connections = 1.5 }, { max_connections = math.huge },
      { max_body = 0 }, { max_body = -5 }, { max_body = nan },
      { max_body = 0.5 }, { max_body = math.huge }, { max_body = -math.huge }, { max_body = 1e13 }, { max_body = 2^64 },
      { max_download = -1 }, { max_download = nan },
      { seed = -1 }, { seed = 1.5 },
      { retries = -1 }, { retries = math.huge },
      { deadline = 0 }, { deadline = -5 }, { deadline = nan },
      { timeout = nan }, { timeout = 0 },
      -- beyond what the C core takes (its integer casts stay defined)
      { timeout = math.huge }, { timeout = 1e-6 }, { connect_timeout = 1e7 }, { retries = 5000 },
      { seed = 2^60 }, { max_download = math.huge }, { max_connections = 20000 },
    }) do
      local name, value = next(o)
      local err = refused(o)
      assert.matches("option '" .. name .. "' must be", err, 1, true)
      assert.matches(tostring(value), err, 1, true)
    end
  end)

  -- fuzz/findings/buf/cap-size-max: the size_t cast of max_body in core.new
  -- must stay defined, and the buffer cap wrapped at SIZE_MAX. modkie.new
  -- says the range itself (it passed math.huge, 0.5 and 1e13 on to core.new,
  -- which raised from inside client.lua); core.new refuses them too.
  it("regression: max_body outside 1 to 1e12 is refused by modkie.new and by core.new, naming it", function()
    for _, v in ipairs({ 0.5, math.huge, 1e13, 2^48, 2^64 }) do
      assert.equal("modkie.new: option 'max_body' must be a number of bytes from 1 to 1e12, got " .. tostring(v),
        refused({ max_body = v }))
    end
    local core = require "modkie.core"
    for _, v in ipairs({ 0, -1, 0.5, math.huge, -math.huge, 0 / 0, 1e13, 2^64 }) do
      local ok, err = pcall(core.new, { base_url = "http://127.0.0.1:9", decode = tostring, max_body = v })
      assert.is_false(ok, tostring(v))
      assert.matches("option 'max_body'", err, 1, true)
    end
    for _, v in ipairs({ 1, 1e12 }) do modkie.new({ max_body = v }):close() end
  end)

  it("refuses malformed rate pairs, naming the one", function()
    for _, c in ipairs({
      { { poll = "x" }, "rate.poll" }, { { submit = { 1 } }, "rate.submit" }, { { poll = { 1, 0 } }, "rate.poll" },
      { { submit = { 1.5, 10 } }, "rate.submit" }, { { poll = { 10, -1 } }, "rate.poll" },
      { { poll = true }, "rate.poll" },
      { { submit = { 1e20, 10 } }, "rate.submit" }, { { poll = { 2e6, 1 } }, "rate.poll" },
      { { poll = { 10, math.huge } }, "rate.poll" },
    }) do
      local err = refused({ rate = c[1] })
      assert.matches("option '" .. c[2] .. "'", err, 1, true)
    end
    -- the core bounds them itself: one timestamp per request of the window,
    -- and a cast to int that must stay defined
    local core = require "modkie.core"
    for _, pair in ipairs({ { 1e20, 1 }, { 2e6, 1 }, { 1.5, 1 }, { 10, 0 }, { 10, 1 / 0 }, { 0 / 0, 1 } }) do
      local ok, err = pcall(core.new, { base_url = "http://127.0.0.1:9", decode = tostring, submit_rate = pair })
      assert.is_false(ok, tostring(pair[1]))
      assert.matches("option 'submit_rate' is out of range", err, 1, true)
    end
    modkie.new({ rate = { submit = { 1e6, 1e6 } } }):close()
    assert.matches("unknown option 'rate.polls'", refused({ rate = { polls = { 1, 1 } } }), 1, true)
  end)

  it("refuses unknown names, suggesting the closest, and keys that are not names", function()
    refused({ Timeout = 5 }, "modkie.new: unknown option 'Timeout' (did you mean 'timeout'?)")
    refused({ api_kye = "x" }, "modkie.new: unknown option 'api_kye' (did you mean 'api_key'?)")
    refused({ cafile = "x" }, "modkie.new: unknown option 'cafile' (did you mean 'ca_file'?)")
    refused({ max_downloads = 5 }, "modkie.new: unknown option 'max_downloads' (did you mean 'max_download'?)")
    refused({ insecure = true })
    refused({ [1] = 5 }, "modkie.new: unknown option '1'")
    refused({ webhook = { secrte = "s" } },
      "modkie.new: unknown option 'webhook.secrte' (did you mean 'webhook.secret'?)")
    refused({ webhook = { secret = "s", sheme = "kie" } },
      "modkie.new: unknown option 'webhook.sheme' (did you mean 'webhook.scheme'?)")
    refused({ webhook = { secret = "s", [1] = "kie" } }, "modkie.new: unknown option 'webhook.1'")
    assert.has_error(function() modkie.new("https://modkie.com") end,
      "bad argument #1 to 'modkie.new' (table expected, got string)")
  end)

  it("accepts the documented special values", function()
    for _, o in ipairs({ { rate = true }, { rate = false }, { rate = { submit = false } },
      { rate = { poll = { 5, 0.5 } } },
      { deadline = false }, { poll_interval = 0 }, { poll_interval = function() return 1 end }, { max_download = 0 },
      { retries = 0 }, { seed = 0 }, { max_connections = 1 }, { allow_insecure = false } }) do
      local c = modkie.new(o)
      assert.is_table(c)
      c:close()
    end
  end)

  -- CURLOPT_USERAGENT is given the string as is: "ok\r\nX-Injected: 1" sends
  -- a header line of its own (seen on the wire with a LuaSocket listener).
  it("regression: a user_agent with CR or LF is accepted and injects a header into every request", function()
    for _, ua in ipairs({ "ok\r\nX-Injected: 1", "ok\nX-Injected: 1", "ok\0x" }) do
      local ok = pcall(modkie.new, { user_agent = ua })
      assert(not ok, ("user_agent %q was accepted"):format(ua))
    end
  end)
end)

describe("submit and job options", function()
  local client
  setup(function() client = modkie.new{ api_key = "k", base_url = "http://127.0.0.1:9", rate = false } end)
  teardown(function() client:close() end)

  it("submit refuses wrong types and unknown names", function()
    for _, c in ipairs({
      { { callback_url = 5 }, "submit: option 'callback_url' must be a boolean or string, got number" },
      { { callback_url = true }, "submit: option 'callback_url' must be a URL, or false for none" },
      { { callback_url = "not a url" }, "submit: option 'callback_url' must be an http:// or https:// URL" },
      { { validate = "no" }, "submit: option 'validate' must be a boolean, got string" },
      { { deadline = "5" }, "submit: option 'deadline' must be a boolean or number, got string" },
      { { callbackUrl = "https://x" }, "submit: unknown option 'callbackUrl'" },
      { { timeout = 5 }, "submit: unknown option 'timeout'" },
    }) do
      local ok, err = pcall(client.submit, client, "acme/model", { prompt = "p" }, c[1])
      assert.is_false(ok)
      assert.matches(c[2], err, 1, true)
    end
  end)

  it("job refuses wrong types, unknown names and an empty id", function()
    for _, c in ipairs({
      { { model = 5 }, "job: option 'model' must be a string, got number" },
      { { deadline = "x" }, "job: option 'deadline' must be a boolean or number, got string" },
      { { callback_url = "x" }, "job: unknown option 'callback_url'" },
    }) do
      local ok, err = pcall(client.job, client, "task_1", c[1])
      assert.is_false(ok)
      assert.matches(c[2], err, 1, true)
    end
    assert.has_error(function() client:job("") end, "bad argument #1 to 'job' (a task id of 1 to 1024 bytes expected)")
    assert.has_error(function() client:job(42) end, "bad argument #1 to 'job' (string expected, got number)")
    assert.has_error(function() client:record(("x"):rep(1025)) end,
      "bad argument #1 to 'record' (a task id of 1 to 1024 bytes expected)")
    assert.has_error(function() client:job("task\0_1") end,
      "bad argument #1 to 'job' (a task id must not contain a NUL byte)")
  end)

  it("takes the task-id limit and the URL encoding from the C core", function()
    local core = require "modkie.core"
    assert.equal(1024, core.MAX_TASK_ID)
    assert.equal("task_1-a.b~c", core.url_escape("task_1-a.b~c"))
    assert.equal("a%20b%2F%3F%26%3D%25%00%C3%A9", core.url_escape("a b/?&=%\0\195\169"))
    assert.equal("", core.url_escape(""))
  end)

  it("download refuses a folder that is not a string and options that are not a table", function()
    local job = assert(client:job("task_1", { deadline = 1 }))
    assert.has_error(function() job:download(5) end, "bad argument #1 to 'download' (string expected, got number)")
    assert.has_error(function() job:download("x", "fast") end,
      "bad argument #2 to 'download' (table expected, got string)")
    job:cancel()
  end)
end)

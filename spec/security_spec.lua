-- What modkie guarantees a user about secrets, transport and files, checked
-- against real servers: the emulator, private nginx instances (HTTPS with a
-- self-signed certificate, redirects to another origin) and a canned server.
local helper = require "spec.helper"
local H = require "spec.batch_helper"
local canned = require "spec.support.canned"
local nginx = require "spec.nginx"
local modkie = require "modkie"

local KLING = "kling/kling-3-0"
local q = helper.shell_quote

-- Every regular file under `dir`: path -> contents.
local function files_under(dir)
  local out = {}
  local p = assert(io.popen("find " .. q(dir) .. " -type f 2>/dev/null"))
  for path in p:lines() do out[path] = helper.read_file(path) or "" end
  p:close()
  return out
end

-- Names in `dir`, hidden ones too, sorted.
local function ls(dir)
  local out = {}
  local p = assert(io.popen("ls -A " .. q(dir) .. " 2>/dev/null"))
  for name in p:lines() do out[#out + 1] = name end
  p:close()
  table.sort(out)
  return out
end

local function core_origin(url) return require("modkie.core").origin(url) end

local function unique()
  return ("%d%04d"):format(os.time() % 1000000, math.random(0, 9999))
end

describe("the API key", function()
  local canary, m, strict, dir
  setup(function()
    math.randomseed(os.time())
    canary = "sk-canary-" .. unique() .. "-Zq8"
    -- the gateway accepts only the canary, so every success proves the key was sent
    m = helper.mock({ "--job-seconds", "0.2", "--api-key", canary })
    strict = helper.mock({ "--job-seconds", "0.2", "--api-key", canary .. "-other" })
  end)
  teardown(function()
    m.stop()
    strict.stop()
  end)
  before_each(function() dir = helper.tmpdir() end)
  after_each(function() helper.rmdir(dir) end)

  local function assert_absent(label, text)
    assert(not text:find(canary, 1, true), label .. " holds the API key")
    -- nor its distinctive tail, in case something cut or wrapped it
    assert(not text:find(canary:sub(11), 1, true), label .. " holds part of the API key")
  end

  it("appears in nothing the library shows: results, errors, tostring, log events, journals, files", function()
    local out, err = os.tmpname(), os.tmpname()
    local cmd = ("MODKIE_API_KEY=%s LUA_PATH=%s LUA_CPATH=%s %s spec/support/canary_run.lua %s %s %s >%s 2>%s")
      :format(q(canary), q(package.path), q(package.cpath), os.getenv("MODKIE_TEST_LUA") or "lua5.4",
        q(m.url), q(strict.url), q(dir), out, err)
    os.execute(cmd)
    local stdout, stderr = helper.read_file(out) or "", helper.read_file(err) or ""
    os.remove(out)
    os.remove(err)
    assert.matches("canary run: done", stdout, 1, true)
    assert.equal("", stderr)
    -- the run did meet each kind of outcome it set out to
    for _, what in ipairs({ "await ok  {", "kind\"]=\"failed\"", "kind\"]=\"ambiguous\"", "kind\"]=\"timeout\"",
      "kind\"]=\"cancelled\"", "kind\"]=\"deadline\"", "kind\"]=\"not_found\"", "kind\"]=\"server\"",
      "kind\"]=\"rate_limit\"", "kind\"]=\"validation\"", "kind\"]=\"credits\"", "kind\"]=\"protocol\"",
      "kind\"]=\"auth\"", "kind\"]=\"network\"", "kind\"]=\"config\"", "log info accepted", "log warn retry",
      "log info done", "log debug state" }) do
      assert.matches(what, stdout, 1, true)
    end
    assert_absent("the library's output", stdout)
    local files = files_under(dir)
    local n = 0
    for path, text in pairs(files) do
      n = n + 1
      assert_absent(path, path .. "\n" .. text)
    end
    assert.is_true(n >= 6) -- two journals and the downloads
  end)

  it("appears in nothing the CLI prints or writes, in success or failure, text or --json", function()
    local good = { MODKIE_API_KEY = canary, MODKIE_BASE_URL = m.url }
    local refused = { MODKIE_API_KEY = canary, MODKIE_BASE_URL = strict.url }
    local nowhere = { MODKIE_API_KEY = canary, MODKIE_BASE_URL = "http://127.0.0.1:" .. helper.held_port(finally) }
    local fast = { "--poll-interval", "0.05" }
    local seen = {}
    local function run(env, ...)
      local argv = { ... }
      if argv[1] == "submit" or argv[1] == "wait" or argv[1] == "batch" then -- the commands that poll
        for _, a in ipairs(fast) do argv[#argv + 1] = a end
      end
      local r = H.cli(argv, env)
      seen[#seen + 1] = { table.concat(argv, " "), r.out .. r.err }
      return r
    end
    assert.equal(0, run(good, "submit", KLING, "--prompt", "cli canary").code)
    local r = run(good, "submit", KLING, "--prompt", "cli canary wait", "--wait", "--json")
    assert.equal(0, r.code, r.err)
    local id = assert(r.out:match('"id":%s*"(task_[%w_]+)"'), r.out)
    run(good, "submit", KLING, "--prompt", "cli canary text", "--wait", "--download", dir .. "/cli")
    assert.equal(1, run(good, "submit", KLING, "--prompt", "cli canary [fail]", "--wait").code)
    assert.equal(1, run(good, "submit", KLING, "--prompt", "cli canary [fail]", "--wait", "--json").code)
    run(good, "submit", KLING, "--prompt", "cli canary lost [fault=create:reset]", "--wait", "--json")
    run(good, "submit", KLING, "--prompt", "cli canary slow [seconds=30]", "--wait", "--wait-timeout", "0.2")
    run(good, "submit", KLING, "--prompt", "x", "--set", "aspect_ratio=2:1")
    for _, json in ipairs({ {}, { "--json" } }) do
      local j = json[1]
      run(good, "status", id, j)
      run(good, "status", "task_canary_missing", j)
      run(good, "wait", id, "--download", dir .. "/cli-wait", j)
      run(good, "wait", "task_canary_missing", j)
      run(good, "credits", j)
      assert.equal(3, run(refused, "credits", j).code)
      assert.equal(3, run(refused, "submit", KLING, "--prompt", "cli refused", "--wait", j).code)
      run(refused, "status", id, j)
      run(refused, "wait", id, j)
      assert.equal(4, run(nowhere, "credits", "--retries", "0", j).code)
      run(nowhere, "submit", KLING, "--prompt", "cli nowhere", "--wait", "--retries", "0", j)
      run(good, "validate", KLING, "--prompt", "cli canary", j)
      run(good, "models", KLING, j)
    end
    local rows = H.write(dir .. "/rows.csv",
      "prompt\ncli row one\ncli row two [fail]\ncli row three [fault=poll:500]\n")
    run(good, "batch", "--model", KLING, "--rows", rows, "--download", dir .. "/batch-out")
    run(good, "batch", "--model", KLING, "--rows", rows, "--json")
    run(good, "batch", "--model", KLING, "--rows", rows, "--dry-run")
    run(refused, "batch", "--model", KLING, "--rows", rows, "--journal", dir .. "/refused.journal")
    run(refused, "batch", "--model", KLING, "--rows", rows, "--journal", dir .. "/refused.journal", "--json")
    run(nowhere, "batch", "--model", KLING, "--rows", rows, "--journal", dir .. "/nowhere.journal", "--retries", "0")
    -- a malformed key is refused without being echoed
    local bad = run({ MODKIE_API_KEY = canary .. " tail", MODKIE_BASE_URL = m.url }, "credits")
    assert.matches("the API key contains spaces", bad.err)
    for _, s in ipairs(seen) do assert_absent("modkie " .. s[1], s[2]) end
    assert.is_true(#seen >= 40)
    local files = files_under(dir)
    assert.truthy(files[rows .. ".journal"])
    for path, text in pairs(files) do assert_absent(path, path .. "\n" .. text) end
  end)

  it("is held by no Lua table of the client or its jobs", function()
    local c = helper.client(m, { api_key = canary })
    local job = assert(c:submit(KLING, { prompt = "table canary" }))
    assert(job:await(10))
    local seen = {}
    local function walk(v, path)
      if type(v) == "string" then
        assert(not v:find(canary, 1, true), path .. " holds the key")
      elseif type(v) == "table" and not seen[v] then
        seen[v] = true
        for k, x in pairs(v) do
          walk(k, path .. "[key]")
          walk(x, path .. "." .. tostring(k))
        end
        local mt = getmetatable(v)
        if type(mt) == "table" then walk(mt, path .. "<mt>") end
      end
    end
    walk(c, "client")
    walk(job, "job")
    c:close()
  end)
end)

describe("TLS", function()
  local server
  setup(function()
    server = nginx.start([[
  server {
    listen 127.0.0.1:PORT ssl;
    ssl_certificate PREFIX/cert.pem;
    ssl_certificate_key PREFIX/key.pem;
    location = /api/v1/chat/credit {
      default_type application/json; return 200 '{"code":200,"msg":"success","data":42}';
    }
  }
]])
  end)
  teardown(function() server.stop() end)

  local function client(opts)
    local o = { base_url = "https://127.0.0.1:" .. server.port, api_key = "k", rate = false, retries = 0 }
    for k, v in pairs(opts or {}) do o[k] = v end
    return modkie.new(o)
  end

  it("verifies the certificate: an unknown CA is a network error", function()
    local c = client()
    local n, err = c:credits()
    assert.is_nil(n)
    assert.equal("network", err.kind)
    assert.matches("certificate", err.message)
    c:close()
  end)

  it("works with the CA given by ca_file", function()
    local c = client({ ca_file = server.cert })
    assert.equal(42, assert(c:credits()))
    c:close()
  end)

  it("verifies the host name too: the right CA, the wrong name, a network error", function()
    -- the certificate names IP 127.0.0.1 only
    local c = client({ ca_file = server.cert, base_url = "https://localhost:" .. server.port })
    local n, err = c:credits()
    assert.is_nil(n)
    assert.equal("network", err.kind)
    c:close()
  end)

  it("a ca_file that is not a CA bundle is a network error, never a fallback to no checks", function()
    local c = client({ ca_file = "/dev/null" })
    local n, err = c:credits()
    assert.is_nil(n)
    assert.equal("network", err.kind)
    c:close()
  end)

  it("refuses plain http to another host unless allow_insecure", function()
    for _, url in ipairs({ "http://gateway.example.com", "HTTP://GATEWAY.EXAMPLE.COM/", "http://10.0.0.7:8089",
      "http://localhost.example.com", "http://[2001:db8::1]:80" }) do
      local ok, msg = pcall(modkie.new, { base_url = url, api_key = "k" })
      assert.is_false(ok, url)
      assert.matches("plain http to another host", msg)
      assert.is_table(modkie.new{ base_url = url, api_key = "k", allow_insecure = true })
    end
    for _, url in ipairs({ "http://127.0.0.1:8089", "http://localhost:8089", "http://[::1]:8089",
      "http://127.0.0.2" }) do
      assert.is_table(modkie.new{ base_url = url, api_key = "k" }, url)
    end
    -- a loopback address as the user name of another host: refused, allow_insecure or not
    for _, insecure in ipairs({ false, true }) do
      assert.is_false(pcall(modkie.new, { base_url = "http://127.0.0.1@gateway.example.com", api_key = "k",
        allow_insecure = insecure }))
    end
  end)

  it("refuses it from MODKIE_BASE_URL in the CLI as well", function()
    local r = H.cli({ "credits" }, { MODKIE_API_KEY = "k", MODKIE_BASE_URL = "http://gateway.example.com" })
    assert.are_not.equal(0, r.code)
    assert.matches("plain http to another host", r.err)
  end)

  -- client.lua's check_base_url takes any host name that starts with "127."
  -- for a loopback address (hostname:match("^127%.")): a DNS name such as
  -- 127.0.0.1.nip.io or 127.attacker.example passes, and can resolve anywhere.
  it("regression: a host name that only starts with 127. passes as loopback", function()
    for _, url in ipairs({ "http://127.0.0.1.nip.io", "http://127.attacker.example",
      "http://127.0.0.1%2eexample.com" }) do
      local ok = pcall(modkie.new, { base_url = url, api_key = "k" })
      assert(not ok, url .. " was accepted as this machine")
    end
  end)
end)

describe("redirects", function()
  local gateway, other, key
  setup(function()
    key = "sk-redirect-" .. unique()
    local logging = [[
  map $http_authorization $sent_auth { "" no; default yes; }
  log_format who "$uri auth=$sent_auth";
]]
    other = nginx.start(logging .. [[
  server {
    listen 127.0.0.1:PORT;
    access_log PREFIX/access.log who;
    location / { default_type application/octet-stream; return 200 "other origin $uri"; }
  }
]])
    local there = "http://127.0.0.1:" .. other.port
    local here = "http://127.0.0.1:GATEWAY_PORT"
    local record = ('{"code":200,"msg":"success","data":{"taskId":"task_r","state":"success","resultJson":'
      .. '{"resultUrls":["%s/files/a.mp4","%s/same/b.mp4","%s/direct/c.mp4"]}}}'):format(here, here, there)
    local loop = '{"code":200,"msg":"success","data":{"taskId":"task_loop","state":"success","resultJson":'
      .. '{"resultUrls":["' .. here .. '/loop/x.mp4"]}}}'
    local config = (logging .. [[
  server {
    listen 127.0.0.1:PORT;
    access_log PREFIX/access.log who;
    location = /api/v1/chat/credit { return 302 THERE/api/v1/chat/credit; }
    location = /api/v1/jobs/createTask { return 307 THERE/api/v1/jobs/createTask; }
    location = /api/v1/common/download-url { return 301 THERE/api/v1/common/download-url; }
    location = /api/v1/jobs/recordInfo {
      default_type application/json;
      if ($arg_taskId = "task_moved") { return 302 THERE/api/v1/jobs/recordInfo?taskId=task_moved; }
      if ($arg_taskId = "task_loop") { return 200 'LOOP'; }
      return 200 'RECORD';
    }
    location /files/ { return 302 THERE$uri; }
    location /same/ { return 302 /here$uri; }
    location /here/ { default_type application/octet-stream; return 200 "gateway origin $uri"; }
    location /loop/ { return 302 /loop$uri; }
  }
]]):gsub("THERE", there):gsub("RECORD", record):gsub("LOOP", loop)
    gateway = nginx.start((config:gsub("GATEWAY_PORT", "PORT")))
  end)
  teardown(function()
    gateway.stop()
    other.stop()
  end)

  local function client()
    return modkie.new{ base_url = "http://127.0.0.1:" .. gateway.port, api_key = key, rate = false, retries = 0,
      poll_interval = 0.05 }
  end
  local function log_of(server, n) return server.lines("access.log", n) end

  it("are not followed by API calls: the call fails and the other origin gets nothing", function()
    local c = client()
    local n, err = c:credits()
    assert.is_nil(n)
    assert.equal("protocol", err.kind)
    assert.equal(302, err.status)
    local rec, rerr = c:record("task_moved")
    assert.is_nil(rec)
    assert.equal(302, rerr.status)
    local res, jerr = assert(c:job("task_moved")):await(10)
    assert.is_nil(res)
    assert.equal(302, jerr.status)
    local url, uerr = c:download_url("https://cdn.example/a.mp4")
    assert.is_nil(url)
    assert.equal(301, uerr.status)
    local _, serr = assert(c:submit(KLING, { prompt = "moved" })):await(10)
    assert.equal(307, serr.status)
    c:close()
    assert.equal(5, #log_of(gateway, 5))
    assert.same({}, log_of(other))
  end)

  it("are followed by downloads, but the key goes to the gateway's own origin only", function()
    local c = client()
    local dir = helper.tmpdir()
    finally(function() c:close(); helper.rmdir(dir) end)
    local paths = assert(assert(c:job("task_r")):download(dir))
    assert.same({ "task_r-1.mp4", "task_r-2.mp4", "task_r-3.mp4" }, ls(dir))
    assert.equal("other origin /files/a.mp4", helper.read_file(paths[1]))
    assert.equal("gateway origin /here/same/b.mp4", helper.read_file(paths[2]))
    assert.equal("other origin /direct/c.mp4", helper.read_file(paths[3]))
    local g, o = table.concat(log_of(gateway, 5), "\n"), log_of(other, 2)
    assert.matches("/files/a.mp4 auth=yes", g, 1, true) -- the gateway's origin: the key is its business
    table.sort(o)
    assert.same({ "/direct/c.mp4 auth=no", "/files/a.mp4 auth=no" }, o)
  end)

  it("stop after 5 hops; nothing is left on disk", function()
    local c = client()
    local dir = helper.tmpdir()
    finally(function() c:close(); helper.rmdir(dir) end)
    local paths, err = assert(c:job("task_loop")):download(dir)
    assert.is_nil(paths)
    assert.is_table(err)
    assert.same({}, ls(dir))
  end)
end)

describe("output file names", function()
  local server, root
  setup(function()
    local base = "http://127.0.0.1:FILES_PORT"
    local urls = {
      base .. "/files/../../etc/passwd",
      base .. "/files/x%2Fy%2F..%2F..%2Fz.sh",
      base .. "/files/%2e%2e%2fpasswd",
      base .. "/files/a.mp4?name=../../../x.sh",
      base .. "/files/.bashrc",
      base .. "/files/v.mp4#/../../y",
      base .. "/files/clip.verylongextension",
    }
    local list = ('"' .. table.concat(urls, '","') .. '"')
    local function record(id)
      return '{"code":200,"msg":"success","data":{' .. (id and '"taskId":"' .. id .. '",' or "")
        .. '"state":"success","resultJson":{"resultUrls":[' .. list .. ']}}}'
    end
    server = nginx.start(([[
  server {
    listen 127.0.0.1:PORT;
    location = /api/v1/jobs/createTask {
      default_type application/json;
      return 200 '{"code":200,"msg":"success","data":{"taskId":"../../escape/.."}}';
    }
    location = /api/v1/jobs/recordInfo {
      default_type application/json;
      if ($arg_taskId = "..%2F..%2Fadopted") { return 200 'ADOPTED'; }
      return 200 'EVIL';
    }
    location / { default_type application/octet-stream; return 200 "bytes of $request_uri"; }
  }
]]):gsub("ADOPTED", function() return record(nil) end)
      :gsub("EVIL", function() return record("../../escape/..") end)
      :gsub("FILES_PORT", "PORT"))
  end)
  teardown(function() server.stop() end)
  before_each(function() root = helper.tmpdir() end)
  after_each(function() helper.rmdir(root) end)

  -- the outputs of the job `task_id` adopts, or of one submitted when nil
  local function check(task_id)
    local c = modkie.new{ base_url = "http://127.0.0.1:" .. server.port, api_key = "k", rate = false, retries = 0 }
    finally(function() c:close() end)
    local dir = root .. "/sub/out"
    local job = task_id and c:job(task_id) or c:submit("acme/x", { prompt = "x" })
    local paths = assert(assert(job):download(dir))
    assert.equal(7, #paths)
    local names = ls(dir)
    assert.equal(7, #names)
    for i, p in ipairs(paths) do
      local name = p:sub(#dir + 2)
      assert.equal(dir .. "/" .. name, p)
      assert.matches("^[%w_%-][%w_%-%.]*$", name) -- no slash, no leading dot: never "." or ".."
      assert.truthy(helper.read_file(p):find("^bytes of "), i)
    end
    assert.same({ "sub" }, ls(root))
    assert.same({ "out" }, ls(root .. "/sub"))
    return names
  end

  it("come from the task id made safe, never from the URL: a hostile id from createTask and its record", function()
    local names = check(nil)
    for _, name in ipairs(names) do assert.matches("^_[%w_.]*escape[%w_.]*%-%d%.%w+$", name) end
  end)

  it("stay inside the folder when the adopted task id itself has / and ..", function()
    check("../../adopted")
  end)

  it("a name function that returns a path is refused", function()
    local c = modkie.new{ base_url = "http://127.0.0.1:" .. server.port, api_key = "k", rate = false, retries = 0 }
    finally(function() c:close() end)
    local job = assert(c:submit("acme/x", { prompt = "x" }))
    for _, bad in ipairs({ "../x", "a/b", "..", ".", "" }) do
      assert.has_error(function() job:download(root .. "/named", { name = function() return bad end }) end)
    end
    assert.same({}, files_under(root))
  end)
end)

describe("the download size cap (max_download)", function()
  local m, s, dir
  setup(function()
    m = helper.mock({ "--job-seconds", "0" })
    s = canned.start()
  end)
  teardown(function()
    m.stop()
    s.stop()
  end)
  before_each(function() dir = helper.tmpdir() .. "/out" end)
  after_each(function() helper.rmdir(dir:gsub("/out$", "")) end)

  it("fails an oversized file with kind protocol, leaving no file and no .part", function()
    local c = helper.client(m, { max_download = 100000, retries = 0 })
    finally(function() c:close() end)
    local job = assert(c:submit(KLING, { prompt = "big file [size=300000] [outputs=2]" }))
    local paths, err = job:download(dir)
    assert.is_nil(paths)
    assert.equal("protocol", err.kind)
    assert.matches("size cap", err.message)
    assert.same({}, ls(dir))
  end)

  it("lets a file at or under the cap through whole; 0 means no cap", function()
    for _, cap in ipairs({ 100000, 0 }) do
      local c = helper.client(m, { max_download = cap })
      local job = assert(c:submit(KLING, { prompt = "exact file [size=100000] " .. cap }))
      local paths = assert(job:download(dir .. cap))
      assert.equal(100000, #helper.read_file(paths[1]))
      assert.same({ (paths[1]:match("[^/]+$")) }, ls(dir .. cap))
      c:close()
      helper.rmdir(dir .. cap)
    end
  end)

  it("holds when the server sends no Content-Length (a stream cut at the cap)", function()
    s.answer("recordInfo", '{"code":200,"msg":"success","data":{"taskId":"task_s","state":"success",'
      .. '"resultJson":{"resultUrls":["' .. s.url .. '/files/stream.bin"]}}}')
    s.answer("stream.bin", ("z"):rep(300000), 200, "application/octet-stream", true)
    local c = modkie.new{ base_url = s.url, api_key = "k", rate = false, retries = 0, max_download = 100000 }
    finally(function() c:close() end)
    local paths, err = assert(c:job("task_s")):download(dir)
    assert.is_nil(paths)
    assert.equal("protocol", err.kind)
    assert.same({}, ls(dir))
    -- the same stream under a larger cap arrives whole
    local big = modkie.new{ base_url = s.url, api_key = "k", rate = false, retries = 0, max_download = 400000 }
    finally(function() big:close() end)
    paths = assert(assert(big:job("task_s")):download(dir))
    assert.equal(300000, #helper.read_file(paths[1]))
  end)

  it("refuses a cap that is not a byte count", function()
    assert.has_error(function() modkie.new{ max_download = -1 } end)
    assert.has_error(function() modkie.new{ max_download = "1MB" } end)
  end)
end)

-- Issue 9: each of these failed before its fix.
describe("hardening of issue 9", function()
  local s, root
  setup(function() s = canned.start() end)
  teardown(function() s.stop() end)
  before_each(function() root = helper.tmpdir() end)
  after_each(function() helper.rmdir(root) end)

  local function client(opts)
    local o = { base_url = s.url, api_key = "sk-echo-" .. unique() .. "-Zq8", rate = false, retries = 0,
      poll_interval = 0.05 }
    for k, v in pairs(opts or {}) do o[k] = v end
    return modkie.new(o), o.api_key
  end

  local function success_record(id, urls)
    return ('{"code":200,"msg":"success","data":{"taskId":"%s","state":"success","resultJson":'
      .. '{"resultUrls":["%s"]}}}'):format(id, table.concat(urls, '","'))
  end

  it("regression: http://127.0.0.256 is a host name, not this machine: plain http to it is refused", function()
    for _, url in ipairs({ "http://127.0.0.256:8089", "http://127.0.0.1.:8089", "http://127.0.0.1x",
      "http://[::ffff:127.0.0.1]:8089", "http://127.0.0.0.1" }) do
      local ok, msg = pcall(modkie.new, { base_url = url, api_key = "k" })
      assert.is_false(ok, url .. " was taken for this machine")
      assert.matches("plain http to another host", msg)
    end
    -- what libcurl reads as a loopback address is one: 127.1 is 127.0.0.1
    for _, url in ipairs({ "http://127.1:8089", "HTTP://LOCALHOST:8089", "http://127.255.255.254" }) do
      assert.is_table(modkie.new{ base_url = url, api_key = "k" }, url)
    end
    local o = core_origin("http://LocalHost:8089/x")
    assert.same({ scheme = "http", host = "localhost", port = 8089, loopback = true,
      origin = "http://localhost:8089" }, o)
  end)

  it("regression: the origin is normalised once: HTTPS:// without a port is port 443, not 80", function()
    assert.equal("https://gw.example:443", core_origin("HTTPS://GW.Example/api").origin)
    assert.equal("https://gw.example:443", core_origin("https://gw.example:443").origin)
    assert.equal("http://gw.example:80", core_origin("Http://gw.example").origin)
    assert.equal("http://[::1]:80", core_origin("http://[0:0:0:0:0:0:0:1]").origin)
    -- a file on the gateway's origin gets the key whatever the case of base_url
    local c = client({ base_url = s.url:gsub("^http", "HTTP") })
    s.answer("recordInfo", success_record("task_case", { s.url .. "/files/case.mp4" }))
    s.answer("case.mp4", "bytes")
    assert(assert(c:job("task_case")):download(root))
    c:close()
    local reqs = s.requests()
    assert.equal("GET /files/case.mp4 auth=yes", reqs[#reqs])
  end)

  it("regression: a download never writes through a symbolic link planted under its name or .part name", function()
    local victim = root .. "/victim.txt"
    helper.write_file(victim, "precious")
    local dir = root .. "/shared"
    assert(os.execute("mkdir -p " .. q(dir)))
    for _, name in ipairs({ "task_link-1.mp4", "task_link-1.mp4.part" }) do
      assert(os.execute(("ln -s %s %s"):format(q(victim), q(dir .. "/" .. name))))
    end
    s.answer("recordInfo", success_record("task_link", { s.url .. "/files/link.mp4" }))
    s.answer("link.mp4", "downloaded bytes")
    local c = client()
    local paths = assert(assert(c:job("task_link")):download(dir))
    c:close()
    assert.equal("precious", helper.read_file(victim))
    assert.equal("downloaded bytes", helper.read_file(paths[1]))
    assert.is_false(require("modkie.core").symlink(paths[1]), "the link itself was renamed into place")
    assert.same({ "task_link-1.mp4" }, ls(dir)) -- the planted links are gone, their target untouched
  end)

  it("regression: a batch journal that is a symbolic link is refused, and its target untouched", function()
    local victim = root .. "/victim.txt"
    helper.write_file(victim, "precious\n")
    local link = root .. "/batch.journal"
    assert(os.execute(("ln -s %s %s"):format(q(victim), q(link))))
    local c = client()
    local report, err = modkie.batch.run{ client = c, model = KLING, rows = { { prompt = "row" } },
      template = "{{prompt}}", journal = link }
    c:close()
    assert.is_nil(report)
    assert.equal("config", err.kind)
    assert.matches("symbolic link", err.message)
    assert.equal("precious\n", helper.read_file(victim))
    -- the journal module itself
    local j, jerr = require("modkie.batch.journal").open(link)
    assert.is_nil(j)
    assert.matches("symbolic link", jerr.message)
    assert.equal("precious\n", helper.read_file(victim))
  end)

  it("regression: a createTask answered 429 after the job's deadline is not retried (was a billed orphan)", function()
    s.answer("createTask", '{"code":429,"msg":"rate limited"}', 200, nil, nil, { delay = 1.2 })
    local c = client({ retries = 3 })
    local job = assert(c:submit(KLING, { prompt = "late" }, { deadline = 0.5 }))
    local res, err = job:await(10)
    assert.is_nil(res)
    assert.equal("deadline", err.kind)
    assert.matches("no task was created", err.message)
    assert.is_true(err.retryable)
    c:step(1.5) -- a retry would go out within this
    c:close()
    local creates = 0
    for _, r in ipairs(s.requests()) do if r:find("createTask", 1, true) then creates = creates + 1 end end
    assert.equal(1, creates)
  end)

  it("regression: the key echoed in server text is redacted before it leaves the engine", function()
    local c, key = client()
    local echoed = "invalid header Authorization: Bearer " .. key .. " (key " .. key .. ")"
    s.answer("credit", ('{"code":401,"msg":"%s"}'):format(echoed), 401)
    s.answer("recordInfo", ('{"code":200,"msg":"success","data":{"taskId":"task_echo","state":"fail",'
      .. '"failCode":"500","failMsg":"upstream said: bearer %s","param":"{\\"k\\":\\"%s\\"}"}}'):format(key, key))
    s.answer("createTask", ('{"code":500,"msg":"proxy: Authorization=Bearer %s"}'):format(key))
    local logs = {}
    c._log = function(level, event, fields)
      local parts = { level, event }
      for k, v in pairs(fields) do parts[#parts + 1] = k .. "=" .. tostring(v) end
      logs[#logs + 1] = table.concat(parts, " ")
    end
    local seen = {}
    local _, e1 = c:credits()
    local _, e2 = assert(c:job("task_echo")):await(10)
    local raw = assert(c:record("task_echo"))
    local _, e3 = assert(c:submit(KLING, { prompt = "echo" })):await(10)
    for _, e in ipairs({ e1, e2, e3 }) do
      seen[#seen + 1] = tostring(e)
      for k, v in pairs(e) do seen[#seen + 1] = tostring(k) .. "=" .. tostring(v) end
    end
    seen[#seen + 1] = raw.failMsg
    seen[#seen + 1] = raw.param
    for _, l in ipairs(logs) do seen[#seen + 1] = l end
    c:close()
    local all = table.concat(seen, "\n")
    assert.equal("auth", e1.kind)
    assert.equal("failed", e2.kind)
    assert.matches("[redacted]", all, 1, true)
    assert(not all:find(key, 1, true), "the key is in: " .. all)
    assert(not all:find(key:sub(9), 1, true), "part of the key is in: " .. all)
  end)

  it("regression: the key echoed upper-cased, percent-encoded or inside base64 is redacted too", function()
    local key = "sk-echo-" .. unique() .. "-Zq8+/="
    local c = client({ api_key = key })
    local function percent(v, hex)
      return (v:gsub("[^%w%-._~]", function(ch) return ("%%" .. hex):format(ch:byte()) end))
    end
    local basic = require("mime").b64("user:" .. key) -- an echoed Basic header: the key at offset 5
    local forms = { key:upper(), key:lower(), percent(key, "%02X"), percent(key, "%02x"), basic }
    -- a URL echoing the Authorization value: "Bearer%20" and the key percent-encoded
    s.answer("credit", ('{"code":401,"msg":"key %s refused; GET /x?auth=Bearer%%20%s"}'):format(forms[1],
      forms[3]), 401)
    s.answer("createTask", ('{"code":500,"msg":"proxy: GET https://up.example/v1?key=%s&k2=%s"}'):format(forms[3],
      forms[4]), 500)
    s.answer("recordInfo", ('{"code":200,"msg":"success","data":{"taskId":"task_forms","state":"fail",'
      .. '"failCode":"500","failMsg":"upstream saw Authorization: Basic %s (%s)"}}'):format(basic, forms[2]))
    local _, e1 = c:credits()
    local _, e2 = assert(c:job("task_forms")):await(10)
    local raw = assert(c:record("task_forms"))
    local _, e3 = assert(c:submit(KLING, { prompt = "echo" })):await(10)
    c:close()
    local seen = { raw.failMsg }
    for _, e in ipairs({ e1, e2, e3 }) do seen[#seen + 1] = tostring(e) end
    local all = table.concat(seen, "\n")
    assert.equal("auth", e1.kind)
    assert.equal("failed", e2.kind)
    assert.matches("[redacted]", all, 1, true)
    for _, f in ipairs(forms) do
      assert(not all:find(f, 1, true), "a form of the key is in: " .. all)
      assert(not all:find(f:sub(-9), 1, true), "the end of a form of the key is in: " .. all)
    end
    assert(not all:find(basic:sub(9, -5), 1, true), "the middle of the key's base64 is in: " .. all)
  end)

  it("regression: a download from a host that trickles bytes is cut (was: no minimum speed, a hang)", function()
    s.answer("recordInfo", success_record("task_slow", { s.url .. "/files/slow.bin" }))
    s.answer("slow.bin", ("s"):rep(4000), 200, "application/octet-stream", nil, { trickle = 50 })
    local c = client({ timeout = 1 })
    local started = helper.now()
    local paths, err = assert(c:job("task_slow")):download(root, { timeout = 20 })
    c:close()
    assert.is_nil(paths)
    assert.equal("network", err.kind)
    assert.matches("too slow", err.message)
    assert.is_true(helper.now() - started < 15)
    assert.same({}, ls(root))
  end)

  it("regression: the CLI shows control characters from the gateway escaped, never raw", function()
    local evil = "\27]0;pwned\7\27[2J\27[1A"
    s.answer("recordInfo", ('{"code":200,"msg":"success","data":{"taskId":"task_esc","state":"%s",'
      .. '"failCode":"E\\u001b[31m","failMsg":"%s fake: job succeeded\\r\\u009b2K","model":"m\\u0007"}}')
      :format("generating\\u001b]0;x\\u0007", "\\u001b[2J"))
    s.answer("credit", ('{"code":402,"msg":"%s"}'):format("no credits \\u001b[32mOK\\u001b[0m"))
    local env = { MODKIE_API_KEY = "k", MODKIE_BASE_URL = s.url }
    local outs = {}
    for _, argv in ipairs({ { "status", "task_esc" }, { "status", "task_esc", "--json" }, { "credits" },
      { "credits", "--json" }, { "wait", "task_esc", "--wait-timeout", "0.3", "--poll-interval", "0.05" } }) do
      local r = H.cli(argv, env)
      outs[#outs + 1] = r.out .. r.err
    end
    s.answer("recordInfo", ('{"code":200,"msg":"success","data":{"taskId":"task_esc","state":"fail",'
      .. '"failMsg":"%s"}}'):format(evil:gsub("\27", "\\u001b"):gsub("\7", "\\u0007")))
    local r = H.cli({ "wait", "task_esc", "--poll-interval", "0.05" }, env)
    outs[#outs + 1] = r.out .. r.err
    local all = table.concat(outs, "\n")
    assert.matches("generating", all, 1, true)
    assert.matches("\\x1B", all, 1, true)
    assert(not all:find("[%z\1-\8\11-\31\127]"), "a raw control character reached the terminal")
    assert(not all:find("\194[\128-\159]"), "a raw C1 control reached the terminal")
  end)
end)

-- A client inherited across fork(): the child must not speak on (or shut
-- down) the parent's connections. spec/support/fork.c gives Lua a fork.
describe("a forked child", function()
  local server, fork, dir
  setup(function()
    dir = helper.tmpdir()
    local inc = jit and "/usr/include/luajit-2.1" or ("/usr/include/lua" .. _VERSION:match("%d+%.%d+"))
    -- the compiler without the sanitizers `make asan` preloads into this process
    assert(os.execute(("env -u LD_PRELOAD cc -shared -fPIC -I%s spec/support/fork.c -o %s/fork.so"):format(inc, dir)),
      "could not build spec/support/fork.c")
    fork = assert(package.loadlib(dir .. "/fork.so", "luaopen_fork"))()
    server = nginx.start([[
  log_format conn "$connection $connection_requests";
  server {
    listen 127.0.0.1:PORT ssl http2;
    ssl_certificate PREFIX/cert.pem;
    ssl_certificate_key PREFIX/key.pem;
    keepalive_timeout 60s;
    access_log PREFIX/access.log conn;
    location = /api/v1/chat/credit {
      default_type application/json; return 200 '{"code":200,"msg":"success","data":42}';
    }
  }
]])
  end)
  teardown(function()
    if server then server.stop() end
    helper.rmdir(dir)
  end)

  it("regression: closing a client inherited from the parent leaves the parent's connection alone; step refuses",
    function()
      local c = modkie.new{ base_url = "https://127.0.0.1:" .. server.port, api_key = "k", ca_file = server.cert,
        rate = false, retries = 0 }
      assert.equal(42, assert(c:credits())) -- opens the TLS connection the child inherits
      local pid = fork.fork()
      if pid == 0 then
        local ok, err = pcall(c.step, c, 0)
        local refused = not ok and tostring(err):find("before a fork", 1, true)
        c:close()
        collectgarbage()
        fork.exit(refused and 0 or 3)
      end
      assert.equal(0, fork.wait(pid), "the child's step was not refused")
      assert.equal(42, assert(c:credits()))
      c:close()
      local lines = server.lines("access.log", 2)
      assert.equal(2, #lines)
      local first, second = lines[1]:match("^(%d+)"), lines[2]:match("^(%d+)")
      assert.equal(first, second, "the parent's second request needed a new connection: " .. table.concat(lines, "; "))
    end)
end)

-- HTTPS with certificate checks, and HTTP/2 multiplexing when the server offers it.
local modkie = require "modkie"
local nginx = require "spec.nginx"

-- the record of the task asked for (a record of another task is refused)
local RECORD = [['{"code":200,"msg":"success","data":{"taskId":"$arg_taskId","state":"success",]]
  .. [["resultJson":"{\\"resultUrls\\":[\\"https://cdn.example/v.mp4\\"]}"}}']] -- nginx unescapes \\ once

describe("over HTTPS", function()
  local server
  setup(function()
    server = nginx.start([[
  log_format conns "$connection $server_protocol";
  server {
    listen 127.0.0.1:PORT ssl http2;
    ssl_certificate PREFIX/cert.pem;
    ssl_certificate_key PREFIX/key.pem;
    access_log PREFIX/access.log conns;
    location = /api/v1/jobs/recordInfo { default_type application/json; return 200 ]] .. RECORD .. [[; }
    location = /api/v1/chat/credit {
      default_type application/json; return 200 '{"code":200,"msg":"success","data":7}';
    }
  }
]])
  end)
  teardown(function() server.stop() end)

  local function client(opts)
    local o = { base_url = "https://127.0.0.1:" .. server.port, api_key = "k", rate = false, ca_file = server.cert }
    for k, v in pairs(opts or {}) do
      if v == false then o[k] = nil else o[k] = v end
    end
    return modkie.new(o)
  end

  it("multiplexes many exchanges over one HTTP/2 connection", function()
    local c = client()
    local jobs = {}
    for i = 1, 40 do jobs[i] = assert(c:job("task_" .. i)) end
    local results, errs = modkie.await_all(jobs, 20)
    for i = 1, 40 do assert.equal("success", results[i] and results[i].state, tostring(errs[i])) end
    c:run(function()
      for _ = 1, 10 do c:go(function() assert.equal(7, assert(c:credits())) end) end
    end)
    c:close()
    local connections, lines = {}, 0
    for _, line in ipairs(server.lines("access.log", 50)) do
      local conn, proto = line:match("^(%d+) (%S+)$")
      assert.equal("HTTP/2.0", proto)
      connections[conn] = true
      lines = lines + 1
    end
    local n = 0
    for _ in pairs(connections) do n = n + 1 end
    assert.equal(50, lines)
    assert.equal(1, n)
  end)

  it("verifies the certificate: an unknown CA is a network error, not a silent success", function()
    local c = client({ ca_file = false, retries = 0 })
    local n, err = c:credits()
    assert.is_nil(n)
    assert.equal("network", err.kind)
    assert.matches("certificate", err.message)
    c:close()
  end)
end)

-- The conformance corpus: every answer the gateway's public documentation
-- shows (spec/conformance/*.json, verbatim; index.json names the page each
-- comes from), run through the paths a user meets it on, with the reading
-- the user should get:
--   poll          a client polling the emulator, which replays the answer as
--                 the recordInfo of the task (job:await)
--   parse         modkie.webhook.parse (a callback body)
--   credits       client:credits() answered with it
--   download_url  client:download_url() answered with it
--   create        client:submit() answered with it
--   upload        client:upload() answered with it (at the HTTP status the docs file it under)
--   emulator      the emulator's own answer to that upload endpoint has every field the docs show
-- The poll and parse paths go through one reader: the same body must read
-- the same way on both. A new shape: add its file and index entry, and its
-- reading below.
local cjson = require "cjson"
local helper = require "spec.helper"
local ltn12 = require "ltn12"
local socket_http = require "socket.http"
local webhook = require "modkie.webhook"

local DIR = "spec/conformance/"
local NONE = {} -- a field the reading must not have

local function ok(fields) return { result = fields } end
local function running(server_state, progress) return { running = server_state, progress = progress } end
local function fails(kind, code, message, retryable, extra)
  local e = { kind = kind, code = code, message = message, retryable = retryable }
  for k, v in pairs(extra or {}) do e[k] = v end
  return { error = e }
end

local TASK_DETAIL = {
  id = "task_12345678", model = "grok-imagine/text-to-image",
  urls = { "https://example.com/generated-content.jpg" },
  output = { resultUrls = { "https://example.com/generated-content.jpg" } },
  created_at = 1698765400, completed_at = 1698765432, updated_at = 1698765432,
  credits = NONE, progress = NONE,
}
local function with(base, extra)
  local t = {}
  for k, v in pairs(base) do t[k] = v end
  for k, v in pairs(extra) do t[k] = v end
  return t
end

-- The reading a user should get from each answer (errors: message is a
-- substring the message must hold).
local EXPECT = {
  ["kie-get-task-detail-success.json"] = ok(with(TASK_DETAIL, { cost_time = NONE })),
  ["kie-get-task-detail-openapi-success.json"] = ok(with(TASK_DETAIL, { cost_time = 15 })), -- 15000 ms
  ["kie-get-task-detail-queuing.json"] = running("queuing"),
  ["kie-get-task-detail-generating.json"] = running("generating", 45),
  ["kie-get-task-detail-422-record-null.json"] =
    fails("not_found", 422, "recordInfo is null", false, { task_id = "task_conformance" }),
  ["kie-get-task-detail-400.json"] = fails("validation", 400, "taskId parameter is required", false),
  ["kie-get-task-detail-401.json"] = fails("auth", 401, "Unauthorized", false),
  ["kie-getting-started-401.json"] = fails("auth", 401, "You do not have access permissions", false),
  ["kie-get-task-detail-404.json"] = fails("not_found", 404, "Task not found", false),
  ["kie-get-task-detail-429.json"] = fails("rate_limit", 429, "Rate limit exceeded", true),
  ["kie-get-task-detail-500.json"] = fails("server", 500, "An unexpected error occurred", true),
  ["kie-code-402.json"] = fails("credits", 402, "Insufficient Credits", false),
  ["kie-code-408.json"] = fails("server", 408, "Upstream is currently experiencing service issues", true),
  -- on a poll, a 422 means the record is not shown (see README): polled
  -- through record_grace, then not_found
  ["kie-code-422.json"] = fails("validation", 422, "Validation Error", false,
    { poll = { kind = "not_found", code = 422, message = "Validation Error", task_id = "task_conformance" } }),
  ["kie-code-455.json"] = fails("server", 455, "undergoing maintenance", true),
  ["kie-code-501.json"] = fails("failed", 501, "Generation Failed", true),
  ["kie-code-505.json"] = fails("server", 505, "Feature Disabled", false),
  ["kie-sora-2-text-to-video-success.json"] = ok({
    id = "task_12345678", model = "sora-2-text-to-video",
    urls = { "https://example.com/generated-image.jpg" }, -- not the watermarked copy
    output = { resultUrls = { "https://example.com/generated-image.jpg" },
      resultWaterMarkUrls = { "https://example.com/generated-watermark-image.jpg" } },
  }),
  ["kie-qwen-image-edit-callback-success.json"] = ok({
    id = "e989621f54392584b05867f87b160672", model = "qwen/image-edit",
    urls = { "https://example.com/generated-image.jpg" }, credits = 100,
    cost_time = 8, created_at = 1755599634, completed_at = 1755599644, updated_at = 1755599644,
  }),
  ["kie-qwen-image-edit-callback-failure.json"] = fails("failed", 500, "Internal server error", true,
    { task_id = "bd3a37c523149e4adf45a3ddb5faf1a8", server_state = "fail" }),
  ["kie-elevenlabs-audio-isolation-callback-success.json"] = ok({
    id = "task_example_music_webhook_001", model = "elevenlabs/audio-isolation",
    urls = { "https://example.com/generated-audio.mp3" }, credits = 1.23,
    cost_time = 12, created_at = 1234560000, completed_at = 1234567890, -- times in seconds here
  }),
  ["kie-elevenlabs-audio-isolation-callback-failure.json"] = fails("failed", "GENERATION_FAILED",
    "The generation task failed.", true, { task_id = "task_example_music_webhook_001", server_state = "fail" }),
  ["kie-elevenlabs-speech-to-text-waiting.json"] = running("waiting"),
  ["kie-sora-2-characters-pro-callback-success.json"] = fails("protocol", nil, nil, nil),
  ["kie-sora-2-characters-pro-callback-failure.json"] = fails("protocol", nil, nil, nil),
  ["kie-veo3-callback-success.json"] = ok({ id = "veo_task_abcdef123456", urls = { "http://example.com/video1.mp4" } }),
  ["veo3api-callback-result-urls-string.json"] =
    ok({ id = "veo_task_abcdef123456", urls = { "http://example.com/video1.mp4" } }),
  ["kie-veo3-4k-callback-failure.json"] = fails("failed", 500, "The 4K version of this video is unavailable", true,
    { task_id = "veo_task_abcdef123456" }),
  ["kie-runway-callback-success.json"] =
    ok({ id = "ee603959-debb-48d1-98c4-a6d1c717eba6", urls = { "https://file.com/k/xxxxxxx.mp4" } }),
  ["kie-runway-callback-failure.json"] = fails("failed", 400, "Inappropriate content detected", true,
    { task_id = "ee603959-debb-48d1-98c4-a6d1c717eba6" }),
  ["kie-suno-callback-complete.json"] =
    ok({ id = "2fac****9f72", urls = { "https://example.cn/****.mp3", "https://example.cn/****.mp3" } }),
  ["kie-flux-kontext-callback-success.json"] = ok({ id = "task12345", urls = { "https://example.com/result.jpg" } }),
  ["kie-flux-kontext-callback-failure.json"] =
    fails("failed", 501, "Image generation task failed", true, { task_id = "task12345" }),
  ["kie-4o-image-callback-success.json"] =
    ok({ id = "task12345", urls = { "https://example.com/result/image1.png" } }),
  -- the per-model APIs' own records (record-detail, record-info): Runway's
  -- state words, or no state but successFlag / status; outputs where each keeps them
  ["kie-runway-record-detail-success.json"] =
    ok({ id = "ee603959-debb-48d1-98c4-a6d1c717eba6", urls = { "https://file.com/k/xxxxxxx.mp4" } }),
  ["kie-runway-record-detail-wait.json"] = running("wait"),
  ["kie-4o-image-record-info-success.json"] = ok({ id = "task12345",
    urls = { "https://example.com/result/image1.png" }, created_at = 1672561200, completed_at = 1672574400,
    progress = 100 }), -- "1.00": a fraction
  ["kie-flux-kontext-record-info-success.json"] = ok({ id = "task12345", urls = { "https://example.com/result.jpg" },
    created_at = 1710930300, completed_at = 1710930600 }), -- 2024-03-20T10:25:00Z, 10:30:00Z
  ["kie-veo3-record-info-success.json"] = ok({ id = "veo_task_abcdef123456",
    urls = { "http://example.com/video1.mp4" }, created_at = NONE, completed_at = NONE }), -- no zone: unknown
  ["kie-suno-record-info-success.json"] = ok({ id = "5c79****be8e", urls = { "https://example.cn/****.mp3" } }),
  ["kie-credit.json"] = { value = 100 },
  ["kie-download-url.json"] = { value = "https://tempfile.1f6cxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxbd98" },
  ["kie-4o-image-download-url.json"] = { value = "https://xxxxxx.xxxxxxxx.r2.cloudflarestorage.com/v/xxxxxxx.png?"
    .. "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20250415T101007Z&X-Amz-SignedHeaders=host&X-Amz-Expires=1200"
    .. "&X-Amz-Credential=2464206aa3e576aa7c035d889be3a84e%2F20250415%2Fapac%2Fs3%2Faws4_request"
    .. "&X-Amz-Signature=122ae8bef09110e620841ab2ef8061c1818e754fc201408a9d1c6847b36fd3df" },
  ["modkie-create-task.json"] = { value = "task_xxx" },
  ["modkie-record-info.json"] = ok({ id = "task_xxx", urls = {}, output = {}, credits = NONE }),
  ["modkie-webhook-task-completed.json"] =
    ok({ id = "task_xxx", model = "google/veo-3-1", urls = {}, output = {}, credits = 120 }),
  -- the file upload API (docs.kie.ai/file-upload-api): client:upload reads the URL, and when it
  -- expires: 24 h after uploadedAt (or uploadTime), or expiresAt when that is sooner; errors by code.
  -- `shape`: the emulator's own answer to that endpoint has every documented field, of the same type.
  ["kie-file-stream-upload-success.json"] = { shape = "/api/file-stream-upload", upload = {
    url = "https://tempfile.redpandaai.co/xxx/images/user-uploads/uploaded-image.png",
    expires_at = 1735819200, size = 154832 } }, -- 2025-01-01T12:00Z + 24 h
  ["kie-file-base64-upload-success.json"] = { shape = "/api/file-base64-upload" },
  ["kie-file-url-upload-success.json"] = { shape = "/api/file-url-upload" },
  ["kie-file-upload-quickstart-success.json"] = { upload = {
    url = "https://kieai.redpandaai.co/download/file_abc123456",
    expires_at = 1737023400, size = 245760 } }, -- uploadTime + 24 h, before its expiresAt (3 days)
  ["kie-file-upload-400-missing-parameter.json"] =
    with(fails("validation", 400, "Missing required parameter: uploadPath", false), { status = 400 }),
  ["kie-file-upload-400-invalid-base64.json"] =
    with(fails("validation", 400, "Base64 decoding failed: Invalid Base64 format", false), { status = 400 }),
  ["kie-file-upload-401.json"] =
    with(fails("auth", 401, "Authentication failed: Invalid API Key", false), { status = 401 }),
  ["kie-file-upload-500.json"] = with(fails("server", 500, "Internal server error", true), { status = 500 }),
}

local index = cjson.decode((assert(helper.read_file(DIR .. "index.json"))))

local function check_result(want, res, err, where)
  assert(res, where .. ": " .. tostring(err))
  assert.equal("success", res.state, where)
  for k, v in pairs(want) do
    if v == NONE then assert.is_nil(res[k], where .. ": " .. k)
    else assert.same(v, res[k], where .. ": " .. k) end
  end
end

local function check_error(want, res, err, where)
  assert.is_nil(res, where)
  assert(err, where .. ": no error")
  assert.equal(want.kind, err.kind, where .. ": " .. tostring(err))
  if want.code ~= nil then assert.equal(want.code, err.code, where .. ": code") end
  if want.message then assert.matches(want.message, err.message, 1, true, where .. ": message") end
  if want.retryable ~= nil then assert.equal(want.retryable, err.retryable, where .. ": retryable") end
  for _, k in ipairs({ "task_id", "server_state" }) do
    if want[k] then assert.equal(want[k], err[k], where .. ": " .. k) end
  end
end

describe("conformance corpus", function()
  local m, c
  setup(function()
    m = helper.mock({ "--job-seconds", "0" })
    c = helper.client(m, { retries = 0, record_grace = 0.2 })
  end)
  teardown(function()
    c:close()
    m.stop()
  end)

  it("has an index entry with a source page and a reading for every file, and a file for every entry", function()
    local listed = {}
    for _, e in ipairs(index) do
      assert.matches("^https://", e.source, 1, false, e.file)
      assert.is_string(e.note)
      assert.is_true(#e.paths > 0, e.file)
      assert.is_string(helper.read_file(DIR .. e.file), e.file)
      assert.is_table(EXPECT[e.file], "no reading for " .. e.file)
      listed[e.file] = true
    end
    for name in pairs(EXPECT) do assert.is_true(listed[name], name .. " is not in the index") end
    local p = io.popen("ls " .. DIR)
    for name in p:lines() do
      if name ~= "index.json" then assert.is_true(listed[name], name .. " is not in the index") end
    end
    p:close()
  end)

  local RECORD_INFO = "/api/v1/jobs/recordInfo"

  -- the task a body is about, for the poll path
  local function task_of(body)
    local ok_, doc = pcall(cjson.decode, body)
    local id = ok_ and type(doc) == "table" and type(doc.data) == "table" and doc.data.taskId
    return type(id) == "string" and id or "task_conformance"
  end

  local PATHS = {}

  function PATHS.poll(want, body, where)
    local id = task_of(body)
    local final = cjson.encode({ code = 200, msg = "success", data = { taskId = id, state = "success",
      resultJson = cjson.encode({ resultUrls = { "https://cdn.example/final.mp4" } }) } })
    m.replay(RECORD_INFO, id, want.running and { body, final } or { body })
    local states = {}
    local pc = helper.client(m, { retries = 0, record_grace = 0.2, log = function(_, event, f)
      if event == "state" then states[#states + 1] = f end
    end })
    local job = pc:job(id)
    local res, err = job:await(20)
    pc:close()
    if want.running then -- it went on polling, saw the state, and took the final record
      assert(res, where .. ": " .. tostring(err))
      assert.equal(want.running, states[1] and states[1].server_state, where)
      assert.equal(want.progress, states[1].progress, where .. ": progress")
      assert.same({ "https://cdn.example/final.mp4" }, res.urls)
    elseif want.result then
      check_result(want.result, res, err, where)
    else
      check_error(want.error.poll or want.error, res, err, where)
    end
  end

  function PATHS.parse(want, body, where)
    local res, err = webhook.parse(body)
    if want.running then
      check_error({ kind = "protocol", server_state = want.running }, res, err, where)
    elseif want.result then
      check_result(want.result, res, err, where)
    else
      check_error(want.error, res, err, where)
    end
    -- a table decoded from the body reads the same
    local decoded = select(2, pcall(cjson.decode, body))
    if type(decoded) == "table" then
      local res2, err2 = webhook.parse(decoded)
      assert.same(res and res.urls, res2 and res2.urls, where)
      assert.same(err and err.kind, err2 and err2.kind, where)
    end
  end

  local function one_off(path, call)
    return function(want, body, where)
      m.replay(path, nil, { body })
      local value, err = call()
      if want.value ~= nil then
        assert.equal(want.value, value, where .. ": " .. tostring(err))
      else
        check_error(want.error, value, err, where)
      end
    end
  end
  PATHS.credits = one_off("/api/v1/chat/credit", function() return c:credits() end)
  PATHS.download_url = one_off("/api/v1/common/download-url",
    function() return c:download_url("https://tempfile.aiquickdraw.com/path/to/image.jpg") end)
  PATHS.create = one_off("/api/v1/jobs/createTask", function()
    local job = assert(c:submit("kling/kling-3-0", { prompt = "conformance" }))
    local id, err = job:accepted(10)
    job:cancel()
    return id, err
  end)

  -- client:upload of a file of the documented size, answered with the body
  -- (at the HTTP status the docs file it under)
  function PATHS.upload(want, body, where)
    local size = want.upload and want.upload.size or 1000
    local path = os.tmpname()
    finally(function() os.remove(path) end)
    helper.write_file(path, ("u"):rep(size))
    m.replay("/api/file-stream-upload", nil, { { status = want.status or 200, body = body } })
    local uc = helper.client(m, { retries = 0 }) -- a client of its own: nothing cached
    local url, expires = uc:upload(path)
    uc:close()
    if want.upload then
      assert.equal(want.upload.url, url, where .. ": " .. tostring(expires))
      assert.equal(want.upload.expires_at, expires, where)
    else
      check_error(want.error, url, expires, where)
    end
  end

  -- A request to the emulator's upload API with a key: status, decoded answer.
  local function upload_request(path, content_type, body)
    local out = {}
    local _, status = socket_http.request{
      url = m.url .. path, method = "POST", sink = ltn12.sink.table(out), source = ltn12.source.string(body),
      headers = { ["content-length"] = #body, ["content-type"] = content_type, authorization = "Bearer k" },
    }
    return status, cjson.decode(table.concat(out))
  end

  local PNG = "\137PNG\r\n\26\n" .. ("p"):rep(64)
  local SHAPE_REQUESTS = {}
  local TINY_PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
    .. "/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg==" -- the docs' example
  for k, v in pairs({
    ["/api/file-stream-upload"] = function()
      local b = "modkie-conformance"
      return "multipart/form-data; boundary=" .. b, table.concat({ "--" .. b,
        'Content-Disposition: form-data; name="uploadPath"', "", "images/user-uploads", "--" .. b,
        'Content-Disposition: form-data; name="file"; filename="a.png"', "Content-Type: image/png", "", PNG,
        "--" .. b .. "--", "" }, "\r\n")
    end,
    ["/api/file-base64-upload"] = function()
      return "application/json", cjson.encode({ uploadPath = "images/base64", base64Data = TINY_PNG })
    end,
    ["/api/file-url-upload"] = function()
      -- a file the emulator holds: one uploaded just before
      local _, up = upload_request("/api/file-base64-upload", SHAPE_REQUESTS["/api/file-base64-upload"]())
      return "application/json", cjson.encode({ fileUrl = up.data.downloadUrl, uploadPath = "images/downloaded" })
    end,
  }) do SHAPE_REQUESTS[k] = v end

  -- the emulator's answer to the documented request has every documented
  -- field, with the same JSON type
  function PATHS.emulator(want, body, where)
    m.request("POST", "/__mock/reset") -- no replay in the way
    local doc = cjson.decode(body)
    local status, got = upload_request(want.shape, SHAPE_REQUESTS[want.shape]())
    assert.equal(200, status, where)
    for k, v in pairs(doc) do assert.equal(type(v), type(got[k]), where .. ": " .. k) end
    for k, v in pairs(doc.data) do assert.equal(type(v), type(got.data[k]), where .. ": data." .. k) end
    local _, served = m.request("GET", got.data.downloadUrl:sub(#m.url + 1))
    assert.equal(got.data.fileSize, #served, where .. ": the downloadUrl serves the file")
  end

  for _, e in ipairs(index) do
    for _, path in ipairs(e.paths) do
      it(e.file .. " through " .. path, function()
        local want = assert(EXPECT[e.file], "no reading for " .. e.file)
        PATHS[path](want, (assert(helper.read_file(DIR .. e.file))), e.file .. " (" .. path .. ")")
      end)
    end
  end

  it("reads each success and failure record the same on the poll path and in webhook.parse", function()
    for _, e in ipairs(index) do
      local both = table.concat(e.paths, ","):find("poll") and table.concat(e.paths, ","):find("parse")
      local want = EXPECT[e.file]
      if both and (want.result or (want.error and want.error.kind == "failed")) then
        local body = helper.read_file(DIR .. e.file)
        local id = task_of(body)
        m.replay(RECORD_INFO, id, { body })
        local pres, perr = webhook.parse(body)
        local res, err = c:job(id):await(20)
        if res then
          res.raw, pres.raw = nil, nil
          assert.same(pres, res, e.file)
        else
          for _, k in ipairs({ "kind", "code", "message", "task_id", "server_state", "retryable" }) do
            assert.same(perr[k], err[k], e.file .. ": " .. k)
          end
        end
      end
    end
  end)
end)

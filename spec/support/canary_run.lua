--- Everything a user of the library can do, with the key only in
-- MODKIE_API_KEY, printing all a user could see: every result and error
-- (every field, deep), tostring of each, every log event, the client and job
-- tables themselves. spec/security_spec.lua runs it and scans the output and
-- the files it leaves for the key.
--
--   lua canary_run.lua GATEWAY_URL STRICT_URL WORKDIR
-- GATEWAY_URL accepts the key; STRICT_URL refuses it.
local modkie = require "modkie"
local http = require "socket.http"
local ltn12 = require "ltn12"

local url, strict_url, dir = assert(arg[1]), assert(arg[2]), assert(arg[3])
local KLING = "kling/kling-3-0"

-- A deep, cycle-safe dump of any value: what a user printing it would see.
local function dump(v, seen, depth)
  seen, depth = seen or {}, depth or 0
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) ~= "table" then return tostring(v) end
  if seen[v] or depth > 12 then return "<seen>" end
  seen[v] = true
  local parts = {}
  if getmetatable(v) and getmetatable(v).__tostring then parts[1] = "tostring=" .. ("%q"):format(tostring(v)) end
  for k, x in pairs(v) do parts[#parts + 1] = "[" .. dump(k, seen, depth + 1) .. "]=" .. dump(x, seen, depth + 1) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function show(label, ...)
  local out = { label }
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    out[#out + 1] = dump(v)
    if modkie.Error.is(v) then out[#out + 1] = "tostring: " .. tostring(v) end
  end
  print(table.concat(out, "  "))
end

local function log(level, event, fields) show("log " .. level .. " " .. event, fields) end

local function client(o)
  local opts = { base_url = url, rate = false, poll_interval = 0.05, log = log }
  for k, v in pairs(o or {}) do opts[k] = v end
  local c = modkie.new(opts) -- the key comes from MODKIE_API_KEY
  show("client", c, tostring(c))
  return c
end

local c = client()

-- success: submit, await, download, download link, credits, record
local job = assert(c:submit(KLING, { prompt = "canary ok [outputs=2]", duration = 5 }, { meta = { row = 1 } }))
show("job", tostring(job))
local res, err = job:await(20)
show("await ok", res, err)
show("download", job:download(dir .. "/dl"))
show("download_url", c:download_url(res.urls[1]))
show("credits", c:credits())
show("record", c:record(res.id))
show("job table", job)

-- the job ran and failed; its download
local failed = assert(c:submit(KLING, { prompt = "canary fail [fail]" }))
show("await failed", failed:await(20))
show("download failed", failed:download(dir .. "/dl-failed"))

-- ambiguous: createTask sent, connection reset
assert(c:credits())
show("await ambiguous", assert(c:submit(KLING, { prompt = "canary lost [fault=create:reset]" })):await(20))

-- await's own timeout, then cancel; a deadline
local slow = assert(c:submit(KLING, { prompt = "canary slow [seconds=30]" }))
show("await timeout", slow:await(0.05))
slow:cancel()
show("await cancelled", slow:await())
show("await deadline", assert(c:submit(KLING, { prompt = "canary late [seconds=30]" }, { deadline = 0.3 })):await(20))

-- unknown task
show("record not found", c:record("task_canary_nope"))
show("await not found", assert(c:job("task_canary_nope")):await(20))

-- gateway errors after retries ran out
local brittle = client({ retries = 0 })
show("await server", assert(brittle:submit(KLING, { prompt = "canary 500 [fault=poll:500x50]" })):await(20))
show("await rate_limit", assert(brittle:submit(KLING, { prompt = "canary 429 [fault=create:429x50]" })):await(20))
brittle:close()

-- validation: before sending, and by the gateway (422)
show("submit invalid", c:submit(KLING, { prompt = "x", aspect_ratio = "2:1" }))
show("await 422", assert(c:submit(KLING, { prompt = "x", aspect_ratio = "2:1" }, { validate = false })):await(20))

-- credits: the balance too low (402)
do
  local key = os.getenv("MODKIE_API_KEY")
  local body = '{"key":"' .. key .. '","balance":1}'
  http.request{ url = url .. "/__mock/credits", method = "POST", source = ltn12.source.string(body),
    headers = { ["content-length"] = #body, ["content-type"] = "application/json" } }
  show("await 402", assert(c:submit(KLING, { prompt = "canary poor" })):await(20))
  body = '{"key":"' .. key .. '","balance":100000}'
  http.request{ url = url .. "/__mock/credits", method = "POST", source = ltn12.source.string(body),
    headers = { ["content-length"] = #body, ["content-type"] = "application/json" } }
end

-- protocol: a body that is not the API's envelope (an HTML error page)
do
  local body = '{"path":"/api/v1/chat/credit","answers":[{"status":200,"body":"<html>bad gateway</html>"}]}'
  http.request{ url = url .. "/__mock/replay", method = "POST", source = ltn12.source.string(body),
    headers = { ["content-length"] = #body, ["content-type"] = "application/json" } }
  local odd = client({ retries = 0 })
  show("credits protocol", odd:credits())
  odd:close()
  -- then a balance again, for the batches' preflight below
  body = '{"path":"/api/v1/chat/credit","answers":[{"body":'
    .. '"{\\"code\\":200,\\"msg\\":\\"success\\",\\"data\\":100000}"}]}'
  http.request{ url = url .. "/__mock/replay", method = "POST", source = ltn12.source.string(body),
    headers = { ["content-length"] = #body, ["content-type"] = "application/json" } }
end

-- a gateway that refuses the key
local strict = client({ base_url = strict_url })
show("await auth", assert(strict:submit(KLING, { prompt = "canary refused" })):await(20))
show("credits auth", strict:credits())
show("record auth", strict:record(res.id))
show("download_url auth", strict:download_url(res.urls[1]))
show("job auth", assert(strict:job(res.id)):await(20))

-- nothing listening
local dead = client({ base_url = "http://127.0.0.1:9", retries = 1 })
show("credits network", dead:credits())
show("await network", assert(dead:submit(KLING, { prompt = "canary nowhere" })):await(20))
dead:close()

-- batches, with a journal and downloads, against both gateways; a dry run
local batch = modkie.batch
local rows = { { prompt = "canary row one" }, { prompt = "canary row two [fail]" },
  { prompt = "canary [fault=poll:500]" } }
show("batch", batch.run{ client = c, model = KLING, journal = dir .. "/batch.journal", download = dir .. "/batch-out",
  rows = rows })
show("batch again", batch.run{ client = c, model = KLING, journal = dir .. "/batch.journal", rows = rows })
show("batch auth", batch.run{ client = strict, model = KLING, journal = dir .. "/strict.journal",
  rows = { { prompt = "canary refused row" } } })
show("batch dry run", batch.run{ client = c, model = KLING, dry_run = true, rows = { { prompt = "canary dry" } } })

-- a malformed key is refused without being echoed; a closed client
show("bad key", pcall(modkie.new, { base_url = url, api_key = os.getenv("MODKIE_API_KEY") .. "\nX: y" }))
c:close()
show("closed", c:credits())
show("client after", c)
strict:close()
print("canary run: done")

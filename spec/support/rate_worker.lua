--- One client process of an account that several processes share: submits
-- JOBS jobs at once, awaits every one, prints one line of JSON with what it
-- saw. spec/shared_spec.lua and bench/shared.lua start several at once.
--
--   lua rate_worker.lua URL JOBS SUBMIT POLL STORE [CLIENTS] [POLL_INTERVAL] [TAG]
-- SUBMIT and POLL are "requests/seconds"; STORE is "file:/path",
-- "redis://host:port/db" or "-" (each process its own windows); TAG makes
-- the prompts of this process its own (default: the pid).
local modkie = require "modkie"
local core = require "modkie.core"
local cjson = require "cjson"

local url, jobs = assert(arg[1]), assert(tonumber(arg[2]))
local function pair(s)
  local n, per = assert(s):match("^(%d+)/([%d.]+)$")
  return { tonumber(n), tonumber(per) }
end
local store = arg[5] ~= "-" and arg[5] or nil
local tag = arg[8] or tostring(require("modkie.mock").pid())

local store_events = {}
local client = modkie.new{
  base_url = url, api_key = "shared-account", deadline = 600,
  poll_interval = tonumber(arg[7]) or 0.25,
  rate = { submit = pair(arg[3]), poll = pair(arg[4]), shared = store, clients = tonumber(arg[6]) },
  log = function(_, event, f)
    if event == "store" then store_events[#store_events + 1] = f.state end
  end,
}

local t0 = core.now()
local list = {}
for i = 1, jobs do
  list[i] = assert(client:submit("kling/kling-3-0", { prompt = ("rate %s %d"):format(tag, i) }))
end
local results, errs = modkie.await_all(list, 600)
local out = { ok = 0, errors = {}, seconds = core.now() - t0, store_events = store_events }
for i = 1, jobs do
  if results[i] then out.ok = out.ok + 1 else out.errors[#out.errors + 1] = tostring(errs[i]) end
end
local stats = client:stats()
for _, k in ipairs { "rate_limited", "creates", "polls", "store", "store_grants", "local_grants", "store_outages" } do
  out[k] = stats[k]
end
client:close()
io.write(cjson.encode(out), "\n")

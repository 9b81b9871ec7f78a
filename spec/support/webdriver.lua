--- A small WebDriver client for the browser specs: starts Debian's
-- chromedriver on a free port, opens a headless Chromium session with a
-- fresh profile and no network services, and speaks the W3C protocol over
-- HTTP with luasocket.
local cjson = require "cjson"
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local H = require "spec.helper"

local webdriver = {}

local ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

local function request(url, method, body)
  local out = {}
  local text = body
  if type(body) == "table" then text = cjson.encode(body) end
  local _, status = http.request{
    url = url, method = method, sink = ltn12.sink.table(out),
    source = text and ltn12.source.string(text) or nil,
    headers = text and { ["content-type"] = "application/json", ["content-length"] = #text } or nil,
  }
  local raw = table.concat(out)
  local ok, decoded = pcall(cjson.decode, raw)
  if not ok or type(decoded) ~= "table" then
    error(("webdriver %s %s: HTTP %s, not JSON: %s"):format(method, url, tostring(status), raw:sub(1, 300)), 2)
  end
  local value = decoded.value
  if type(value) == "table" and type(value.error) == "string" and type(value.message) == "string" then
    error(("webdriver %s %s: %s: %s"):format(method, url, tostring(value.error), tostring(value.message)), 2)
  end
  return value
end

local function b64decode(s)
  local map = {}
  local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  for i = 1, #chars do map[chars:sub(i, i)] = i - 1 end
  s = s:gsub("[^%w%+/]", "")
  local out = {}
  for i = 1, #s, 4 do
    local a, b, c, d = map[s:sub(i, i)], map[s:sub(i + 1, i + 1)], map[s:sub(i + 2, i + 2)], map[s:sub(i + 3, i + 3)]
    local n = a * 262144 + (b or 0) * 4096 + (c or 0) * 64 + (d or 0)
    local x, y, z = math.floor(n / 65536), math.floor(n / 256) % 256, n % 256
    out[#out + 1] = string.char(x)
    if c then out[#out + 1] = string.char(y) end
    if d then out[#out + 1] = string.char(z) end
  end
  return table.concat(out)
end

local Session = {}
Session.__index = Session

--- Load a URL and wait for the page's load event. WebDriver's navigation
-- waits for it too, but on a fresh Debian root's Chromium 150 under a full CI
-- run it twice came back with a 1,000-card page parsed only to its 10th or
-- 14th card: so the document's own readyState is waited for as well (30 s).
function Session:get(url)
  request(self.base .. "/url", "POST", { url = url })
  local t0 = socket.gettime()
  while self:execute("return document.readyState;") ~= "complete" do
    if socket.gettime() - t0 > 30 then error("webdriver: " .. url .. " did not finish loading in 30 s", 2) end
    socket.sleep(0.05)
  end
end

-- A script call's body: `args` is a JSON list even when empty (cjson
-- writes an empty table as an object).
local function script_body(script, args)
  local list = (args and #args > 0) and cjson.encode(args) or "[]"
  return '{"script":' .. cjson.encode(script) .. ',"args":' .. list .. "}"
end

--- Run `script` (a function body; `arguments` holds `args`) and return its value.
function Session:execute(script, args)
  return request(self.base .. "/execute/sync", "POST", script_body(script, args))
end

--- Run an async script: it calls `arguments[arguments.length - 1](value)` when done.
function Session:execute_async(script, args)
  return request(self.base .. "/execute/async", "POST", script_body(script, args))
end

--- The first element matching a CSS selector, as a WebDriver element id.
function Session:find(css)
  local v = request(self.base .. "/element", "POST", { using = "css selector", value = css })
  return assert(v[ELEMENT], "webdriver: no element id for " .. css .. ": " .. cjson.encode(v))
end

--- Click an element (as a user would: scrolled into view, at its centre).
function Session:click(id) return request(self.base .. "/element/" .. id .. "/click", "POST", {}) end

--- Resize the window (CSS pixels), e.g. to the page's height for a whole-page screenshot.
function Session:resize(width, height)
  return request(self.base .. "/window/rect", "POST", { width = width, height = height })
end

--- Save a PNG screenshot of the viewport to `path`.
function Session:screenshot(path)
  H.write_file(path, b64decode(request(self.base .. "/screenshot", "GET")))
end

function Session:quit()
  pcall(request, self.base, "DELETE")
end

--- Start chromedriver and a headless Chromium session. `opts.profile` is a
-- fresh folder for the browser's profile. Returns the session; call
-- `stop()` on the returned driver when done.
function webdriver.start(opts)
  local port, release = H.held_port()
  local log = opts.profile .. "/chromedriver.log"
  local pipe = assert(io.popen(("exec chromedriver --port=%d --log-path=%s >/dev/null 2>&1 & echo $!")
    :format(port, H.shell_quote(log))))
  local pid = assert(tonumber(pipe:read("*l")), "chromedriver did not start")
  pipe:close()
  local driver = { url = "http://127.0.0.1:" .. port, pid = pid }
  function driver.stop()
    os.execute("kill " .. pid .. " 2>/dev/null")
    release()
  end
  local up = false
  for _ = 1, 200 do
    local c = socket.connect("127.0.0.1", port)
    if c then c:close() up = true break end
    socket.sleep(0.05)
  end
  if not up then driver.stop() error("chromedriver did not listen on port " .. port) end
  local args = {
    "--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--no-default-browser-check", "--disable-dev-shm-usage",
    "--user-data-dir=" .. opts.profile .. "/profile", "--window-size=" .. (opts.size or "1280,1000"),
    "--autoplay-policy=no-user-gesture-required",
    -- chromedriver talks to the browser over a pipe, not a DevTools port: on
    -- a fresh Debian 12 root (Chromium 150) the port's connection to the
    -- renderer failed ("unable to connect to renderer")
    "--remote-debugging-pipe",
  }
  -- as root the sandbox cannot start
  local id = io.popen("id -u")
  local uid = id:read("*l")
  id:close()
  if uid == "0" then args[#args + 1] = "--no-sandbox" end
  local ok, value = pcall(request, driver.url .. "/session", "POST", { capabilities = { alwaysMatch = {
    browserName = "chrome",
    ["goog:chromeOptions"] = { binary = opts.binary or "/usr/bin/chromium", args = args },
  } } })
  if not ok then driver.stop() error(value, 0) end
  local s = setmetatable({ base = driver.url .. "/session/" .. value.sessionId, driver = driver }, Session)
  return s, driver
end

return webdriver

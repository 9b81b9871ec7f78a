-- The review page in a real browser: a small emulator batch (successes, a
-- failure, an ambiguous row, an image, a text output, a prompt with <script>
-- and quotes in it) through `modkie batch --review`, the page opened from disk in headless
-- Chromium over WebDriver (chromedriver), its DOM checked as a user's
-- browser builds it. The page, its files and a screenshot stay in
-- build/review-spec/ (review.png) as the test's artifact.
-- Tagged #browser: run once, on Lua 5.4 (`make test`; not on the other Luas
-- nor under the sanitizers).
local H = require "spec.helper"
local webdriver = require "spec.support.webdriver"

local LUA = os.getenv("MODKIE_TEST_LUA") or "lua5.4"
local ART = "build/review-spec"

local HOSTILE = [[<script>window.pwned = 1</script> a "quoted" 'single' & <img src=x onerror="window.pwned2 = 1">]]

local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  local ok, _, code = p:close()
  if type(ok) == "number" then code = ok end -- Lua 5.1
  return out, code
end

describe("the review page in headless Chromium #browser", function()
  local m, session, driver, root, page_url

  setup(function()
    os.execute("rm -rf " .. ART)
    assert(os.execute("mkdir -p " .. ART .. "/profile"))
    root = assert(require("modkie.core").realpath(ART))
    m = H.mock({ "--job-seconds", "0.3", "--media" })
    H.write_file(ART .. "/rows.csv", table.concat({
      "subject,color,aspect_ratio",
      "a red fox at dawn,red,16:9",
      '"' .. HOSTILE:gsub('"', '""') .. '",blue,9:16',
      "a cat that fails [fail],red,16:9",
      "a dog the network loses [fault=create:reset],blue,16:9",
      "a still image [ext=png],green,1:1",
      "a caption [text],green,1:1",
    }, "\n") .. "\n")
    H.write_file(ART .. "/template.txt", "{{subject}}, {{color}} light\n")
    local out = run(("cd %s && MODKIE_BASE_URL=%s MODKIE_API_KEY=test-key %s %s/bin/modkie batch --model "
      .. "kling/kling-3-0 --rows rows.csv --template template.txt --download out --review out/review.html "
      .. "--review-by color --poll-interval 0.05 --retries 0 --concurrency 5 --quiet"):format(
      ART, m.url, LUA, H.shell_quote(require("modkie.core").realpath("."))))
    assert(out:find("review: out/review.html", 1, true), out)
    page_url = "file://" .. root .. "/out/review.html"
    session, driver = webdriver.start({ profile = root .. "/profile", size = "1280,1100" })
    session:get(page_url)
  end)

  teardown(function()
    if session then session:quit() end
    if driver then driver.stop() end
    if m then m.stop() end
  end)

  local function js(body, ...) return session:execute(body, { ... }) end

  it("has one card per row, with its state", function()
    local cards = js([[return Array.from(document.querySelectorAll("article.card"),
      function (c) { return c.dataset.key + ":" + c.dataset.state; });]])
    table.sort(cards)
    assert.same({ "1:success", "2:success", "3:failed", "4:ambiguous", "5:success", "6:success" }, cards)
    local totals = js([[var o = {}; document.querySelectorAll("[data-total]").forEach(function (li) {
      o[li.dataset.total] = li.querySelector("b").textContent; }); return o;]])
    assert.equal("6", totals.total)
    assert.equal("4", totals.succeeded)
    assert.equal("1", totals.failed)
    assert.equal("1", totals.ambiguous)
    assert.equal("140", totals.credits)
  end)

  it("shows the failure's message and what to do, and the ambiguous row's", function()
    local failed = js([[return document.getElementById("job-3").innerText;]])
    assert.truthy(failed:find("generation failed", 1, true), failed)
    assert.truthy(failed:find("--retry-failed", 1, true), failed)
    local amb = js([[return document.getElementById("job-4").innerText;]])
    assert.truthy(amb:find("Connection reset", 1, true), amb)
    assert.truthy(amb:find("--resubmit-ambiguous", 1, true), amb)
  end)

  it("shows a prompt with <script> and quotes as text, and runs no script from it", function()
    local shown = js([[return document.querySelector("#job-2 .prompt").textContent;]])
    assert.equal(HOSTILE .. ", blue light", shown)
    assert.same({ false, false }, js([[return ["pwned" in window, "pwned2" in window];]]))
    -- the page's own script is its only one; no element came from the data
    assert.equal(1, js([[return document.scripts.length;]]))
    assert.equal(0, js([[return document.querySelectorAll("img[src=x], [onerror]").length;]]))
  end)

  it("groups the rows by the chosen column, side by side", function()
    local groups = js([[return Array.from(document.querySelectorAll("section.group"), function (g) {
      return g.querySelector("h2").firstChild.textContent.trim() + ":" +
        Array.from(g.querySelectorAll("article.card"), function (c) { return c.dataset.key; }).join(","); });]])
    assert.same({ "color = red:1,3", "color = blue:2,4", "color = green:5,6" }, groups)
  end)

  it("plays the videos and shows the image, through links relative to the page", function()
    local links = js([[return Array.from(document.querySelectorAll("video, img, audio, a.file"),
      function (e) { return e.getAttribute("src") || e.getAttribute("href"); });]])
    for _, l in ipairs(links) do assert.truthy(l:match("^[%w_%-]+%.%w+$"), l) end
    -- the first video: scrolled to, its first frame loads (lazily) and it decodes
    local v = js([[var v = document.querySelector("#job-1 video"); v.scrollIntoView(); return true;]])
    assert.is_true(v)
    local state = session:execute_async([[var done = arguments[arguments.length - 1];
      var v = document.querySelector("#job-1 video"), t0 = Date.now();
      (function wait() {
        if (v.readyState >= 2 || v.error || Date.now() - t0 > 15000)
          done({ ready: v.readyState, width: v.videoWidth, height: v.videoHeight, error: v.error ? v.error.code : 0 });
        else setTimeout(wait, 50);
      })();]])
    assert.equal(0, state.error)
    assert.is_true(state.ready >= 2)
    assert.same({ 160, 90 }, { state.width, state.height })
    local portrait = session:execute_async([[var done = arguments[arguments.length - 1];
      var v = document.querySelector("#job-2 video"); v.scrollIntoView();
      var t0 = Date.now();
      (function wait() {
        if (v.readyState >= 1 || Date.now() - t0 > 15000) done([v.videoWidth, v.videoHeight]);
        else setTimeout(wait, 50);
      })();]])
    assert.same({ 90, 160 }, portrait)
    local img = session:execute_async([[var done = arguments[arguments.length - 1];
      var i = document.querySelector("#job-5 img"); i.scrollIntoView();
      var t0 = Date.now();
      (function wait() {
        if ((i.complete && i.naturalWidth) || Date.now() - t0 > 15000) done(i.naturalWidth);
        else setTimeout(wait, 50);
      })();]])
    assert.equal(112, img)
    -- a text model's output is its text
    local text = js([[return document.querySelector("#job-6 pre.text").textContent;]])
    assert.truthy(text:find("^text result for: a caption"), text)
  end)

  it("filters by state with no script: the failed filter leaves the failed row", function()
    js([[window.scrollTo(0, 0);]])
    session:click(session:find("label[for=f-failed]"))
    local shown = js([[return Array.from(document.querySelectorAll("article.card"), function (c) {
      return getComputedStyle(c).display === "none" ? null : c.dataset.key; }).filter(Boolean);]])
    assert.same({ "3" }, shown)
    session:click(session:find("label[for=f-all]"))
    assert.equal(6, js([[return Array.from(document.querySelectorAll("article.card")).filter(function (c) {
      return getComputedStyle(c).display !== "none"; }).length;]]))
  end)

  it("stays light with 1,000 rows: only the videos near the screen load", function()
    local big = root .. "/big"
    assert(os.execute(("mkdir -p %s/v && cd %s/v && for i in $(seq 1 1000); do ln %s/out/1-1.mp4 $i-1.mp4; done")
      :format(H.shell_quote(big), H.shell_quote(big), H.shell_quote(root))))
    local recs = { '{"type":"run","v":1,"model":"m","jobs":1000,"rows":1000,"t":1700000000,"download":"v",'
      .. '"columns":["p"]}' }
    for i = 1, 1000 do
      recs[#recs + 1] = ('{"type":"submit","job":"%d","row":%d,"fp":"f","input":{"prompt":"clip %d"},'
        .. '"values":{"p":"clip %d"},"t":1700000001}'):format(i, i, i, i)
      recs[#recs + 1] = ('{"type":"done","job":"%d","state":"success","id":"t%d","urls":["http://h/%d.mp4"],'
        .. '"credits":1,"created_at":1700000001,"completed_at":1700000009,"t":1700000010}'):format(i, i, i)
      recs[#recs + 1] = ('{"type":"files","job":"%d","files":["%d-1.mp4"],"t":1700000010}'):format(i, i)
    end
    H.write_file(big .. "/journal.jsonl", table.concat(recs, "\n") .. "\n")
    local out, code = run(("%s %s/bin/modkie review %s/journal.jsonl"):format(LUA,
      H.shell_quote(require("modkie.core").realpath(".")), H.shell_quote(big)))
    assert.equal(0, code, out)
    local t0 = H.now()
    session:get("file://" .. big .. "/v/review.html")
    local loaded = H.now() - t0
    assert.equal(1000, js([[return document.querySelectorAll("article.card").length;]]))
    local started = session:execute_async([[var done = arguments[arguments.length - 1];
      setTimeout(function () {
        done(Array.from(document.querySelectorAll("video")).filter(function (v) {
          return v.readyState > 0 || v.networkState === 2; }).length);
      }, 1000);]])
    assert.is_true(started > 0 and started <= 60, "videos loading at once: " .. tostring(started))
    -- scrolled to the end, the last card's first frame loads
    local last = session:execute_async([[var done = arguments[arguments.length - 1];
      var v = document.querySelector("#job-1000 video"); v.scrollIntoView(); var t0 = Date.now();
      (function wait() {
        if (v.readyState >= 2 || Date.now() - t0 > 15000) done(v.readyState); else setTimeout(wait, 50);
      })();]])
    assert.is_true(last >= 2)
    print(("\n[review] a 1,000-row page opened in %.2f s; %d of 1,000 videos started loading"):format(loaded,
      started))
  end)

  it("opens from a copy of its folder elsewhere (as from a zip), and keeps a screenshot", function()
    local moved = root .. "/moved"
    assert(os.execute(("cp -r %s/out %s"):format(H.shell_quote(root), H.shell_quote(moved))))
    session:get("file://" .. moved .. "/review.html")
    local w = session:execute_async([[var done = arguments[arguments.length - 1];
      var v = document.querySelector("#job-1 video"), t0 = Date.now();
      (function wait() {
        if (v.readyState >= 2 || Date.now() - t0 > 15000) done(v.videoWidth); else setTimeout(wait, 50);
      })();]])
    assert.equal(160, w)
    -- the screenshot: the original page, first frames loaded
    session:get(page_url)
    session:execute_async([[var done = arguments[arguments.length - 1], t0 = Date.now();
      (function wait() {
        var vs = Array.from(document.querySelectorAll("video")).filter(function (v) {
          var r = v.getBoundingClientRect(); return r.top < innerHeight; });
        if (vs.every(function (v) { return v.readyState >= 2; }) || Date.now() - t0 > 15000) done(true);
        else setTimeout(wait, 50);
      })();]])
    local height = js([[return document.documentElement.scrollHeight;]])
    session:resize(1280, math.min(4000, height + 140))
    session:screenshot(ART .. "/review.png")
    local png = H.read_file(ART .. "/review.png")
    assert.equal("\137PNG", png:sub(1, 4))
  end)
end)

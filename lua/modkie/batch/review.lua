--- A batch's review page: one static HTML file, built from the journal
-- alone, that shows what each row made (video, image, audio or text), its
-- prompt, values, model input, state, task id, credits and timings, and for
-- a failed or ambiguous row its error and what to do.
--
--     local path, data = assert(review.write("rows.csv.journal", "videos/review.html", { by = "color" }))
--
-- The page needs no server and no network: it embeds only the downloaded
-- files, through links relative to the page (so the folder can be zipped and
-- opened elsewhere); result URLs that were not downloaded are plain links.
-- Everything that comes from the journal or the gateway is escaped, and a
-- Content-Security-Policy lets only the page's own inline script (a random
-- nonce) and local files run or load. Filtering by state is CSS alone; the
-- script only loads a video's first frame when its card scrolls into view,
-- so a page of 1,000 rows stays light.
-- @module modkie.batch.review

local core = require "modkie.core"
local Error = require "modkie.error"
local journal_mod = require "modkie.batch.journal"
local json = require "modkie.json"

local review = {}

local VIDEO = { mp4 = true, m4v = true, mov = true, webm = true, ogv = true, mkv = true }
local IMAGE = { png = true, jpg = true, jpeg = true, gif = true, webp = true, avif = true, svg = true, bmp = true }
local AUDIO = { mp3 = true, wav = true, m4a = true, aac = true, ogg = true, oga = true, flac = true, opus = true }

-- ---------------------------------------------------------------- text helpers

local ESCAPES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

--- `v` as HTML text or attribute value: every value from the journal or the
-- gateway goes through here (a prompt is data, never markup). A NUL byte,
-- which HTML has no place for, becomes U+FFFD.
function review.escape(v)
  local s = tostring(v):gsub("[&<>\"']", ESCAPES)
  if s:find("\0", 1, true) then
    local parts, pos = {}, 1
    while true do
      local z = s:find("\0", pos, true)
      if not z then break end
      parts[#parts + 1] = s:sub(pos, z - 1)
      pos = z + 1
    end
    parts[#parts + 1] = s:sub(pos)
    s = table.concat(parts, "\239\191\189")
  end
  return s
end
local esc = review.escape

-- A path for an href or src: each segment percent-encoded (then escaped).
local function url_path(path)
  return (path:gsub("[^/]+", core.url_escape))
end

local function number(v)
  if type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge then return v end
  return nil
end

local function seconds_text(s)
  s = number(s)
  if not s then return nil end
  if s < 0 then return ("−%s"):format(seconds_text(-s)) end
  if s < 10 then return ("%.2f s"):format(s) end
  if s < 120 then return ("%.1f s"):format(s) end
  local m = math.floor(s / 60)
  if m < 120 then return ("%d min %02d s"):format(m, math.floor(s % 60)) end
  return ("%d h %02d min"):format(math.floor(m / 60), m % 60)
end

local function credits_text(c)
  c = number(c)
  if not c then return nil end
  if c == math.floor(c) then return ("%d"):format(c) end
  return ("%.2f"):format(c)
end

local function value_text(v)
  if type(v) == "string" then return v end
  -- cjson reads 501 back as 501.0 on Lua 5.3+
  if number(v) and v == math.floor(v) and math.abs(v) < 2 ^ 53 then return ("%d"):format(v) end
  if type(v) == "table" then return json.sorted(v) end
  return tostring(v)
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

local function is_dir(path)
  return core.realpath(path .. "/.") ~= nil
end

local function read_head(path, n)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read(n) or ""
  f:close()
  return s
end

--- What the first bytes of a file are: "video", "image", "audio", or nil
-- when they are no media container a browser knows (say, the emulator's
-- patterned bytes, or an HTML error page saved under a video's name).
function review.sniff(head)
  if not head or #head < 4 then return nil end
  if head:sub(5, 8) == "ftyp" then return "video" end
  if head:sub(1, 4) == "\26\69\223\163" then return "video" end -- Matroska / WebM
  if head:sub(1, 4) == "OggS" then return "video" end           -- Ogg (video or audio: a <video> plays both)
  if head:sub(1, 8) == "\137PNG\r\n\26\n" or head:sub(1, 3) == "\255\216\255" or head:sub(1, 4) == "GIF8"
    or (head:sub(1, 4) == "RIFF" and head:sub(9, 12) == "WEBP") then
    return "image"
  end
  if head:sub(1, 3) == "ID3" or (head:sub(1, 4) == "RIFF" and head:sub(9, 12) == "WAVE")
    or head:sub(1, 4) == "fLaC" or (head:byte(1) == 255 and (head:byte(2) or 0) >= 224) then
    return "audio"
  end
  return nil
end

-- The relative path from folder `from` to file `to` (both absolute, canonical).
local function relative(from, to)
  local a, b = {}, {}
  for s in from:gmatch("[^/]+") do a[#a + 1] = s end
  for s in to:gmatch("[^/]+") do b[#b + 1] = s end
  local i = 1
  while i <= #a and i < #b and a[i] == b[i] do i = i + 1 end
  local parts = {}
  for _ = i, #a do parts[#parts + 1] = ".." end
  for k = i, #b do parts[#parts + 1] = b[k] end
  return table.concat(parts, "/")
end

-- ---------------------------------------------------------------- the data

local function median(xs)
  if #xs == 0 then return nil end
  table.sort(xs)
  local n = #xs
  if n % 2 == 1 then return xs[(n + 1) / 2] end
  return (xs[n / 2] + xs[n / 2 + 1]) / 2
end

-- The folder the outputs were saved in, as the page's folder reaches it.
local function download_dir(journal_path, recorded, override)
  if override then return is_dir(override) and override or nil end
  if type(recorded) ~= "string" or recorded == "" then return nil end
  if recorded:sub(1, 1) == "/" then return is_dir(recorded) and recorded or nil end
  if is_dir(recorded) then return recorded end -- as the batch saw it, from this folder
  local beside = dirname(journal_path) .. "/" .. recorded
  if is_dir(beside) then return beside end
  local base = dirname(journal_path) .. "/" .. recorded:gsub("/+$", ""):match("[^/]*$")
  return is_dir(base) and base or nil
end

-- The page's state of a job, from the journal's.
local STATE = {
  success = "success", failed = "failed", error = "failed", ambiguous = "ambiguous",
  submitting = "running", accepted = "running",
}

local function job_key_order(a, b)
  if a.row ~= b.row then return a.row < b.row end
  return (a.variant or 0) < (b.variant or 0)
end

-- A job's card data from its replayed journal state, or nil for a job the
-- page does not show (cancelled locally, or an unknown state).
local function job_entry(key, js, finished)
  local st = STATE[js.state]
  if js.state == "submitting" and finished then st = "ambiguous" end
  if not st then return nil end
  local sub, done = js.submit or {}, type(js.done) == "table" and js.done or {}
  local input = type(sub.input) == "table" and sub.input or nil
  local j = {
    key = key, row = tonumber(js.row) or tonumber(key:match("^(%d+)")) or 0,
    variant = tonumber(key:match("^%d+%.(%d+)$")), state = st, journal_state = js.state, id = js.id,
    input = input, values = type(sub.values) == "table" and sub.values or {}, prompt = input and input.prompt,
    submits = js.submits, credits = number(done.credits), urls = type(done.urls) == "table" and done.urls or {},
    output = done.output, error = type(done.error) == "table" and done.error or nil,
    created_at = number(done.created_at), completed_at = number(done.completed_at),
    cost_time = number(done.cost_time), polls = number(done.polls),
    submitted_t = number(sub.t), done_t = number(done.t), media = {},
  }
  if j.created_at and j.completed_at then
    j.duration = j.completed_at - j.created_at
  else
    j.duration = j.cost_time
  end
  if j.done_t and j.completed_at then j.delay = math.max(0, j.done_t - j.completed_at) end
  return j
end

-- A job's outputs: each a saved file (by its name in the download folder,
-- linked relative to the page's folder), else its URL. `where` holds `dl`
-- (the folder as reached from here), `dl_real` and `page_dir` (real paths).
-- Returns how many files are there.
local function outputs(j, names, where)
  local found = 0
  for n = 1, math.max(#j.urls, #names) do
    local url, name = j.urls[n], names[n]
    if type(name) ~= "string" then name = nil end
    local m = { n = n, url = type(url) == "string" and url or nil }
    local ext = ((name or m.url or ""):gsub("[?#].*$", ""):match("%.(%w+)$") or ""):lower()
    m.kind = VIDEO[ext] and "video" or IMAGE[ext] and "image" or AUDIO[ext] and "audio" or "file"
    -- a name from the journal is a plain name in the folder, never a path
    if name and not name:find("/", 1, true) and not name:find("^%.%.?$") then
      m.name = name
      local full = where.dl and (where.dl:gsub("/+$", "") .. "/" .. name)
      local head = full and read_head(full, 16)
      if head then
        m.href = (where.page_dir and where.dl_real) and relative(where.page_dir, where.dl_real .. "/" .. name) or full
        local sniffed = review.sniff(head)
        if m.kind ~= "file" and sniffed == nil then m.unplayable = true end
        if sniffed and m.kind == "file" then m.kind = sniffed end
        found = found + 1
      else
        m.missing = true
      end
    end
    j.media[n] = m
  end
  return found
end

-- Which page total a page state counts in.
local COUNTED = { success = "succeeded", failed = "failed", ambiguous = "ambiguous", running = "running" }

--- Read a journal and gather what its page shows.
-- @tparam string path the journal
-- @tparam[opt] table opts `page` (where the page goes: links are relative
--   to its folder; default review.html in the download folder, else the
--   journal's path with .html added), `download` (the outputs' folder, when
--   it moved since the batch), `by` (a column to group the rows by),
--   `finished` (true when no batch is running on the journal: a row sent
--   without a recorded answer is then ambiguous, not running)
-- @treturn[1] table `{ page, model, source, template, columns, jobs = {…}, totals = {…}, groups = {…} }`
-- @treturn[2] nil
-- @treturn[2] modkie.Error kind "config" (no journal, unreadable) or
--   "validation" (a damaged journal, an unknown `by` column)
function review.collect(path, opts)
  opts = opts or {}
  local f = io.open(path, "rb")
  if not f then
    return nil, Error.new("config", ("review: no journal at %s"):format(path), { path = path })
  end
  f:close()
  local state, err = journal_mod.read(path, { submits = true })
  if not state then return nil, err end
  local runs = state.run_records
  local last = runs[#runs] or {}
  local function text(v) return type(v) == "string" and v or nil end
  local data = {
    journal = path, model = text(state.model), source = text(last.source), template = text(last.template),
    runs = #runs, by = opts.by, finished = opts.finished, jobs = {},
  }
  local dl = download_dir(path, last.download, opts.download)
  -- by default the page goes beside the downloads (zip the folder, and the
  -- page goes along), else beside the journal
  data.page = opts.page or (dl and (dl:gsub("/+$", "") .. "/review.html")) or (path .. ".html")
  data.download = dl
  local where = { dl = dl, dl_real = dl and core.realpath(dl), page_dir = core.realpath(dirname(data.page)) }

  -- the columns: in the rows file's order, then any only a row has
  local known_columns, col_order = {}, {}
  local function column(c)
    if type(c) == "string" and not known_columns[c] then
      known_columns[c] = true
      col_order[#col_order + 1] = c
    end
  end
  for _, c in ipairs(type(last.columns) == "table" and last.columns or {}) do column(c) end

  local t = { jobs = 0, succeeded = 0, failed = 0, ambiguous = 0, running = 0, credits = 0, files = 0 }
  local durations, delays = {}, {}
  for key, js in pairs(state.jobs) do
    local j = job_entry(key, js, opts.finished)
    if j then
      for c in pairs(j.values) do column(c) end
      local counted = COUNTED[j.state]
      t[counted] = t[counted] + 1
      if j.state == "success" then
        t.credits = t.credits + (j.credits or 0)
        if j.duration then durations[#durations + 1] = j.duration end
        if j.delay then delays[#delays + 1] = j.delay end
      end
      local names = type(js.files) == "table" and js.files or {}
      t.files = t.files + outputs(j, names, where)
      if js.state == "success" and #j.urls > #names and last.download then j.unsaved = true end
      data.jobs[#data.jobs + 1] = j
    end
  end
  table.sort(data.jobs, job_key_order)
  data.columns = col_order
  t.jobs = math.max(number(last.jobs) or 0, #data.jobs)
  t.not_started = t.jobs - #data.jobs
  local wall = 0
  for _, r in ipairs(runs) do
    if number(r.t) and number(r.last_t) then wall = wall + (r.last_t - r.t) end
  end
  t.wall = wall
  t.duration_p50, t.delay_p50 = median(durations), median(delays)
  data.totals = t

  -- groups: by a column's value, else a row's variants together
  if opts.by then
    if not known_columns[opts.by] then
      local list = #col_order > 0 and table.concat(col_order, ", ") or "none recorded"
      return nil, Error.new("validation", ("review: no column '%s' in the journal's rows (columns: %s)")
        :format(opts.by, list), { field = opts.by })
    end
  end
  local groups, index = {}, {}
  for _, j in ipairs(data.jobs) do
    local gkey, title
    if opts.by then
      local v = j.values[opts.by]
      if v == nil and j.input then v = j.input[opts.by] end
      gkey = v == nil and "\0none" or value_text(v)
      title = v == nil and ("%s not set"):format(opts.by) or ("%s = %s"):format(opts.by, value_text(v))
    else
      gkey, title = tostring(j.row), "row " .. tostring(j.row)
    end
    local g = index[gkey]
    if not g then
      g = { title = title, jobs = {} }
      index[gkey] = g
      groups[#groups + 1] = g
    end
    g.jobs[#g.jobs + 1] = j
  end
  local grouped = opts.by ~= nil
  for _, g in ipairs(groups) do
    if #g.jobs > 1 then grouped = true end
  end
  data.groups, data.grouped = groups, grouped
  return data
end

-- ---------------------------------------------------------------- the page

local CSS = [[
:root{--ok:#1b7f3b;--bad:#b3261e;--amb:#9a6700;--run:#1f5fbf;--line:#d9d9de;--bg:#f6f6f8;--ink:#1d1d22}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
header{padding:16px 20px 8px;background:#fff;border-bottom:1px solid var(--line)}
h1{font-size:18px;margin:0 0 4px}
.sub{color:#555;margin:0 0 10px;word-break:break-all}
.totals{display:flex;flex-wrap:wrap;gap:8px;margin:0;padding:0;list-style:none}
.totals li{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:4px 10px}
.totals b{font-size:16px}
input.f{position:absolute;opacity:0;pointer-events:none}
nav.filter{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid var(--line);padding:8px 20px;
display:flex;gap:6px;flex-wrap:wrap}
nav.filter label{border:1px solid var(--line);border-radius:14px;padding:2px 12px;cursor:pointer;user-select:none}
#f-all:checked~nav label[for=f-all],#f-success:checked~nav label[for=f-success],
#f-failed:checked~nav label[for=f-failed],#f-ambiguous:checked~nav label[for=f-ambiguous],
#f-running:checked~nav label[for=f-running]{background:var(--ink);color:#fff;border-color:var(--ink)}
#f-success:checked~main .card:not(.s-success),#f-failed:checked~main .card:not(.s-failed),
#f-ambiguous:checked~main .card:not(.s-ambiguous),#f-running:checked~main .card:not(.s-running){display:none}
#f-success:checked~main .group:not(:has(.s-success)),#f-failed:checked~main .group:not(:has(.s-failed)),
#f-ambiguous:checked~main .group:not(:has(.s-ambiguous)),
#f-running:checked~main .group:not(:has(.s-running)){display:none}
main{padding:16px 20px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:14px}
.group{margin:0 0 18px}
.group h2{font-size:15px;margin:0 0 6px;word-break:break-word}
.strip{display:flex;gap:14px;overflow-x:auto;padding-bottom:6px}
.strip .card{flex:0 0 320px}
.card{background:#fff;border:1px solid var(--line);border-left:4px solid var(--line);border-radius:6px;padding:10px;
min-width:0;content-visibility:auto;contain-intrinsic-size:auto 420px}
.card.s-success{border-left-color:var(--ok)}.card.s-failed{border-left-color:var(--bad)}
.card.s-ambiguous{border-left-color:var(--amb)}.card.s-running{border-left-color:var(--run)}
.head{display:flex;justify-content:space-between;gap:8px;align-items:baseline}
.key{font-weight:600}
.badge{font-size:12px;border-radius:10px;padding:1px 8px;color:#fff;background:#777}
.s-success .badge{background:var(--ok)}.s-failed .badge{background:var(--bad)}
.s-ambiguous .badge{background:var(--amb)}.s-running .badge{background:var(--run)}
.media{margin:8px 0;display:grid;gap:6px}
.media video,.media img{width:100%;max-height:360px;background:#111;border-radius:4px;display:block;object-fit:contain}
.media audio{width:100%}
.tile{border:1px dashed #aaa;border-radius:4px;padding:10px;color:#555;background:#fafafa;overflow-wrap:anywhere}
.prompt{white-space:pre-wrap;word-break:break-word;margin:6px 0;background:var(--bg);padding:6px 8px;border-radius:4px}
.text{white-space:pre-wrap;word-break:break-word;margin:0;max-height:240px;overflow:auto;background:var(--bg);
padding:6px 8px}
dl.facts{display:grid;grid-template-columns:auto 1fr;gap:2px 10px;margin:6px 0;font-size:13px}
dl.facts dt{color:#666}dl.facts dd{margin:0;word-break:break-all}
.id{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
.error{border:1px solid #f0c4c0;background:#fdf1f0;border-radius:4px;padding:6px 8px;margin:6px 0}
.s-ambiguous .error{border-color:#ead9a8;background:#fdf8e8}
.error .msg{white-space:pre-wrap;word-break:break-word;font-weight:600}
.todo{margin:4px 0 0}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;background:#eee;padding:0 3px;
border-radius:3px}
details{margin:4px 0}summary{cursor:pointer;color:#444}
table.kv{border-collapse:collapse;width:100%;font-size:12px;margin-top:4px}
table.kv th{text-align:left;color:#666;font-weight:normal;padding:1px 8px 1px 0;vertical-align:top;white-space:nowrap}
table.kv td{word-break:break-word;white-space:pre-wrap;padding:1px 0}
.empty{color:#666}
]]

-- Load a video's first frame (its poster) once its card comes near the
-- screen, instead of 1,000 at once; nothing else runs.
local SCRIPT = [[
(function () {
  var videos = document.querySelectorAll("video[data-lazy]");
  if (!("IntersectionObserver" in window)) return;
  var seen = new IntersectionObserver(function (entries) {
    entries.forEach(function (e) {
      if (!e.isIntersecting) return;
      var v = e.target;
      seen.unobserve(v);
      v.removeAttribute("data-lazy");
      if (v.readyState === 0) { v.preload = "metadata"; v.load(); }
    });
  }, { rootMargin: "600px 0px" });
  videos.forEach(function (v) { seen.observe(v); });
})();
]]

local function nonce()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(16)
  if f then f:close() end
  if not bytes or #bytes < 16 then
    bytes = tostring(core.time()) .. tostring(core.now()) .. tostring({})
  end
  return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end)):sub(1, 32)
end

local STATE_WORD = { success = "succeeded", failed = "failed", ambiguous = "ambiguous", running = "running" }

-- What to do about a row that did not succeed.
local function todo(j, finished)
  local kind = j.error and j.error.kind
  if j.state == "failed" and j.journal_state == "failed" then
    return "The job ran and failed at the gateway (credits are charged only on success). Run the batch "
      .. "again with <code>--retry-failed</code> to submit it again (<code>retry_failed = true</code> from "
      .. "Lua). If the prompt is the cause, change the row and use a new journal."
  elseif j.state == "failed" and kind == "not_found" then
    return "The gateway does not know this task any more; the row is not submitted again."
  elseif j.state == "failed" and not j.id then
    return "Refused before any task was created (nothing was charged): running the batch again submits it."
  elseif j.state == "failed" then
    return "The task exists, but its end was not seen (" .. esc(kind or "error") .. "): running the batch "
      .. "again polls it to its end, without submitting it again."
  elseif j.state == "ambiguous" then
    return "createTask was sent and its answer never came: a task may exist at the gateway (check its "
      .. "dashboard). The batch does not submit it again; run it with <code>--resubmit-ambiguous</code> "
      .. "(<code>resubmit_ambiguous = true</code>) to submit it anyway: it may then run, and be billed, twice."
  elseif j.journal_state == "submitting" and not finished then
    return "Sent; the gateway's answer is not in the journal yet. If the batch was stopped here, the next "
      .. "run reports the row ambiguous."
  end
  return nil
end

local function media_html(m, poster)
  local out = {}
  local label = ("output %d"):format(m.n)
  if m.href then
    local href = esc(url_path(m.href))
    if m.unplayable then
      out[#out + 1] = ('<div class="tile unplayable">%s <a href="%s">%s</a> is not playable media: its first '
        .. 'bytes are no %s format a browser knows (the emulator serves patterned bytes unless started with '
        .. '<code>--media</code>).</div>'):format(label, href, esc(m.name), m.kind)
    elseif m.kind == "video" then
      out[#out + 1] = ('<video controls preload="none" data-lazy playsinline src="%s"%s title="%s"></video>')
        :format(href, poster and (' poster="%s"'):format(esc(url_path(poster))) or "", esc(m.name))
    elseif m.kind == "image" then
      out[#out + 1] = ('<img loading="lazy" src="%s" alt="%s">'):format(href, esc(label .. ": " .. m.name))
    elseif m.kind == "audio" then
      out[#out + 1] = ('<audio controls preload="none" src="%s"></audio>'):format(href)
    end
    out[#out + 1] = ('<a class="file" href="%s">%s</a>'):format(href, esc(m.name))
  elseif m.missing then
    out[#out + 1] = ('<div class="tile missing">%s: %s is not in the download folder (moved? '
      .. '<code>modkie review --download DIR</code> says where it is now)</div>'):format(label, esc(m.name))
  elseif m.url then
    local url = m.url
    if url:match("^https?://") then
      out[#out + 1] = ('<div class="tile remote">%s was not downloaded: <a href="%s" rel="noreferrer">%s</a> '
        .. '(result links expire, often within a day)</div>'):format(label, esc(url), esc(url))
    else
      out[#out + 1] = ('<div class="tile remote">%s was not downloaded: %s</div>'):format(label, esc(url))
    end
  end
  return table.concat(out)
end

local function kv_table(rows)
  if #rows == 0 then return "" end
  local out = { '<table class="kv">' }
  for _, r in ipairs(rows) do
    out[#out + 1] = ("<tr><th>%s</th><td>%s</td></tr>"):format(esc(r[1]), esc(r[2]))
  end
  out[#out + 1] = "</table>"
  return table.concat(out)
end

local function output_text(output)
  if type(output) ~= "table" then return nil end
  local obj = output.resultObject
  if obj == nil then return nil end
  if type(obj) == "table" and type(obj.text) == "string" then return obj.text end
  return value_text(obj)
end

local function card_html(j, data)
  local out = {}
  local key = j.variant and ("row %d.%d"):format(j.row, j.variant) or ("row %d"):format(j.row)
  out[#out + 1] = ('<article class="card s-%s" id="job-%s" data-key="%s" data-state="%s">')
    :format(j.state, esc(j.key), esc(j.key), j.state)
  out[#out + 1] = ('<div class="head"><span class="key">%s</span><span class="badge">%s</span></div>')
    :format(esc(key), STATE_WORD[j.state])
  -- what it made
  local poster
  for _, m in ipairs(j.media) do
    if m.kind == "image" and m.href and not m.unplayable then poster = m.href end
  end
  local media = {}
  for _, m in ipairs(j.media) do
    media[#media + 1] = media_html(m, m.kind == "video" and poster or nil)
  end
  local text = output_text(j.output)
  if text then media[#media + 1] = ('<pre class="text">%s</pre>'):format(esc(text)) end
  if j.unsaved then
    media[#media + 1] = '<div class="tile">not all outputs were saved: running the batch again fetches them</div>'
  end
  if #media > 0 then out[#out + 1] = '<div class="media">' .. table.concat(media) .. "</div>" end
  -- the error and what to do
  if j.state ~= "success" and j.state ~= "running" or j.error then
    local e = j.error or {}
    local detail = {}
    if e.kind then detail[#detail + 1] = "kind " .. tostring(e.kind) end
    if e.code ~= nil then detail[#detail + 1] = "code " .. value_text(e.code) end
    if e.status ~= nil then detail[#detail + 1] = "HTTP " .. value_text(e.status) end
    local msg = e.message or (j.state == "ambiguous"
      and "an earlier run was stopped after sending this row's createTask and before its answer was recorded"
      or nil)
    out[#out + 1] = '<div class="error">'
    if msg then out[#out + 1] = ('<div class="msg">%s</div>'):format(esc(msg)) end
    if #detail > 0 then out[#out + 1] = ("<div>%s</div>"):format(esc(table.concat(detail, ", "))) end
    local what = todo(j, data.finished)
    if what then out[#out + 1] = ('<p class="todo">%s</p>'):format(what) end
    out[#out + 1] = "</div>"
  elseif j.state == "running" then
    local what = todo(j, data.finished)
    if what then out[#out + 1] = ('<p class="todo">%s</p>'):format(what) end
  end
  -- the prompt
  if j.prompt ~= nil then
    out[#out + 1] = ('<p class="prompt">%s</p>'):format(esc(value_text(j.prompt)))
  elseif not j.input then
    out[#out + 1] = '<p class="empty">(the journal has no input for this row: it was written by an older modkie)</p>'
  end
  -- the facts
  local facts = {}
  local function fact(name, v, cls)
    if v ~= nil then
      facts[#facts + 1] = ("<dt>%s</dt><dd%s>%s</dd>"):format(name, cls and (' class="%s"'):format(cls) or "", esc(v))
    end
  end
  fact("task", j.id, "id")
  fact("credits", credits_text(j.credits))
  fact("duration", seconds_text(j.duration))
  fact("noticed after", seconds_text(j.delay))
  fact("polls", j.polls and ("%d"):format(j.polls))
  if j.submits and j.submits > 1 then fact("submitted", ("%d times (retried)"):format(j.submits)) end
  if j.submitted_t then fact("sent at", os.date("!%Y-%m-%d %H:%M:%S UTC", math.floor(j.submitted_t))) end
  if #facts > 0 then out[#out + 1] = '<dl class="facts">' .. table.concat(facts) .. "</dl>" end
  -- the row's values and the model input
  local vals = {}
  for _, c in ipairs(data.columns) do
    if j.values[c] ~= nil then vals[#vals + 1] = { c, value_text(j.values[c]) } end
  end
  if #vals > 0 then
    out[#out + 1] = "<details><summary>row values</summary>" .. kv_table(vals) .. "</details>"
  end
  if j.input then
    local keys = {}
    for k in pairs(j.input) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    local rows = {}
    for _, k in ipairs(keys) do rows[#rows + 1] = { k, value_text(j.input[k]) } end
    out[#out + 1] = "<details><summary>model input</summary>" .. kv_table(rows) .. "</details>"
  end
  out[#out + 1] = "</article>"
  return table.concat(out)
end

--- The page of `data` (from `review.collect`) as HTML text.
function review.html(data)
  local t = data.totals
  local n = nonce()
  local out = {}
  local title = ("modkie review: %s"):format(data.source and data.source:match("[^/]*$") or data.journal)
  out[#out + 1] = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
  out[#out + 1] = ('<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
    .. "script-src 'nonce-%s'; style-src 'unsafe-inline'; img-src 'self' file:; media-src 'self' file:; "
    .. "base-uri 'none'; form-action 'none'\">"):format(n)
  out[#out + 1] = '<meta name="viewport" content="width=device-width, initial-scale=1">'
  out[#out + 1] = '<meta name="referrer" content="no-referrer">'
  out[#out + 1] = ("<title>%s</title><style>%s</style></head><body>"):format(esc(title), CSS)
  -- totals
  out[#out + 1] = ("<header><h1>%s</h1>"):format(esc(title))
  local sub = {}
  if data.model then sub[#sub + 1] = "model " .. data.model end
  if data.source then sub[#sub + 1] = "rows " .. data.source end
  if data.template then sub[#sub + 1] = "template " .. data.template end
  sub[#sub + 1] = "journal " .. data.journal
  sub[#sub + 1] = ("%d %s"):format(data.runs, data.runs == 1 and "run" or "runs")
  out[#out + 1] = ('<p class="sub">%s</p>'):format(esc(table.concat(sub, " · ")))
  local totals = {
    { "jobs", ("%d"):format(t.jobs), "total" },
    { "succeeded", ("%d"):format(t.succeeded), "succeeded" },
    { "failed", ("%d"):format(t.failed), "failed" },
    { "ambiguous", ("%d"):format(t.ambiguous), "ambiguous" },
  }
  if t.running > 0 then totals[#totals + 1] = { "running", ("%d"):format(t.running), "running" } end
  if t.not_started > 0 then totals[#totals + 1] = { "not started", ("%d"):format(t.not_started), "not-started" } end
  totals[#totals + 1] = { "credits", credits_text(t.credits) or "0", "credits" }
  totals[#totals + 1] = { "wall time", seconds_text(t.wall) or "–", "wall" }
  if t.duration_p50 then totals[#totals + 1] = { "median duration", seconds_text(t.duration_p50), "duration" } end
  if t.delay_p50 then totals[#totals + 1] = { "median notice delay", seconds_text(t.delay_p50), "delay" } end
  totals[#totals + 1] = { "files", ("%d"):format(t.files), "files" }
  out[#out + 1] = '<ul class="totals">'
  for _, x in ipairs(totals) do
    out[#out + 1] = ('<li data-total="%s">%s <b>%s</b></li>'):format(x[3], esc(x[1]), esc(x[2]))
  end
  out[#out + 1] = "</ul></header>"
  -- the state filter: radio buttons and CSS, no script
  local filters = { { "all", "all", #data.jobs }, { "success", "succeeded", t.succeeded },
    { "failed", "failed", t.failed }, { "ambiguous", "ambiguous", t.ambiguous }, { "running", "running", t.running } }
  for i, f in ipairs(filters) do
    out[#out + 1] = ('<input class="f" type="radio" name="state" id="f-%s"%s>')
      :format(f[1], i == 1 and " checked" or "")
  end
  out[#out + 1] = '<nav class="filter" aria-label="filter by state">'
  for _, f in ipairs(filters) do
    out[#out + 1] = ('<label for="f-%s">%s (%d)</label>'):format(f[1], f[2], f[3])
  end
  out[#out + 1] = "</nav><main>"
  if #data.jobs == 0 then
    out[#out + 1] = '<p class="empty">No row has been submitted yet.</p>'
  elseif data.grouped then
    for _, g in ipairs(data.groups) do
      out[#out + 1] = ('<section class="group"><h2>%s <span class="empty">(%d)</span></h2><div class="strip">')
        :format(esc(g.title), #g.jobs)
      for _, j in ipairs(g.jobs) do out[#out + 1] = card_html(j, data) end
      out[#out + 1] = "</div></section>"
    end
  else
    out[#out + 1] = '<div class="grid">'
    for _, j in ipairs(data.jobs) do out[#out + 1] = card_html(j, data) end
    out[#out + 1] = "</div>"
  end
  out[#out + 1] = ('</main><script nonce="%s">%s</script></body></html>\n'):format(n, SCRIPT)
  return table.concat(out, "\n")
end

--- Build the page of a journal and write it to `page` (whole or not at
-- all: written beside it, then renamed, so a browser refreshed mid-run
-- never reads half a page).
-- @tparam string path the journal
-- @tparam[opt] string page where the page goes (nil: as `collect` says)
-- @tparam[opt] table opts as for `collect`
-- @treturn[1] string `page`
-- @treturn[1] table the data the page shows
-- @treturn[2] nil
-- @treturn[2] modkie.Error
function review.write(path, page, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.page = page
  if page then
    local ok, merr = require("modkie.download").mkdir_p(dirname(page))
    if not ok then
      return nil, Error.new("config", ("review: cannot create the folder of %s: %s"):format(page, tostring(merr)),
        { path = page })
    end
  end
  local data, err = review.collect(path, o)
  if not data then return nil, err end
  page = data.page
  -- the page replaces only a page (an earlier one, refreshed): named the
  -- journal, the rows or the template by mistake, it would destroy them
  local old = read_head(page, 15)
  if old and old ~= "" and old:lower() ~= "<!doctype html>" then
    return nil, Error.new("config", ("review: %s exists and is not a review page (the journal? the rows?): it is "
      .. "not overwritten; name the page, e.g. review.html"):format(page), { path = page })
  end
  local html = review.html(data)
  local tmp = page .. ".part"
  local f, ferr = io.open(tmp, "wb")
  if not f then
    return nil, Error.new("config", ("review: cannot write %s: %s"):format(page, tostring(ferr)), { path = page })
  end
  local wok, werr = f:write(html)
  f:close()
  local rok, rerr = true, nil
  if wok then rok, rerr = os.rename(tmp, page) end
  if not (wok and rok) then
    os.remove(tmp)
    return nil, Error.new("config", ("review: cannot write %s: %s"):format(page, tostring(werr or rerr)),
      { path = page })
  end
  return page, data
end

return review

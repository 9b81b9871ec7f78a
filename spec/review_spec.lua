-- The review page without a browser: what modkie.batch.review reads from a
-- journal (new and old formats, mid-run, torn), what it escapes, what the
-- journal now keeps for it, and `modkie review` / `batch --review` as a user
-- runs them against the emulator. spec/review_browser_spec.lua opens the
-- page in Chromium.
local helper = require "spec.helper"
local H = require "spec.batch_helper"
local review = require "modkie.batch.review"
local cjson = require "cjson"

local function lines_of(path)
  local out = {}
  for line in (H.read(path) or ""):gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
  return out
end

local function count(s, pattern)
  local n = 0
  for _ in s:gmatch(pattern) do n = n + 1 end
  return n
end

describe("review page", function()
  local dir

  before_each(function() dir = helper.tmpdir() end)
  after_each(function() helper.rmdir(dir) end)

  describe("escaping and sniffing", function()
    it("escapes markup, quotes and NUL", function()
      assert.equal("&lt;script&gt;x(&quot;a&quot;, &#39;b&#39;) &amp;amp;&lt;/script&gt;",
        review.escape([[<script>x("a", 'b') &amp;</script>]]))
      assert.equal("a\239\191\189b", review.escape("a\0b"))
      assert.equal("12", review.escape(12))
    end)

    it("tells media from other bytes by their first bytes", function()
      assert.equal("video", review.sniff("\0\0\0\24ftypisom\0\0\2\0"))
      assert.equal("video", review.sniff("\26\69\223\163\1\0\0\0"))
      assert.equal("image", review.sniff("\137PNG\r\n\26\n\0\0\0\13"))
      assert.equal("image", review.sniff("\255\216\255\224\0\16JFIF"))
      assert.equal("audio", review.sniff("ID3\4\0\0\0\0\0\0"))
      assert.is_nil(review.sniff("modkie:task_1:0\nmodkie:task_1:0\n"))
      assert.is_nil(review.sniff("<!doctype html><title>502</title>"))
      assert.is_nil(review.sniff(""))
    end)
  end)

  describe("from a journal", function()
    it("reviews a journal written before the journal kept inputs and times", function()
      -- version 1 as it was: whole-second t, no input, values or timings
      local j = H.write(dir .. "/old.journal", table.concat({
        '{"type":"run","v":1,"model":"kling/kling-3-0","jobs":3,"rows":3,"t":1700000000}',
        '{"type":"submit","job":"1","row":1,"fp":"aaaa","t":1700000001}',
        '{"type":"submit","job":"2","row":2,"fp":"bbbb","t":1700000001}',
        '{"type":"accepted","job":"1","id":"task_1","t":1700000002}',
        '{"type":"done","job":"1","state":"success","id":"task_1","urls":["https://x.example/1.mp4"],'
          .. '"credits":35,"t":1700000030}',
        '{"type":"done","job":"2","state":"failed","id":"task_2","error":{"kind":"failed","message":'
          .. '"<b>nope</b>","code":501},"t":1700000031}',
      }, "\n") .. "\n")
      local page, data = assert(review.write(j))
      assert.equal(j .. ".html", page)
      assert.equal(3, data.totals.jobs)
      assert.equal(1, data.totals.succeeded)
      assert.equal(1, data.totals.failed)
      assert.equal(1, data.totals.not_started)
      assert.equal(35, data.totals.credits)
      assert.equal(31, data.totals.wall)
      local html = H.read(page)
      assert.equal(2, count(html, '<article class="card'))
      assert.truthy(html:find("written by an older modkie", 1, true))
      assert.truthy(html:find("&lt;b&gt;nope&lt;/b&gt;", 1, true))
      assert.falsy(html:find("<b>nope", 1, true))
      -- not downloaded: a plain link, not embedded (opening the page fetches nothing)
      assert.truthy(html:find('was not downloaded: <a href="https://x.example/1.mp4"', 1, true))
      assert.falsy(html:find('src="https://', 1, true))
    end)

    it("shows a journal mid-run: sent and accepted rows are running, a torn last line is ignored", function()
      local j = H.write(dir .. "/mid.journal", table.concat({
        '{"type":"run","v":1,"model":"m","jobs":4,"rows":4,"t":1700000000.5,"columns":["p"]}',
        '{"type":"submit","job":"1","row":1,"fp":"a","input":{"prompt":"one"},"values":{"p":"one"},"t":1700000001}',
        '{"type":"submit","job":"2","row":2,"fp":"b","input":{"prompt":"two"},"values":{"p":"two"},"t":1700000001}',
        '{"type":"accepted","job":"1","id":"task_1","t":1700000002}',
        '{"type":"done","job":"1","sta',
      }, "\n"))
      local _, data = assert(review.write(j, dir .. "/page/mid.html"))
      assert.equal(2, data.totals.running)
      assert.equal(2, data.totals.not_started)
      local html = H.read(dir .. "/page/mid.html")
      assert.equal(2, count(html, 'class="card s%-running"'))
      assert.truthy(html:find("task_1", 1, true))
      -- the same journal once no batch runs on it: the row sent without an answer is ambiguous
      local after = assert(review.collect(j, { finished = true }))
      assert.equal(1, after.totals.ambiguous)
      assert.equal(1, after.totals.running)
    end)

    it("reads a hostile journal without raising, and writes none of it as markup", function()
      local x = '"<i>x</i>"'
      local j = H.write(dir .. "/h.journal", table.concat({
        '{"type":"run","v":1,"model":{"a":1},"jobs":"many","rows":2,"t":"now","columns":"nope","source":5,'
          .. '"template":[1],"download":{"x":1}}',
        '{"type":"submit","job":"1","row":"one","fp":"a","input":{"prompt":{"<blink>":1},"n":[1,{"k":' .. x .. '}]},'
          .. '"values":{"<u>c</u>":' .. x .. ',"n":{"deep":[1,2]},"5":true},"t":{"x":1}}',
        '{"type":"done","job":"1","state":"success","id":{"x":1},"urls":[1,{"u":2},"javascript:alert(1)",'
          .. '"https://x.example/a\\" onmouseover=\\"alert(1).mp4"],"credits":"lots","output":{"resultObject":'
          .. x .. '},"created_at":"then","completed_at":[1],"cost_time":{"s":1},"polls":"3","t":null}',
        '{"type":"files","job":"1","files":["../../etc/passwd","a/b.mp4",3,"ok.mp4"]}',
        '{"type":"submit","job":"2.1","row":2,"fp":"b","t":1}',
        '{"type":"done","job":"2.1","state":"failed","error":{"kind":5,"message":{"m":1},"code":' .. x .. '},"t":2}',
        '{"type":"done","job":"3","state":"weird"}',
      }, "\n") .. "\n")
      local page, data = review.write(j, dir .. "/h.html", { finished = true })
      assert.equal(dir .. "/h.html", page, tostring(data))
      local html = H.read(page)
      assert.equal(2, count(html, '<article class="card'))
      local never = { "<i>", "<blink>", "<u>", 'href="javascript:', 'href="../', 'href="passwd', "onmouseover=\"" }
      for _, bad in ipairs(never) do
        assert.falsy(html:find(bad, 1, true), bad)
      end
      assert.truthy(html:find("&lt;i&gt;x&lt;/i&gt;", 1, true))
    end)

    it("refuses an unknown --by column, naming it and the columns there are", function()
      local j = H.write(dir .. "/c.journal", '{"type":"run","v":1,"model":"m","jobs":1,"rows":1,"t":1,'
        .. '"columns":["color","size"]}\n{"type":"submit","job":"1","row":1,"fp":"a","values":{"color":"red"},"t":2}\n')
      local ok, err = review.collect(j, { by = "colour" })
      assert.is_nil(ok)
      assert.equal("validation", err.kind)
      assert.truthy(err.message:find("no column 'colour'", 1, true), err.message)
      assert.truthy(err.message:find("color, size", 1, true), err.message)
      assert.is_nil(review.collect(dir .. "/none.journal"))
    end)

    it("keeps 1,000 rows light: every video loads nothing until its card is near the screen", function()
      local rows = { '{"type":"run","v":1,"model":"m","jobs":1000,"rows":1000,"t":1700000000,"download":"v"}' }
      assert(os.execute("mkdir -p " .. helper.shell_quote(dir .. "/v")))
      local mp4 = "\0\0\0\24ftypisom\0\0\2\0isomiso2"
      for i = 1, 1000 do
        rows[#rows + 1] = ('{"type":"submit","job":"%d","row":%d,"fp":"f","input":{"prompt":"p%d"},"t":1700000001}')
          :format(i, i, i)
        rows[#rows + 1] = ('{"type":"done","job":"%d","state":"success","id":"t%d","urls":["http://h/%d.mp4"],'
          .. '"credits":1,"created_at":1700000001,"completed_at":1700000011,"t":1700000012}'):format(i, i, i)
        rows[#rows + 1] = ('{"type":"files","job":"%d","files":["%d-1.mp4"],"t":1700000012}'):format(i, i)
        helper.write_file(("%s/v/%d-1.mp4"):format(dir, i), mp4)
      end
      local j = H.write(dir .. "/big.journal", table.concat(rows, "\n") .. "\n")
      local page, data = assert(review.write(j))
      assert.equal(dir .. "/v/review.html", page) -- beside the downloads
      assert.equal(1000, data.totals.succeeded)
      assert.equal(10, data.totals.duration_p50)
      assert.equal(1, data.totals.delay_p50)
      local html = H.read(page)
      assert.equal(1000, count(html, '<video controls preload="none" data%-lazy'))
      assert.equal(1000, count(html, 'src="%d+%-1%.mp4"'))
      assert.equal(0, count(html, 'preload="auto"'))
    end)
  end)

  describe("the emulator's --media outputs", function()
    local media = require "modkie.mock.media"

    -- the top-level boxes of an MP4 and a box's payload by its path ("moov.trak.tkhd")
    local function u32(s, i) return ((s:byte(i) * 256 + s:byte(i + 1)) * 256 + s:byte(i + 2)) * 256 + s:byte(i + 3) end
    local function boxes(s, from, to)
      local out, i = {}, from
      while i <= to do
        local size = u32(s, i)
        assert(size >= 8 and i + size - 1 <= to, "a box runs past its parent")
        out[#out + 1] = { kind = s:sub(i + 4, i + 7), from = i + 8, to = i + size - 1 }
        i = i + size
      end
      assert.equal(to + 1, i)
      return out
    end
    local function find(s, list, path)
      local name, rest = path:match("^([^.]+)%.?(.*)$")
      for _, b in ipairs(list) do
        if b.kind == name then
          if rest == "" then return b end
          local inner = b.from
          if name == "stsd" then inner = inner + 8 end -- version, flags, entry count
          return find(s, boxes(s, inner, b.to), rest)
        end
      end
    end

    it("makes an MP4 whose boxes nest whole, sized and timed as asked", function()
      local mp4 = media.mp4("task_x:0", 90, 160, 3)
      local top = boxes(mp4, 1, #mp4)
      assert.same({ "ftyp", "moov", "mdat" }, { top[1].kind, top[2].kind, top[3].kind })
      local tkhd = find(mp4, top, "moov.trak.tkhd")
      assert.equal(90, u32(mp4, tkhd.to - 7) / 65536)
      assert.equal(160, u32(mp4, tkhd.to - 3) / 65536)
      local mdhd = find(mp4, top, "moov.trak.mdia.mdhd")
      assert.equal(3000, u32(mp4, mdhd.from + 16)) -- ms
      local stsz = find(mp4, top, "moov.trak.mdia.minf.stbl.stsz")
      assert.equal(30, u32(mp4, stsz.from + 8))    -- 3 s at 10 frames/s
      local stco = find(mp4, top, "moov.trak.mdia.minf.stbl.stco")
      assert.equal(top[3].from, u32(mp4, stco.from + 8) + 1) -- the samples start where mdat's data does
      assert.truthy(find(mp4, top, "moov.trak.mdia.minf.stbl.stsd.avc1"))
      assert.equal("video", review.sniff(mp4:sub(1, 16)))
      assert.equal(mp4, media.mp4("task_x:0", 90, 160, 3)) -- the same task, the same bytes
    end)

    it("makes a PNG of the asked size, and the emulator serves both with --media", function()
      local png = media.png("task_x:0", 112, 112)
      assert.equal("\137PNG\r\n\26\n", png:sub(1, 8))
      assert.equal(112, u32(png, 17))
      assert.equal(112, u32(png, 21))
      local m = helper.mock({ "--job-seconds", "0", "--media" })
      local client = helper.client(m)
      local job = assert(client:submit("kling/kling-3-0", { prompt = "a fox", aspect_ratio = "9:16", duration = 2 }))
      local res = assert(job:await(10))
      local mp4 = helper.file_bytes(m, res.id, 0, "mp4")
      assert.equal("ftyp", mp4:sub(5, 8))
      assert.equal(mp4, media.mp4(res.id .. ":0", 90, 160, 2))
      client:close()
      m.stop()
    end)
  end)

  describe("with the emulator", function()
    local m
    before_each(function() m = helper.mock({ "--job-seconds", "0.2" }) end)
    after_each(function() m.stop() end)

    local function env() return { MODKIE_API_KEY = "test-key", MODKIE_BASE_URL = m.url } end

    it("the journal keeps each row's input, values, the gateway's times and the polls", function()
      local rows = H.write(dir .. "/rows.csv", "subject,duration\na fox,5\na cat [fail],6\n")
      local tpl = H.write(dir .. "/t.txt", "{{subject}}\n")
      local r = H.cli({ "batch", "--model", "kling/kling-3-0", "--rows", rows, "--template", tpl, "--download",
        dir .. "/out", "--poll-interval", "0.05", "--quiet" }, env())
      assert.equal(1, r.code, r.err)
      local recs = lines_of(rows .. ".journal")
      local run = recs[1]
      assert.equal("run", run.type)
      assert.same({ "subject", "duration" }, run.columns)
      assert.equal(dir .. "/out", run.download)
      local subs, dones = {}, {}
      for _, rec in ipairs(recs) do
        if rec.type == "submit" then subs[rec.job] = rec end
        if rec.type == "done" then dones[rec.job] = rec end
        assert.is_number(rec.t)
      end
      assert.same({ prompt = "a fox", duration = 5 }, subs["1"].input)
      assert.same({ subject = "a fox", duration = "5" }, subs["1"].values)
      for _, key in ipairs({ "1", "2" }) do
        local d = dones[key]
        assert.is_number(d.created_at)
        assert.is_number(d.completed_at)
        assert.is_true(d.completed_at >= d.created_at)
        assert.is_true(d.polls >= 1)
        assert.is_true(d.t >= d.completed_at - 1)
      end
      assert.equal("failed", dones["2"].state)
      -- and the journal still resumes: nothing submitted again
      local before = m.stats().creates
      r = H.cli({ "batch", "--model", "kling/kling-3-0", "--rows", rows, "--template", tpl, "--download",
        dir .. "/out", "--quiet" }, env())
      assert.equal(1, r.code, r.err)
      assert.equal(before, m.stats().creates)
    end)

    it("modkie review rebuilds the page while the batch runs, and batch --review writes it at the end", function()
      local rows = H.write(dir .. "/rows.csv", "subject,tone\na fox [seconds=7],warm\na cat [seconds=7],cold\n"
        .. "a dog,warm\n")
      local tpl = H.write(dir .. "/t.txt", "{{subject}}\n")
      local p = H.spawn({ "batch", "--model", "kling/kling-3-0", "--rows", rows, "--template", tpl,
        "--download", dir .. "/out",
        "--review", dir .. "/out/review.html", "--review-by", "tone", "--poll-interval", "0.05", "--quiet" }, env())
      -- mid-run: once the slow rows are accepted
      local t0 = helper.now()
      while not (H.read(rows .. ".journal") or ""):find('"accepted","job":"2"', 1, true) do
        assert(helper.now() - t0 < 20, "the batch did not start")
        helper.sleep(0.05)
      end
      local r = H.cli({ "review", rows .. ".journal", "--out", dir .. "/mid.html", "--by", "tone", "--json" })
      assert.equal(0, r.code, r.err)
      local summary = cjson.decode(r.out)
      assert.equal(dir .. "/mid.html", summary.page)
      assert.equal(3, summary.jobs)
      assert.is_true(summary.running >= 1)
      local mid = H.read(dir .. "/mid.html")
      assert.truthy(mid:find('class="card s%-running"'))
      assert.truthy(mid:find("tone = warm", 1, true))
      -- the batch refreshes its own page as it runs (every 5 s)
      while not H.read(dir .. "/out/review.html") do
        assert(helper.now() - t0 < 20 and p.running(), "no page while the batch ran")
        helper.sleep(0.1)
      end
      assert.truthy(p.running())
      assert.truthy(H.read(dir .. "/out/review.html"):find('class="card s%-running"'))
      assert.equal(0, p.wait(30), p.err())
      p.clean()
      local html = H.read(dir .. "/out/review.html")
      assert.equal(3, count(html, 'class="card s%-success"'))
      assert.truthy(html:find('href="1%-1%.mp4"'))
      -- the emulator's default outputs are patterned bytes: said, not shown as a broken player
      assert.equal(3, count(html, 'class="tile unplayable"'))
      -- a bad column for --review-by, a missing journal: clear errors, exit 2
      r = H.cli({ "review", rows .. ".journal", "--by", "mood" })
      assert.equal(2, r.code)
      assert.truthy(r.err:find("no column 'mood'", 1, true), r.err)
      r = H.cli({ "review", dir .. "/nope.journal" })
      assert.equal(2, r.code)
      assert.truthy(r.err:find("no journal at", 1, true), r.err)
      r = H.cli({ "batch", "--model", "kling/kling-3-0", "--rows", rows, "--template", tpl, "--review", "x.html",
        "--no-journal" }, env())
      assert.equal(2, r.code)
      assert.truthy(r.err:find("--review builds the page from the journal", 1, true), r.err)
    end)
  end)
end)

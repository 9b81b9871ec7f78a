-- bench/plot.lua: the SVG plots of `make bench`, drawn here (no plotting
-- service or library): grouped bars, horizontal bars, and step CDFs of any
-- set of named samples. bench/run.lua writes them beside RESULTS.md, with
-- what they were drawn from in plots.json, so they can be drawn again:
--
--   lua5.4 bench/plot.lua bench/plots.json     (redraws every plot it lists)
--   local plot = require "plot"                (with bench/ on package.path)
--   plot.write("x.svg", plot.cdf{ title = …, xlabel = "s", samples = { {name = "default", values = {…}}, … } })
local plot = {}

local W, H = 900, 420
local PAD = { left = 70, right = 20, top = 48, bottom = 70 }
local COLOURS = { "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
  "#7f7f7f", "#bcbd22" }

local function esc(s)
  return (tostring(s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;" }))
end

local function num(x)
  if x == math.floor(x) and math.abs(x) < 1e9 then return ("%d"):format(x) end
  return ("%.1f"):format(x)
end

-- A readable tick label: 0.5, 2, 150, 1.5k.
local function label(v)
  if v >= 10000 then return ("%gk"):format(v / 1000) end
  if v >= 100 then return ("%.0f"):format(v) end
  return ("%g"):format(tonumber(("%.3g"):format(v)))
end

-- Ticks from 0 to at least `max`, about n of them, on 1-2-5 steps.
local function linear_ticks(max, n)
  if not max or max <= 0 then max = 1 end
  local raw = max / (n or 5)
  local mag = 10 ^ math.floor(math.log(raw, 10))
  local step = mag
  for _, k in ipairs({ 1, 2, 5, 10 }) do
    if raw <= k * mag then step = k * mag break end
  end
  local ticks, v = {}, 0
  while v < max - 1e-12 do
    ticks[#ticks + 1] = v
    v = v + step
  end
  ticks[#ticks + 1] = v
  return ticks
end

-- Powers of ten covering [lo, hi] (lo > 0).
local function log_ticks(lo, hi)
  local ticks = {}
  for e = math.floor(math.log(lo, 10)), math.ceil(math.log(hi, 10)) do ticks[#ticks + 1] = 10 ^ e end
  return ticks
end

-- A y (or x) scale: value -> pixel, over [ticks[1], ticks[#ticks]].
local function scale(ticks, log, from, to)
  local lo, hi = ticks[1], ticks[#ticks]
  if log then
    local a, b = math.log(lo, 10), math.log(hi, 10)
    return function(v) return from + (math.log(math.max(v, lo), 10) - a) / (b - a) * (to - from) end
  end
  return function(v) return from + (v - lo) / (hi - lo) * (to - from) end
end

local function svg_open(out, title, subtitle, w, h)
  out[#out + 1] = ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
    .. 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">'):format(w, h, w, h)
  out[#out + 1] = ('<rect width="%d" height="%d" fill="#ffffff"/>'):format(w, h)
  out[#out + 1] = ('<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>'):format(PAD.left, esc(title))
  if subtitle then
    out[#out + 1] = ('<text x="%d" y="38" fill="#555">%s</text>'):format(PAD.left, esc(subtitle))
  end
end

local function legend(out, names, x, y, per_row, width)
  per_row = per_row or 4
  for i, name in ipairs(names) do
    local col, row = (i - 1) % per_row, math.floor((i - 1) / per_row)
    local lx, ly = x + col * (width or 205), y + row * 16
    out[#out + 1] = ('<rect x="%d" y="%d" width="10" height="10" fill="%s"/>'):format(lx, ly - 9,
      COLOURS[(i - 1) % #COLOURS + 1])
    out[#out + 1] = ('<text x="%d" y="%d">%s</text>'):format(lx + 14, ly, esc(name))
  end
end

local function y_axis(out, ticks, y, log, unit, w)
  for _, t in ipairs(ticks) do
    local py = y(t)
    out[#out + 1] = ('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e3e3e3"/>'):format(PAD.left,
      w - PAD.right, py, py)
    out[#out + 1] = ('<text x="%d" y="%.1f" text-anchor="end" fill="#444">%s</text>'):format(PAD.left - 6,
      py + 4, label(t))
  end
  out[#out + 1] = ('<text transform="translate(16 %d) rotate(-90)" text-anchor="middle" fill="#444">%s%s</text>')
    :format((PAD.top + H - PAD.bottom) / 2, esc(unit), log and " (log scale)" or "")
end

--- Grouped vertical bars: `groups = { {label, values = {[series] = v}} }`,
-- `series = { names in order }`; log scale when the values span 20× or more.
function plot.bars(o)
  local out = {}
  local w = math.max(W, PAD.left + PAD.right + #o.groups * (#o.series * 14 + 24))
  svg_open(out, o.title, o.subtitle, w, H)
  local lo, hi = math.huge, 0
  for _, g in ipairs(o.groups) do
    for _, v in pairs(g.values) do
      if v > 0 then lo, hi = math.min(lo, v), math.max(hi, v) end
    end
  end
  if hi == 0 then lo, hi = 1, 1 end
  local log = hi / lo >= 20
  local ticks = log and log_ticks(lo, hi) or linear_ticks(hi * 1.08)
  local base = H - PAD.bottom
  local y = scale(ticks, log, base, PAD.top + 10)
  y_axis(out, ticks, y, log, o.unit, w)
  local gw = (w - PAD.left - PAD.right) / #o.groups
  for gi, g in ipairs(o.groups) do
    local present = {}
    for _, name in ipairs(o.series) do if g.values[name] then present[#present + 1] = name end end
    local bw = math.min(22, (gw - 16) / math.max(1, #present))
    local x0 = PAD.left + (gi - 1) * gw + (gw - bw * #present) / 2
    for k, name in ipairs(present) do
      local v = g.values[name]
      local si = 1
      for i, n in ipairs(o.series) do if n == name then si = i end end
      local top = y(v)
      out[#out + 1] = ('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %s %s</title></rect>')
        :format(x0 + (k - 1) * bw, top, bw - 2, math.max(0, base - top), COLOURS[(si - 1) % #COLOURS + 1],
          esc(name), num(v), esc(o.unit))
      out[#out + 1] = ('<text x="%.1f" y="%.1f" font-size="9" text-anchor="middle" fill="#333">%s</text>')
        :format(x0 + (k - 1) * bw + (bw - 2) / 2, top - 3, label(v))
    end
    out[#out + 1] = ('<text x="%.1f" y="%d" text-anchor="middle">%s</text>'):format(PAD.left + (gi - 0.5) * gw,
      base + 16, esc(g.label))
  end
  out[#out + 1] = ('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#333"/>'):format(PAD.left, w - PAD.right, base, base)
  legend(out, o.series, PAD.left, base + 38)
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n") .. "\n"
end

--- Horizontal bars, one per entry of `bars = { {name, value} }`.
function plot.hbars(o)
  local out = {}
  local longest = 0
  for _, b in ipairs(o.bars) do longest = math.max(longest, #b.name) end
  local left = math.min(480, 20 + longest * 6.6)
  local h = PAD.top + 20 + #o.bars * 30 + 40
  svg_open(out, o.title, o.subtitle, W, h)
  local hi = 0
  for _, b in ipairs(o.bars) do hi = math.max(hi, b.value or 0) end
  local ticks = linear_ticks(hi * 1.1)
  local x = scale(ticks, false, left, W - PAD.right - 40)
  local bottom = PAD.top + 10 + #o.bars * 30
  for _, t in ipairs(ticks) do
    out[#out + 1] = ('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#e3e3e3"/>'):format(x(t), x(t), PAD.top,
      bottom)
    out[#out + 1] = ('<text x="%.1f" y="%d" text-anchor="middle" fill="#444">%s</text>'):format(x(t), bottom + 16,
      label(t))
  end
  for i, b in ipairs(o.bars) do
    local top = PAD.top + 10 + (i - 1) * 30
    out[#out + 1] = ('<text x="%d" y="%d" text-anchor="end">%s</text>'):format(left - 8, top + 15, esc(b.name))
    if b.value then
      out[#out + 1] = ('<rect x="%d" y="%d" width="%.1f" height="20" fill="%s"/>'):format(left, top,
        x(b.value) - left, COLOURS[(i - 1) % #COLOURS + 1])
      out[#out + 1] = ('<text x="%.1f" y="%d">%s</text>'):format(x(b.value) + 5, top + 15, num(b.value))
    end
  end
  out[#out + 1] = ('<text x="%d" y="%d" text-anchor="middle" fill="#444">%s</text>'):format((left + W) / 2,
    bottom + 34, esc(o.unit))
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n") .. "\n"
end

--- Step CDFs, one per named sample: `samples = { {name, values = {…}} }`
-- (any set: schedules, loads, clients); `xlabel`; log x when they span 100×.
function plot.cdf(o)
  local out = {}
  local base = H - PAD.bottom
  local longest = 0
  for _, smp in ipairs(o.samples) do longest = math.max(longest, #smp.name + 10) end
  local per_row = longest * 6.6 > 400 and 1 or 2
  svg_open(out, o.title, o.subtitle, W, base + 60 + math.ceil(#o.samples / per_row) * 16)
  local lo, hi = math.huge, 0
  local names = {}
  for i, s in ipairs(o.samples) do
    names[i] = ("%s (n = %d)"):format(s.name, #s.values)
    for _, v in ipairs(s.values) do
      if v > 0 then lo = math.min(lo, v) end
      hi = math.max(hi, v)
    end
  end
  if hi == 0 then lo, hi = 0.1, 1 end
  local log = o.log ~= false and hi / lo >= 100
  local xt = log and log_ticks(lo, hi) or linear_ticks(hi)
  local x = scale(xt, log, PAD.left, W - PAD.right)
  local y = scale({ 0, 1 }, false, base, PAD.top + 10)
  for _, p in ipairs({ 0, 0.25, 0.5, 0.75, 0.9, 1 }) do
    out[#out + 1] = ('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s"/>'):format(PAD.left, W - PAD.right,
      y(p), y(p), p == 0.5 and "#bbbbbb" or "#e3e3e3")
    out[#out + 1] = ('<text x="%d" y="%.1f" text-anchor="end" fill="#444">%d %%</text>'):format(PAD.left - 6,
      y(p) + 4, p * 100)
  end
  for _, t in ipairs(xt) do
    out[#out + 1] = ('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#e3e3e3"/>'):format(x(t), x(t), PAD.top + 10,
      base)
    out[#out + 1] = ('<text x="%.1f" y="%d" text-anchor="middle" fill="#444">%s</text>'):format(x(t), base + 16,
      label(t))
  end
  out[#out + 1] = ('<text x="%d" y="%d" text-anchor="middle" fill="#444">%s%s</text>'):format((PAD.left + W) / 2,
    base + 32, esc(o.xlabel), log and " (log scale)" or "")
  out[#out + 1] = ('<text transform="translate(16 %d) rotate(-90)" text-anchor="middle" fill="#444">%s</text>')
    :format((PAD.top + base) / 2, "share of jobs noticed within x")
  for i, s in ipairs(o.samples) do
    local v = {}
    for k, val in ipairs(s.values) do v[k] = val end
    table.sort(v)
    local n = #v
    if n > 0 then
      local pts = { ("M%.1f %.1f"):format(x(log and math.max(v[1], lo) or 0), y(0)) }
      for k = 1, n do
        local px = x(log and math.max(v[k], lo) or v[k])
        pts[#pts + 1] = ("H%.1f V%.1f"):format(px, y(k / n))
      end
      pts[#pts + 1] = ("H%.1f"):format(W - PAD.right)
      out[#out + 1] = ('<path d="%s" fill="none" stroke="%s" stroke-width="2"><title>%s</title></path>'):format(
        table.concat(pts, " "), COLOURS[(i - 1) % #COLOURS + 1], esc(names[i]))
    end
  end
  legend(out, names, PAD.left, base + 52, per_row, 410)
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n") .. "\n"
end

--- Write `svg` to `path`.
function plot.write(path, svg)
  local f = assert(io.open(path, "wb"))
  f:write(svg)
  f:close()
  return path
end

--- Draw every plot of a list `{ {file, kind = "bars" | "hbars" | "cdf", spec} … }`
-- into `dir`; returns the file names.
function plot.draw_all(list, dir)
  local names = {}
  for i, p in ipairs(list) do
    plot.write(dir .. "/" .. p.file, plot[p.kind](p.spec))
    names[i] = p.file
  end
  return names
end

-- As a script: redraw the plots listed in a plots.json, beside it.
if arg and arg[0] and arg[0]:match("plot%.lua$") and arg[1] then
  local f = assert(io.open(arg[1], "rb"))
  local list = require("cjson").decode(f:read("*a"))
  f:close()
  for _, name in ipairs(plot.draw_all(list, arg[1]:match("^(.*)/[^/]*$") or ".")) do print("wrote " .. name) end
end

return plot

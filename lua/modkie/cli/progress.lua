--- How a batch shows its progress on stderr: a one-line bar redrawn in
-- place on a terminal (done / failed / running, rate, ETA; problems printed
-- above it), plain lines otherwise (one per finished row, for logs).
-- @module modkie.cli.progress

local core = require "modkie.core"
local common = require "modkie.cli.common"
local shown = common.text

local Progress = {}
Progress.__index = Progress

local REDRAW = 0.1 -- seconds between redraws of the bar

--- @tparam table opts `tty` (draw a bar), `lines` (print a line per row
--   when not a tty), `out` (default io.stderr), `width`
function Progress.new(opts)
  local width = opts.width or tonumber(os.getenv("COLUMNS") or "") or 80
  return setmetatable({
    tty = opts.tty, lines = opts.lines ~= false, out = opts.out or io.stderr,
    width = math.max(40, math.min(width, 160)), last = -1, shown = false,
  }, Progress)
end

function Progress:say(text)
  if self.tty and self.shown then self.out:write("\r\27[K") end
  self.out:write(text, "\n")
  if self.tty and self.p then self:draw(true) end
  self.out:flush()
end

--- The bar's text for progress `p` (as batch's on_progress gives it).
function Progress:text(p)
  local parts = { ("%d/%d"):format(p.done, p.total) }
  if p.failed > 0 then parts[#parts + 1] = p.failed .. " failed" end
  if p.ambiguous > 0 then parts[#parts + 1] = p.ambiguous .. " ambiguous" end
  parts[#parts + 1] = p.running .. " running"
  if p.downloading > 0 then parts[#parts + 1] = p.downloading .. " saving" end
  if p.rate > 0 then
    parts[#parts + 1] = p.rate >= 1 and ("%.1f/s"):format(p.rate) or ("%.1f/min"):format(p.rate * 60)
  end
  if p.eta and p.done < p.total then parts[#parts + 1] = "ETA " .. common.clock(p.eta) end
  local tail = table.concat(parts, "  ")
  local size = math.max(10, math.min(40, self.width - #tail - 4))
  local filled = p.total > 0 and math.floor(size * p.done / p.total + 0.5) or size
  local failed = p.total > 0 and math.floor(size * (p.failed + p.ambiguous) / p.total + 0.5) or 0
  if failed > filled then failed = filled end
  return "[" .. ("#"):rep(filled - failed) .. ("x"):rep(failed) .. ("-"):rep(size - filled) .. "] " .. tail
end

function Progress:draw(force)
  local now = core.now()
  if not force and now - self.last < REDRAW then return end
  self.last = now
  self.out:write("\r\27[K", self:text(self.p))
  self.shown = true
  self.out:flush()
end

--- A progress update (batch's on_progress).
function Progress:update(p)
  self.p = p
  if self.tty then self:draw(false) end
end

local function row_name(e)
  if e.variant then return ("row %d.%d"):format(e.row, e.variant) end
  return "row " .. tostring(e.row)
end

--- A finished row (batch's on_result): a line when not on a terminal; on a
-- terminal only problems get a line, above the bar.
function Progress:result(e)
  local line
  if e.state == "success" then
    if e.download_error then
      line = ("%s: success %s, but saving failed: %s"):format(row_name(e), shown(e.id),
        shown(e.download_error.message))
    elseif not self.tty then
      local n = e.files and #e.files or #(e.urls or {})
      line = ("%s: success %s (%d %s)"):format(row_name(e), shown(e.id), n,
        e.files and (n == 1 and "file" or "files") or (n == 1 and "url" or "urls"))
    end
  else
    local err = e.error
    line = ("%s: %s%s: %s"):format(row_name(e), e.state, e.id and (" " .. shown(e.id)) or "",
      shown(err and err.message or "?"))
  end
  if line and (self.lines or self.tty) then self:say(line) end
end

--- End the bar (final state, newline).
function Progress:finish()
  if self.tty and self.p then
    self:draw(true)
    self.out:write("\n")
    self.out:flush()
  end
end

return Progress

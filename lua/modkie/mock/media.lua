--- Small real media for the emulator's outputs when it runs with `--media`:
-- a browser plays them, so a review page of an emulator batch shows videos
-- and images instead of files no player opens.
--
-- A video is an H.264 (Constrained Baseline) stream in an MP4 file, written
-- without an encoder: the first frame's macroblocks are I_PCM (raw samples),
-- and each later frame is a P frame whose unchanged macroblocks are skipped
-- (copied from the frame before) and whose changed ones are I_PCM again. The
-- picture is a vertical gradient in a colour drawn from the task id, with a
-- white square crossing it: a few KiB per second. An image is a PNG (zlib
-- stored blocks, no compression) of the same picture. Everything is
-- arithmetic, so it runs on every Lua the emulator runs on.
-- @module modkie.mock.media

local media = {}

local floor, char, byte, concat = math.floor, string.char, string.byte, table.concat
local unpack = table.unpack or unpack -- luacheck: ignore (5.1)

media.FPS = 10
media.MAX_SECONDS = 10

-- Display sizes per aspect ratio (the model's field); coded in whole macroblocks.
local SIZES = {
  ["16:9"] = { 160, 90 }, ["9:16"] = { 90, 160 }, ["1:1"] = { 112, 112 }, ["4:3"] = { 128, 96 },
  ["3:4"] = { 96, 128 }, ["21:9"] = { 168, 72 },
}

--- The display size for an aspect ratio ("16:9" when unknown).
function media.size(aspect)
  local s = SIZES[aspect] or SIZES["16:9"]
  return s[1], s[2]
end

-- ---------------------------------------------------------------- the picture

local function hash(s)
  local h = 5381
  for i = 1, #s do h = (h * 33 + byte(s, i)) % 4294967296 end
  return h
end

-- A saturated colour from a hue in [0, 1).
local function hue_rgb(h)
  local i, f = floor(h * 6) % 6, h * 6 - floor(h * 6)
  local q = 1 - f
  local c = ({ { 1, f, 0 }, { q, 1, 0 }, { 0, 1, f }, { 0, q, 1 }, { f, 0, 1 }, { 1, 0, q } })[i + 1]
  return c[1] * 200 + 30, c[2] * 200 + 30, c[3] * 200 + 30
end

-- BT.601 limited range.
local function yuv(r, g, b)
  local y = 16 + (65.738 * r + 129.057 * g + 25.064 * b) / 256
  local u = 128 + (-37.945 * r - 74.494 * g + 112.439 * b) / 256
  local v = 128 + (112.439 * r - 94.154 * g - 18.285 * b) / 256
  return floor(y + 0.5), floor(u + 0.5), floor(v + 0.5)
end

-- The picture of `seed` at size w x h, frame t of n: row colours of the
-- gradient and where the square is.
local function scene(seed, w, h, t, n)
  local r, g, b = hue_rgb(hash(seed) * 0.618033988749895 % 1) -- golden ratio: near seeds, far hues
  local side = floor(math.min(w, h) / 4)
  local span = w - side
  local x = n > 1 and floor(span * t / (n - 1) + 0.5) or floor(span / 2)
  return { r = r, g = g, b = b, side = side, x = x, y = floor((h - side) / 2), h = h }
end

local function shade(s, y)
  local k = 1 - 0.55 * y / s.h -- lighter at the top
  return s.r * k, s.g * k, s.b * k
end

local function in_square(s, x, y)
  return x >= s.x and x < s.x + s.side and y >= s.y and y < s.y + s.side
end

-- ---------------------------------------------------------------- bits

local Bits = {}
Bits.__index = Bits

local function bits() return setmetatable({ out = {}, acc = 0, n = 0 }, Bits) end

function Bits:put(value, count)
  for i = count - 1, 0, -1 do
    self.acc = self.acc * 2 + floor(value / 2 ^ i) % 2
    self.n = self.n + 1
    if self.n == 8 then
      self.out[#self.out + 1] = char(self.acc)
      self.acc, self.n = 0, 0
    end
  end
end

function Bits:ue(v)
  local len = 0
  while 2 ^ (len + 1) <= v + 1 do len = len + 1 end
  self:put(0, len)
  self:put(v + 1, len + 1)
end

function Bits:se(v)
  self:ue(v > 0 and 2 * v - 1 or -2 * v)
end

function Bits:align()
  while self.n ~= 0 do self:put(0, 1) end
end

function Bits:raw(s) -- byte-aligned bytes
  self.out[#self.out + 1] = s
end

function Bits:trailing()
  self:put(1, 1)
  self:align()
  return concat(self.out)
end

-- A NAL unit: its header byte and the RBSP with emulation prevention (a 3
-- after two zero bytes that a byte <= 3 follows).
local function nal(header, rbsp)
  local out, pos = { char(header) }, 1
  while true do
    local i = rbsp:find("\0\0", pos, true)
    if not i then break end
    local nxt = byte(rbsp, i + 2)
    out[#out + 1] = rbsp:sub(pos, i + 1)
    if nxt and nxt <= 3 then out[#out + 1] = "\3" end
    pos = i + 2
  end
  out[#out + 1] = rbsp:sub(pos)
  return concat(out)
end

-- ---------------------------------------------------------------- H.264

local function sps(mbw, mbh, crop_r, crop_b)
  local b = bits()
  b:put(66, 8)      -- profile_idc: Baseline
  b:put(0xC0, 8)    -- constraint_set0 and set1: Constrained Baseline
  b:put(30, 8)      -- level_idc 3.0
  b:ue(0)           -- seq_parameter_set_id
  b:ue(4)           -- log2_max_frame_num_minus4: frame_num in 8 bits
  b:ue(2)           -- pic_order_cnt_type 2: output order = decoding order
  b:ue(1)           -- max_num_ref_frames
  b:put(0, 1)       -- gaps_in_frame_num_value_allowed_flag
  b:ue(mbw - 1)
  b:ue(mbh - 1)
  b:put(1, 1)       -- frame_mbs_only_flag
  b:put(1, 1)       -- direct_8x8_inference_flag
  if crop_r > 0 or crop_b > 0 then
    b:put(1, 1)     -- frame_cropping_flag; offsets in 2-pixel units (4:2:0)
    b:ue(0) b:ue(crop_r / 2) b:ue(0) b:ue(crop_b / 2)
  else
    b:put(0, 1)
  end
  b:put(0, 1)       -- vui_parameters_present_flag
  return nal(0x67, b:trailing())
end

local function pps()
  local b = bits()
  b:ue(0) b:ue(0)   -- pic_parameter_set_id, seq_parameter_set_id
  b:put(0, 1)       -- entropy_coding_mode_flag: CAVLC
  b:put(0, 1)       -- bottom_field_pic_order_in_frame_present_flag
  b:ue(0)           -- num_slice_groups_minus1
  b:ue(0) b:ue(0)   -- num_ref_idx_l0/l1_default_active_minus1
  b:put(0, 1)       -- weighted_pred_flag
  b:put(0, 2)       -- weighted_bipred_idc
  b:se(0) b:se(0) b:se(0) -- pic_init_qp_minus26, pic_init_qs_minus26, chroma_qp_index_offset
  b:put(1, 1)       -- deblocking_filter_control_present_flag
  b:put(0, 1)       -- constrained_intra_pred_flag
  b:put(0, 1)       -- redundant_pic_cnt_present_flag
  return nal(0x68, b:trailing())
end

-- The raw samples of macroblock (mx, my): 16x16 luma, 8x8 Cb, 8x8 Cr.
local function macroblock(s, mx, my)
  local luma, cb, cr = {}, {}, {}
  for y = my * 16, my * 16 + 15 do
    local Y, U, V = yuv(shade(s, y))
    local row = {}
    for x = mx * 16, mx * 16 + 15 do row[#row + 1] = in_square(s, x, y) and 235 or Y end
    luma[#luma + 1] = char(unpack(row))
    if y % 2 == 0 then
      local urow, vrow = {}, {}
      for x = mx * 16, mx * 16 + 15, 2 do
        local white = in_square(s, x, y)
        urow[#urow + 1], vrow[#vrow + 1] = white and 128 or U, white and 128 or V
      end
      cb[#cb + 1] = char(unpack(urow))
      cr[#cr + 1] = char(unpack(vrow))
    end
  end
  return concat(luma) .. concat(cb) .. concat(cr)
end

-- Macroblocks a square touches, as a set of "mx,my".
local function touched(s, set)
  for my = floor(s.y / 16), floor((s.y + s.side - 1) / 16) do
    for mx = floor(s.x / 16), floor((s.x + s.side - 1) / 16) do set[mx .. "," .. my] = true end
  end
  return set
end

local function slice(s, prev, k, mbw, mbh)
  local b = bits()
  local idr = k == 0
  b:ue(0)                    -- first_mb_in_slice
  b:ue(idr and 7 or 5)       -- slice_type: I or P (every slice of the picture)
  b:ue(0)                    -- pic_parameter_set_id
  b:put(k % 256, 8)          -- frame_num
  if idr then
    b:ue(0)                  -- idr_pic_id
    b:put(0, 1) b:put(0, 1)  -- no_output_of_prior_pics_flag, long_term_reference_flag
  else
    b:put(0, 1)              -- num_ref_idx_active_override_flag
    b:put(0, 1)              -- ref_pic_list_modification_flag_l0
    b:put(0, 1)              -- adaptive_ref_pic_marking_mode_flag
  end
  b:se(0)                    -- slice_qp_delta
  b:ue(1)                    -- disable_deblocking_filter_idc: off (raw samples stay as written)
  local changed = not idr and touched(s, touched(prev, {})) or nil
  local skip = 0
  for my = 0, mbh - 1 do
    for mx = 0, mbw - 1 do
      if idr or changed[mx .. "," .. my] then
        if not idr then b:ue(skip) end
        skip = 0
        b:ue(idr and 25 or 30) -- mb_type I_PCM (5 + 25 in a P slice)
        b:align()              -- pcm_alignment_zero_bits
        b:raw(macroblock(s, mx, my))
      else
        skip = skip + 1
      end
    end
  end
  if skip > 0 then b:ue(skip) end
  return nal(idr and 0x65 or 0x41, b:trailing())
end

-- ---------------------------------------------------------------- MP4

local function u32(n) return char(floor(n / 16777216) % 256, floor(n / 65536) % 256, floor(n / 256) % 256, n % 256) end
local function u16(n) return char(floor(n / 256) % 256, n % 256) end
local function box(kind, ...) local body = concat({ ... }) return u32(8 + #body) .. kind .. body end
local function full(kind, version_flags, ...) return box(kind, u32(version_flags), ...) end
local MATRIX = u32(0x10000) .. u32(0) .. u32(0) .. u32(0) .. u32(0x10000) .. u32(0) .. u32(0) .. u32(0)
  .. u32(0x40000000)

local function moov(w, h, samples, delta, offset, sps_nal, pps_nal)
  local n = #samples
  local ms = n * delta
  local sizes = {}
  for i, s in ipairs(samples) do sizes[i] = u32(#s) end
  local avcc = box("avcC", char(1, 66, 0xC0, 30, 0xFF, 0xE1), u16(#sps_nal), sps_nal, char(1), u16(#pps_nal),
    pps_nal)
  local avc1 = box("avc1", ("\0"):rep(6), u16(1), u16(0), u16(0), ("\0"):rep(12), u16(w), u16(h),
    u32(0x480000), u32(0x480000), u32(0), u16(1), char(6) .. "modkie" .. ("\0"):rep(25), u16(0x18), u16(0xFFFF),
    avcc)
  local stbl = box("stbl",
    full("stsd", 0, u32(1), avc1),
    full("stts", 0, u32(1), u32(n), u32(delta)),
    full("stss", 0, u32(1), u32(1)),
    full("stsc", 0, u32(1), u32(1), u32(n), u32(1)),
    full("stsz", 0, u32(0), u32(n), concat(sizes)),
    full("stco", 0, u32(1), u32(offset)))
  local minf = box("minf", full("vmhd", 1, ("\0"):rep(8)),
    box("dinf", full("dref", 0, u32(1), full("url ", 1))), stbl)
  local mdia = box("mdia", full("mdhd", 0, u32(0), u32(0), u32(1000), u32(ms), u16(0x55C4), u16(0)),
    full("hdlr", 0, u32(0), "vide", ("\0"):rep(12), "VideoHandler\0"), minf)
  local tkhd = full("tkhd", 3, u32(0), u32(0), u32(1), u32(0), u32(ms), ("\0"):rep(8), u16(0), u16(0), u16(0),
    u16(0), MATRIX, u32(w * 65536), u32(h * 65536))
  local mvhd = full("mvhd", 0, u32(0), u32(0), u32(1000), u32(ms), u32(0x10000), u16(0x100), ("\0"):rep(10),
    MATRIX, ("\0"):rep(24), u32(2))
  return box("moov", mvhd, box("trak", tkhd, mdia))
end

--- An MP4 (H.264) clip of `seconds` (at most 10) at size w x h (the
-- display size; even numbers), whose colour comes from `seed`.
-- @treturn string the file's bytes
function media.mp4(seed, w, h, seconds)
  seconds = math.max(1, math.min(media.MAX_SECONDS, tonumber(seconds) or 2))
  local n = floor(seconds * media.FPS + 0.5)
  local mbw, mbh = floor((w + 15) / 16), floor((h + 15) / 16)
  local sps_nal, pps_nal = sps(mbw, mbh, mbw * 16 - w, mbh * 16 - h), pps()
  local samples, prev = {}, nil
  for k = 0, n - 1 do
    local s = scene(seed, w, h, k, n)
    local unit = slice(s, prev, k, mbw, mbh)
    samples[#samples + 1] = u32(#unit) .. unit
    prev = s
  end
  local ftyp = box("ftyp", "isom", u32(512), "isom", "iso2", "avc1", "mp41")
  local delta = floor(1000 / media.FPS)
  local head = #ftyp + #moov(w, h, samples, delta, 0, sps_nal, pps_nal)
  local data = concat(samples)
  return ftyp .. moov(w, h, samples, delta, head + 8, sps_nal, pps_nal) .. u32(8 + #data) .. "mdat" .. data
end

-- ---------------------------------------------------------------- PNG

local XOR8
local function xor8(a, b)
  if not XOR8 then
    XOR8 = {}
    for x = 0, 255 do
      for y = 0, 255 do
        local r, p, xa, ya = 0, 1, x, y
        for _ = 1, 8 do
          if xa % 2 ~= ya % 2 then r = r + p end
          xa, ya, p = floor(xa / 2), floor(ya / 2), p * 2
        end
        XOR8[x * 256 + y] = r
      end
    end
  end
  return XOR8[a * 256 + b]
end

local function xor32(a, b)
  local r, p = 0, 1
  for _ = 1, 4 do
    r = r + xor8(a % 256, b % 256) * p
    a, b, p = floor(a / 256), floor(b / 256), p * 256
  end
  return r
end

local CRC
local function crc32(s)
  if not CRC then
    CRC = {}
    for i = 0, 255 do
      local c = i
      for _ = 1, 8 do
        if c % 2 == 1 then c = xor32(0xEDB88320, floor(c / 2)) else c = floor(c / 2) end
      end
      CRC[i] = c
    end
  end
  local c = 0xFFFFFFFF
  for i = 1, #s do
    c = xor32(CRC[xor8(c % 256, byte(s, i))], floor(c / 256))
  end
  return xor32(c, 0xFFFFFFFF)
end

local function chunk(kind, data)
  return u32(#data) .. kind .. data .. u32(crc32(kind .. data))
end

--- A PNG image of size w x h whose colour comes from `seed`.
-- @treturn string the file's bytes
function media.png(seed, w, h)
  local s = scene(seed, w, h, 0, 1)
  local rows = {}
  for y = 0, h - 1 do
    local r, g, b = shade(s, y)
    r, g, b = floor(r + 0.5), floor(g + 0.5), floor(b + 0.5)
    local px = {}
    for x = 0, w - 1 do
      if in_square(s, x, y) then px[#px + 1] = "\255\255\255" else px[#px + 1] = char(r, g, b) end
    end
    rows[#rows + 1] = "\0" .. concat(px) -- filter: none
  end
  local raw = concat(rows)
  -- zlib: stored blocks of at most 65535 bytes, then Adler-32
  local z, a, b = { "\120\1" }, 1, 0
  for i = 1, #raw do
    a = (a + byte(raw, i)) % 65521
    b = (b + a) % 65521
  end
  for i = 1, #raw, 65535 do
    local block = raw:sub(i, i + 65534)
    local last = i + 65535 > #raw
    z[#z + 1] = char(last and 1 or 0) .. char(#block % 256, floor(#block / 256))
      .. char(255 - #block % 256, 255 - floor(#block / 256)) .. block
  end
  z[#z + 1] = u32(b * 65536 + a)
  return "\137PNG\r\n\26\n" .. chunk("IHDR", u32(w) .. u32(h) .. char(8, 2, 0, 0, 0))
    .. chunk("IDAT", concat(z)) .. chunk("IEND", "")
end

return media

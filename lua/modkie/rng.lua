--- modkie's one seeded random stream: the same numbers on every Lua (5.1 to
-- 5.4, LuaJIT), where math.random differs between them and is shared by
-- the whole process. What draws from it: template `expand`'s random picks,
-- the learning poll schedule's jitter (seeded by the client's `seed`), the
-- emulator's fault draws (a fault run replays from its seed).
--
-- L'Ecuyer's combined LCG (1988): every product stays below 2^53, so plain
-- doubles (5.1, LuaJIT) and 5.3+ integers give the same numbers; each draw
-- combines two outputs for about 53 bits.
-- @classmod modkie.Rng

local floor, abs, byte = math.floor, math.abs, string.byte

local rng = {}

local Rng = {}
Rng.__index = Rng
Rng.__name = "modkie.Rng"

local M1, M2 = 2147483563, 2147483399
local D1 = 2147483562.0
local D2 = D1 * D1
local TWO53 = 2 ^ 53

local function step(self)
  self.s1 = (self.s1 * 40014) % M1
  self.s2 = (self.s2 * 40692) % M2
  local z = self.s1 - self.s2
  if z < 1 then z = z + (M1 - 1) end
  return z
end

--- A stream from `seed` (a number, or a string), and `salt` (a string:
-- one seed, independent streams per name).
-- @tparam number|string seed
-- @tparam[opt] string salt
-- @treturn modkie.Rng
function rng.new(seed, salt)
  local s
  if type(seed) == "string" then
    s = 0
    for i = 1, #seed do s = (s * 31 + byte(seed, i)) % M1 end
  else
    s = abs(tonumber(seed) or 0)
    if s ~= s or s == math.huge then s = 0 end
    while s >= TWO53 do s = s / 1048576 end
    s = floor(s)
  end
  local turns = 10
  if salt then
    -- The generator is linear: streams whose states differ by a little give
    -- draws that differ by a constant. A salted stream (one per name) mixes
    -- the name in and turns a number of times that depends on seed and name.
    for i = 1, #salt do s = ((s % M1) * 31 + byte(salt, i)) % M1 end
    turns = turns + s % 997
  end
  local self = setmetatable({
    s1 = s % (M1 - 1) + 1,
    s2 = (floor(s / (M1 - 1)) * 7 + s % (M2 - 1)) % (M2 - 1) + 1,
  }, Rng)
  for _ = 1, turns do step(self) end
  return self
end

--- The next number, uniform in [0, 1).
function Rng:next()
  local a = step(self)
  local b = step(self)
  return (a - 1) / D1 + (b - 1) / D2
end

--- Where the stream is, to go on from there later (`restore`).
-- @treturn table `{ s1, s2 }`
function Rng:state()
  return { self.s1, self.s2 }
end

--- Go on from a `state()`; false (and no change) when `state` is not one.
function Rng:restore(state)
  if type(state) ~= "table" then return false end
  local s1, s2 = state[1], state[2]
  if type(s1) ~= "number" or type(s2) ~= "number" or not (s1 >= 1 and s1 < M1 and s2 >= 1 and s2 < M2)
    or s1 ~= floor(s1) or s2 ~= floor(s2) then
    return false
  end
  self.s1, self.s2 = s1, s2
  return true
end

return rng

--- A seeded random stream that gives the same numbers on every Lua (5.1 to
-- 5.4, LuaJIT): math.random differs between them, and a fault run must be
-- replayable from its seed. Park–Miller "minimal standard" (multiplier
-- 48271, modulus 2^31 - 1): every product stays below 2^53, so plain
-- numbers are exact without integer or bit operations.
local Rng = {}
Rng.__index = Rng

local M = 2147483647
local A = 48271

--- A stream from `seed` (any whole number) and an optional `salt` (a string),
-- so one seed gives independent streams per name.
function Rng.new(seed, salt)
  local x = math.floor(seed) % M
  for i = 1, #(salt or "") do x = (x * 31 + salt:byte(i)) % M end
  if x == 0 then x = 1 end -- 0 is the generator's one fixed point
  local self = setmetatable({ x = x }, Rng)
  -- Nearby seeds start nearby: a few turns spread them out.
  for _ = 1, 4 do self:next() end
  return self
end

--- The next number, uniform in [0, 1).
function Rng:next()
  self.x = (self.x * A) % M
  return (self.x - 1) / (M - 1)
end

return Rng

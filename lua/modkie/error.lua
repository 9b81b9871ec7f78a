--- Errors returned by modkie: tables with the metatable `modkie.Error`.
-- Every failure a caller can act on comes back as `nil, err`; only
-- programmer errors (a wrong argument type) are raised.
-- @module modkie.error

local Error = {}
Error.__index = Error
Error.__name = "modkie.Error"

--- Every kind an error can have, with what it means.
Error.kinds = {
  validation = "the input was refused (before sending, or by the gateway with 422)",
  config = "the client is not set up to make this call (missing key, bad option)",
  auth = "the API key was refused (401)",
  credits = "not enough credits, or a sub-key limit (402, 433)",
  rate_limit = "the gateway's rate limit answered 429 and retries ran out",
  not_found = "the task or resource does not exist (404)",
  server = "the gateway failed (5xx, 455 maintenance) and retries ran out",
  network = "the connection failed and retries ran out",
  timeout = "await's own timeout ran out; the job keeps going",
  deadline = "the job's deadline passed; polling stopped",
  failed = "the job ran and failed (failCode / failMsg)",
  protocol = "the gateway sent something that is not the contract",
  cancelled = "the job was cancelled",
  ambiguous = "createTask was sent but its outcome is unknown; it was not retried",
}

local FIELDS = { "status", "code", "task_id", "field", "row" }

local byte = string.byte
local next = next
local QUESTION = byte("?")
-- "?number" -> "number": Error.check is on every call's path
local OPTIONAL = {}
for _, t in ipairs({ "nil", "boolean", "number", "string", "table", "function", "thread", "userdata" }) do
  OPTIONAL["?" .. t] = t
end

--- Make an error.
-- @tparam string kind one of `Error.kinds`
-- @tparam string message what went wrong, for a human
-- @tparam[opt] table fields extra fields (status, code, task_id, field, row, retryable, …)
-- @treturn modkie.Error
function Error.new(kind, message, fields)
  assert(Error.kinds[kind], "modkie: unknown error kind " .. tostring(kind))
  local err = {}
  if fields then
    -- next, not pairs: a job:cancel() in a __gc finaliser makes an error,
    -- and under LuaJIT a pairs loop compiled for other types of fields never
    -- ends inside a finaliser (docs/embedding.md, "Finalisers under LuaJIT")
    local k, v = next(fields)
    while k ~= nil do
      err[k] = v
      k, v = next(fields, k)
    end
  end
  err.kind, err.message = kind, message or kind
  return setmetatable(err, Error)
end

--- True when `x` is a modkie error.
function Error.is(x)
  return getmetatable(x) == Error
end

function Error.__tostring(err)
  local parts = { "modkie " .. err.kind .. " error: " .. tostring(err.message) }
  for _, k in ipairs(FIELDS) do
    if err[k] ~= nil then parts[#parts + 1] = k .. "=" .. tostring(err[k]) end
  end
  return table.concat(parts, " ")
end

--- Raise a programmer error naming the argument: `bad argument #n to 'fn' (msg)`.
function Error.argument(n, fname, msg)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), 3)
end

--- Raise when a method was called with a dot (`client.submit(model, input)`
-- instead of `client:submit(…)`): `self` is then not an object of `class`.
-- @tparam table class the metatable of the objects (modkie.Client, modkie.Job)
-- @tparam string name the method
-- @tparam string var how the docs name such an object ("client", "job")
function Error.method(self, class, name, var)
  if getmetatable(self) ~= class then
    error(("bad self to '%s' (call it with a colon, %s:%s(…), not %s.%s(…))"):format(name, var, name, var, name), 3)
  end
end

--- Check an argument's type; raise naming it when wrong.
-- @param value the argument
-- @tparam string want the type wanted ("string", "table", …); "?x" allows nil
function Error.check(n, fname, value, want)
  local t = type(value)
  if t == want then return end -- the common case first: no string made
  if byte(want) == QUESTION then
    if value == nil then return end
    want = OPTIONAL[want] or want:sub(2)
    if t == want then return end
  end
  error(("bad argument #%d to '%s' (%s expected, got %s)"):format(n, fname, want, t), 3)
end

--- Check a number of seconds to wait (nil: no limit): a NaN is refused too,
-- as a wait for NaN seconds would never end (every comparison with it fails).
function Error.check_wait(n, fname, value)
  local t = type(value)
  if value == nil or (t == "number" and value == value) then return end
  error(("bad argument #%d to '%s' (number expected, got %s)"):format(n, fname, t == "number" and "NaN" or t), 3)
end

return Error

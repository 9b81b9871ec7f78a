--- Prompt directives: tests script a job by writing `[name]` or `[name=value]`
-- inside its prompt, e.g. "a cat [fail] [seconds=2]". This is the one place
-- they are read; a new directive is one more entry in HANDLERS.
--   [fail] [text] [seconds=N] [outputs=N] [size=BYTES] [ext=png]
--   [fail=500] [fail=GENERATION_FAILED] [fail=null]   the failCode (and its
--     documented failMsg) of the failed record; [fail] alone: 501
--   [envelope=501]   recordInfo answers the failed record in the code 501
--     envelope callbacks use ("Playground task failed.")
--   [record_delay=S]   recordInfo answers "recordInfo is null" for S seconds
--   [callback=drop] [callback=delay:S] [callback=duplicate]   what happens to
--     the task's callback (modkie.mock.callbacks); several separated by commas
--   [progress]   the record carries `progress`, as Sora 2 models' records do
--   [fault=ENDPOINT:KIND] [fault=ENDPOINT:KINDxN]   deterministic faults, see
--     modkie.mock.faults; several in one directive separated by commas, or
--     several directives. A bad fault or callback value is an error
--     (d.errors), because a test that mistypes it must not pass without it.
local faults = require "modkie.mock.faults"
local Callbacks = require "modkie.mock.callbacks"

local directives = {}

local MAX_OUTPUTS = 100
local MAX_SIZE = 64 * 1024 * 1024

-- Each handler gets the directive table being built and the raw value
-- ("" for a bare `[name]`); a value it does not understand is ignored.
local function problem(d, text)
  d.errors = d.errors or {}
  d.errors[#d.errors + 1] = text
end

local HANDLERS = {
  fail = function(d, v)
    d.fail = true
    if v ~= "" then d.fail_code = v end
  end,
  envelope = function(d, v)
    if v == "501" then d.envelope = 501 else problem(d, "[envelope=" .. v .. "]: only 501 is known") end
  end,
  record_delay = function(d, v)
    local n = tonumber(v)
    if n and n >= 0 and n < math.huge then d.record_delay = n end
  end,
  callback = function(d, v)
    local opts, err = Callbacks.parse_directive(v)
    if opts then d.callback = opts else problem(d, "[callback=" .. v .. "]: " .. err) end
  end,
  progress = function(d) d.progress = true end,
  text = function(d) d.text = true end,
  seconds = function(d, v)
    local n = tonumber(v)
    if n and n >= 0 and n < math.huge then d.seconds = n end
  end,
  outputs = function(d, v)
    local n = tonumber(v)
    if n and n >= 0 and n <= MAX_OUTPUTS and n == math.floor(n) then d.outputs = n end
  end,
  size = function(d, v)
    local n = tonumber(v)
    if n and n >= 0 and n <= MAX_SIZE and n == math.floor(n) then d.size = n end
  end,
  ext = function(d, v)
    if v:match("^%w+$") then d.ext = v:lower() end
  end,
  fault = function(d, v)
    local list, err = faults.parse_trigger(v)
    if not list then return problem(d, "[fault=" .. v .. "]: " .. err) end
    d.faults = d.faults or {}
    for _, t in ipairs(list) do d.faults[#d.faults + 1] = t end
  end,
}

--- Add (or replace) a directive handler: `fn(d, value)`.
function directives.register(name, fn)
  HANDLERS[name] = fn
end

--- Read the directives of `prompt` (any value; non-strings have none).
-- Returns a table of what was set and the prompt with known directives removed.
function directives.parse(prompt)
  local d = {}
  if type(prompt) ~= "string" then return d, prompt end
  local clean = prompt:gsub("%[(%a[%w_]*)=?([^%]]*)%]", function(name, value)
    local handler = HANDLERS[name:lower()]
    if not handler then return nil end -- not ours: leave the text alone
    handler(d, value)
    return ""
  end)
  clean = clean:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  return d, clean
end

return directives

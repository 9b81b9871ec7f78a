--- Fuzz harness: journal.replay, which reads back a batch's journal after
-- a crash (any bytes: a file torn, edited, or not a journal at all).
-- Properties:
--  * nothing raises; a refusal is a validation error naming a line;
--  * a crash can only tear the end: if a journal replays, so does every
--    prefix cut inside its last line kept (what a kill during a write
--    leaves), with no job submitted more often than in the whole (cuts
--    that make a whole JSON object of a line the whole journal reads as
--    torn are left out: a torn write is a strict prefix of a record, never
--    a whole object);
--  * appending a torn line (no newline) to a journal that replays still
--    replays, and counts one more torn line.
local journal = require "modkie.batch.journal"
local F = require "fuzzutil"
local json = require("cjson.safe").new()
local check, show = F.check, F.show

json.decode_max_depth(32) -- as journal.lua reads lines

local function is_record(line)
  local rec = json.decode(line)
  return type(rec) == "table" and type(rec.type) == "string"
end

local function is_object(line)
  return type(json.decode(line)) == "table"
end

local function replay(text, what)
  local state, err = journal.replay(text, "fuzz.jsonl")
  if state == nil then
    F.check_error(err, "validation", what)
    F.check_count(err.line, what .. ": err.line")
    return nil
  end
  check(type(state.jobs) == "table" and math.type(state.lines) == "integer", "%s: state %s", what, show(state))
  for key, js in pairs(state.jobs) do
    check(type(key) == "string" and js.key == key, "%s: job key %s", what, show(key))
    check(math.type(js.submits) == "integer" and js.submits >= 0, "%s: submits %s", what, show(js.submits))
  end
  return state
end

return function(text)
  local whole = replay(text, "replay")
  if not whole then return end
  -- cut inside each of the first lines (a write killed halfway)
  local pos, cuts = 1, 0
  while pos <= #text and cuts < 24 do
    local nl = text:find("\n", pos, true) or #text + 1
    for _, at in ipairs({ pos + (nl - pos) // 2, nl - 1 }) do
      if at >= pos and at < #text
        and not (is_object(text:sub(pos, at)) and not is_record(text:sub(pos, nl - 1))) then
        cuts = cuts + 1
        local part = replay(text:sub(1, at), "prefix")
        check(part, "the journal replays, but not its first %d bytes (a torn write): %s", at, show(text:sub(1, at)))
        for key, js in pairs(part.jobs) do
          local later = whole.jobs[key]
          check(later and later.submits >= js.submits, "job %s submitted more in a prefix", show(key))
        end
      end
    end
    pos = nl + 1
  end
  local sep = (text == "" or text:sub(-1) == "\n") and "" or "\n"
  local torn = replay(text .. sep .. '{"type":"done","job":"1","sta', "torn")
  check(torn and torn.torn == whole.torn + 1, "a torn last line: %s", show(torn and torn.torn))
end

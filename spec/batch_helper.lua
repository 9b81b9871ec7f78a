--- Helpers for the batch, journal and CLI specs: run `bin/modkie` as a
-- child process (in the foreground or the background), write files.
local helper = require "spec.helper"

local H = {}

local LUA = os.getenv("MODKIE_TEST_LUA") or "lua5.4"
local q = helper.shell_quote

local slurp = helper.read_file
H.read = slurp

--- Write `text` to `path`; returns the path.
function H.write(path, text)
  helper.write_file(path, text)
  return path
end

-- `env VAR=value … -u VAR …` for a table of name -> value (false: unset).
local function env_prefix(env)
  local parts = { "env" }
  local names = {}
  for k in pairs(env or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local v = env[k]
    if v == false then
      parts[#parts + 1] = "-u " .. k
    else
      parts[#parts + 1] = k .. "=" .. q(v)
    end
  end
  return table.concat(parts, " ")
end

local function command(argv, env)
  local cmd = env_prefix(env) .. " " .. LUA .. " bin/modkie"
  for _, a in ipairs(argv) do cmd = cmd .. " " .. q(a) end
  return cmd
end

-- The command line's record of tasks goes to a folder of the specs' own,
-- never to the user's ~/.local/state.
local state_dir
local function defaults(env)
  env = env or {}
  for _, k in ipairs({ "MODKIE_API_KEY", "MODKIE_BASE_URL" }) do
    if env[k] == nil then env[k] = false end
  end
  if env.MODKIE_STATE_DIR == nil then
    state_dir = state_dir or helper.tmpdir()
    env.MODKIE_STATE_DIR = state_dir
  end
  return env
end

--- Run `bin/modkie argv…` to its end: `{ code, out, err }`.
-- `env`: variables to set (false to unset); MODKIE_* not given are unset,
-- but MODKIE_STATE_DIR, a folder of the specs' own.
function H.cli(argv, env)
  env = defaults(env)
  local out, err = os.tmpname(), os.tmpname()
  local ok, _, code = os.execute(command(argv, env) .. " >" .. out .. " 2>" .. err .. " </dev/null")
  if type(ok) == "number" then code = ok / 256 end -- Lua 5.1
  local r = { code = code, out = slurp(out) or "", err = slurp(err) or "" }
  os.remove(out)
  os.remove(err)
  return r
end

--- Start `bin/modkie argv…` in the background. Returns a process:
-- `pid`, `running()`, `signal(name)`, `wait(timeout)` -> exit code or nil,
-- `out()`, `err()`.
function H.spawn(argv, env)
  env = defaults(env)
  local base = os.tmpname()
  -- the pid and rc files appear whole (renamed into place): a reader never sees half a number
  local script = ("%s >%s 2>%s </dev/null & pid=$!; echo $pid >%s && mv %s %s; wait $pid; echo $? >%s && mv %s %s")
    :format(command(argv, env), q(base .. ".out"), q(base .. ".err"),
      q(base .. ".pid.tmp"), q(base .. ".pid.tmp"), q(base .. ".pid"),
      q(base .. ".rc.tmp"), q(base .. ".rc.tmp"), q(base .. ".rc"))
  os.execute("sh -c " .. q(script) .. " >/dev/null 2>&1 &")
  local p = { base = base }
  local t0 = helper.now()
  while not p.pid do
    p.pid = tonumber(slurp(base .. ".pid") or "")
    if not p.pid then
      assert(helper.now() - t0 < 10, "the child process did not start")
      helper.sleep(0.005)
    end
  end
  function p.code() return tonumber(slurp(base .. ".rc") or "") end
  function p.running() return p.code() == nil end
  function p.signal(sig) os.execute("kill -" .. sig .. " " .. p.pid .. " 2>/dev/null") end
  function p.wait(timeout)
    local t1 = helper.now()
    while p.running() do
      if helper.now() - t1 > (timeout or 60) then return nil end
      helper.sleep(0.01)
    end
    return p.code()
  end
  function p.out() return slurp(base .. ".out") or "" end
  function p.err() return slurp(base .. ".err") or "" end
  function p.clean()
    for _, ext in ipairs({ ".out", ".err", ".pid", ".rc" }) do os.remove(base .. ext) end
    os.remove(base)
  end
  return p
end

--- A runner of `bin/modkie` with `env` (and per call `extra`) set: `run(argv, extra)`.
function H.runner(env)
  return function(argv, extra)
    local e = {}
    for k, v in pairs(env) do e[k] = v end
    for k, v in pairs(extra or {}) do e[k] = v end
    return H.cli(argv, e)
  end
end

--- The names of the files in `dir` (sorted).
function H.ls(dir)
  local names = {}
  local p = io.popen("ls -1A " .. q(dir) .. " 2>/dev/null")
  for line in p:lines() do names[#names + 1] = line end
  p:close()
  table.sort(names)
  return names
end

--- Inode of `path` (changes when a file is written anew and renamed into place).
function H.inode(path)
  local p = io.popen("stat -c %i " .. q(path) .. " 2>/dev/null")
  local s = p:read("*l")
  p:close()
  return tonumber(s or "")
end

return H

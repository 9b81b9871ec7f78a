-- The README's own commands, run verbatim: every ```sh block of README.md,
-- in order, as one shell session in a copy of this checkout, the way a new
-- user types them (no MODKIE_* set, a HOME of its own). They run in
-- network and process namespaces of their own (unshare -rn --pid --mount-proc): the
-- emulator the README starts on port 8089 cannot meet another one on this
-- machine, and ends with the session.
local helper = require "spec.helper"

local q = helper.shell_quote

-- Commands the spec does not run, with the reason.
local SKIP = {
  ["make test   # build the C core and run every spec against the emulator"] = "it is this suite",
}

local function sh_blocks(text)
  local blocks = {}
  for block in text:gmatch("\n```sh\n(.-)\n```") do blocks[#blocks + 1] = block end
  return blocks
end

local function lua_block_after(text, heading)
  local at = assert(text:find(heading, 1, true), heading)
  return assert(text:match("\n```lua\n(.-)\n```", at))
end

describe("README #slow", function()
  local readme = assert(helper.read_file("README.md"))

  it("shows examples/hello.lua as it is", function()
    local code = lua_block_after(readme, "## Hello")
    local file = assert(helper.read_file("examples/hello.lua"))
    assert.truthy(file:find(code, 1, true), "the README's Hello is not examples/hello.lua")
  end)

  it("runs every sh block as written, from a fresh copy of the checkout", function()
    if not os.execute("unshare -rn --pid --fork --mount-proc sh -c 'ip link set lo up' >/dev/null 2>&1") then
      pending("needs unshare -rn and ip (util-linux, iproute2) for a private loopback")
      return
    end
    local blocks = sh_blocks(readme)
    assert.is_true(#blocks >= 3, "the README has its commands in sh blocks")
    local lines, skipped = {}, 0
    for _, block in ipairs(blocks) do
      for line in (block .. "\n"):gmatch("(.-)\n") do
        if SKIP[line] then skipped = skipped + 1 else lines[#lines + 1] = line end
      end
    end
    assert.equal(1, skipped, "the skipped commands are still in the README")

    local tmp = helper.tmpdir()
    finally(function() helper.rmdir(tmp) end)
    local copy, home = tmp .. "/modkie", tmp .. "/home"
    -- the checkout without its history and builds, plus the C core built
    -- for 5.4 (timestamps kept: `make` has nothing to redo)
    assert(os.execute(("mkdir -p %s %s/build %s && for f in * .[!.]*; do case $f in .git|build) ;; *) "
      .. "cp -rp \"$f\" %s/ ;; esac; done && cp -rp build/lua5.4 %s/build/"):format(q(copy), q(copy), q(home),
        q(copy), q(copy))))
    helper.write_file(tmp .. "/session.sh", "set -ex\n"
      .. table.concat(lines, "\n") .. "\n")
    local env = "env -u MODKIE_API_KEY -u MODKIE_BASE_URL -u MODKIE_STATE_DIR -u XDG_STATE_HOME HOME=" .. q(home)
    local session = ("ip link set lo up && cd %s && %s sh %s"):format(q(copy), env, q(tmp .. "/session.sh"))
    local cmd = ("unshare -rn --pid --fork --mount-proc sh -c %s >%s 2>&1"):format(q(session), q(tmp .. "/out"))
    local ok = os.execute(cmd)
    local out = helper.read_file(tmp .. "/out") or ""
    assert.is_truthy(ok == true or ok == 0, out)
    -- what each step shows a user
    assert.matches("\ntask_%S+\thttp://127%.0%.0%.1:8089/files/task_%S+%.mp4\n", out, nil, false)
    assert.matches("\nstate    success\n", out)
    assert.matches("\ntask_%S+  %d%d%d%d%-%d%d%-%d%d %d%d:%d%d  kling/kling%-3%-0  success", out)
    assert.matches("of 5 jobs succeeded", out)
    assert.matches("\n13 jobs: 13 succeeded, 0 failed, 0 ambiguous\ncredits: 455\nfiles: 13 in build/videos\n", out)
    assert.matches("100 jobs: 100 succeeded, 0 failed", out)
    local list = helper.read_file(home .. "/.local/state/modkie/tasks.jsonl")
    assert.truthy(list, "the command line kept its record in ~/.local/state/modkie")
    assert.is_nil(list:find('"test"', 1, true), "no key in the record")
  end)
end)

rockspec_format = "3.0"
package = "modkie-mock"
version = "scm-1"
source = {
  url = "git+https://github.com/modkie/modkie.git",
}
description = {
  summary = "modkie's local gateway emulator (modkie mock): the jobs API over real HTTP, for tests and demos",
  detailed = [[
A real local HTTP/1.1 server speaking the ModKie / Kie jobs API in both
dialects: scripted job timelines, failures and faults (429 + Retry-After,
5xx, dropped connections, slow and malformed bodies), credit accounting,
signed callbacks and downloadable outputs. `modkie mock --port N` runs it;
tests start it on a free port. A rock of its own so that the `modkie` rock
needs only lua-cjson.
]],
  homepage = "https://modkie.com",
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
  "modkie", -- the command (bin/modkie), models, webhook signing (the C core's HMAC), JSON, flags
  "luasocket", -- the server's sockets, the callbacks' HTTP client
}
build = {
  -- pure Lua: the Makefile installs lua/modkie/mock/*.lua (no build step)
  type = "make",
  build_pass = false,
  install_target = "install-mock",
  install_variables = {
    INSTALL_LMOD = "$(LUADIR)",
  },
}

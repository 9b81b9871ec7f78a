rockspec_format = "3.0"
package = "modkie"
version = "scm-1"
source = {
  url = "git+https://github.com/modkie/modkie.git",
}
description = {
  summary = "Client for job-style generation APIs (ModKie / Kie jobs: createTask, recordInfo)",
  detailed = [[
A Lua extension module with a C core over libcurl's multi interface: submit
video and image generation jobs, poll them on the gateway's recommended
schedule, download the outputs. Never blocks its host, never submits a job
twice, works in plain Lua, OpenResty and game loops. Includes a CLI; the
local gateway emulator (`modkie mock`) is the modkie-mock rock.
]],
  homepage = "https://modkie.com",
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
  "lua-cjson",
}
-- libcurl: Debian's libcurl4-openssl-dev puts curl.h in a multiarch folder
-- the compiler knows and luarocks' header search does not; the compiler finds it.
-- hiredis (Debian's libhiredis-dev): the Redis store of rate.shared.
-- cJSON (Debian's libcjson-dev): the engine reads every answer in C.
-- libmagic (Debian's libmagic-dev): the type of a file to upload, from its bytes.
external_dependencies = {
  HIREDIS = { header = "hiredis/async.h" },
  CJSON = { header = "cjson/cJSON.h" },
  MAGIC = { header = "magic.h" },
  MICROHTTPD = { header = "microhttpd.h" }, -- Debian's libmicrohttpd-dev: the callback listener (listen =)
}
build = {
  -- the Makefile compiles src/*.c and src/lib/*.c with -Wall -Wextra -Werror and installs every Lua module
  -- but the emulator's (lua/modkie/mock/: the modkie-mock rock)
  type = "make",
  build_target = "core",
  build_variables = {
    BUILD = "build/rock$(LUA_INCDIR)", -- one build per Lua
    CFLAGS = "$(CFLAGS)",
    LUA_INC = "$(LUA_INCDIR)",
  },
  install_target = "install-lib",
  install_variables = {
    BUILD = "build/rock$(LUA_INCDIR)", -- one build per Lua
    INSTALL_LMOD = "$(LUADIR)",
    INSTALL_CMOD = "$(LIBDIR)",
  },
  install = {
    bin = { modkie = "bin/modkie" },
  },
}

/* lua_runner.c: the libFuzzer driver for the Lua harnesses (fuzz/lua/NAME.lua).
 * Built once per harness with FUZZ_SCRIPT naming the script; the script
 * returns a function that takes the input bytes as a string and raises when
 * a property breaks. Any error raised out of it is a finding: printed with a
 * traceback, then abort() so libFuzzer saves the input.
 *
 * Coverage: libFuzzer sees only instrumented C, and the parsers are Lua. A
 * line hook hashes (function, line, previous line) into libFuzzer's extra
 * counters, so new paths through the Lua code count as new coverage. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#ifndef FUZZ_SCRIPT
#error "build with -DFUZZ_SCRIPT=\"path/to/harness.lua\""
#endif
#ifndef FUZZ_ROOT
#define FUZZ_ROOT "."
#endif

#define EDGES (1u << 16)

/* libFuzzer reads this section after every input as extra coverage. */
__attribute__((used, section("__libfuzzer_extra_counters"))) static uint8_t lua_edges[EDGES];
static uintptr_t prev_line;

static void line_hook(lua_State *L, lua_Debug *ar) {
  uintptr_t here;
  if (!lua_getinfo(L, "S", ar)) return;
  /* a function's source string is interned: its address names the chunk */
  here = ((uintptr_t)ar->source * 2654435761u) ^ ((uintptr_t)ar->linedefined << 16) ^ (uintptr_t)ar->currentline;
  here ^= here >> 17;
  lua_edges[(here ^ prev_line) & (EDGES - 1)]++;
  prev_line = here >> 1;
}

#ifdef FUZZ_WITH_CORE
/* the C core, built into this binary with the sanitizers (webhook: HMAC) */
int luaopen_modkie_core(lua_State *L);
#endif

static lua_State *L;
static int fuzz_ref = LUA_NOREF;

static int traceback(lua_State *LL) {
  const char *msg = lua_tostring(LL, 1);
  if (!msg) msg = luaL_tolstring(LL, 1, NULL); /* an error object: its __tostring */
  luaL_traceback(LL, LL, msg, 1);
  return 1;
}

/* At exit (libFuzzer's normal end): close the state, so the harness's
 * finalizers run (they remove temporary files). */
static void close_state(void) {
  if (L) lua_close(L);
  L = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  L = luaL_newstate();
  if (!L) abort();
  luaL_openlibs(L);
#ifdef FUZZ_WITH_CORE
  luaL_requiref(L, "modkie.core", luaopen_modkie_core, 0);
  lua_pop(L, 1);
#endif
  /* the repo's modules first, then the system's (cjson, socket) */
  if (luaL_dostring(L, "package.path = '" FUZZ_ROOT "/lua/?.lua;" FUZZ_ROOT "/lua/?/init.lua;" FUZZ_ROOT "/fuzz/lua/?.lua;' .. package.path") != 0 ||
      luaL_loadfile(L, FUZZ_SCRIPT) != 0 || lua_pcall(L, 0, 1, 0) != 0 || !lua_isfunction(L, -1)) {
    fprintf(stderr, "lua_runner: cannot load %s: %s\n", FUZZ_SCRIPT, lua_tostring(L, -1));
    abort();
  }
  fuzz_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_sethook(L, line_hook, LUA_MASKLINE, 0);
  atexit(close_state);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  prev_line = 0;
  lua_pushcfunction(L, traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, fuzz_ref);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 1) != 0) {
    fprintf(stderr, "lua_runner: %s: error raised: %s\n", FUZZ_SCRIPT, lua_tostring(L, -1));
    abort();
  }
  lua_settop(L, 0);
  /* Free this input's garbage now: libFuzzer runs a (slow) leak check after
   * every input that allocated more than it freed. */
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}

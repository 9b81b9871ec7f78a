/* modkie-host: a C program that embeds Lua 5.4 and runs a 60 Hz frame loop,
 * the way a game engine does. The script returns a table with
 * frame(dt) -> boolean (false: stop); modkie's client:update() runs inside it.
 *   make examples && build/examples/modkie-host examples/host/game.lua [gateway-url]
 */
#define _POSIX_C_SOURCE 200809L
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <time.h>

#define FRAME_NS 16666667L /* 60 Hz */

static double seconds(const struct timespec *t) {
  return (double)t->tv_sec + (double)t->tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  const char *script = argc > 1 ? argv[1] : "examples/host/game.lua";
  struct timespec next, now, last;
  lua_State *L = luaL_newstate();
  int i, frames = 0, ok = 1;
  if (!L) return 1;
  luaL_openlibs(L);
  /* the script's arguments, as the lua command line would give them */
  lua_createtable(L, argc, 0);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  if (luaL_dofile(L, script) != LUA_OK || !lua_istable(L, -1)) {
    fprintf(stderr, "modkie-host: %s\n", lua_isstring(L, -1) ? lua_tostring(L, -1) : "the script must return a table");
    lua_close(L);
    return 1;
  }
  clock_gettime(CLOCK_MONOTONIC, &next);
  last = next;
  for (;;) {
    int keep;
    clock_gettime(CLOCK_MONOTONIC, &now);
    lua_getfield(L, -1, "frame");
    lua_pushnumber(L, seconds(&now) - seconds(&last));
    last = now;
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
      fprintf(stderr, "modkie-host: frame %d: %s\n", frames, lua_tostring(L, -1));
      ok = 0;
      break;
    }
    keep = lua_toboolean(L, -1);
    lua_pop(L, 1);
    frames++;
    if (!keep) break;
    /* sleep to the next frame boundary, as a vsync'd game loop would */
    next.tv_nsec += FRAME_NS;
    if (next.tv_nsec >= 1000000000L) {
      next.tv_nsec -= 1000000000L;
      next.tv_sec++;
    }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
  }
  printf("modkie-host: %d frames\n", frames);
  lua_close(L);
  return ok ? 0 : 1;
}

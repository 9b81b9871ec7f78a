/* fork.c: fork(), waitpid() and _exit() for the fork spec (Lua has none, and
 * Debian's lua-posix has no Lua 5.4 build). Built by the spec itself. */
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

static int l_fork(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)fork());
  return 1;
}

/* wait(pid) -> exit code, or -1 when the child did not exit normally */
static int l_wait(lua_State *L) {
  int status = 0;
  if (waitpid((pid_t)luaL_checkinteger(L, 1), &status, 0) < 0) status = -1;
  lua_pushinteger(L, status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  return 1;
}

/* exit(code): at once, without closing the Lua state (no finalisers run) */
static int l_exit(lua_State *L) {
  _exit((int)luaL_checkinteger(L, 1));
  return 0;
}

int luaopen_fork(lua_State *L) {
  lua_createtable(L, 0, 3);
  lua_pushcfunction(L, l_fork);
  lua_setfield(L, -2, "fork");
  lua_pushcfunction(L, l_wait);
  lua_setfield(L, -2, "wait");
  lua_pushcfunction(L, l_exit);
  lua_setfield(L, -2, "exit");
  return 1;
}

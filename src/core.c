/* core.c: the module `modkie.core`: the engine (engine.c), the record reader
 * (record.c), the file-system helpers (fs.c), HMAC (hmac.c) and the probes of
 * files to upload (upload.c), each bound in a file of its own, and the few
 * plain functions below. The C library they
 * bind is src/lib/, which knows no Lua. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "core.h"
#include "lib/engine.h"
#include "lib/json.h"
#include "lib/schedule.h"
#include "lib/state.h"
#include "lib/url.h"
#include "lib/utf8.h"

#define MODKIE_CORE_VERSION "0.1.0"

/* core.classify_state(s) -> "queued" | "running" | "success" | "failed" */
static int l_classify_state(lua_State *L) {
  lua_pushstring(L, mk_state_name(mk_classify_state(luaL_checkstring(L, 1))));
  return 1;
}

/* core.default_interval(elapsed, u) -> seconds: the default poll schedule, u in [0,1) the jitter draw */
static int l_default_interval(lua_State *L) {
  lua_pushnumber(L, mk_default_interval(luaL_checknumber(L, 1), luaL_checknumber(L, 2)));
  return 1;
}

/* core.origin(url) -> { scheme =, host =, port =, loopback =, origin = "scheme://host:port" }
 * | nil: where an http(s) URL connects, as libcurl reads it (lib/url.c's
 * mk_url_parse_origin, the one place origins are normalised). */
static int l_origin(lua_State *L) {
  mk_origin o;
  char text[300];
  if (mk_url_parse_origin(luaL_checkstring(L, 1), &o) != 0) return 0;
  snprintf(text, sizeof text, "%s://%s:%ld", o.scheme, o.host, o.port);
  lua_createtable(L, 0, 5);
  mk_set_string(L, "scheme", o.scheme);
  mk_set_string(L, "host", o.host);
  mk_set_integer(L, "port", o.port);
  lua_pushboolean(L, o.loopback);
  lua_setfield(L, -2, "loopback");
  mk_set_string(L, "origin", text);
  return 1;
}

/* core.url_escape(s): `s` percent-encoded the way the engine writes a task
 * id into a URL (every byte but RFC 3986's unreserved ones), so the URLs the
 * Lua layer builds (the review page's links) encode the same way. */
static int l_url_escape(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char *out = lua_newuserdata(L, 3 * n + 1); /* Lua owns it: nothing to free if a push raises */
  mk_url_escape_into(out, s, n);
  lua_pushstring(L, out);
  return 1;
}

/* core.utf8_invalid(s) -> the position (from 1) of the first byte of s that
 * is not part of valid UTF-8 (overlong forms, surrogates, past U+10FFFF), or
 * nil when s is UTF-8: JSON carries only UTF-8 (modkie.encoding.invalid) */
static int l_utf8_invalid(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  long at = mk_utf8_invalid(s, n);
  if (at < 0) lua_pushnil(L);
  else lua_pushinteger(L, (lua_Integer)at + 1);
  return 1;
}

/* core.json_unescape_slashes(text) -> text with every "\/" written "/" (what
 * lua-cjson writes for "/"), in one pass; `text` itself when it has none,
 * so the common body costs no copy (modkie.json's encode) */
static int l_json_unescape_slashes(lua_State *L) {
  char small[4096]; /* a usual body: no allocation but the result */
  size_t n, m;
  const char *s = luaL_checklstring(L, 1, &n);
  char *out;
  if (!memchr(s, '/', n)) {
    lua_settop(L, 1);
    return 1;
  }
  /* a larger one in memory Lua owns: nothing to free if the push raises */
  out = n <= sizeof small ? small : lua_newuserdata(L, n);
  m = mk_json_unescape_slashes(out, s, n);
  lua_pushlstring(L, out, m);
  return 1;
}

/* core.now() -> monotonic seconds */
static int l_now(lua_State *L) {
  lua_pushnumber(L, mk_now());
  return 1;
}

/* core.time() -> Unix seconds with their fraction (the wall clock: the
 * journal's times, compared with the gateway's completeTime) */
static int l_time(lua_State *L) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return luaL_error(L, "clock_gettime: %s", strerror(errno));
  lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
  return 1;
}

void mk_register_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods) {
  luaL_newmetatable(L, name);
  mk_setfuncs(L, meta);
  lua_newtable(L);
  mk_setfuncs(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

static const luaL_Reg functions[] = {
  {"classify_state", l_classify_state}, {"default_interval", l_default_interval}, {"origin", l_origin},
  {"url_escape", l_url_escape}, {"utf8_invalid", l_utf8_invalid}, {"now", l_now}, {"time", l_time},
  {"json_unescape_slashes", l_json_unescape_slashes},
  {NULL, NULL}
};

int luaopen_modkie_core(lua_State *L) {
  const luaL_Reg *const parts[] = {functions, mk_engine_functions, mk_record_functions, mk_fs_functions,
                                   mk_hmac_functions, mk_upload_functions, mk_durations_functions};
  size_t i;
  curl_global_init(CURL_GLOBAL_DEFAULT); /* reference-counted by libcurl; idempotent */
#if defined(RTLD_NODELETE) && defined(RTLD_NOLOAD)
  /* Keep libcurl mapped for the life of the process: a transfer dropped while
   * its name resolves leaves libcurl's resolver thread running
   * (CURLOPT_QUICK_EXIT, src/lib/engine.c), and a host that closes its Lua
   * state (unloading this module and libcurl with it) and lives on would
   * crash when that thread returns into unmapped code. */
  (void)dlopen("libcurl.so.4", RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
#endif
  mk_engine_register(L);
  mk_upload_register(L);
  mk_durations_register(L);
  lua_newtable(L);
  for (i = 0; i < sizeof parts / sizeof parts[0]; i++) mk_setfuncs(L, parts[i]);
  lua_pushliteral(L, MODKIE_CORE_VERSION);
  lua_setfield(L, -2, "VERSION");
  lua_pushstring(L, curl_version());
  lua_setfield(L, -2, "curl_version");
  lua_pushinteger(L, MK_MAX_TASK_ID); /* the longest task id the engine takes (a request line must hold it) */
  lua_setfield(L, -2, "MAX_TASK_ID");
  return 1;
}

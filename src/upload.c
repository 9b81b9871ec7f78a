/* upload.c: the Lua face of the file probes of lib/upload.c: `core.sniffer`
 * (a libmagic handle: what a file to upload is, its size, SHA-256 and type
 * from its bytes, read once) and `core.identity` (whether a file changed
 * since). The upload op itself is the engine's (engine:upload, src/engine.c). */
#include <string.h>

#include "core.h"
#include "lib/upload.h"

#define SNIFFER_MT "modkie.core.sniffer"

static mk_sniffer **check_sniffer(lua_State *L) {
  mk_sniffer **s = (mk_sniffer **)luaL_checkudata(L, 1, SNIFFER_MT);
  if (!*s) luaL_error(L, "modkie: the sniffer is closed");
  return s;
}

static void push_facts(lua_State *L, const mk_file_facts *f, int file) {
  lua_createtable(L, 0, 6);
  mk_set_integer(L, "size", (lua_Integer)f->size);
  mk_set_string(L, "sha256", f->sha256);
  mk_set_string(L, "mime", f->mime);
  if (file) {
    mk_set_integer(L, "dev", (lua_Integer)f->dev);
    mk_set_integer(L, "ino", (lua_Integer)f->ino);
    mk_set_number(L, "mtime", f->mtime);
  }
}

static const char *const PROBE_REASONS[] = {
  "ok", "missing", "unreadable", "directory", "not_regular", "too_large", "io", "no_memory"
};

/* core.sniffer() -> a libmagic handle, kept for every probe | nil, message */
static int l_sniffer(lua_State *L) {
  char err[256];
  mk_sniffer **s = (mk_sniffer **)lua_newuserdata(L, sizeof *s);
  *s = NULL;
  luaL_getmetatable(L, SNIFFER_MT);
  lua_setmetatable(L, -2);
  *s = mk_sniffer_new(err, sizeof err);
  if (!*s) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

/* sniffer:file(path, max_size) -> { size, sha256, mime, dev, ino, mtime }
 * | nil, message, reason ("missing", "unreadable", "directory", "not_regular",
 * "too_large" (then the size follows), "io", "no_memory"). Reads the file once. */
static int l_sniff_file(lua_State *L) {
  mk_sniffer **s = check_sniffer(L);
  const char *path = luaL_checkstring(L, 2);
  lua_Number max = luaL_optnumber(L, 3, 0);
  mk_file_facts f;
  char err[256];
  mk_probe_status st = mk_probe_file(*s, path, max > 0 && max < 9e18 ? (long long)max : 0, &f, err, sizeof err);
  if (st == MK_PROBE_OK) {
    push_facts(L, &f, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, err);
  lua_pushstring(L, PROBE_REASONS[st]);
  lua_pushnumber(L, (lua_Number)f.size);
  return 4;
}

/* sniffer:data(bytes) -> { size, sha256, mime } */
static int l_sniff_data(lua_State *L) {
  mk_sniffer **s = check_sniffer(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  mk_file_facts f;
  char err[256];
  if (mk_probe_data(*s, data, len, &f, err, sizeof err) != MK_PROBE_OK) return luaL_error(L, "modkie: %s", err);
  push_facts(L, &f, 0);
  return 1;
}

static int l_sniffer_close(lua_State *L) {
  mk_sniffer **s = (mk_sniffer **)luaL_checkudata(L, 1, SNIFFER_MT);
  mk_sniffer_free(*s);
  *s = NULL;
  return 0;
}

/* core.identity(path) -> { size, dev, ino, mtime } | nil: to see whether a
 * file changed since it was probed, without reading it */
static int l_identity(lua_State *L) {
  mk_file_facts f;
  memset(&f, 0, sizeof f);
  if (mk_file_identity(luaL_checkstring(L, 1), &f) != 0) return 0;
  lua_createtable(L, 0, 4);
  mk_set_integer(L, "size", (lua_Integer)f.size);
  mk_set_integer(L, "dev", (lua_Integer)f.dev);
  mk_set_integer(L, "ino", (lua_Integer)f.ino);
  mk_set_number(L, "mtime", f.mtime);
  return 1;
}

static const luaL_Reg sniffer_methods[] = {
  {"file", l_sniff_file}, {"data", l_sniff_data}, {"close", l_sniffer_close}, {NULL, NULL}
};

static const luaL_Reg sniffer_meta[] = {
  {"__gc", l_sniffer_close}, {"__close", l_sniffer_close}, {NULL, NULL}
};

void mk_upload_register(lua_State *L) {
  mk_register_class(L, SNIFFER_MT, sniffer_meta, sniffer_methods);
}

const luaL_Reg mk_upload_functions[] = {
  {"sniffer", l_sniffer}, {"identity", l_identity}, {NULL, NULL}
};

/* hmac.c: the Lua face of lib/hmac.c, `core.hmac_sha256` and `core.equal`. */
#include "core.h"
#include "lib/hmac.h"

/* core.hmac_sha256(key, message) -> 32 raw bytes */
static int l_hmac_sha256(lua_State *L) {
  size_t klen, mlen;
  const char *key = luaL_checklstring(L, 1, &klen);
  const char *msg = luaL_checklstring(L, 2, &mlen);
  unsigned char out[MK_SHA256_BYTES];
  if (mk_hmac_sha256(key, klen, msg, mlen, out) != 0) return luaL_error(L, "modkie: HMAC-SHA256 failed");
  lua_pushlstring(L, (const char *)out, sizeof out);
  return 1;
}

/* core.equal(a, b) -> boolean, in time that depends only on the lengths */
static int l_equal(lua_State *L) {
  size_t alen, blen;
  const char *a = luaL_checklstring(L, 1, &alen);
  const char *b = luaL_checklstring(L, 2, &blen);
  lua_pushboolean(L, mk_equal(a, alen, b, blen));
  return 1;
}

const luaL_Reg mk_hmac_functions[] = {
  {"hmac_sha256", l_hmac_sha256}, {"equal", l_equal}, {NULL, NULL}
};

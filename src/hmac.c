/* hmac.c: HMAC-SHA256 through OpenSSL's libcrypto, and a comparison whose
 * time does not depend on where two strings differ (webhook signatures). */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "compat.h"
#include "hmac.h"

/* core.hmac_sha256(key, message) -> 32 raw bytes */
int mk_l_hmac_sha256(lua_State *L) {
  size_t klen, mlen;
  const char *key = luaL_checklstring(L, 1, &klen);
  const char *msg = luaL_checklstring(L, 2, &mlen);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int outlen = 0;
  if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen, out, &outlen))
    return luaL_error(L, "modkie: HMAC-SHA256 failed");
  lua_pushlstring(L, (const char *)out, outlen);
  return 1;
}

/* core.equal(a, b) -> boolean, in time that depends only on the lengths */
int mk_l_equal(lua_State *L) {
  size_t alen, blen;
  const char *a = luaL_checklstring(L, 1, &alen);
  const char *b = luaL_checklstring(L, 2, &blen);
  lua_pushboolean(L, alen == blen && CRYPTO_memcmp(a, b, alen) == 0);
  return 1;
}

/* hmac.c: HMAC-SHA256 and a constant-time comparison (see hmac.h). */
#include "hmac.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

int mk_hmac_sha256(const char *key, size_t klen, const char *msg, size_t mlen, unsigned char out[MK_SHA256_BYTES]) {
  unsigned int outlen = 0;
  if (klen > INT_MAX) return -1;
  if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen, out, &outlen) ||
      outlen != MK_SHA256_BYTES)
    return -1;
  return 0;
}

int mk_equal(const char *a, size_t alen, const char *b, size_t blen) {
  return alen == blen && CRYPTO_memcmp(a, b, alen) == 0;
}

/* hmac.h: HMAC-SHA256 through OpenSSL's libcrypto, and a comparison whose
 * time does not depend on where two strings differ (webhook signatures). */
#ifndef MODKIE_LIB_HMAC_H
#define MODKIE_LIB_HMAC_H

#include <stddef.h>

#define MK_SHA256_BYTES 32

/* out gets the 32-byte MAC; 0, or -1 when libcrypto failed. */
int mk_hmac_sha256(const char *key, size_t klen, const char *msg, size_t mlen, unsigned char out[MK_SHA256_BYTES]);
/* 1 when a and b are equal, in time that depends only on the lengths. */
int mk_equal(const char *a, size_t alen, const char *b, size_t blen);

#endif

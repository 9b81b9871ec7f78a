/* utf8.c: strict UTF-8 validation (see utf8.h). */
#include "utf8.h"

#include <stdint.h>
#include <string.h>

long mk_utf8_invalid(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    unsigned char c = p[i];
    size_t len, k;
    unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range */
    if (c < 0x80) { /* ASCII, most text: eight bytes at a time while none has its high bit */
      uint64_t w;
      i++;
      while (i + 8 <= n) {
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ULL) break;
        i += 8;
      }
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) len = 3;
    else if (c >= 0xF0 && c <= 0xF4) len = 4;
    else return (long)i;
    if (c == 0xE0) lo = 0xA0;       /* overlong */
    else if (c == 0xED) hi = 0x9F;  /* surrogates */
    else if (c == 0xF0) lo = 0x90;  /* overlong */
    else if (c == 0xF4) hi = 0x8F;  /* past U+10FFFF */
    if (i + 1 >= n || p[i + 1] < lo || p[i + 1] > hi) return (long)i;
    for (k = 2; k < len; k++)
      if (i + k >= n || p[i + k] < 0x80 || p[i + k] > 0xBF) return (long)i;
    i += len;
  }
  return -1;
}

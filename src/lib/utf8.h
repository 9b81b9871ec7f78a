/* utf8.h: whether text is UTF-8, the strict way (what JSON carries). */
#ifndef MODKIE_UTF8_H
#define MODKIE_UTF8_H

#include <stddef.h>

/* The offset (from 0) of the first byte of s that is not part of valid UTF-8
 * (overlong forms, surrogates and code points past U+10FFFF are not valid),
 * or -1 when all n bytes are UTF-8. */
long mk_utf8_invalid(const char *s, size_t n);

#endif

/* buf.h: a growable byte buffer with a cap, for response bodies. Its data is
 * always NUL-terminated (one byte past len), so a body can be read as a C
 * string; going over the cap fails the append and marks the buffer, so a
 * transfer can be cut off as it arrives and memory stays bounded. And the
 * library's one way to copy bytes into a new C string. */
#ifndef MODKIE_BUF_H
#define MODKIE_BUF_H

#include <stddef.h>

typedef struct mk_buf {
  char *data;
  size_t len, cap;
  size_t max;      /* bytes allowed; more aborts the transfer */
  int overflow;    /* set when the cap was hit */
} mk_buf;

/* Append; returns 0, or -1 when over the cap or out of memory (overflow set for the cap). */
int mk_buf_append(mk_buf *b, const char *p, size_t n);
/* Empty it for a new body of at most `max` bytes; a large buffer is given back. */
void mk_buf_reset(mk_buf *b, size_t max);
void mk_buf_free(mk_buf *b);

/* A NUL-terminated copy of `n` bytes at `s`; NULL out of memory. */
char *mk_copy(const char *s, size_t n);
/* A copy of the string `s`; NULL when `s` is NULL or out of memory. */
char *mk_copy_str(const char *s);

#endif

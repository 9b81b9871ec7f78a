/* buf.c: a response buffer with a cap, and copies of bytes as C strings (see buf.h). */
#include "buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int mk_buf_append(mk_buf *b, const char *p, size_t n) {
  if (n > b->max - b->len) {
    b->overflow = 1;
    return -1;
  }
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    char *data;
    while (cap < b->len + n + 1) cap = cap > SIZE_MAX / 2 ? b->len + n + 1 : cap * 2;
    /* at most max + 1 bytes; compared as cap - 1 (cap is never 0) so that a max
     * of SIZE_MAX ("no limit") does not wrap max + 1 to 0 */
    if (cap - 1 > b->max) cap = b->max + 1;
    data = realloc(b->data, cap);
    if (!data) return -1;
    b->data = data;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

void mk_buf_reset(mk_buf *b, size_t max) {
  /* Keep a modest buffer between uses; give back anything large. */
  if (b->cap > 64 * 1024) {
    free(b->data);
    b->data = NULL;
    b->cap = 0;
  }
  b->len = 0;
  b->max = max;
  b->overflow = 0;
  if (b->data) b->data[0] = '\0';
}

void mk_buf_free(mk_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

char *mk_copy(const char *s, size_t n) {
  char *c = malloc(n + 1);
  if (!c) return NULL;
  memcpy(c, s, n);
  c[n] = '\0';
  return c;
}

char *mk_copy_str(const char *s) {
  return s ? mk_copy(s, strlen(s)) : NULL;
}

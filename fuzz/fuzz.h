/* fuzz.h: what the C harnesses share: a reader that takes typed values off
 * the front of the fuzzer's input (like LLVM's FuzzedDataProvider, in C), and
 * a check that turns a broken property into a crash libFuzzer records. */
#ifndef MODKIE_FUZZ_H
#define MODKIE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fz {
  const uint8_t *p;
  size_t n;
} fz;

/* A byte; 0 once the input is used up (so every input is a valid program). */
static inline uint8_t fz_u8(fz *f) {
  uint8_t b = 0;
  if (f->n) {
    b = *f->p++;
    f->n--;
  }
  return b;
}

static inline uint32_t fz_u32(fz *f) {
  uint32_t v = 0;
  int i;
  for (i = 0; i < 4; i++) v = (v << 8) | fz_u8(f);
  return v;
}

/* Up to `max` bytes as a new NUL-terminated string (the length byte first);
 * the caller frees it. Exactly-sized so ASan sees a read past the end. */
static inline char *fz_str(fz *f, size_t max) {
  size_t len = fz_u8(f);
  char *s;
  if (max < 255) len %= max + 1;
  if (len > f->n) len = f->n;
  s = malloc(len + 1);
  if (!s) abort();
  memcpy(s, f->p, len);
  s[len] = '\0';
  f->p += len;
  f->n -= len;
  return s;
}

/* The rest of the input as a new NUL-terminated string. */
static inline char *fz_rest(fz *f, size_t *len) {
  char *s = malloc(f->n + 1);
  if (!s) abort();
  memcpy(s, f->p, f->n);
  s[f->n] = '\0';
  *len = f->n;
  f->p += f->n;
  f->n = 0;
  return s;
}

/* A property that must hold for every input: print what broke, then abort so
 * libFuzzer saves the input as a crash. */
#define FZ_CHECK(cond, ...)                                                        \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      fprintf(stderr, "fuzz: property broken at %s:%d: %s\n  ", __FILE__, __LINE__, \
              #cond);                                                              \
      fprintf(stderr, __VA_ARGS__);                                                \
      fputc('\n', stderr);                                                         \
      abort();                                                                     \
    }                                                                              \
  } while (0)

#endif

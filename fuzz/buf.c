/* buf.c: libFuzzer harness for the capped response buffer (mk_buf_append,
 * mk_buf_reset) as on_body drives it: a sequence of appends of any sizes,
 * resets with a new cap between responses. Properties: the buffer holds
 * exactly what was appended, NUL-terminated; an append that would pass the
 * cap fails, sets `overflow` and leaves the contents as they were; the
 * buffer never holds more than the cap. */
#include "../src/lib/buf.h"
#include "../src/lib/redact.h"
#include "fuzz.h"

/* Caps: tiny, around the 1024-byte first allocation, around the 64 KiB that
 * reset keeps, around 1 MiB, and the largest. */
static size_t pick_cap(uint8_t b, uint32_t r) {
  switch (b % 7) {
    case 0: return r % 16;
    case 1: return 1000 + r % 50;
    case 2: return 64 * 1024 - 8 + r % 16;
    case 3: return r % 200000;
    case 4: return (1u << 20) - 1 + r % 3; /* the client's 8 MiB, scaled down */
    case 5: return SIZE_MAX - r % 2; /* "no limit" (fuzz/findings/buf/cap-size-max) */
    default: return (size_t)r % (2u << 20);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz f = {data, size};
  mk_buf b = {0};
  /* the model: what the buffer must hold */
  char *model = NULL;
  size_t mlen = 0, mcap = 0, cap, total = 0;
  uint8_t op = fz_u8(&f);
  cap = pick_cap(op, fz_u32(&f));
  mk_buf_reset(&b, cap);
  /* at most ~2.5 MB of appends per input: past the 1 MiB caps twice (large
   * buffers cost page faults under ASan, and the logic does not scale) */
  while (f.n && total < (5u << 19)) {
    op = fz_u8(&f);
    if (op % 8 == 0) { /* a new response */
      FZ_CHECK(memcmp(b.data ? b.data : "", model ? model : "", mlen) == 0, "contents differ");
      cap = pick_cap(fz_u8(&f), fz_u32(&f));
      mk_buf_reset(&b, cap);
      mlen = 0;
      FZ_CHECK(b.len == 0 && !b.overflow && (!b.data || b.data[0] == '\0'), "reset left len %zu", b.len);
    } else {
      /* a chunk: up to 255 bytes of the input, or a large run of one byte */
      size_t n = op % 8 == 1 ? (size_t)fz_u8(&f) * (cap >= (1u << 20) ? 4111 : 331) : fz_u8(&f);
      const char *p;
      char *big = NULL;
      int rc;
      if (op % 8 == 1) {
        big = malloc(n ? n : 1);
        if (!big) abort();
        memset(big, op, n);
        p = big;
      } else {
        if (n > f.n) n = f.n;
        p = (const char *)f.p;
        f.p += n;
        f.n -= n;
      }
      rc = mk_buf_append(&b, p, n);
      total += n;
      if (mlen + n <= cap) {
        char *m;
        FZ_CHECK(rc == 0, "append of %zu to %zu (cap %zu) failed", n, mlen, cap);
        if (mlen + n + 1 > mcap) { /* geometric: ASan's realloc always copies */
          while (mlen + n + 1 > mcap) mcap = mcap ? mcap * 2 : 4096;
          m = realloc(model, mcap);
          if (!m) abort();
          model = m;
        }
        memcpy(model + mlen, p, n);
        mlen += n;
      } else {
        FZ_CHECK(rc == -1 && b.overflow, "append of %zu to %zu passed the cap %zu", n, mlen, cap);
      }
      free(big);
      FZ_CHECK(b.len == mlen, "len %zu, want %zu", b.len, mlen);
      FZ_CHECK(b.len <= b.max, "len %zu over max %zu", b.len, b.max);
      if (mlen) {
        FZ_CHECK(b.cap > b.len && b.data[b.len] == '\0', "not NUL-terminated");
        /* the new bytes now (a whole compare per step is quadratic), all at the end */
        if (rc == 0) FZ_CHECK(memcmp(b.data + mlen - n, model + mlen - n, n) == 0, "appended bytes differ");
      }
    }
  }
  FZ_CHECK(memcmp(b.data ? b.data : "", model ? model : "", mlen) == 0, "contents differ");
  mk_buf_free(&b);
  free(model);
  return 0;
}

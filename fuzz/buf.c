/* buf.c: libFuzzer harness for the capped response buffer (mk_buf_append,
 * mk_buf_reset) as on_body drives it: a sequence of appends of any sizes,
 * resets with a new cap between responses. Properties: the buffer holds
 * exactly what was appended, NUL-terminated; an append that would pass the
 * cap fails, sets `overflow` and leaves the contents as they were; the
 * buffer never holds more than the cap. Each response the buffer held is
 * then redacted (mk_redact, as the engine does to every answer) with a key
 * whose spellings the input may hold: none of them is left, and a body with
 * no spelling, no "bearer" and no escape is left as it was. */
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

/* The key the redaction looks for: with characters that percent-encoding
 * and JSON escape, so every spelling differs. */
static const char KEY[] = "sk-Fz09+/=keyZ";

/* Whether needle (m >= 1 bytes) occurs in hay (n bytes). */
static int has(const char *hay, size_t n, const char *needle, size_t m) {
  size_t i;
  for (i = 0; i + m <= n; i++)
    if (memcmp(hay + i, needle, m) == 0) return 1;
  return 0;
}

/* Whether "bearer", in any case, occurs in hay. */
static int has_bearer_word(const char *hay, size_t n) {
  size_t i, k;
  for (i = 0; i + 6 <= n; i++) {
    for (k = 0; k < 6 && (hay[i + k] | 0x20) == "bearer"[k]; k++) continue;
    if (k == 6) return 1;
  }
  return 0;
}

static int has_any(const char *hay, size_t n, const mk_secrets *s) {
  size_t i;
  for (i = 0; i < s->count; i++)
    if (has(hay, n, s->forms[i].text, s->forms[i].len)) return 1;
  return 0;
}

/* Redact a copy of the n bytes at p: no spelling of the key left; a body with
 * nothing to take out unchanged. (Up to 64 KiB: the check is quadratic.) */
static void check_redact(const char *p, size_t n, const mk_secrets *s) {
  mk_buf r = {0};
  int plain;
  if (n > 65536) n = 65536;
  if (!n) p = ""; /* (an empty buffer may have no memory) */
  mk_buf_reset(&r, n + 1);
  if (n && mk_buf_append(&r, p, n) != 0) abort();
  plain = !has_any(p, n, s) && !memchr(p, '\\', n) && !has_bearer_word(p, n);
  if (mk_redact(&r, s) != 0) abort(); /* out of memory: not under the fuzzer */
  FZ_CHECK(!has_any(r.data ? r.data : "", r.len, s), "a spelling of the key is left in %zu bytes", r.len);
  if (plain) FZ_CHECK(r.len == n && (n == 0 || memcmp(r.data, p, n) == 0), "a body without the key was changed");
  mk_buf_free(&r);
}

/* Once per process: each spelling after each way a text may lead up to it
 * (an echoed header, a URL's query) leaves no 4 bytes of its middle behind:
 * a cut that stops early (a token ending at a "%") leaks the rest. */
static void check_spellings_once(const mk_secrets *s) {
  static const char *const before[] = {"Bearer ", "Bearer%20", "Basic ", "\"", "key=", ""};
  static int done;
  size_t i, k, j;
  if (done) return;
  done = 1;
  for (i = 0; i < s->count; i++) {
    for (k = 0; k < sizeof before / sizeof before[0]; k++) {
      const char *f = s->forms[i].text;
      size_t m = s->forms[i].len, n;
      char text[512];
      mk_buf b = {0};
      n = (size_t)snprintf(text, sizeof text, "{\"msg\":\"x %s%s y\"}", before[k], f);
      mk_buf_reset(&b, n + 1);
      if (mk_buf_append(&b, text, n) != 0 || mk_redact(&b, s) != 0) abort();
      for (j = 1; j + 4 < m; j++)
        FZ_CHECK(!has(b.data, b.len, f + j, 4), "after \"%s\", %.4s of %s is left: %s", before[k], f + j, f, b.data);
      mk_buf_free(&b);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz f = {data, size};
  mk_buf b = {0};
  mk_secrets secrets;
  /* the model: what the buffer must hold */
  char *model = NULL;
  size_t mlen = 0, mcap = 0, cap, total = 0;
  uint8_t op = fz_u8(&f);
  cap = pick_cap(op, fz_u32(&f));
  mk_buf_reset(&b, cap);
  if (mk_secrets_init(&secrets, KEY) != 0) abort();
  check_spellings_once(&secrets);
  /* at most ~2.5 MB of appends per input: past the 1 MiB caps twice (large
   * buffers cost page faults under ASan, and the logic does not scale) */
  while (f.n && total < (5u << 19)) {
    op = fz_u8(&f);
    if (op % 8 == 0) { /* a new response */
      FZ_CHECK(memcmp(b.data ? b.data : "", model ? model : "", mlen) == 0, "contents differ");
      check_redact(b.data, b.len, &secrets);
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
  check_redact(b.data, b.len, &secrets);
  mk_secrets_free(&secrets);
  mk_buf_free(&b);
  free(model);
  return 0;
}

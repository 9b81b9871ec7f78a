/* retry_after.c: libFuzzer harness for mk_parse_retry_after, which reads a raw
 * response header line exactly as libcurl hands it to on_header: any bytes, no
 * NUL at the end. Properties: no read past `len`; the answer is -1 or a
 * number >= 0 (never NaN); only a Retry-After line gives a number; plain
 * delta-seconds read back as themselves. */
#include <ctype.h>
#include <math.h>

#include "../src/lib/retry_after.h"
#include "fuzz.h"

static int is_retry_after(const uint8_t *p, size_t n) {
  static const char name[] = "retry-after:";
  size_t i;
  if (n < sizeof name - 1) return 0;
  for (i = 0; i < sizeof name - 1; i++)
    if (tolower(p[i]) != name[i]) return 0;
  return 1;
}

/* The header value when it is 1-9 ASCII digits between optional blanks and an
 * optional CRLF, else -1: then the parser must return exactly that number. */
static long plain_seconds(const uint8_t *p, size_t n) {
  size_t i = 12, start, digits;
  long v = 0;
  while (i < n && (p[i] == ' ' || p[i] == '\t')) i++;
  start = i;
  while (i < n && isdigit(p[i])) {
    if (i - start < 9) v = v * 10 + (p[i] - '0');
    i++;
  }
  digits = i - start;
  while (i < n && (p[i] == ' ' || p[i] == '\t')) i++;
  if (i < n && p[i] == '\r') i++;
  if (i < n && p[i] == '\n') i++;
  /* the parser keeps 127 bytes of the value: stay well inside that */
  return digits >= 1 && digits <= 9 && i == n && n < 100 ? v : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz f = {data, size};
  /* now: 0, a 2020s wall clock, or anything a 32-bit draw gives */
  uint8_t pick = fz_u8(&f);
  uint32_t raw = fz_u32(&f);
  double now = pick % 3 == 0 ? 0 : pick % 3 == 1 ? 1.7e9 + raw % 100000000 : (double)raw * 1000.0;
  char *line = malloc(f.n ? f.n : 1); /* exactly the header's bytes: ASan sees any overread */
  double secs;
  long want;
  if (!line) abort();
  memcpy(line, f.p, f.n);
  secs = mk_parse_retry_after(line, f.n, now);
  FZ_CHECK(!isnan(secs), "NaN for a %zu-byte line", f.n);
  FZ_CHECK(secs == -1 || secs >= 0, "got %g", secs);
  if (!is_retry_after(f.p, f.n)) FZ_CHECK(secs == -1, "a line that is not Retry-After gave %g", secs);
  else if ((want = plain_seconds(f.p, f.n)) >= 0) FZ_CHECK(secs == (double)want, "want %ld, got %g", want, secs);
  free(line);
  return 0;
}

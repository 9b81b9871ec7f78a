/* store_file.c: libFuzzer harness for the file store of rate.shared
 * (src/store_file.c), fed any bytes as the window file it finds on disk: a
 * file damaged, written by another program, or left by another version.
 *
 * Input: want, limit, window (tenths of a second past 1 s), lane and the
 * number of questions (a byte each), then the file's bytes. The file is a
 * memfd opened by its /proc path, so the store maps and locks a real file.
 * Besides memory safety:
 *  - answers are sane: granted within [0, min(want, limit)], "ask again in"
 *    within [0, window], the clients counted at least 1;
 *  - the questions (all well inside one window) are never granted more than
 *    `limit` between them;
 *  - a file that is not empty and not a window file is never written, and
 *    every answer from it is "away". */
#define _GNU_SOURCE /* memfd_create */
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../src/lib/ratelimit.h"
#include "fuzz.h"

#define MAGIC "modkie1\n"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz f = {data, size};
  int want = fz_u8(&f) % 40, limit = 1 + fz_u8(&f) % 64, lane = fz_u8(&f) & 1, asks = 1 + fz_u8(&f) % 4, i;
  double per = 1.0 + fz_u8(&f) / 10.0;
  size_t len;
  char *bytes = fz_rest(&f, &len), path[64], err[200], *after;
  int fd = memfd_create("modkie-fuzz-window", MFD_CLOEXEC), granted = 0;
  int foreign = len > 0 && (len < 8 || memcmp(bytes, MAGIC, 8) != 0);
  mk_store *s;
  FZ_CHECK(fd >= 0, "memfd_create failed");
  FZ_CHECK(len == 0 || write(fd, bytes, len) == (ssize_t)len, "write failed");
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  s = mk_store_file_new(path, err, sizeof err);
  FZ_CHECK(s != NULL, "%s", err);
  memset(s->account, 0xab, sizeof s->account);
  s->client = 42;
  for (i = 0; i < asks; i++) {
    mk_store_answer *a = &s->answer[lane];
    s->ops->ask(s, (mk_lane)lane, want, limit, per, now());
    FZ_CHECK(a->ready, "no answer");
    if (foreign) FZ_CHECK(a->away, "a foreign file was answered from");
    if (a->away) continue;
    FZ_CHECK(a->granted >= 0 && a->granted <= want && a->granted <= limit, "granted %d of %d (limit %d)", a->granted,
             want, limit);
    FZ_CHECK(a->retry_in >= 0 && a->retry_in <= per, "ask again in %g s (window %g s)", a->retry_in, per);
    FZ_CHECK(a->peers >= 1, "%d clients counted", a->peers);
    granted += a->granted;
    a->ready = 0;
  }
  FZ_CHECK(granted <= limit, "%d granted in one window of %d", granted, limit);
  if (foreign) {
    after = malloc(len + 1);
    FZ_CHECK(after && pread(fd, after, len + 1, 0) == (ssize_t)len && memcmp(after, bytes, len) == 0,
             "a foreign file was written");
    free(after);
  }
  s->ops->free(s);
  close(fd);
  free(bytes);
  return 0;
}

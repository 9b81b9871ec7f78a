#include "ratelimit.h"

#include <stdlib.h>
#include <time.h>

/* Requests leave us slightly before the gateway counts them, and arrival
 * jitter can bunch them: keep a margin so a full window stays under the limit. */
#define MARGIN_FRACTION 0.02
#define MARGIN_SECONDS 0.01

int mk_rate_init(mk_rate *r, int limit, double per) {
  r->spent = NULL;
  r->limit = r->used = r->head = r->cap = 0;
  r->per = 0;
  if (limit <= 0 || per <= 0) return 0;
  r->spent = calloc((size_t)limit, sizeof *r->spent);
  if (!r->spent) return -1;
  r->limit = r->cap = limit;
  r->per = per * (1 + MARGIN_FRACTION) + MARGIN_SECONDS;
  return 0;
}

void mk_rate_free(mk_rate *r) {
  free(r->spent);
  r->spent = NULL;
  r->limit = r->cap = 0;
}

double mk_rate_wait(const mk_rate *r, double now) {
  double free_at;
  if (r->limit == 0 || r->used < r->limit) return 0;
  free_at = r->spent[r->head] + r->per; /* the oldest spent token */
  return free_at > now ? free_at - now : 0;
}

int mk_rate_available(const mk_rate *r, double now) {
  int n, i;
  if (r->limit == 0) return 1 << 30;
  n = r->limit - r->used;
  /* the ring holds the spent times oldest first, from `used` places before `head` */
  for (i = 0; i < r->used && r->spent[(r->head - r->used + i + r->limit) % r->limit] + r->per <= now; i++) n++;
  return n;
}

int mk_rate_take(mk_rate *r, double now) {
  if (r->limit == 0) return 1;
  if (mk_rate_wait(r, now) > 0) return 0;
  r->spent[r->head] = now;
  r->head = (r->head + 1) % r->limit;
  if (r->used < r->limit) r->used++;
  return 1;
}

void mk_rate_restart(mk_rate *r, int limit, double now) {
  int i;
  if (r->cap == 0) return;
  r->limit = limit < 1 ? 1 : limit > r->cap ? r->cap : limit;
  for (i = 0; i < r->limit; i++) r->spent[i] = now;
  r->used = r->limit;
  r->head = 0;
}

/* A shared window's extra: a grant from the store reaches the gateway later
 * than a client's own (another process may be scheduled out in between). */
double mk_shared_per(double per) {
  return per * (1 + MARGIN_FRACTION) + MK_SHARED_MARGIN;
}

double mk_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

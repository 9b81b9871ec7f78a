#include "ratelimit.h"

#include <stdlib.h>
#include <time.h>

/* Requests leave us slightly before the gateway counts them, and arrival
 * jitter can bunch them: keep a margin so a full window stays under the limit. */
#define MARGIN_FRACTION 0.02
#define MARGIN_SECONDS 0.01

int mk_rate_init(mk_rate *r, int limit, double per) {
  r->spent = NULL;
  r->limit = r->used = r->head = r->cap = r->unsent = 0;
  r->taken = 0;
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

/* The ring holds the last `used` tokens, spent in order from `used` places
 * before `head`; a token marked sent later may count from later than the
 * next one, so the earliest is looked for, not assumed at the head. */
static double earliest(const mk_rate *r) {
  double t = r->spent[0];
  int i;
  for (i = 1; i < r->used; i++)
    if (r->spent[i] < t) t = r->spent[i];
  return t;
}

double mk_rate_wait(const mk_rate *r, double now) {
  double free_at;
  if (r->limit == 0 || r->used < r->limit) return 0;
  free_at = earliest(r) + r->per;
  return free_at > now ? free_at - now : 0;
}

int mk_rate_available(const mk_rate *r, double now) {
  int n, i;
  if (r->limit == 0) return 1 << 30;
  n = r->limit - r->used;
  for (i = 0; i < r->used; i++)
    if (r->spent[i] + r->per <= now) n++;
  return n;
}

int mk_rate_take(mk_rate *r, double now) {
  if (r->limit == 0) return 1;
  if (mk_rate_wait(r, now) > 0) return 0;
  r->spent[r->head] = now;
  r->head = (r->head + 1) % r->limit;
  if (r->used < r->limit) r->used++;
  if (r->unsent < r->limit) r->unsent++;
  r->taken++;
  return 1;
}

/* Where the token `back` places before the newest is, or -1 when it has left the ring. */
static int slot(const mk_rate *r, unsigned long long back) {
  if (back >= (unsigned long long)r->used) return -1;
  return (int)((r->head - 1 - (long long)back + 2LL * r->limit) % r->limit);
}

unsigned long long mk_rate_sent(mk_rate *r, double now) {
  int i;
  if (r->limit == 0 || r->unsent == 0) return 0;
  if (r->unsent > r->used) r->unsent = r->used;
  i = slot(r, (unsigned long long)(r->unsent - 1));
  r->unsent--;
  if (i < 0) return 0;
  if (r->spent[i] < now) r->spent[i] = now;
  return r->taken - (unsigned long long)r->unsent;
}

void mk_rate_unsent(mk_rate *r) {
  if (r->unsent > 0) r->unsent--;
}

void mk_rate_late(mk_rate *r, unsigned long long ticket, double at) {
  int i;
  if (r->limit == 0 || ticket == 0 || ticket > r->taken) return;
  i = slot(r, r->taken - ticket);
  if (i >= 0 && r->spent[i] < at) r->spent[i] = at;
}

void mk_rate_restart(mk_rate *r, int limit, double now) {
  int i;
  if (r->cap == 0) return;
  r->limit = limit < 1 ? 1 : limit > r->cap ? r->cap : limit;
  for (i = 0; i < r->limit; i++) r->spent[i] = now;
  r->used = r->limit;
  r->head = 0;
  r->unsent = 0;
  r->taken += (unsigned long long)r->cap + 1; /* tickets from before name no token now */
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

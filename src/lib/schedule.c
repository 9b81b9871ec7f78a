/* schedule.c: poll intervals and retry delays (see schedule.h). */
#include "schedule.h"

#define BACKOFF_BASE 0.5 /* seconds, the first retry's upper bound */

double mk_default_interval(double elapsed, double u) {
  if (elapsed < 30) return 2 + u;
  if (elapsed < 120) return 5 + 5 * u;
  return 15 + 15 * u;
}

double mk_backoff(double u, int attempt, double retry_after, double cap) {
  double ceiling = BACKOFF_BASE;
  if (retry_after >= 0) return retry_after < cap ? retry_after + 0.1 * u : cap;
  while (attempt-- > 0 && ceiling < cap) ceiling *= 2;
  if (ceiling > cap) ceiling = cap;
  return ceiling * u;
}

/* schedule.h: when a job polls next, and how long a retry waits. Pure
 * functions of their inputs and a random draw u in [0, 1) (the engine's own
 * source, seeded by the `seed` option). */
#ifndef MODKIE_SCHEDULE_H
#define MODKIE_SCHEDULE_H

/* The gateway's recommended polling schedule, jittered:
 * 2-3 s for the first 30 s, 5-10 s until 2 min, then 15-30 s. */
double mk_default_interval(double elapsed, double u);

/* Exponential backoff with full jitter (0.5 s doubling per attempt, at most
 * `cap`), or Retry-After (>= 0; -1: none) when the server gave one. */
double mk_backoff(double u, int attempt, double retry_after, double cap);

#endif

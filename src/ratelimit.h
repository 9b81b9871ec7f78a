/* ratelimit.h: at most `limit` requests in any window of `per` seconds.
 * A token bucket of `limit` tokens where each token comes back exactly `per`
 * seconds after it was spent: unlike a refill-rate bucket it can never exceed
 * the gateway's rolling-window limit, even right after a burst. */
#ifndef MODKIE_RATELIMIT_H
#define MODKIE_RATELIMIT_H

typedef struct mk_rate {
  double *spent;  /* ring of the times the last `limit` tokens were spent */
  int limit, used, head;
  double per;     /* window, including a small safety margin */
} mk_rate;

/* limit <= 0 disables the limiter. 0 on success, -1 out of memory. */
int mk_rate_init(mk_rate *r, int limit, double per);
void mk_rate_free(mk_rate *r);
/* Seconds until a token is free (0 when one is free now). */
double mk_rate_wait(const mk_rate *r, double now);
/* Spend a token if one is free; 1 when spent. */
int mk_rate_take(mk_rate *r, double now);

#endif

/* ratelimit.h: at most `limit` requests in any window of `per` seconds.
 * A token bucket of `limit` tokens where each token comes back exactly `per`
 * seconds after it was spent: unlike a refill-rate bucket it can never exceed
 * the gateway's rolling-window limit, even right after a burst. A token
 * counts from when its request went on the wire, or later (mk_rate_sent,
 * mk_rate_late): the gateway counts arrivals, not our tokens.
 *
 * The second half is the interface of a store that keeps an account's
 * windows where every client of the account sees them (a file, Redis, or an
 * OpenResty shared dict through the Lua layer); grant.h decides when to ask it. */
#ifndef MODKIE_RATELIMIT_H
#define MODKIE_RATELIMIT_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mk_rate {
  double *spent;  /* ring of the times the last `limit` tokens were spent */
  int limit, used, head;
  int unsent;     /* the newest `unsent` tokens: spent, their requests not yet on the wire */
  unsigned long long taken; /* tokens spent so far: the n-th one's ticket is n */
  int cap;        /* room in the ring: `limit` may be lowered to it, never raised */
  double per;     /* window, including a small safety margin */
} mk_rate;

/* limit <= 0 disables the limiter. 0 on success, -1 out of memory. */
int mk_rate_init(mk_rate *r, int limit, double per);
void mk_rate_free(mk_rate *r);
/* Seconds until a token is free (0 when one is free now). */
double mk_rate_wait(const mk_rate *r, double now);
/* Tokens free now. */
int mk_rate_available(const mk_rate *r, double now);
/* Spend a token if one is free; 1 when spent. */
int mk_rate_take(mk_rate *r, double now);
/* A request of this window went on the wire at `now`: the oldest token not
 * yet marked sent counts from then (never earlier than it was spent). A
 * request can wait between its token and the wire (a connection's set-up, a
 * free connection, the createTask door, a busy host): the gateway counts it
 * when it arrives, so the window must too. Returns that token's ticket (0:
 * no token was waiting) for mk_rate_late. */
unsigned long long mk_rate_sent(mk_rate *r, double now);
/* A request of this window will never go on the wire (cancelled, or its
 * connection failed): one token fewer waits to be marked sent. */
void mk_rate_unsent(mk_rate *r);
/* The token of `ticket` counts from `at` if that is later (and if the token
 * is still in the ring): its request may have reached the gateway then. */
void mk_rate_late(mk_rate *r, unsigned long long ticket, double at);
/* Start over with `limit` (at most the ring's room) tokens, all of them
 * spent at `now`: the first comes back one window later. */
void mk_rate_restart(mk_rate *r, int limit, double now);

/* CLOCK_MONOTONIC seconds: the clock every process of a host shares. */
double mk_clock(void);

/* A shared window's length for a configured `per`: wider than a client's
 * own, since a grant and its request's arrival are further apart when the
 * grant comes from another process or host. */
double mk_shared_per(double per);
/* The room a shared window keeps for the way from a grant to its request's
 * arrival, seconds: a grant that reached its client later is not spent. */
#define MK_SHARED_MARGIN 0.05

/* ---- the account's windows, shared ---- */

/* The two things the gateway limits apart: createTask and recordInfo. */
typedef enum { MK_LANE_CREATE = 0, MK_LANE_POLL = 1, MK_LANES = 2 } mk_lane;

#define MK_ACCOUNT_BYTES 16 /* an account's id in a store: a hash of the key, never the key */

/* A store's answer to one question. */
typedef struct mk_store_answer {
  int ready;        /* an answer is here, not yet read */
  int granted;      /* grants recorded in the store at the time of answering */
  double retry_in;  /* fewer than asked: seconds until asking again is worthwhile */
  int peers;        /* clients of the account the store saw lately (0: unknown) */
  int away;         /* the store could not answer; `why` says why */
  int reset;        /* the store lost its windows (restarted, flushed): its last window is unknown */
  char why[200];
} mk_store_answer;

typedef struct mk_store mk_store;

typedef struct mk_store_ops {
  const char *name; /* "file", "redis", "host" */
  /* Ask for up to `want` grants (want may be 0: "are you there?") for
   * `lane`, in a window of at most `limit` requests in any `per` seconds.
   * The answer lands in s->answer[lane], at once or later. */
  void (*ask)(mk_store *s, mk_lane lane, int want, int limit, double per, double now);
  /* The socket the store waits on: 1 with p->fd and p->events set, else 0. */
  int (*socket)(mk_store *s, struct pollfd *p);
  /* That socket is ready (p.revents). */
  void (*ready)(mk_store *s, short revents, double now);
  /* Time passes: a question out too long is an answer "away". Returns the
   * seconds until the store next needs this, or -1. */
  double (*tick)(mk_store *s, double now);
  void (*free)(mk_store *s);
} mk_store_ops;

struct mk_store {
  const mk_store_ops *ops;
  uint8_t account[MK_ACCOUNT_BYTES];
  uint64_t client;                    /* this client's id among the account's clients */
  mk_store_answer answer[MK_LANES];
  /* questions only the caller of mk_engine_run can answer (the Lua layer,
   * for an OpenResty shared dict): the engine returns to it while any is open */
  int host_questions;
  /* the store's connection broke with no question out: the store may come
   * back without the grants it gave out; set by the store, read by grant.c */
  int lost;
  char lost_why[200];
  struct { int want, limit; double per; } question[MK_LANES]; /* the host store's open questions */
};

/* The stores. Each returns NULL only when out of memory (or, with `err`
 * set, for a spec it does not understand): a store that cannot be reached
 * now answers "away" when asked, and is tried again later. */
mk_store *mk_store_file_new(const char *path, char *err, size_t errlen);
mk_store *mk_store_redis_new(const char *url, char *err, size_t errlen);
mk_store *mk_store_host_new(void);
/* The host store: the Lua layer's answer to an open question. */
void mk_store_host_answer(mk_store *s, mk_lane lane, const mk_store_answer *a);

#endif

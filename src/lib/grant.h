/* grant.h: where the next createTask or recordInfo may come from.
 *
 * Without a store, each lane is the client's own window (ratelimit.h). With
 * one, the account's window lives in the store and every request first gets
 * a grant there: grants are asked for the requests waiting right now and are
 * spent at once (a grant kept for later would reach the gateway late, out of
 * step with the window it was counted in), and what is not spent is dropped.
 *
 * When the store does not answer, each lane carries on with a local window
 * of 1/N of the limit (N: the `clients` option, else the number of clients
 * the store last reported, else DEFAULT_CLIENTS). That window starts full,
 * so the grants the store gave out just before cannot add up with the local
 * ones; the store is asked again every PROBE seconds, and for a while after
 * it answers again a request needs both a store grant and a local token,
 * until every client has had time to notice it is back. */
#ifndef MODKIE_GRANT_H
#define MODKIE_GRANT_H

#include <stddef.h>

#include "ratelimit.h"

/* What changed since the Lua layer last looked (bits). */
enum { MK_NEWS_AWAY = 1, MK_NEWS_BACK = 2 };

/* Round trips a lane keeps: its usual one is the shortest of these. */
#define MK_RTT_KEPT 32

typedef struct mk_grant {
  int limit;              /* requests per window; 0: this lane has no limit */
  double per;             /* the window as configured, seconds */
  mk_rate own;            /* the client's own window (no store) */
  mk_rate fallback;       /* 1/N of the window: the store away, and a while after */
  int banked;             /* granted by the store, not spent yet */
  int asked;              /* what the question out asked for (-1: no question out) */
  double ask_at;          /* do not ask the store before this */
  double rtt[MK_RTT_KEPT]; /* the lane's last round trips, seconds (a ring) */
  int rtt_seen;           /* round trips seen on this lane (counted up to MK_RTT_KEPT) */
  int rtt_next;           /* where the next one goes in the ring */
} mk_grant;

typedef struct mk_grants {
  mk_store *store;        /* NULL: each lane is the client's own window */
  mk_grant lane[MK_LANES];
  int clients;            /* N configured, 0: from the store */
  int peers;              /* clients of the account the store last reported */
  int away;               /* the store did not answer: local windows at 1/N */
  double handover_until;  /* it answered again: both windows until then */
  int news;               /* MK_NEWS_* bits not yet reported to the Lua layer */
  char why[200];          /* why the store is away */
  unsigned long long store_grants, local_grants, outages;
} mk_grants;

/* 0, or -1 out of memory. Takes `store` (may be NULL) even on failure. */
int mk_grants_init(mk_grants *g, const int limit[MK_LANES], const double per[MK_LANES], mk_store *store,
                   int clients);
void mk_grants_free(mk_grants *g);

/* How many of `want` requests of `lane` may start now (each then starts at
 * once); asks the store for more when it may. */
int mk_grants_take(mk_grants *g, mk_lane lane, int want, double now);
/* A request of `lane` went on the wire: the local window counts it from now
 * (mk_rate_sent). Returns the ticket to hand to mk_grants_answered (0: none).
 * A store's grant is not moved: its window keeps a margin for the way to the
 * gateway instead (MK_SHARED_MARGIN). */
unsigned long long mk_grants_sent(mk_grants *g, mk_lane lane, double now);
/* A request of `lane` that had its grant will never go on the wire. */
void mk_grants_unsent(mk_grants *g, mk_lane lane);
/* The request of `ticket`, sent at `sent_at`, was answered at `now`. A round
 * trip longer than the lane's usual one was held up somewhere: perhaps before
 * the gateway counted it (a busy gateway, a packet resent, our process
 * descheduled), so the local window counts it that much later. */
void mk_grants_answered(mk_grants *g, mk_lane lane, unsigned long long ticket, double sent_at, double now);
/* Drop the store's grants that were not spent. */
void mk_grants_settle(mk_grants *g);
/* Seconds until `lane` may give a token, asking included (0: now). */
double mk_grants_wait(const mk_grants *g, mk_lane lane, double now);
/* Read the answers that came in (after the store's socket was ready, a
 * tick, or the host's answer). Returns 1 when there was one. */
int mk_grants_collect(mk_grants *g, double now);
/* Store timeouts; seconds until it needs this again, or -1. */
double mk_grants_tick(mk_grants *g, double now);
/* A question is out to a store that answers through its socket (Redis). */
int mk_grants_asking(const mk_grants *g);
/* The store's state for the Lua layer: "away", "handover", "shared", or NULL without a store. */
const char *mk_grants_state(const mk_grants *g, double now);

/* The store a `rate.shared` spec names: "file:/path" (or file:///path),
 * "redis://[:password@]host[:port][/db]", or "host" (the Lua layer's). NULL
 * with `err` set for a spec it does not understand, or out of memory. */
mk_store *mk_store_open(const char *spec, char *err, size_t errlen);

/* The account's id in a store: a hash of the gateway's origin and the key. */
void mk_account_id(const char *origin, const char *key, uint8_t out[MK_ACCOUNT_BYTES]);

#endif

#include "grant.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

/* Clients assumed to share the account when neither the `clients` option
 * nor the store says how many: while the store is away each takes 1/4. */
#define DEFAULT_CLIENTS 4
/* Seconds between questions to a store that is away. */
#define PROBE 1.0
/* Round trips a lane sees before its shortest is taken for the usual one: one
 * slow first answer (a cold connection, a loaded machine) must not be. */
#define USUAL_RTT_AFTER 8
/* A store's "ask again in" is kept within these, seconds. */
#define MIN_RETRY 0.001

static int both_windows(const mk_grants *g, double now) {
  return g->away || now < g->handover_until;
}

int mk_grants_init(mk_grants *g, const int limit[MK_LANES], const double per[MK_LANES], mk_store *store,
                   int clients) {
  int l, limited = 0;
  memset(g, 0, sizeof *g);
  g->clients = clients > 0 ? clients : 0;
  for (l = 0; l < MK_LANES; l++) {
    mk_grant *a = &g->lane[l];
    a->asked = -1;
    if (limit[l] <= 0 || per[l] <= 0) continue;
    a->limit = limit[l];
    a->per = per[l];
    limited = 1;
  }
  if (store && !limited) { /* nothing to share */
    store->ops->free(store);
    store = NULL;
  }
  g->store = store;
  for (l = 0; l < MK_LANES; l++) {
    mk_grant *a = &g->lane[l];
    if (!a->limit) continue;
    if (mk_rate_init(store ? &a->fallback : &a->own, a->limit, a->per) != 0) return -1;
    if (store) a->fallback.per = mk_shared_per(a->per);
  }
  return 0;
}

void mk_grants_free(mk_grants *g) {
  int l;
  for (l = 0; l < MK_LANES; l++) {
    mk_rate_free(&g->lane[l].own);
    mk_rate_free(&g->lane[l].fallback);
  }
  if (g->store) g->store->ops->free(g->store);
  g->store = NULL;
}

static void go_away(mk_grants *g, const char *why, double now) {
  int l, n;
  for (l = 0; l < MK_LANES; l++) {
    g->lane[l].ask_at = now + PROBE;
    g->lane[l].banked = 0;
  }
  if (g->away) return;
  g->away = 1;
  g->outages++;
  g->news |= MK_NEWS_AWAY;
  snprintf(g->why, sizeof g->why, "%s", why && why[0] ? why : "no answer");
  n = g->clients ? g->clients : g->peers ? g->peers : DEFAULT_CLIENTS;
  /* Full from the start: grants the store gave out in the last window must
   * not add up with local ones. */
  for (l = 0; l < MK_LANES; l++)
    if (g->lane[l].limit) mk_rate_restart(&g->lane[l].fallback, g->lane[l].limit / n, now);
}

static void come_back(mk_grants *g, double now) {
  int l;
  double longest = 0;
  g->away = 0;
  g->news |= MK_NEWS_BACK;
  /* Other clients notice within PROBE seconds; until each has spent a whole
   * window on the store, local grants may still count in the gateway's. */
  for (l = 0; l < MK_LANES; l++)
    if (g->lane[l].limit && mk_shared_per(g->lane[l].per) > longest) longest = mk_shared_per(g->lane[l].per);
  g->handover_until = now + longest + PROBE;
}

int mk_grants_collect(mk_grants *g, double now) {
  int l, any = 0;
  if (!g->store) return 0;
  if (g->store->lost) { /* it may return without what it knew: count it away from now */
    g->store->lost = 0;
    go_away(g, g->store->lost_why, now);
    any = 1;
  }
  for (l = 0; l < MK_LANES; l++) {
    mk_store_answer *ans = &g->store->answer[l];
    mk_grant *a = &g->lane[l];
    int asked = a->asked;
    if (!ans->ready) continue;
    ans->ready = 0;
    any = 1;
    a->asked = -1;
    if (asked < 0) continue; /* nobody asked (cannot happen; harmless) */
    if (ans->away) {
      go_away(g, ans->why, now);
      continue;
    }
    /* grants from before are unknown: as after an outage (these grants wait for local tokens) */
    if (ans->reset && !g->away) go_away(g, ans->why, now);
    if (g->away) come_back(g, now);
    if (ans->peers > 0) g->peers = ans->peers;
    a->banked += ans->granted;
    if (ans->granted < asked) {
      double r = ans->retry_in;
      a->ask_at = now + (r < MIN_RETRY ? MIN_RETRY : r > a->per ? a->per : r);
    } else {
      a->ask_at = now;
    }
  }
  return any;
}

/* Ask the store for up to `want` grants of lane l. */
static void ask(mk_grants *g, mk_lane l, int want, double now) {
  mk_grant *a = &g->lane[l];
  if (g->away) {
    want = 0; /* a probe: local tokens are spent meanwhile, a grant would be wasted */
  } else if (now < g->handover_until) {
    int room = mk_rate_available(&a->fallback, now);
    if (room == 0) {
      a->ask_at = now + mk_rate_wait(&a->fallback, now);
      return;
    }
    if (want > room) want = room;
  }
  a->asked = want;
  g->store->ops->ask(g->store, l, want, a->limit, mk_shared_per(a->per), now);
}

/* Spend up to `want` of the store's grants (and, while both windows count, local tokens with them). */
static int spend_bank(mk_grants *g, mk_grant *a, int want, double now) {
  int n = 0;
  while (n < want && a->banked > 0) {
    if (both_windows(g, now) && !mk_rate_take(&a->fallback, now)) break;
    a->banked--;
    n++;
  }
  g->store_grants += (unsigned long long)n;
  return n;
}

int mk_grants_take(mk_grants *g, mk_lane l, int want, double now) {
  mk_grant *a = &g->lane[l];
  int n = 0;
  if (want <= 0) return 0;
  if (!a->limit) return want;
  if (!g->store) {
    while (n < want && mk_rate_take(&a->own, now)) n++;
    return n;
  }
  n = spend_bank(g, a, want, now);
  if (n < want && a->asked < 0 && now >= a->ask_at) {
    ask(g, l, want - n, now);
    mk_grants_collect(g, now); /* a store that answers at once */
    n += spend_bank(g, a, want - n, now);
  }
  if (g->away) {
    int local = 0;
    while (n + local < want && mk_rate_take(&a->fallback, now)) local++;
    g->local_grants += (unsigned long long)local;
    n += local;
  }
  return n;
}

/* The window of a lane that local tokens come from: the client's own, or the
 * store's fallback (spent only while the store is away or handing over). */
static mk_rate *local_window(mk_grants *g, mk_grant *a) {
  return g->store ? &a->fallback : &a->own;
}

unsigned long long mk_grants_sent(mk_grants *g, mk_lane l, double now) {
  mk_grant *a = &g->lane[l];
  if (!a->limit) return 0;
  return mk_rate_sent(local_window(g, a), now);
}

void mk_grants_unsent(mk_grants *g, mk_lane l) {
  mk_grant *a = &g->lane[l];
  if (a->limit) mk_rate_unsent(local_window(g, a));
}

/* The lane's usual round trip: the shortest of the last MK_RTT_KEPT, once it
 * has seen USUAL_RTT_AFTER (before that 0: none is usual yet). The shortest,
 * not an average: a request held up beside quick ones is what the window must
 * see, and a lasting change is learned once the ring has turned over. */
static double usual_rtt(const mk_grant *a) {
  double best;
  int i;
  if (a->rtt_seen < USUAL_RTT_AFTER) return 0;
  best = a->rtt[0];
  for (i = 1; i < a->rtt_seen; i++)
    if (a->rtt[i] < best) best = a->rtt[i];
  return best;
}

void mk_grants_answered(mk_grants *g, mk_lane l, unsigned long long ticket, double sent_at, double now) {
  mk_grant *a = &g->lane[l];
  double rtt = now - sent_at, usual = usual_rtt(a);
  if (!a->limit || !(rtt >= 0)) return;
  if (rtt > usual) mk_rate_late(local_window(g, a), ticket, sent_at + (rtt - usual));
  a->rtt[a->rtt_next] = rtt;
  a->rtt_next = (a->rtt_next + 1) % MK_RTT_KEPT;
  if (a->rtt_seen < MK_RTT_KEPT) a->rtt_seen++;
}

void mk_grants_settle(mk_grants *g) {
  int l;
  for (l = 0; l < MK_LANES; l++) g->lane[l].banked = 0;
}

double mk_grants_wait(const mk_grants *g, mk_lane l, double now) {
  const mk_grant *a = &g->lane[l];
  double w;
  if (!a->limit) return 0;
  if (!g->store) return mk_rate_wait(&a->own, now);
  if (a->banked > 0) return 0;
  if (g->away) {
    double probe = a->asked >= 0 ? 3600 : a->ask_at - now;
    w = mk_rate_wait(&a->fallback, now);
    if (probe < w) w = probe;
  } else {
    if (a->asked >= 0) return 3600; /* the answer wakes the loop (socket, tick or host) */
    w = a->ask_at - now;
    if (now < g->handover_until && mk_rate_wait(&a->fallback, now) > w) w = mk_rate_wait(&a->fallback, now);
  }
  return w > 0 ? w : 0;
}

double mk_grants_tick(mk_grants *g, double now) {
  double t;
  if (!g->store || !g->store->ops->tick) return -1;
  t = g->store->ops->tick(g->store, now);
  mk_grants_collect(g, now);
  return t;
}

int mk_grants_asking(const mk_grants *g) {
  return g->store && g->store->ops->socket && (g->lane[MK_LANE_CREATE].asked >= 0 || g->lane[MK_LANE_POLL].asked >= 0);
}

const char *mk_grants_state(const mk_grants *g, double now) {
  if (!g->store) return NULL;
  if (g->away) return "away";
  return now < g->handover_until ? "handover" : "shared";
}

mk_store *mk_store_open(const char *spec, char *err, size_t errlen) {
  mk_store *s = NULL;
  if (strncmp(spec, "file://", 7) == 0) s = mk_store_file_new(spec + 7, err, errlen);
  else if (strncmp(spec, "file:", 5) == 0) s = mk_store_file_new(spec + 5, err, errlen);
  else if (strncmp(spec, "redis://", 8) == 0) s = mk_store_redis_new(spec, err, errlen);
  else if (strcmp(spec, "host") == 0 && !(s = mk_store_host_new())) snprintf(err, errlen, "out of memory");
  else if (strcmp(spec, "host") != 0) snprintf(err, errlen, "unknown store (file:/path or redis://host:port/db)");
  return s;
}

void mk_account_id(const char *origin, const char *key, uint8_t out[MK_ACCOUNT_BYTES]) {
  static const char domain[] = "modkie rate windows";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) && EVP_DigestUpdate(c, domain, sizeof domain) &&
           EVP_DigestUpdate(c, origin, strlen(origin) + 1) && EVP_DigestUpdate(c, key, strlen(key)) &&
           EVP_DigestFinal_ex(c, md, &len) && len >= MK_ACCOUNT_BYTES;
  EVP_MD_CTX_free(c);
  if (ok) memcpy(out, md, MK_ACCOUNT_BYTES);
  else memset(out, 0, MK_ACCOUNT_BYTES); /* no digest: every client of this machine shares one id, safely */
  OPENSSL_cleanse(md, sizeof md);
}

/* store_redis.c: an account's windows in Redis, for clients on several hosts
 * ("redis://[[user]:password@]host[:port][/db]").
 *
 * A question is one round trip: EVALSHA of GRANT_SCRIPT, which reads the
 * lane's last grants, records the new ones and counts the account's clients
 * atomically inside Redis, on Redis's clock (the hosts' clocks never meet).
 * The first question after Redis started loads the script (NOSCRIPT, then
 * EVAL). hiredis's asynchronous API runs on the engine's own loop: the
 * connection never blocks, its socket is polled with libcurl's, and replies
 * arrive in C callbacks (no Lua). A refused or dropped connection, an error
 * reply, or a question unanswered for TIMEOUT seconds answers "away"; the
 * next question connects again.
 *
 * hiredis resolves a host name while it connects, which would block: the
 * name is looked up when the client is made and again only after a failed
 * connection, and hiredis is handed the address. That second lookup happens
 * inside a step, so with glibc it is asynchronous (getaddrinfo_a): a step
 * starts it and answers "away", a later question (they come once a second
 * while the store is away) takes its address. A blocking lookup there held
 * the host for as long as the DNS server took, at every question. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* getaddrinfo_a */
#endif
#include <arpa/inet.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <curl/curl.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "ratelimit.h"

#define TIMEOUT 2.0 /* seconds for a connection, or an answer */
#define DEFAULT_PORT 6379

/* KEYS[1] the lane's grant times, newest first; KEYS[2] the account's
 * clients (a sorted set by when each last asked); KEYS[3] the account's
 * epoch, made afresh when missing: a new one means Redis lost what it knew
 * (a restart, a flush, an eviction). A grant time ahead of Redis's clock
 * (its host's clock stepped back, or a failover to a replica whose clock is
 * behind) is taken as given now, and written so: counted as long past, the
 * grants of the window just given would be given again at once. ARGV:
 * limit, window in seconds, grants wanted, this client's id. Returns
 * {granted, microseconds until asking again is worthwhile, clients seen in
 * the last minute, epoch}. */
static const char GRANT_SCRIPT[] =
  "if redis.replicate_commands then redis.replicate_commands() end\n"
  "local t = redis.call('TIME')\n"
  "local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"
  "local limit, per, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
  "local newest = tonumber(redis.call('LINDEX', KEYS[1], 0))\n"
  "if newest and newest > now then\n"
  "  local stamps, stamp = redis.call('LRANGE', KEYS[1], 0, -1), string.format('%.6f', now)\n"
  "  for i = 1, #stamps do\n"
  "    local s = tonumber(stamps[i])\n"
  "    if s and s > now then redis.call('LSET', KEYS[1], i - 1, stamp) end\n"
  "  end\n"
  "end\n"
  "local len = redis.call('LLEN', KEYS[1])\n"
  "local granted, wait = 0, 0\n"
  "while granted < want and granted < limit do\n"
  "  local i = limit - granted - 1\n"
  "  if i < len then\n"
  "    local old = tonumber(redis.call('LINDEX', KEYS[1], i))\n"
  "    if old and old > now - per and old <= now then\n"
  "      wait = old + per - now\n"
  "      break\n"
  "    end\n"
  "  end\n"
  "  granted = granted + 1\n"
  "end\n"
  "if granted > 0 then\n"
  "  local stamp = string.format('%.6f', now)\n"
  "  for _ = 1, granted do redis.call('LPUSH', KEYS[1], stamp) end\n"
  "  redis.call('LTRIM', KEYS[1], 0, math.max(limit, len) - 1)\n"
  "  redis.call('PEXPIRE', KEYS[1], math.ceil(per * 1000) + 60000)\n"
  "end\n"
  "redis.call('ZADD', KEYS[2], now, ARGV[4])\n"
  "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60)\n"
  "redis.call('PEXPIRE', KEYS[2], 120000)\n"
  "local epoch = redis.call('GET', KEYS[3])\n"
  "if not epoch then epoch = ARGV[4] .. '@' .. t[1] .. '.' .. t[2] end\n"
  "redis.call('SET', KEYS[3], epoch, 'PX', 86400000)\n"
  "return { granted, math.ceil(wait * 1000000), redis.call('ZCARD', KEYS[2]), epoch }\n";

typedef struct redis_store redis_store;

#if defined(__GLIBC__) && defined(GAI_NOWAIT)
#define ASYNC_LOOKUP 1
/* A lookup under way in glibc's resolver thread: it writes into this. */
typedef struct lookup {
  struct gaicb cb;
  struct addrinfo hints;
  char host[256];
} lookup;
#endif

/* A lane's question, the privdata of its command. */
typedef struct question {
  redis_store *s;
  mk_lane lane;
  int want, limit;
  char per[32];
  double since;            /* -1: none out */
} question;

struct redis_store {
  mk_store base;
  char host[256];          /* as given: for messages and lookups */
  char addr[INET6_ADDRSTRLEN];
  int port, db;
  char *user, *password;   /* NULL when not given; never in a message */
  redisAsyncContext *ac;   /* NULL when not connected */
  short events;            /* what hiredis wants to wait for */
  int connected;
  double connect_started;
  char why[160];           /* what went wrong last */
  char sha[41];
  char keys[MK_LANES][64], clients_key[64], epoch_key[64], client[17];
  char epoch[64];          /* the epoch of the last answer, "" before the first */
  question q[MK_LANES];
#ifdef ASYNC_LOOKUP
  lookup *lookup;          /* NULL when none is under way */
#endif
};

static const char *const LANE_NAMES[MK_LANES] = {"create", "poll"};

/* ---- hiredis's event hooks: note what to poll for ---- */

static void ev_add_read(void *d) { ((redis_store *)d)->events |= POLLIN; }
static void ev_del_read(void *d) { ((redis_store *)d)->events &= (short)~POLLIN; }
static void ev_add_write(void *d) { ((redis_store *)d)->events |= POLLOUT; }
static void ev_del_write(void *d) { ((redis_store *)d)->events &= (short)~POLLOUT; }

/* hiredis frees the context (after an error, or redisAsyncFree). */
static void ev_cleanup(void *d) {
  redis_store *s = d;
  s->ac = NULL;
  s->events = 0;
  s->connected = 0;
}

static void note(redis_store *s, const char *what, const char *detail) {
  snprintf(s->why, sizeof s->why, "redis %.100s:%d: %s%s%.80s", s->host, s->port, what, detail ? ": " : "",
           detail ? detail : "");
}

static void answer_away(redis_store *s, question *q, const char *why) {
  mk_store_answer *a = &s->base.answer[q->lane];
  memset(a, 0, sizeof *a);
  a->away = 1;
  snprintf(a->why, sizeof a->why, "%s", why);
  a->ready = 1;
  q->since = -1;
}

static int send_question(redis_store *s, question *q, int load);

static void on_reply(redisAsyncContext *ac, void *r, void *privdata) {
  question *q = privdata;
  redis_store *s = q->s;
  redisReply *reply = r;
  mk_store_answer *a = &s->base.answer[q->lane];
  if (q->since < 0) return; /* given up on already */
  if (!reply) {
    if (ac->err && !s->why[0]) note(s, "connection lost", ac->errstr);
    answer_away(s, q, s->why[0] ? s->why : "redis: no answer");
    return;
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    if (strncmp(reply->str, "NOSCRIPT", 8) == 0 && send_question(s, q, 1) == 0) return; /* loads it */
    note(s, "error", reply->str);
    answer_away(s, q, s->why);
    return;
  }
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 4 || reply->element[0]->type != REDIS_REPLY_INTEGER ||
      reply->element[1]->type != REDIS_REPLY_INTEGER || reply->element[2]->type != REDIS_REPLY_INTEGER ||
      reply->element[3]->type != REDIS_REPLY_STRING) {
    note(s, "the grant script answered something else", NULL);
    answer_away(s, q, s->why);
    return;
  }
  memset(a, 0, sizeof *a);
  a->granted = reply->element[0]->integer < 0 ? 0
               : reply->element[0]->integer > q->want ? q->want : (int)reply->element[0]->integer;
  a->retry_in = (double)reply->element[1]->integer / 1e6;
  a->peers = reply->element[2]->integer > 1000000 ? 1000000 : (int)reply->element[2]->integer;
  /* read late (a host that stepped late, a slow link): the grants would reach
   * the gateway late for the window Redis counted them in; they stay counted
   * there, unspent, and the client asks again at once */
  if (mk_clock() - q->since > MK_SHARED_MARGIN) a->granted = 0;
  if (strncmp(s->epoch, reply->element[3]->str, sizeof s->epoch - 1) != 0) {
    if (s->epoch[0]) {
      a->reset = 1;
      note(s, "lost the account's windows (restarted or flushed)", NULL);
      snprintf(a->why, sizeof a->why, "%s", s->why);
    }
    snprintf(s->epoch, sizeof s->epoch, "%s", reply->element[3]->str);
  }
  a->ready = 1;
  q->since = -1;
}

/* AUTH and SELECT: a refusal drops the connection, and the questions behind it answer "away". */
static void on_setup(redisAsyncContext *ac, void *r, void *privdata) {
  redisReply *reply = r;
  redis_store *s = privdata;
  if (reply && reply->type == REDIS_REPLY_ERROR) {
    note(s, "refused the connection's set-up", reply->str);
    redisAsyncFree(ac); /* inside a callback: hiredis frees it once the callback returns */
  }
}

static void on_connect(const redisAsyncContext *ac, int status) {
  redis_store *s = ac->data;
  if (status == REDIS_OK) s->connected = 1;
  else note(s, "cannot connect", ac->errstr);
}

/* A connection that broke: Redis may come back without the grants it gave out. */
static void on_disconnect(const redisAsyncContext *ac, int status) {
  redis_store *s = ac->data;
  if (status == REDIS_OK) return;
  note(s, "connection lost", ac->errstr);
  snprintf(s->base.lost_why, sizeof s->base.lost_why, "%s", s->why);
  s->base.lost = 1;
}

static int resolve(redis_store *s);

/* The address from a lookup that ended; its result freed. */
static int take_address(redis_store *s, const struct addrinfo *res) {
  if (res->ai_family == AF_INET6)
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)res->ai_addr)->sin6_addr, s->addr, sizeof s->addr);
  else
    inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)res->ai_addr)->sin_addr, s->addr, sizeof s->addr);
  return 0;
}

/* Inside a step: look the name up without waiting for it. 0 once the address
 * is known; -1 (s->why says why) while the lookup runs or when it failed. */
static int resolve_in_step(redis_store *s) {
#ifdef ASYNC_LOOKUP
  struct gaicb *list[1];
  int rc;
  if (!s->lookup) {
    lookup *l = calloc(1, sizeof *l);
    if (!l) {
      note(s, "out of memory", NULL);
      return -1;
    }
    snprintf(l->host, sizeof l->host, "%s", s->host);
    l->hints.ai_family = AF_UNSPEC;
    l->hints.ai_socktype = SOCK_STREAM;
    l->cb.ar_name = l->host;
    l->cb.ar_request = &l->hints;
    list[0] = &l->cb;
    if ((rc = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL)) != 0) {
      free(l);
      note(s, "cannot resolve", gai_strerror(rc));
      return -1;
    }
    s->lookup = l;
  }
  rc = gai_error(&s->lookup->cb);
  if (rc == EAI_INPROGRESS) {
    note(s, "still resolving the name", NULL);
    return -1;
  }
  if (rc == 0 && s->lookup->cb.ar_result) take_address(s, s->lookup->cb.ar_result);
  else note(s, "cannot resolve", gai_strerror(rc ? rc : EAI_NONAME));
  if (s->lookup->cb.ar_result) freeaddrinfo(s->lookup->cb.ar_result);
  free(s->lookup);
  s->lookup = NULL;
  return s->addr[0] ? 0 : -1;
#else
  return resolve(s);
#endif
}

static int resolve(redis_store *s) {
  struct addrinfo hints, *res = NULL;
  int rc;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  rc = getaddrinfo(s->host, NULL, &hints, &res);
  if (rc != 0 || !res) {
    note(s, "cannot resolve", gai_strerror(rc));
    return -1;
  }
  take_address(s, res);
  freeaddrinfo(res);
  return 0;
}

static int connect_now(redis_store *s, double now) {
  redisAsyncContext *ac;
  if (!s->addr[0] && resolve_in_step(s) != 0) return -1;
  ac = redisAsyncConnect(s->addr, s->port);
  if (!ac) {
    note(s, "out of memory", NULL);
    return -1;
  }
  if (ac->err) {
    note(s, "cannot connect", ac->errstr);
    redisAsyncFree(ac);
    s->addr[0] = '\0'; /* look the name up again next time */
    return -1;
  }
  ac->data = s;
  ac->ev.data = s;
  ac->ev.addRead = ev_add_read;
  ac->ev.delRead = ev_del_read;
  ac->ev.addWrite = ev_add_write;
  ac->ev.delWrite = ev_del_write;
  ac->ev.cleanup = ev_cleanup;
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  s->ac = ac;
  s->events = 0;
  s->connected = 0;
  s->connect_started = now;
  s->why[0] = '\0';
  if ((s->password && (s->user ? redisAsyncCommand(ac, on_setup, s, "AUTH %s %s", s->user, s->password)
                               : redisAsyncCommand(ac, on_setup, s, "AUTH %s", s->password)) != REDIS_OK) ||
      (s->db && redisAsyncCommand(ac, on_setup, s, "SELECT %d", s->db) != REDIS_OK)) {
    note(s, "cannot send", NULL);
    redisAsyncFree(ac);
    return -1;
  }
  ev_add_write(s); /* the connect completes when the socket turns writable */
  return 0;
}

/* EVALSHA, or (load) EVAL with the script's text. */
static int send_question(redis_store *s, question *q, int load) {
  const char *lane_key = s->keys[q->lane];
  char limit[16], want[16];
  snprintf(limit, sizeof limit, "%d", q->limit);
  snprintf(want, sizeof want, "%d", q->want);
  if (load)
    return redisAsyncCommand(s->ac, on_reply, q, "EVAL %s 3 %s %s %s %s %s %s %s", GRANT_SCRIPT, lane_key,
                             s->clients_key, s->epoch_key, limit, q->per, want, s->client) == REDIS_OK ? 0 : -1;
  return redisAsyncCommand(s->ac, on_reply, q, "EVALSHA %s 3 %s %s %s %s %s %s %s", s->sha, lane_key, s->clients_key,
                           s->epoch_key, limit, q->per, want, s->client) == REDIS_OK ? 0 : -1;
}

static void make_keys(redis_store *s) {
  char hex[2 * MK_ACCOUNT_BYTES + 1];
  int i;
  for (i = 0; i < MK_ACCOUNT_BYTES; i++) snprintf(hex + 2 * i, 3, "%02x", s->base.account[i]);
  /* {…}: one hash slot per account on a Redis Cluster */
  for (i = 0; i < MK_LANES; i++) snprintf(s->keys[i], sizeof s->keys[i], "modkie:{%s}:%s", hex, LANE_NAMES[i]);
  snprintf(s->clients_key, sizeof s->clients_key, "modkie:{%s}:clients", hex);
  snprintf(s->epoch_key, sizeof s->epoch_key, "modkie:{%s}:epoch", hex);
  snprintf(s->client, sizeof s->client, "%016llx", (unsigned long long)s->base.client);
}

static void redis_ask(mk_store *base, mk_lane lane, int want, int limit, double per, double now) {
  redis_store *s = (redis_store *)base;
  question *q = &s->q[lane];
  if (!s->client[0]) make_keys(s);
  q->want = want;
  q->limit = limit;
  snprintf(q->per, sizeof q->per, "%.6f", per);
  q->since = now;
  if ((!s->ac && connect_now(s, now) != 0) || !s->ac || send_question(s, q, 0) != 0) {
    if (!s->why[0]) note(s, "cannot send", NULL);
    answer_away(s, q, s->why);
  }
}

static int redis_socket(mk_store *base, struct pollfd *p) {
  redis_store *s = (redis_store *)base;
  if (!s->ac || !s->events) return 0;
  p->fd = s->ac->c.fd;
  p->events = s->events;
  return 1;
}

/* hiredis writes with write(2): to a connection Redis just closed that
 * raises SIGPIPE, whose default ends the host process. Hold it blocked for
 * the write and take back one it raised (not one that was already pending). */
static void write_quietly(redisAsyncContext *ac) {
  sigset_t pipe, old, pending;
  int blocked, was_pending;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
  blocked = pthread_sigmask(SIG_BLOCK, &pipe, &old) == 0;
  redisAsyncHandleWrite(ac);
  if (!blocked) return;
  if (!was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
    struct timespec none = {0, 0};
    sigtimedwait(&pipe, NULL, &none);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void redis_ready(mk_store *base, short revents, double now) {
  redis_store *s = (redis_store *)base;
  (void)now;
  /* read first: a connection Redis closed is noticed before anything is written to it */
  if (s->ac && (revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) redisAsyncHandleRead(s->ac);
  if (s->ac && (revents & POLLOUT)) write_quietly(s->ac);
}

/* When the connection or a question out runs out of time; -1: none. */
static double deadline(const redis_store *s) {
  double due = s->connected ? -1 : s->connect_started + TIMEOUT;
  int l;
  for (l = 0; l < MK_LANES; l++)
    if (s->q[l].since >= 0 && (due < 0 || s->q[l].since + TIMEOUT < due)) due = s->q[l].since + TIMEOUT;
  return due;
}

static double redis_tick(mk_store *base, double now) {
  redis_store *s = (redis_store *)base;
  double next = -1, due;
  struct pollfd p;
  if (!s->ac) return -1;
  due = deadline(s);
  /* a host that stepped late (a busy program, an nginx worker with no request
   * awaiting) finds the answer waiting on the socket: read it before calling it late */
  if (due >= 0 && now >= due && redis_socket(base, &p) && poll(&p, 1, 0) > 0) {
    redis_ready(base, p.revents, now);
    if (!s->ac) return -1;
    due = deadline(s);
  }
  if (due >= 0 && now >= due) {
    note(s, s->connected ? "no answer within 2 s" : "no connection within 2 s", NULL);
    redisAsyncFree(s->ac); /* the questions out answer "away" */
    s->addr[0] = '\0';
    return -1;
  }
  if (due >= 0) next = due - now;
  return next;
}

static void redis_free(mk_store *base) {
  redis_store *s = (redis_store *)base;
  if (s->ac) redisAsyncFree(s->ac);
#ifdef ASYNC_LOOKUP
  /* a lookup glibc cannot cancel still writes into its memory: left to it */
  if (s->lookup && gai_cancel(&s->lookup->cb) != EAI_NOTCANCELED) {
    if (gai_error(&s->lookup->cb) == 0 && s->lookup->cb.ar_result) freeaddrinfo(s->lookup->cb.ar_result);
    free(s->lookup);
  }
#endif
  if (s->password) OPENSSL_cleanse(s->password, strlen(s->password));
  free(s->password);
  free(s->user);
  free(s);
}

static const mk_store_ops redis_ops = {"redis", redis_ask, redis_socket, redis_ready, redis_tick, redis_free};

/* A part of the URL, decoded; NULL when absent. */
static char *url_part(CURLU *u, CURLUPart part) {
  char *v = NULL, *copy;
  if (curl_url_get(u, part, &v, CURLU_URLDECODE) != CURLUE_OK || !v) return NULL;
  copy = malloc(strlen(v) + 1);
  if (copy) memcpy(copy, v, strlen(v) + 1);
  if (part == CURLUPART_PASSWORD) OPENSSL_cleanse(v, strlen(v));
  curl_free(v);
  return copy;
}

static void script_sha(char out[41]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0, i;
  out[0] = '\0';
  if (!EVP_Digest(GRANT_SCRIPT, sizeof GRANT_SCRIPT - 1, md, &len, EVP_sha1(), NULL) || len != 20) return;
  for (i = 0; i < len; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

mk_store *mk_store_redis_new(const char *url, char *err, size_t errlen) {
  CURLU *u = curl_url();
  redis_store *s = calloc(1, sizeof *s);
  char *host = NULL, *port = NULL, *path = NULL, *end = NULL;
  long db = 0, portn = DEFAULT_PORT;
  int l, ok = 0;
  if (!u || !s) {
    snprintf(err, errlen, "out of memory");
    goto done;
  }
  if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !host[0]) {
    snprintf(err, errlen, "redis: not a redis://[[user]:password@]host[:port][/db] URL");
    goto done;
  }
  if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK && port) portn = strtol(port, &end, 10);
  if (portn < 1 || portn > 65535) {
    snprintf(err, errlen, "redis: the port must be from 1 to 65535");
    goto done;
  }
  if (curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK && path && path[0] == '/' && path[1]) {
    db = strtol(path + 1, &end, 10);
    if (*end || db < 0 || db > 1000000) {
      snprintf(err, errlen, "redis: the path must be a database number (/0, /1, ...)");
      goto done;
    }
  }
  /* [::1] comes with its brackets */
  snprintf(s->host, sizeof s->host, "%.*s", (int)strlen(host) - (host[0] == '[' ? 2 : 0), host + (host[0] == '['));
  s->port = (int)portn;
  s->db = (int)db;
  s->password = url_part(u, CURLUPART_PASSWORD);
  s->user = s->password ? url_part(u, CURLUPART_USER) : NULL;
  if (s->user && !s->user[0]) {
    free(s->user);
    s->user = NULL;
  }
  s->base.ops = &redis_ops;
  for (l = 0; l < MK_LANES; l++) {
    s->q[l].s = s;
    s->q[l].lane = (mk_lane)l;
    s->q[l].since = -1;
  }
  script_sha(s->sha);
  resolve(s); /* a failure is tried again at the first question */
  ok = 1;
done:
  curl_free(host);
  curl_free(port);
  curl_free(path);
  curl_url_cleanup(u);
  if (!ok && s) {
    free(s->password);
    free(s->user);
    free(s);
  }
  return ok ? &s->base : NULL;
}

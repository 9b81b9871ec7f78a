/* engine.c: the multi handle, transfers, lines, timers and sockets (see engine.h). */
/* curl_multi_socket_all is deprecated for driving transfers, and used here
 * only once, to hand libcurl's sockets from the poll drive to the socket
 * drive (see use_sockets): no other call says every socket at once. */
#define CURL_DISABLE_DEPRECATION
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "call.h"
#include "job.h"
#include "redact.h"
#include "retry_after.h"
#include "upload.h"
#include "url.h"

#define SLOT_BITS 24
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
#define GEN_MASK ((1u << 28) - 1) /* handles stay below 2^52: exact in a double */
/* libcurl 7.88 can leave a multiplexed HTTP/2 transfer unnoticed until a wait
 * times out; while transfers are active, never sleep longer than this. */
#define ACTIVE_POLL_CAP 0.05
/* While the rate store has a question out, a host that sleeps instead of
 * polling our sockets (OpenResty) comes back this soon: a grant read late is lost. */
#define STORE_POLL_CAP 0.005
#define WATCHDOG_GRACE 2.0 /* seconds past a request's timeout before the engine ends it itself */
/* A download slower than this on average over `timeout` seconds is cut: a
 * host that trickles a byte a second must not hold a job's files forever. */
#define DOWNLOAD_MIN_SPEED 1024L /* bytes per second */
/* Shorter keys (the emulator's "test") are not searched for in answers: they
 * would match ordinary text. "Bearer <token>" is redacted whatever its length. */
#define MIN_REDACTED_KEY 8
#define POLL_MAX_WAIT 3600.0     /* one poll() waits at most this long (its int milliseconds stay defined) */
#define TIMER_POLL 1
#define TIMER_DEADLINE 2

struct mk_xfer {
  CURL *easy;
  mk_engine *e;
  mk_op *op;
  mk_buf body;
  FILE *file;
  curl_mime *mime;       /* an upload's form: freed once the easy handle is done with it */
  long long file_bytes;
  int too_large, write_failed;
  int in_multi;  /* added to the multi handle and not yet removed */
  int api_ready; /* the handle holds every option an API exchange shares: only the exchange's own are set */
  int on_wire;   /* the request went out: its rate window counts it from then */
  double sent_at;
  unsigned long long rate_ticket; /* its token in the lane's local window (0: none) */
  double started;
  mk_xfer *fprev, *fnext; /* the list of transfers in flight, for the watchdog */
  double retry_after;
  char errbuf[CURL_ERROR_SIZE];
  char write_error[128];
  mk_xfer *next; /* spare list */
};

double mk_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double mk_random(mk_engine *e) {
  /* xorshift64*: per engine, so two clients never share state */
  uint64_t x = e->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  e->rng = x;
  return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* ---- endpoints ---- */

static const struct endpoint {
  const char *name;  /* in messages, and as the bindings name it */
  int post;
  const char *path;  /* after base_url; RECORD: followed by the task id */
} ENDPOINTS[] = {
  [MK_EP_NONE] = {NULL, 0, NULL},
  [MK_EP_CREATE] = {"createTask", 1, "/api/v1/jobs/createTask"},
  [MK_EP_RECORD] = {"recordInfo", 0, "/api/v1/jobs/recordInfo?taskId="},
  [MK_EP_CREDIT] = {"credit", 0, "/api/v1/chat/credit"},
  [MK_EP_DOWNLOAD_URL] = {"download-url", 1, "/api/v1/common/download-url"},
  [MK_EP_DOWNLOAD] = {"download", 0, NULL},
  [MK_EP_UPLOAD] = {"file-stream-upload", 1, "/api/file-stream-upload"}, /* after upload_url */
};

const char *mk_endpoint_name(mk_endpoint ep) {
  return (ep > MK_EP_NONE && ep <= MK_EP_UPLOAD) ? ENDPOINTS[ep].name : NULL;
}

mk_endpoint mk_endpoint_named(const char *name) {
  int ep;
  for (ep = MK_EP_CREATE; ep <= MK_EP_UPLOAD; ep++)
    if (!strcmp(ENDPOINTS[ep].name, name)) return (mk_endpoint)ep;
  return MK_EP_NONE;
}

/* ---- queues: intrusive doubly linked FIFOs of ops ---- */

static void queue_push(mk_queue *q, mk_op *op) {
  op->queue = q;
  op->qnext = NULL;
  op->qprev = q->tail;
  if (q->tail) q->tail->qnext = op;
  else q->head = op;
  q->tail = op;
  q->len++;
}

/* The create line keeps submission order: a create back from a retry goes
 * before the ones submitted after it, so a waiting create keeps its place. */
static void queue_push_by_age(mk_queue *q, mk_op *op) {
  mk_op *after = q->tail;
  while (after && after->created > op->created) after = after->qprev;
  if (after == q->tail) {
    queue_push(q, op);
    return;
  }
  op->queue = q;
  op->qprev = after;
  op->qnext = after ? after->qnext : q->head;
  if (after) after->qnext = op;
  else q->head = op;
  op->qnext->qprev = op;
  q->len++;
}

static void queue_remove(mk_op *op) {
  mk_queue *q = op->queue;
  if (!q) return;
  if (op->qprev) op->qprev->qnext = op->qnext;
  else q->head = op->qnext;
  if (op->qnext) op->qnext->qprev = op->qprev;
  else q->tail = op->qprev;
  op->queue = NULL;
  op->qprev = op->qnext = NULL;
  q->len--;
}

void mk_engine_count_refusal(mk_engine *e, long http, int has_code, long code) {
  if (http == 429 || (has_code && code == 429)) e->rate_limited++;
  if (http == 455 || (has_code && code == 455)) e->unavailable++;
}

/* ---- events for the host ---- */

void mk_engine_emit(mk_engine *e, mk_event *ev) {
  if (!ev) return; /* out of memory: the event is lost, never the engine */
  ev->next = NULL;
  if (e->events_tail) e->events_tail->next = ev;
  else e->events = ev;
  e->events_tail = ev;
  e->events_made++;
}

mk_event *mk_engine_event(mk_engine *e) {
  return e->events;
}

void mk_engine_event_done(mk_engine *e) {
  mk_event *ev = e->events;
  if (!ev) return;
  e->events = ev->next;
  if (!e->events) e->events_tail = NULL;
  mk_event_free(ev);
}

/* The store went away or came back since the host last heard: both, when
 * both happened (the state it is in now comes last). */
static void store_news(mk_engine *e) {
  mk_grants *g = &e->grants;
  int news = g->news;
  mk_event *ev;
  const char *order[3] = {NULL, NULL, NULL};
  int i, n = 0;
  if (!news) return;
  g->news = 0;
  if ((news & MK_NEWS_BACK) && (news & MK_NEWS_AWAY) && g->away) order[n++] = "back";
  if (news & MK_NEWS_AWAY) order[n++] = "away";
  if ((news & MK_NEWS_BACK) && !g->away) order[n++] = "back";
  for (i = 0; i < n; i++) {
    if (!(ev = mk_event_new(MK_EV_STORE, 0))) continue;
    ev->text = mk_copy_str(order[i]);
    if (!strcmp(order[i], "away")) ev->message = mk_copy_str(g->why);
    if (!ev->text) {
      mk_event_free(ev);
      continue;
    }
    mk_engine_emit(e, ev);
  }
}

/* ---- transfers ---- */

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  mk_xfer *x = ud;
  size_t len = size * n;
  if (mk_buf_append(&x->body, p, len) != 0) {
    x->too_large = x->body.overflow;
    return 0; /* aborts the transfer: memory stays bounded */
  }
  return len;
}

static size_t on_file(char *p, size_t size, size_t n, void *ud) {
  mk_xfer *x = ud;
  size_t len = size * n;
  long code = 0;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
  if (code < 200 || code > 299) return len; /* an error page: not the file, not kept */
  if (x->e->max_download > 0 && x->file_bytes + (long long)len > x->e->max_download) {
    x->too_large = 1;
    return 0;
  }
  if (fwrite(p, 1, len, x->file) != len) {
    x->write_failed = 1;
    snprintf(x->write_error, sizeof x->write_error, "%s", strerror(errno));
    return 0;
  }
  x->file_bytes += (long long)len;
  return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  mk_xfer *x = ud;
  size_t len = size * n;
  double secs;
  if (len > 5 && memcmp(p, "HTTP/", 5) == 0) x->retry_after = -1; /* a new response (redirect, 100) */
  /* the wall clock only for a line that may be Retry-After: an answer has
   * about six header lines, and a clock read is dear in a virtual machine */
  else if (len > 0 && (p[0] == 'R' || p[0] == 'r') &&
           (secs = mk_parse_retry_after(p, len, wall_now())) >= 0)
    x->retry_after = secs;
  return len;
}

/* A transfer for the next exchange: a spare one (its easy handle reset,
 * unless it is kept set up for API exchanges and one is next), or a new one. */
static mk_xfer *xfer_get(mk_engine *e, int api) {
  mk_xfer *x = e->spare;
  if (x) {
    e->spare = x->next;
    if (!api || !x->api_ready) {
      curl_easy_reset(x->easy); /* keeps the handle's caches; connections live in the multi */
      x->api_ready = 0;
    }
  } else {
    x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->easy = curl_easy_init();
    if (!x->easy) {
      free(x);
      return NULL;
    }
    x->e = e;
  }
  x->next = NULL;
  x->file = NULL;
  x->file_bytes = 0;
  x->too_large = x->write_failed = x->in_multi = 0;
  x->retry_after = -1;
  x->errbuf[0] = x->write_error[0] = '\0';
  mk_buf_reset(&x->body, e->max_body);
  return x;
}

static void xfer_put(mk_engine *e, mk_xfer *x) {
  x->op = NULL;
  curl_mime_free(x->mime);
  x->mime = NULL;
  mk_buf_reset(&x->body, e->max_body);
  x->next = e->spare;
  e->spare = x;
}

static void xfer_free(mk_xfer *x) {
  curl_easy_cleanup(x->easy);
  curl_mime_free(x->mime);
  mk_buf_free(&x->body);
  free(x);
}

/* Close a download's temporary file; keep it (renamed into place) only when whole. */
static void finish_file(mk_op *op, mk_xfer *x, int keep) {
  int failed = 0;
  if (!x->file) return;
  if (keep) {
    failed = fflush(x->file) != 0 || fsync(fileno(x->file)) != 0;
    if (failed) snprintf(x->write_error, sizeof x->write_error, "%s", strerror(errno));
  }
  if (fclose(x->file) != 0 && keep && !failed) {
    failed = 1;
    snprintf(x->write_error, sizeof x->write_error, "%s", strerror(errno));
  }
  x->file = NULL;
  if (keep && !failed && rename(op->tmp_path, op->path) != 0) {
    failed = 1;
    snprintf(x->write_error, sizeof x->write_error, "rename: %s", strerror(errno));
  }
  if (!keep || failed) remove(op->tmp_path);
  if (failed) x->write_failed = 1;
}

static int lane_of(const mk_op *op);

/* An exchange that had its rate grant ends (or is dropped) without having
 * gone on the wire: its window stops waiting to mark it sent. Once. */
static void never_sent(mk_engine *e, mk_xfer *x) {
  if (x->on_wire || !x->op || lane_of(x->op) < 0) return;
  x->on_wire = 1;
  mk_grants_unsent(&e->grants, (mk_lane)lane_of(x->op));
}

static void leave_multi(mk_engine *e, mk_xfer *x) {
  never_sent(e, x);
  if (!x->in_multi) return;
  curl_multi_remove_handle(e->multi, x->easy);
  x->in_multi = 0;
  e->in_flight--;
  if (x->fprev) x->fprev->fnext = x->fnext;
  else e->flying = x->fnext;
  if (x->fnext) x->fnext->fprev = x->fprev;
  x->fprev = x->fnext = NULL;
}

/* Detach the op's transfer from the multi handle (if still there) and recycle it. */
static void drop_xfer(mk_engine *e, mk_op *op) {
  mk_xfer *x = op->xfer;
  if (!x) return;
  leave_multi(e, x);
  finish_file(op, x, 0);
  op->xfer = NULL;
  xfer_put(e, x);
}

/* The options every exchange shares, whatever it is (and its URL). */
static int setup_common(mk_engine *e, mk_xfer *x, const char *url) {
  CURL *c = x->easy;
  CURLcode rc = CURLE_OK;
#define SET(opt, val) if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val)
  SET(CURLOPT_URL, url);
  SET(CURLOPT_PRIVATE, x);
  SET(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700
  /* A transfer removed while its name still resolves (a cancel, close, or its
   * own connect timeout) leaves the resolver thread behind instead of joining
   * it: without this, libcurl waits for getaddrinfo to return, and the step
   * or close blocks the host for as long as the DNS server takes to answer. */
  SET(CURLOPT_QUICK_EXIT, 1L);
#endif
  SET(CURLOPT_ERRORBUFFER, x->errbuf);
  SET(CURLOPT_CONNECTTIMEOUT_MS, e->connect_timeout_ms);
  SET(CURLOPT_USERAGENT, e->user_agent);
  SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  SET(CURLOPT_PIPEWAIT, 1L); /* prefer a stream on an HTTP/2 connection to a new connection */
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_ACCEPT_ENCODING, "");
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_SSL_VERIFYPEER, 1L);
  SET(CURLOPT_SSL_VERIFYHOST, 2L);
  SET(CURLOPT_HEADERFUNCTION, on_header);
  SET(CURLOPT_HEADERDATA, x);
  if (e->ca_file) SET(CURLOPT_CAINFO, e->ca_file);
  if (e->pin) SET(CURLOPT_RESOLVE, e->pin);
#undef SET
  return rc == CURLE_OK ? 0 : -1;
}

/* An API exchange's own options: its URL, method and body, and whether it
 * needs a connection of its own. */
static int setup_exchange(mk_op *op, mk_xfer *x) {
  CURL *c = x->easy;
  CURLcode rc = CURLE_OK;
#define SET(opt, val) if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val)
  SET(CURLOPT_URL, op->url);
  /* libcurl silently re-sends a request whose reused connection died before
   * any answer; for createTask that may create a second task. A connection
   * of its own for each createTask means libcurl never does. */
  SET(CURLOPT_FRESH_CONNECT, op->endpoint == MK_EP_CREATE ? 1L : 0L);
  if (op->post) {
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)op->body_len);
    SET(CURLOPT_POSTFIELDS, op->body);
  } else {
    SET(CURLOPT_HTTPGET, 1L);
  }
#undef SET
  return rc == CURLE_OK ? 0 : -1;
}

/* The rate lane an exchange counts in, or -1. */
static int lane_of(const mk_op *op) {
  return op->endpoint == MK_EP_CREATE ? MK_LANE_CREATE : op->endpoint == MK_EP_RECORD ? MK_LANE_POLL : -1;
}

#if LIBCURL_VERSION_NUM >= 0x075000
/* libcurl is about to send the request (its connection is set up or
 * reused): the rate window counts this exchange from now, as the gateway
 * will. Once per exchange: a resend on a fresh connection is the same one. */
static int on_prereq(void *ud, char *primary_ip, char *local_ip, int primary_port, int local_port) {
  mk_xfer *x = ud;
  int lane = x->op ? lane_of(x->op) : -1;
  (void)primary_ip, (void)local_ip, (void)primary_port, (void)local_port;
  if (!x->on_wire && lane >= 0) {
    x->on_wire = 1;
    x->sent_at = mk_now();
    x->rate_ticket = mk_grants_sent(&x->e->grants, (mk_lane)lane, x->sent_at);
  }
  return CURL_PREREQFUNC_OK;
}
#endif

/* An API exchange: the options API exchanges share, once per handle (a
 * handle kept for API exchanges is not reset between them: a poll costs its
 * own few options, not two dozen), then the exchange's own. */
static int setup_api(mk_engine *e, mk_op *op, mk_xfer *x) {
  CURL *c = x->easy;
  CURLcode rc = CURLE_OK;
  if (!x->api_ready) {
    if (setup_common(e, x, op->url) != 0) return -1;
#define SET(opt, val) if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val)
    SET(CURLOPT_TIMEOUT_MS, e->timeout_ms);
    SET(CURLOPT_FOLLOWLOCATION, 0L); /* an API call that redirects is not the contract */
    SET(CURLOPT_HTTPHEADER, e->api_headers);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, x);
#if LIBCURL_VERSION_NUM >= 0x075000 /* 7.80; before it the window counts from the grant */
    SET(CURLOPT_PREREQFUNCTION, on_prereq);
    SET(CURLOPT_PREREQDATA, x);
#endif
#undef SET
    if (rc != CURLE_OK) return -1;
    x->api_ready = 1;
  }
  if (setup_exchange(op, x) == 0) return 0;
  x->api_ready = 0; /* reset before its next use */
  return -1;
}

/* The download's temporary file `<path>.part`, made new by this call: what
 * is at that name is removed first (a leftover of a killed run, or a link
 * planted in a shared folder: unlink removes the link, never its target),
 * then O_EXCL creates the file and never follows a symbolic link (a link put
 * there meanwhile makes the open fail, rather than have modkie overwrite the
 * link's target); O_NOFOLLOW says so twice. */
static FILE *create_tmp(mk_op *op) {
  int fd;
  FILE *f;
  if (unlink(op->tmp_path) != 0 && errno != ENOENT) return NULL;
  fd = open(op->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (fd < 0) return NULL;
  f = fdopen(fd, "wb");
  if (!f) {
    int saved = errno;
    close(fd);
    remove(op->tmp_path);
    errno = saved;
  }
  return f;
}

static int setup_download(mk_engine *e, mk_op *op, mk_xfer *x) {
  CURL *c = x->easy;
  CURLcode rc = CURLE_OK;
  x->file = create_tmp(op);
  if (!x->file) return -1;
#define SET(opt, val) if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val)
  /* a large file may take long: give up on a slow transfer, not on total time */
  SET(CURLOPT_LOW_SPEED_LIMIT, DOWNLOAD_MIN_SPEED);
  SET(CURLOPT_LOW_SPEED_TIME, (e->timeout_ms + 999) / 1000);
  SET(CURLOPT_FOLLOWLOCATION, 1L);
  SET(CURLOPT_MAXREDIRS, 5L);
  SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_UNRESTRICTED_AUTH, 0L);
  /* the key goes only to the gateway's own origin; libcurl drops it on a redirect elsewhere */
  SET(CURLOPT_HTTPHEADER, op->send_auth ? e->auth_file_headers : (struct curl_slist *)NULL);
  SET(CURLOPT_WRITEFUNCTION, on_file);
  SET(CURLOPT_WRITEDATA, x);
  if (e->max_download > 0) SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)e->max_download);
#undef SET
  return rc == CURLE_OK ? 0 : -1;
}

/* An upload: the form streams the file from disk; a slow transfer is cut as
 * a download's is (a large file may take long, a stalled one must not). */
static int setup_upload(mk_engine *e, mk_op *op, mk_xfer *x) {
  CURL *c = x->easy;
  CURLcode rc = CURLE_OK;
#define SET(opt, val) if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val)
  SET(CURLOPT_LOW_SPEED_LIMIT, DOWNLOAD_MIN_SPEED);
  SET(CURLOPT_LOW_SPEED_TIME, (e->timeout_ms + 999) / 1000);
  SET(CURLOPT_FOLLOWLOCATION, 0L);
  SET(CURLOPT_HTTPHEADER, e->upload_headers);
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, x);
#undef SET
  return rc == CURLE_OK ? mk_upload_setup(c, op->upload, &x->mime) : -1;
}

/* The op's exchange ended: its judge and state machine take it from here
 * (the op may be freed by the time this returns). */
static void answered(mk_engine *e, mk_op *op) {
  if (op->type == MK_OP_JOB) mk_job_answered(e, op);
  else mk_call_answered(e, op);
}

/* An exchange that could not start ends at once, as one that failed before
 * anything was sent. */
static void fail_now(mk_engine *e, mk_op *op, CURLcode code, const char *why) {
  memset(&op->result, 0, sizeof op->result);
  op->result.curl = code;
  op->result.write_failed = code == CURLE_WRITE_ERROR;
  op->result.retry_after = -1;
  op->result.body = "";
  op->result.error = why;
  answered(e, op);
}

void mk_engine_start(mk_engine *e, mk_op *op) {
  int api = op->type != MK_OP_DOWNLOAD && op->type != MK_OP_UPLOAD;
  mk_xfer *x = xfer_get(e, api);
  if (!x) {
    fail_now(e, op, CURLE_FAILED_INIT, "out of memory");
    return;
  }
  x->op = op;
  x->on_wire = 0;
  op->xfer = x;
  if (api ? setup_api(e, op, x) != 0
          : setup_common(e, x, op->url) != 0 ||
            (op->type == MK_OP_DOWNLOAD ? setup_download(e, op, x) : setup_upload(e, op, x)) != 0) {
    int cannot_open = op->type == MK_OP_DOWNLOAD && !x->file;
    /* the message outlives the transfer: strerror's text is static */
    const char *why = cannot_open ? strerror(errno) : "could not set up the request";
    drop_xfer(e, op);
    fail_now(e, op, cannot_open ? CURLE_WRITE_ERROR : CURLE_FAILED_INIT, why);
    return;
  }
  if (curl_multi_add_handle(e->multi, x->easy) != CURLM_OK) {
    drop_xfer(e, op);
    fail_now(e, op, CURLE_FAILED_INIT, "could not start the request");
    return;
  }
  x->in_multi = 1;
  e->added = 1;
  x->started = mk_now();
  x->fprev = NULL;
  x->fnext = e->flying;
  if (e->flying) e->flying->fprev = x;
  e->flying = x;
  e->in_flight++;
  e->requests++;
  if (op->type == MK_OP_JOB) {
    if (op->endpoint == MK_EP_CREATE) {
      e->creates_sent++;
    } else {
      e->polls_sent++;
      op->rank.seen = x->started - op->rank.started; /* what the lane counts from */
      op->rank.age_unknown = 0;
      op->rank.fallback_done = 1;
    }
  }
}

/* Which waiting line an op's next exchange stands in: its endpoint's rate lane. */
static mk_queue *line_for(mk_engine *e, mk_op *op) {
  if (op->endpoint == MK_EP_CREATE) return &e->wait_submit;
  if (op->endpoint == MK_EP_RECORD) return &e->wait_poll;
  return &e->wait_slot;
}

static mk_op *op_of_rank(mk_rank *r) {
  return (mk_op *)(void *)((char *)r - offsetof(mk_op, rank));
}

/* A poll of a job on the budget: it waits in the lane (priority.h). */
static int ranked_poll(const mk_op *op) {
  return op->budget && op->endpoint == MK_EP_RECORD;
}

static void enqueue(mk_engine *e, mk_op *op) {
  mk_queue *q;
  if (ranked_poll(op)) { /* the lane; and the line of due polls when the schedule wants it now */
    if (mk_ranks_add(&e->ranks, &op->rank, mk_now())) queue_push(&e->wait_due, op);
    return;
  }
  q = line_for(e, op);
  if (q == &e->wait_submit) queue_push_by_age(q, op);
  else queue_push(q, op);
}

/* Out of every waiting line: the queues and the lane. */
static void leave_lines(mk_engine *e, mk_op *op) {
  queue_remove(op);
  mk_ranks_remove(&e->ranks, &op->rank);
}

/* Start a waiting exchange. A held createTask stops at the door with its
 * grant and slot instead (the job state machine's "door"). */
static void start_next(mk_engine *e, mk_op *op) {
  leave_lines(e, op);
  if (op->hold) mk_job_door(e, op);
  else mk_engine_start(e, op);
}

/* Which waiting polls go out with `polls` grants: the one place that
 * decides it. Polls on a schedule of the host's (and one-off recordInfo
 * calls) go in the order they fell due; then the budget jobs: every one the
 * recommended schedule wants now when the grants cover them, else the best
 * ranked in the lane, due or not (priority.h). */
static void start_polls(mk_engine *e, int polls, double now) {
  while (polls > 0 && e->wait_poll.head) {
    start_next(e, e->wait_poll.head);
    polls--;
  }
  if (polls >= e->wait_due.len) {
    while (e->wait_due.head) start_next(e, e->wait_due.head);
    return;
  }
  while (polls-- > 0) {
    mk_rank *best = mk_ranks_best(&e->ranks, now);
    if (!best) break;
    start_next(e, op_of_rank(best));
    e->ranked_polls++;
  }
}

/* Start waiting exchanges while rate grants and in-flight room allow:
 * creates first, in the order they were submitted, then polls, then the rest. */
static void pump(mk_engine *e, double now) {
  int room = e->max_in_flight - e->in_flight - e->held, creates, polls, due;
  mk_rank *r;
  while ((r = mk_ranks_now_due(&e->ranks, now))) queue_push(&e->wait_due, op_of_rank(r));
  if (room <= 0) return;
  creates = mk_grants_take(&e->grants, MK_LANE_CREATE, e->wait_submit.len < room ? e->wait_submit.len : room, now);
  room -= creates;
  due = e->wait_poll.len + e->wait_due.len;
  polls = mk_grants_take(&e->grants, MK_LANE_POLL, due < room ? due : room, now);
  mk_grants_settle(&e->grants); /* a grant is spent now or never */
  while (creates-- > 0 && e->wait_submit.head) start_next(e, e->wait_submit.head);
  start_polls(e, polls, now);
  while (e->in_flight + e->held < e->max_in_flight && e->wait_slot.head) start_next(e, e->wait_slot.head);
}

void mk_engine_pump(mk_engine *e) {
  double now = mk_now();
  mk_grants_collect(&e->grants, now);
  pump(e, now);
}

/* The store's timeouts; when it next needs a look. */
static void store_tick(mk_engine *e, double now) {
  double t = mk_grants_tick(&e->grants, now);
  e->store_due = t < 0 ? -1 : now + t;
}

int mk_engine_hold(mk_op *op) {
  if (op->type != MK_OP_JOB || op->state != MK_SUBMITTING || !op->queue || op->xfer) return -1;
  op->hold = 1;
  return 0;
}

int mk_engine_send(mk_engine *e, mk_op *op) {
  return mk_job_send(e, op);
}

static void stop(mk_engine *e, mk_op *op) {
  if (op->request) { /* a request released unanswered (the client closes): 503, try again */
    mk_listener_answer(e->listener, op->request, 503);
    op->request = NULL;
  }
  if (op->held) { /* its slot is free again; its grant was never used */
    op->held = 0;
    e->held--;
    mk_grants_unsent(&e->grants, MK_LANE_CREATE);
  }
  mk_heap_remove(&e->timers, &op->timer);
  mk_heap_remove(&e->timers, &op->deadline);
  leave_lines(e, op);
  drop_xfer(e, op);
}

void mk_engine_stop(mk_engine *e, mk_op *op) {
  stop(e, op);
}

/* A callback job before its first fallback poll: wait for the fallback
 * time, worked out again at least every MK_RECHECK (what is known of the
 * model grows meanwhile). Returns 1 when the time has come. */
static int fallback_due(mk_engine *e, mk_op *op, double now) {
  double at, recheck = now + MK_RECHECK * e->time_scale;
  if (!ranked_poll(op) || !op->rank.callback || op->rank.fallback_done) return 1;
  at = mk_ranks_fallback_at(&e->ranks, &op->rank);
  if (now >= at) return 1;
  mk_heap_set(&e->timers, &op->timer, at < recheck ? at : recheck); /* room reserved: cannot fail */
  return 0;
}

static void fire(mk_engine *e, mk_timer *t, double now) {
  mk_op *op = t->owner;
  if (t->kind == TIMER_DEADLINE) {
    if (op->xfer && op->endpoint == MK_EP_CREATE) {
      op->expired = 1; /* let createTask answer: the task id must not be lost */
      return;
    }
    stop(e, op);
    mk_job_deadline(e, op);
  } else if (op->type == MK_OP_TIMER) {
    mk_timer_fired(e, op);
  } else if (fallback_due(e, op, now)) {
    if (ranked_poll(op) && op->rank.callback && !op->rank.fallback_done) op->rank.due = now;
    enqueue(e, op);
  }
}

static void fire_due(mk_engine *e, double now) {
  mk_timer *t;
  while ((t = mk_heap_top(&e->timers)) && t->due <= now) {
    mk_heap_remove(&e->timers, t);
    fire(e, t, now);
  }
}

static void collect(mk_engine *e) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(e->multi, &left))) {
    mk_xfer *x = NULL;
    mk_op *op;
    mk_result *r;
    long request_size = 0;
    if (msg->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
    op = x->op;
    r = &op->result;
    memset(r, 0, sizeof *r);
    r->curl = msg->data.result;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r->http);
    curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &request_size);
    r->sent = request_size > 0;
    if (x->on_wire && r->curl == CURLE_OK && lane_of(op) >= 0)
      mk_grants_answered(&e->grants, (mk_lane)lane_of(op), x->rate_ticket, x->sent_at, mk_now());
    leave_multi(e, x);
    if (op->type == MK_OP_DOWNLOAD)
      finish_file(op, x, r->curl == CURLE_OK && r->http >= 200 && r->http <= 299);
    if (x->write_failed && r->curl == CURLE_OK) r->curl = CURLE_WRITE_ERROR;
    r->too_large = x->too_large || r->curl == CURLE_FILESIZE_EXCEEDED;
    r->write_failed = x->write_failed;
    r->retry_after = x->retry_after;
    /* server text leaves the engine only after the key is taken out of it */
    if (op->type != MK_OP_DOWNLOAD && x->body.len && mk_redact(&x->body, &e->secrets) != 0)
      x->body.len = 0; /* out of memory: the answer reads as empty, never with the key */
    r->body = x->body.data ? x->body.data : "";
    r->body_len = x->body.len;
    r->error = x->write_failed ? x->write_error : x->errbuf[0] ? x->errbuf : curl_easy_strerror(r->curl);
    answered(e, op); /* judged now, in C: the transfer is recycled by what the answer decides */
  }
}

/* ---- sockets: libcurl says which to watch (socket callback), we poll them ---- */

static short poll_events(int what) {
  return (short)(((what & CURL_POLL_IN) ? POLLIN : 0) | ((what & CURL_POLL_OUT) ? POLLOUT : 0));
}

/* libcurl tells us what to wait for on socket s. `socketp` holds the
 * socket's index + 1 in e->pfds (0 for a socket we do not know yet). */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *ud, void *socketp) {
  mk_engine *e = ud;
  size_t i = (size_t)(uintptr_t)socketp;
  (void)easy;
  if (what == CURL_POLL_REMOVE) {
    if (i) {
      e->pfds[i - 1] = e->pfds[--e->npfds]; /* the last entry takes the freed place */
      if (i - 1 < e->npfds) curl_multi_assign(e->multi, e->pfds[i - 1].fd, (void *)(uintptr_t)i);
      curl_multi_assign(e->multi, s, NULL);
    }
    return 0;
  }
  if (!i) {
    if (e->npfds + 2 >= e->cap_pfds) { /* room for two more: the store's socket and the listener's */
      size_t cap = e->cap_pfds ? e->cap_pfds * 2 : 16;
      struct pollfd *p = realloc(e->pfds, cap * sizeof *p);
      if (!p) return -1;
      e->pfds = p;
      e->cap_pfds = cap;
    }
    e->pfds[e->npfds].fd = s;
    i = ++e->npfds;
    curl_multi_assign(e->multi, s, (void *)(uintptr_t)i);
  }
  e->pfds[i - 1].events = poll_events(what);
  e->pfds[i - 1].revents = 0;
  return 0;
}

/* When libcurl's timer runs out, from its "ms from now": -1 none, 0 at once.
 * "At once" is 0, not now: a clock read here is later than the run loop's
 * `now`, and the few microseconds between would round up to a 1 ms sleep. */
static double curl_deadline(long ms) {
  return ms < 0 ? -1 : ms == 0 ? 0 : mk_now() + (double)ms / 1000.0;
}

/* libcurl's own timer: when it wants curl_multi_socket_action(TIMEOUT). */
static int on_timer(CURLM *multi, long ms, void *ud) {
  mk_engine *e = ud;
  (void)multi;
  e->curl_due = curl_deadline(ms);
  return 0;
}

/* After libcurl ran the transfers (`what`, answering `mc`): when it next
 * wants to run, and what ended, judged. */
static int ran(mk_engine *e, CURLMcode mc, const char *what, char *err, size_t errlen) {
  long ms = -1;
  if (mc != CURLM_OK) {
    snprintf(err, errlen, "%s: %s", what, curl_multi_strerror(mc));
    return -1;
  }
  /* libcurl calls the timer callback only when its deadline changes; ask it
   * directly, so a deadline it kept through a failed transfer is not lost */
  if (curl_multi_timeout(e->multi, &ms) == CURLM_OK) e->curl_due = curl_deadline(ms);
  collect(e);
  return 0;
}

static int act(mk_engine *e, curl_socket_t s, int flags, char *err, size_t errlen) {
  int running;
  return ran(e, curl_multi_socket_action(e->multi, s, flags, &running), "curl_multi_socket_action", err, errlen);
}

/* ---- the poll drive: curl_multi_perform, and curl_multi_poll to wait ---- */

/* Run every transfer as far as it goes without waiting, and judge what ended. */
static int perform(mk_engine *e, char *err, size_t errlen) {
  int running;
  CURLMcode mc = curl_multi_perform(e->multi, &running);
  e->added = e->perform_due = 0;
  return ran(e, mc, "curl_multi_perform", err, errlen);
}

static int store_socket(mk_engine *e);
static int listener_socket(mk_engine *e, size_t at);

/* Wait up to `wait` seconds for libcurl's sockets (curl_multi_poll), the
 * store's and the listener's, then run the transfers. Returns 1 when the
 * wait ended early with nothing ready: a signal (curl_multi_poll takes
 * poll's EINTR for a timeout), so back to the host, as poll_sockets does. */
static int poll_multi(mk_engine *e, double wait, char *err, size_t errlen) {
  struct curl_waitfd extra[2];
  unsigned n = 0;
  int ms, ready = 0, store = store_socket(e), listener = listener_socket(e, e->npfds + (size_t)store);
  short store_ready = 0, listener_ready = 0;
  double start = 0;
  CURLMcode mc;
  if (!(wait >= 0)) wait = 0;
  if (wait > POLL_MAX_WAIT) wait = POLL_MAX_WAIT;
  ms = (int)(wait * 1000 + 0.999);
  if (store) extra[n++] = (struct curl_waitfd){e->pfds[e->npfds].fd, (short)e->pfds[e->npfds].events, 0};
  if (listener) extra[n++] = (struct curl_waitfd){mk_listener_fd(e->listener), POLLIN, 0};
  if (ms > 0) start = mk_now();
  mc = curl_multi_poll(e->multi, n ? extra : NULL, n, ms, &ready);
  e->wakeups++;
  if (mc != CURLM_OK) {
    snprintf(err, errlen, "curl_multi_poll: %s", curl_multi_strerror(mc));
    return -1;
  }
  if (store) store_ready = extra[0].revents;
  if (listener) listener_ready = extra[store ? 1 : 0].revents;
  if (listener_ready) mk_listener_run(e->listener);
  if (perform(e, err, errlen) != 0) return -1;
  if (store_ready && e->grants.store) {
    double now = mk_now();
    e->grants.store->ops->ready(e->grants.store, store_ready, now);
    if (mk_grants_collect(&e->grants, now)) pump(e, now);
  }
  return ready == 0 && ms > 0 && mk_now() < start + wait - 0.002;
}

/* From the poll drive to the socket drive, for good: a host's loop watches
 * the sockets from now on. libcurl names every socket of the transfers in
 * flight at once (curl_multi_socket_all runs them and calls on_socket for
 * each); what that run ended is collected on the next step. */
static void use_sockets(mk_engine *e) {
  int running;
  if (e->drive_sockets) return;
  e->drive_sockets = 1;
  if (!e->flying) return;
  (void)curl_multi_socket_all(e->multi, &running); /* a failure: the next socket_action says it */
  e->curl_due = 0; /* collect at the next run */
}

/* The store's socket, if it waits on one, in the place after libcurl's. */
static int store_socket(mk_engine *e) {
  mk_store *st = e->grants.store;
  return st && st->ops->socket && st->ops->socket(st, &e->pfds[e->npfds]);
}

/* The listener's descriptor, if there is one, in the place after the
 * store's (`at`); pfds always has room for both. */
static int listener_socket(mk_engine *e, size_t at) {
  if (!e->listener) return 0;
  e->pfds[at].fd = mk_listener_fd(e->listener);
  e->pfds[at].events = POLLIN;
  e->pfds[at].revents = 0;
  return 1;
}

/* Wait up to `wait` seconds for the watched sockets, then let libcurl act on
 * the ready ones (and the store and the listener on their own). Returns 1
 * when a signal cut the wait short. */
static int poll_sockets(mk_engine *e, double wait, char *err, size_t errlen) {
  int ms, n, ready = 0, store = store_socket(e), listener = listener_socket(e, e->npfds + (size_t)store);
  size_t i;
  short store_ready, listener_ready;
  if (!(wait >= 0)) wait = 0;
  if (wait > POLL_MAX_WAIT) wait = POLL_MAX_WAIT; /* the run loop waits again for the rest */
  ms = (int)(wait * 1000 + 0.999);
  if (store) e->pfds[e->npfds].revents = 0;
  n = poll(e->pfds, (nfds_t)(e->npfds + (size_t)store + (size_t)listener), ms);
  e->wakeups++;
  if (n < 0) return errno == EINTR ? 1 : (snprintf(err, errlen, "poll: %s", strerror(errno)), -1);
  if (n == 0) return 0;
  /* read before libcurl moves its sockets */
  store_ready = store ? e->pfds[e->npfds].revents : 0;
  listener_ready = listener ? e->pfds[e->npfds + (size_t)store].revents : 0;
  if (listener_ready) mk_listener_run(e->listener); /* a request read whole becomes an event */
  /* acting may add or remove sockets: note the ready ones first */
  if (e->nready_cap < e->npfds) {
    struct pollfd *r = realloc(e->ready, e->npfds * sizeof *r);
    if (!r) return (snprintf(err, errlen, "out of memory"), -1);
    e->ready = r;
    e->nready_cap = e->npfds;
  }
  for (i = 0; i < e->npfds; i++)
    if (e->pfds[i].revents) e->ready[ready++] = e->pfds[i];
  for (i = 0; i < (size_t)ready; i++) {
    short rev = e->ready[i].revents;
    int flags = ((rev & (POLLIN | POLLHUP)) ? CURL_CSELECT_IN : 0) | ((rev & POLLOUT) ? CURL_CSELECT_OUT : 0) |
                ((rev & (POLLERR | POLLNVAL)) ? CURL_CSELECT_ERR : 0);
    if (act(e, e->ready[i].fd, flags, err, errlen) != 0) return -1;
  }
  if (store_ready && e->grants.store) {
    double now = mk_now();
    e->grants.store->ops->ready(e->grants.store, store_ready, now);
    if (mk_grants_collect(&e->grants, now)) pump(e, now); /* grants are spent at once */
  }
  return 0;
}

/* A safety net under libcurl's own timeouts: an API transfer still in flight
 * well past its timeout is ended here (seen with libcurl 7.88 after a request
 * it refused as too large: the next transfer on the client was never timed out). */
static void watchdog(mk_engine *e, double now) {
  double limit = (double)e->timeout_ms / 1000.0 + WATCHDOG_GRACE;
  mk_xfer *x = e->flying, *next;
  for (; x; x = next) {
    mk_op *op = x->op;
    next = x->fnext;
    if (op->type == MK_OP_DOWNLOAD || op->type == MK_OP_UPLOAD || now - x->started < limit) continue;
    leave_multi(e, x);
    memset(&op->result, 0, sizeof op->result);
    op->result.curl = CURLE_OPERATION_TIMEDOUT;
    op->result.sent = 1; /* unknown: for createTask that means ambiguous */
    op->result.retry_after = -1;
    op->result.body = "";
    snprintf(x->errbuf, sizeof x->errbuf, "no answer within %.0f s (the transfer stalled)", limit);
    op->result.error = x->errbuf;
    answered(e, op);
  }
}

/* Seconds until something needs doing, capped at `cap`. */
static double idle_for(mk_engine *e, double now, double cap) {
  double wait = cap, due;
  mk_timer *t = mk_heap_top(&e->timers);
  if (t && t->due - now < wait) wait = t->due - now;
  if (e->curl_due >= 0 && e->curl_due - now < wait) wait = e->curl_due - now;
  if (e->store_due >= 0 && e->store_due - now < wait) wait = e->store_due - now;
  if ((due = mk_ranks_next_due(&e->ranks)) >= 0 && due - now < wait) wait = due - now; /* a ranked job falls due */
  if (e->listener && (due = mk_listener_timeout(e->listener)) >= 0 && due < wait) wait = due;
  if (e->in_flight + e->held < e->max_in_flight) {
    double w;
    if (e->wait_submit.head && (w = mk_grants_wait(&e->grants, MK_LANE_CREATE, now)) < wait) wait = w;
    if ((e->wait_poll.head || e->wait_due.head) && (w = mk_grants_wait(&e->grants, MK_LANE_POLL, now)) < wait)
      wait = w;
    if (e->wait_slot.head) wait = 0;
  }
  if (e->in_flight && wait > ACTIVE_POLL_CAP) wait = ACTIVE_POLL_CAP;
  if (mk_grants_asking(&e->grants) && wait > STORE_POLL_CAP) wait = STORE_POLL_CAP;
  return wait > 0 ? wait : 0;
}

int mk_engine_run(mk_engine *e, double timeout, char *err, size_t errlen) {
  double now = mk_now(), until = now + (timeout > 0 ? timeout : 0);
  for (;;) {
    double wait;
    fire_due(e, now);
    store_tick(e, now);
    pump(e, now);
    if (e->drive_sockets) {
      if (e->curl_due >= 0 && e->curl_due <= now) {
        e->curl_due = -1;
        if (act(e, CURL_SOCKET_TIMEOUT, 0, err, errlen) != 0) return -1;
      }
    } else if (e->flying && (e->added || e->perform_due || (e->curl_due >= 0 && e->curl_due <= now))) {
      if (perform(e, err, errlen) != 0) return -1;
    }
    if (e->flying && now >= e->watchdog_due) { /* a safety net: once a second is soon enough */
      e->watchdog_due = now + 1;
      watchdog(e, now);
    }
    if (e->listener && mk_listener_timeout(e->listener) == 0) mk_listener_run(e->listener); /* answers to send */
    store_news(e);
    if (e->events) return 0;
    if (e->grants.store && e->grants.store->host_questions) return 0; /* the Lua layer answers them */
    wait = until > now ? idle_for(e, now, until - now) : 0;
    if (!e->drive_sockets && e->flying && wait <= 0 && !store_socket(e) && !e->listener) {
      /* nothing to wait for: what is ready is read by the next perform, this
       * run's next round or the next step's (a step(0) performs once) */
      e->perform_due = 1;
    } else if (!e->drive_sockets && e->flying) {
      int rc = poll_multi(e, wait, err, errlen);
      if (rc < 0) return -1;
      if (rc > 0 || e->events) return 0;
    } else if (e->npfds || wait > 0 || store_socket(e) || e->listener) {
      int rc = poll_sockets(e, wait, err, errlen);
      if (rc < 0) return -1;
      /* a signal: back to the host now (Lua's Ctrl-C hook runs there) */
      if (rc > 0 || e->events) return 0;
    }
    now = mk_now();
    if (now >= until) return 0;
  }
}

double mk_engine_next_wakeup(mk_engine *e) {
  double now = mk_now();
  if (e->events || e->grants.news || (e->grants.store && e->grants.store->host_questions)) return 0;
  if (e->listener && mk_listener_timeout(e->listener) == 0) return 0; /* an answer to send */
  if (!e->in_flight && !mk_heap_top(&e->timers) && !e->wait_submit.head && !e->wait_poll.head && !e->wait_slot.head &&
      !e->ranks.ranked.len)
    return -1;
  return idle_for(e, now, 3600.0);
}

const struct pollfd *mk_engine_sockets(mk_engine *e, size_t *n) {
  size_t store;
  use_sockets(e);
  store = (size_t)store_socket(e);
  *n = e->npfds + store + (size_t)listener_socket(e, e->npfds + store);
  return e->pfds;
}

/* ---- ops ---- */

uint64_t mk_op_handle(const mk_op *op) {
  return ((uint64_t)op->gen << SLOT_BITS) | op->slot;
}

mk_op *mk_engine_lookup(mk_engine *e, uint64_t handle) {
  uint32_t slot = (uint32_t)(handle & SLOT_MASK), gen = (uint32_t)(handle >> SLOT_BITS);
  mk_op *op;
  if (slot >= e->nslots) return NULL;
  op = e->slots[slot];
  return (op && op->gen == gen && !op->released) ? op : NULL;
}

uint32_t mk_engine_live(const mk_engine *e) {
  return e->nslots - e->nfree;
}

static mk_op *op_new(mk_engine *e, mk_op_type type) {
  mk_op *op;
  uint32_t slot;
  if (!e->nfree && e->nslots == e->cap_slots) {
    uint32_t cap = e->cap_slots ? e->cap_slots * 2 : 64;
    mk_op **slots;
    uint32_t *free_slots, *gens;
    if (cap > SLOT_MASK) return NULL;
    slots = realloc(e->slots, cap * sizeof *slots);
    if (!slots) return NULL;
    e->slots = slots;
    free_slots = realloc(e->free_slots, cap * sizeof *free_slots);
    if (!free_slots) return NULL;
    e->free_slots = free_slots;
    gens = realloc(e->gens, cap * sizeof *gens);
    if (!gens) return NULL;
    e->gens = gens;
    e->cap_slots = cap;
  }
  /* room for every op's two timers and its place in the lane: scheduling never fails for want of memory */
  if (mk_heap_reserve(&e->timers, 2 * ((size_t)mk_engine_live(e) + 1)) != 0 ||
      mk_ranks_reserve(&e->ranks, (size_t)mk_engine_live(e) + 1) != 0)
    return NULL;
  op = calloc(1, sizeof *op);
  if (!op) return NULL;
  if (e->nfree) {
    slot = e->free_slots[--e->nfree];
  } else {
    slot = e->nslots++;
    e->gens[slot] = 0;
  }
  op->gen = e->gens[slot];
  op->slot = slot;
  op->type = type;
  op->timer.owner = op->deadline.owner = op;
  op->timer.kind = TIMER_POLL;
  op->deadline.kind = TIMER_DEADLINE;
  op->result.retry_after = -1;
  op->progress = NAN;
  op->created = mk_now();
  op->budget = type == MK_OP_JOB && e->interval_mode == MK_INTERVAL_DEFAULT;
  op->rank.model = mk_durations_model(e->durations, NULL);
  e->slots[slot] = op;
  return op;
}

static void op_free(mk_engine *e, mk_op *op) {
  e->slots[op->slot] = NULL;
  e->gens[op->slot] = (e->gens[op->slot] + 1) & GEN_MASK; /* a stale handle finds nothing */
  e->free_slots[e->nfree++] = op->slot;
  free(op->url);
  free(op->body);
  free(op->task_id);
  free(op->path);
  free(op->tmp_path);
  mk_upload_free(op->upload);
  free(op);
}

void mk_engine_release(mk_engine *e, mk_op *op) {
  if (op->released) return;
  mk_engine_stop(e, op);
  if (e->stepping) { /* Lua may still hold it: freed when the step ends */
    op->released = 1;
    op->released_next = e->released;
    e->released = op;
    return;
  }
  op_free(e, op);
}

void mk_engine_begin_step(mk_engine *e) {
  e->stepping = 1;
}

void mk_engine_end_step(mk_engine *e) {
  e->stepping = 0;
  while (e->released) {
    mk_op *op = e->released;
    e->released = op->released_next;
    mk_engine_stop(e, op); /* in case it was armed again after its release */
    op_free(e, op);
  }
}

static char *join(const char *a, const char *b, const char *c) {
  size_t la = strlen(a), lb = strlen(b), lc = c ? strlen(c) : 0;
  char *s = malloc(la + lb + lc + 1);
  if (!s) return NULL;
  memcpy(s, a, la);
  memcpy(s + la, b, lb);
  if (c) memcpy(s + la + lb, c, lc);
  s[la + lb + lc] = '\0';
  return s;
}

static int set_deadline(mk_engine *e, mk_op *op, double deadline) {
  return deadline > 0 ? mk_heap_set(&e->timers, &op->deadline, op->created + deadline) : 0;
}

mk_op *mk_engine_submit(mk_engine *e, const char *body, size_t len, double deadline) {
  mk_op *op = op_new(e, MK_OP_JOB);
  if (!op) return NULL;
  op->state = MK_SUBMITTING;
  op->endpoint = MK_EP_CREATE;
  op->post = 1;
  op->url = join(e->base_url, ENDPOINTS[MK_EP_CREATE].path, NULL);
  op->body = mk_copy(body, len);
  op->body_len = len;
  if (!op->url || !op->body || set_deadline(e, op, deadline) != 0) {
    mk_engine_release(e, op);
    return NULL;
  }
  queue_push(&e->wait_submit, op);
  return op;
}

static int task_id_fits(const char *task_id) {
  size_t n = strlen(task_id);
  return n >= 1 && n <= MK_MAX_TASK_ID;
}

/* recordInfo's URL for a task: the id percent-encoded. */
static char *record_url(mk_engine *e, const char *task_id) {
  char *escaped = mk_url_escape(task_id), *url;
  url = escaped ? join(e->base_url, ENDPOINTS[MK_EP_RECORD].path, escaped) : NULL;
  free(escaped);
  return url;
}

int mk_engine_accept(mk_engine *e, mk_op *op, const char *task_id) {
  char *url = record_url(e, task_id), *id = mk_copy_str(task_id);
  if (!url || !id) {
    free(url);
    free(id);
    return -1;
  }
  free(op->url);
  free(op->body);
  free(op->task_id);
  op->endpoint = MK_EP_RECORD;
  op->url = url;
  op->task_id = id;
  op->body = NULL;
  op->body_len = 0;
  op->post = 0;
  op->attempts = 0;
  op->accepted = op->rank.started = mk_now();
  return 0;
}

void mk_engine_job_info(mk_engine *e, mk_op *op, const char *model, int callback) {
  op->rank.model = mk_durations_model(e->durations, model);
  op->rank.callback = callback != 0;
}

void mk_engine_called_back(mk_engine *e, mk_op *op) {
  if (op->rank.callback) mk_ranks_callback_ended(&e->ranks, 0);
  mk_engine_cancel(e, op);
}

mk_op *mk_engine_adopt(mk_engine *e, const char *task_id, double deadline) {
  mk_op *op;
  if (!task_id_fits(task_id)) return NULL;
  if (!(op = op_new(e, MK_OP_JOB))) return NULL;
  op->state = MK_QUEUED;
  if (mk_engine_accept(e, op, task_id) != 0 || set_deadline(e, op, deadline) != 0) {
    mk_engine_release(e, op);
    return NULL;
  }
  op->rank.age_unknown = 1; /* started before: it may have ended long ago */
  op->rank.due = op->accepted;
  enqueue(e, op);
  return op;
}

mk_op *mk_engine_call(mk_engine *e, mk_endpoint ep, const char *arg, const char *body, size_t len) {
  mk_op *op;
  if (ep != MK_EP_RECORD && ep != MK_EP_CREDIT && ep != MK_EP_DOWNLOAD_URL) return NULL;
  if (ep == MK_EP_RECORD && (!arg || !task_id_fits(arg))) return NULL;
  if (!(op = op_new(e, MK_OP_CALL))) return NULL;
  op->endpoint = ep;
  op->post = ENDPOINTS[ep].post;
  op->url = ep == MK_EP_RECORD ? record_url(e, arg) : join(e->base_url, ENDPOINTS[ep].path, NULL);
  if (body && op->post) {
    op->body = mk_copy(body, len);
    op->body_len = len;
  }
  if (!op->url || (body && op->post && !op->body)) {
    mk_engine_release(e, op);
    return NULL;
  }
  enqueue(e, op);
  return op;
}

mk_op *mk_engine_download(mk_engine *e, const char *url, const char *path) {
  char origin[256];
  mk_op *op = op_new(e, MK_OP_DOWNLOAD);
  if (!op) return NULL;
  op->endpoint = MK_EP_DOWNLOAD;
  op->url = mk_copy_str(url);
  op->path = mk_copy_str(path);
  op->tmp_path = join(path, ".part", NULL);
  if (!op->url || !op->path || !op->tmp_path) {
    mk_engine_release(e, op);
    return NULL;
  }
  op->send_auth = e->has_key && mk_url_origin(url, origin, sizeof origin) == 0 && strcmp(origin, e->origin) == 0;
  queue_push(&e->wait_slot, op);
  return op;
}

mk_op *mk_engine_upload(mk_engine *e, struct mk_upload *u) {
  mk_op *op = op_new(e, MK_OP_UPLOAD);
  if (!op) {
    mk_upload_free(u);
    return NULL;
  }
  op->upload = u;
  op->endpoint = MK_EP_UPLOAD;
  op->post = 1;
  op->url = join(e->upload_base, ENDPOINTS[MK_EP_UPLOAD].path, NULL);
  if (!op->url) {
    mk_engine_release(e, op);
    return NULL;
  }
  queue_push(&e->wait_slot, op);
  return op;
}

mk_op *mk_engine_timer(mk_engine *e, double seconds) {
  mk_op *op = op_new(e, MK_OP_TIMER);
  if (!op) return NULL;
  if (mk_heap_set(&e->timers, &op->timer, op->created + (seconds > 0 ? seconds : 0)) != 0) {
    mk_engine_release(e, op);
    return NULL;
  }
  return op;
}

int mk_engine_schedule(mk_engine *e, mk_op *op, double delay) {
  double now = mk_now();
  if (op->released) return 0;
  drop_xfer(e, op);
  op->rank.due = now + (delay > 0 ? delay : 0);
  if (delay <= 0) {
    enqueue(e, op);
    return 0;
  }
  return mk_heap_set(&e->timers, &op->timer, now + delay);
}

int mk_engine_schedule_poll(mk_engine *e, mk_op *op, double delay) {
  double now = mk_now(), gap = MK_MIN_GAP * e->time_scale;
  if (!ranked_poll(op)) return mk_engine_schedule(e, op, delay);
  if (op->released) return 0;
  drop_xfer(e, op);
  if (!(delay > 0)) delay = 0; /* NaN too */
  op->rank.due = now + delay;
  if (!fallback_due(e, op, now)) return 0; /* armed for the fallback time */
  /* in the lane from `gap` on: ranked first, it goes before its schedule says */
  return mk_heap_set(&e->timers, &op->timer, now + (gap < delay ? gap : delay));
}

void mk_engine_respond(mk_engine *e, mk_op *op, int status) {
  if (op->request) {
    mk_listener_answer(e->listener, op->request, status);
    op->request = NULL;
  }
  mk_engine_release(e, op);
}

/* The listener read a request whole: an op that waits for the host's answer
 * (mk_engine_respond), and a REQUEST event carrying a copy of the request. */
static int on_request(void *ud, mk_request *req) {
  mk_engine *e = ud;
  mk_op *op = op_new(e, MK_OP_REQUEST);
  mk_event *ev = op ? mk_event_new(MK_EV_REQUEST, mk_op_handle(op)) : NULL;
  size_t i;
  int ok = ev != NULL;
  if (ok) {
    ev->path = mk_copy_str(req->path);
    ev->body = mk_copy(req->body, req->body_len);
    ev->body_len = req->body_len;
    ev->headers = calloc(2 * req->nheaders + 1, sizeof *ev->headers); /* NULL-terminated */
    ok = ev->path && ev->body && ev->headers;
    for (i = 0; ok && i < 2 * req->nheaders; i++) ok = (ev->headers[i] = mk_copy_str(req->headers[i])) != NULL;
    if (ok) ev->nheaders = req->nheaders;
  }
  if (!ok) {
    mk_event_free(ev);
    if (op) mk_engine_release(e, op);
    return -1; /* answered 503: the gateway tries again */
  }
  op->request = req;
  req->owner = op;
  mk_engine_emit(e, ev);
  return 0;
}

void mk_engine_cancel(mk_engine *e, mk_op *op) {
  if (op->type == MK_OP_JOB) mk_job_cancel(e, op); /* every live job can be cancelled: it is released */
  else mk_engine_release(e, op);
}

/* ---- the engine ---- */

static struct curl_slist *headers(struct curl_slist *list, const char *line, int *ok) {
  struct curl_slist *next;
  if (!*ok) return list;
  next = curl_slist_append(list, line);
  if (!next) {
    *ok = 0;
    return list;
  }
  return next;
}

/* The rate windows: the client's own, or the account's in the store `cfg->share` names. */
static int init_grants(mk_engine *e, const mk_config *cfg, char *err, size_t errlen) {
  int limit[MK_LANES];
  double per[MK_LANES];
  mk_store *store = NULL;
  limit[MK_LANE_CREATE] = cfg->submit_limit;
  per[MK_LANE_CREATE] = cfg->submit_per;
  limit[MK_LANE_POLL] = cfg->poll_limit;
  per[MK_LANE_POLL] = cfg->poll_per;
  if (cfg->share && cfg->share[0]) {
    char why[200];
    store = mk_store_open(cfg->share, why, sizeof why);
    if (!store) {
      snprintf(err, errlen, "rate.shared: %s", why);
      return -1;
    }
    mk_account_id(e->origin, cfg->api_key ? cfg->api_key : "", store->account);
    store->client = (uint64_t)(mk_random(e) * 9007199254740992.0) ^ ((uint64_t)getpid() << 32);
  }
  if (mk_grants_init(&e->grants, limit, per, store, cfg->clients) != 0) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  return 0;
}

/* `localhost` in base_url is this machine: pin it to the loopback addresses
 * for libcurl (CURLOPT_RESOLVE), so that no hosts file or DNS server decides
 * where the key goes. */
static int pin_localhost(mk_engine *e, const char *url) {
  mk_origin o;
  char line[64];
  struct curl_slist *pin;
  if (mk_url_parse_origin(url, &o) != 0 || strcmp(o.host, "localhost") != 0) return 0;
  snprintf(line, sizeof line, "localhost:%ld:127.0.0.1,[::1]", o.port);
  pin = curl_slist_append(e->pin, line);
  if (!pin) return -1;
  e->pin = pin;
  return 0;
}

mk_engine *mk_engine_new(const mk_config *cfg, char *err, size_t errlen) {
  mk_engine *e = calloc(1, sizeof *e);
  int ok = 1;
  char *auth = NULL, origin[256];
  if (!e) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  e->multi = curl_multi_init();
  e->base_url = mk_copy_str(cfg->base_url);
  e->upload_base = mk_copy_str(cfg->upload_url ? cfg->upload_url : cfg->base_url);
  e->user_agent = mk_copy_str(cfg->user_agent);
  e->ca_file = mk_copy_str(cfg->ca_file);
  if (!e->multi || !e->base_url || !e->upload_base || !e->user_agent || (cfg->ca_file && !e->ca_file)) goto oom;
  if (mk_url_origin(cfg->base_url, e->origin, sizeof e->origin) != 0 ||
      mk_url_origin(e->upload_base, origin, sizeof origin) != 0) {
    snprintf(err, errlen, "%s is not an http(s) URL", cfg->upload_url ? "upload_url or base_url" : "base_url");
    mk_engine_free(e);
    return NULL;
  }
  e->pid = getpid();
  if (pin_localhost(e, e->base_url) != 0 || (strcmp(origin, e->origin) != 0 && pin_localhost(e, e->upload_base) != 0))
    goto oom;
  e->has_key = cfg->api_key && cfg->api_key[0];
  if (e->has_key && strlen(cfg->api_key) >= MIN_REDACTED_KEY && mk_secrets_init(&e->secrets, cfg->api_key) != 0)
    goto oom;
  if (e->has_key) {
    auth = join("Authorization: Bearer ", cfg->api_key, NULL);
    if (!auth) goto oom;
    e->api_headers = headers(e->api_headers, auth, &ok);
    e->auth_file_headers = headers(e->auth_file_headers, auth, &ok);
    e->upload_headers = headers(e->upload_headers, auth, &ok);
    memset(auth, 0, strlen(auth)); /* the key lives on only in libcurl's header lists and e->secrets */
    free(auth);
  }
  e->api_headers = headers(e->api_headers, "Content-Type: application/json", &ok);
  e->api_headers = headers(e->api_headers, "Accept: application/json", &ok);
  e->api_headers = headers(e->api_headers, "Expect:", &ok); /* no 100-continue wait on POST */
  e->upload_headers = headers(e->upload_headers, "Accept: application/json", &ok);
  /* no 100-continue wait before a large file either: servers that never answer it (the emulator, many
   * proxies) would cost every upload libcurl's 1 s timeout */
  e->upload_headers = headers(e->upload_headers, "Expect:", &ok);
  if (!ok) goto oom;
  e->timeout_ms = cfg->timeout_ms;
  e->connect_timeout_ms = cfg->connect_timeout_ms;
  e->retries = cfg->retries;
  e->record_grace = cfg->record_grace;
  e->interval_mode = cfg->interval_mode;
  e->poll_interval = cfg->poll_interval;
  e->max_body = cfg->max_body;
  e->max_download = cfg->max_download;
  e->max_in_flight = cfg->max_connections * 4;
  e->rng = cfg->seed ? cfg->seed : ((uint64_t)(wall_now() * 1e6) ^ (uint64_t)(uintptr_t)e);
  if (!e->rng) e->rng = 88172645463325252ULL;
  e->curl_due = e->store_due = -1;
  e->time_scale = cfg->time_scale > 0 ? cfg->time_scale : 1;
  mk_durations_init(&e->own_durations, e->time_scale);
  e->durations = cfg->durations ? cfg->durations : &e->own_durations;
  /* ranks are worked out again at most once per poll grant */
  mk_ranks_init(&e->ranks, e->durations, e->time_scale,
                cfg->poll_limit > 0 ? cfg->poll_per / cfg->poll_limit : 0.01 * e->time_scale);
  e->pfds = malloc(16 * sizeof *e->pfds); /* never NULL: the store's and the listener's have a place */
  if (!e->pfds) goto oom;
  e->cap_pfds = 16;
  if (init_grants(e, cfg, err, errlen) != 0) {
    mk_engine_free(e);
    return NULL;
  }
  if (cfg->listen && !(e->listener = mk_listener_start(cfg->listen, on_request, e, err, errlen))) {
    mk_engine_free(e);
    return NULL;
  }
  if (curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
      curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e) != CURLM_OK ||
      curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, on_timer) != CURLM_OK ||
      curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e) != CURLM_OK ||
      curl_multi_setopt(e->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX) != CURLM_OK ||
      curl_multi_setopt(e->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)cfg->max_connections) != CURLM_OK ||
      curl_multi_setopt(e->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)cfg->max_connections) != CURLM_OK ||
      curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, (long)cfg->max_connections) != CURLM_OK ||
      /* libcurl's default is 100 streams per HTTP/2 connection; past that each
       * transfer opens a connection of its own (PIPEWAIT does not queue it) */
      curl_multi_setopt(e->multi, CURLMOPT_MAX_CONCURRENT_STREAMS,
                        (long)(e->max_in_flight > 100 ? e->max_in_flight : 100)) != CURLM_OK) {
    snprintf(err, errlen, "could not configure libcurl's multi handle");
    mk_engine_free(e);
    return NULL;
  }
  return e;
oom:
  snprintf(err, errlen, "out of memory");
  mk_engine_free(e);
  return NULL;
}

void mk_engine_free(mk_engine *e) {
  uint32_t i;
  if (!e) return;
  mk_engine_end_step(e);
  while (e->events) mk_engine_event_done(e);
  for (i = 0; i < e->nslots; i++)
    if (e->slots[i]) mk_engine_release(e, e->slots[i]);
  mk_listener_stop(e->listener); /* after the ops: a request still waiting was answered 503 */
  while (e->spare) {
    mk_xfer *x = e->spare;
    e->spare = x->next;
    xfer_free(x);
  }
  if (e->multi) curl_multi_cleanup(e->multi);
  free(e->pfds);
  free(e->ready);
  curl_slist_free_all(e->api_headers);
  curl_slist_free_all(e->auth_file_headers);
  curl_slist_free_all(e->upload_headers);
  curl_slist_free_all(e->pin);
  mk_secrets_free(&e->secrets);
  mk_heap_free(&e->timers);
  mk_ranks_free(&e->ranks);
  mk_durations_free(&e->own_durations);
  mk_grants_free(&e->grants);
  free(e->slots);
  free(e->free_slots);
  free(e->gens);
  free(e->base_url);
  free(e->upload_base);
  free(e->user_agent);
  free(e->ca_file);
  free(e);
}

/* engine.h: one libcurl multi handle and everything that waits on it.
 *
 * An "op" is anything the engine runs for the Lua layer: a job (createTask,
 * then recordInfo polls until it ends), a one-off API call, a download, an
 * upload (upload.h), or a plain timer. Each op has at most one transfer in flight and one pending
 * timer. I/O goes through libcurl's socket interface: libcurl names the
 * sockets to watch, the engine polls them (or a host's event loop does, see
 * mk_engine_sockets). The engine never calls into Lua: `mk_engine_run` moves time and I/O
 * forward and queues the ops that need a decision on a "done" list, which the
 * bindings drain afterwards.
 *
 * Reentrancy. While the bindings drain the done list they run Lua (the JSON
 * decoder, a poll_interval function, and any __gc finaliser at any
 * allocation), and that Lua may call back into the client. The bindings
 * bracket the drain with mk_engine_begin_step / mk_engine_end_step, and
 * during the step:
 *  - releasing an op (cancel, or a handler ending it) stops it at once (no
 *    request, timer or queue place is left) but frees it only when the step ends; until
 *    then mk_engine_lookup no longer finds it, and scheduling it does nothing.
 *    So a pointer to an op stays valid memory for the whole step, and the rule
 *    for the bindings is: after Lua ran, an op is touched only once it has been
 *    looked up again by its handle.
 *  - making ops (submit, adopt, call, download, timer) is done at once; their
 *    first request goes out on the next mk_engine_run.
 *  - mk_engine_run and mk_engine_free are not called (the bindings refuse a
 *    step inside a step, and defer close to the end of the step).
 * What the Lua API does in each case is written once, in core.c's l_step,
 * and in docs/embedding.md.
 *
 * A job's deadline never cuts short an answer already on the done list: the
 * op is marked expired and its handler decides (an answer that ends the job
 * wins; anything else ends it with kind deadline). A job past its deadline
 * never sends another request. */
#ifndef MODKIE_ENGINE_H
#define MODKIE_ENGINE_H

#include <curl/curl.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "durations.h"
#include "grant.h"
#include "heap.h"
#include "http.h"
#include "listener.h"
#include "priority.h"

typedef enum { MK_OP_JOB = 1, MK_OP_CALL, MK_OP_DOWNLOAD, MK_OP_TIMER, MK_OP_UPLOAD, MK_OP_REQUEST } mk_op_type;

/* Job states, in the order a job moves through them. */
typedef enum {
  MK_SUBMITTING = 0, MK_QUEUED, MK_RUNNING,
  MK_SUCCESS, MK_FAILED, MK_ERROR, MK_CANCELLED
} mk_job_state;

/* Why an op is on the done list. READY: a held createTask is at the door
 * (see mk_engine_hold). REQUEST: a request to the listener waits for its answer. */
typedef enum { MK_DONE_XFER = 1, MK_DONE_DEADLINE, MK_DONE_TIMER, MK_DONE_READY, MK_DONE_REQUEST } mk_done_why;

/* What a finished transfer left behind. */
typedef struct mk_result {
  CURLcode curl;
  long http;              /* 0 when no response arrived */
  int sent;               /* request bytes reached the wire */
  int too_large;          /* the response cap was hit */
  int write_failed;       /* a download could not be written to disk */
  double retry_after;     /* seconds, -1 when absent */
  const char *body;       /* NUL-terminated response body (API transfers) */
  size_t body_len;
  const char *error;      /* libcurl's message */
} mk_result;

typedef struct mk_xfer mk_xfer;
typedef struct mk_queue mk_queue;

typedef struct mk_op {
  uint32_t slot, gen;
  mk_op_type type;
  mk_job_state state;     /* jobs */
  mk_timer timer;         /* next poll, retry, or (timers) the alarm */
  mk_timer deadline;      /* jobs */
  mk_xfer *xfer;          /* in flight, or NULL */
  mk_queue *queue;        /* waiting for a rate token or a free slot, or NULL */
  struct mk_op *qprev, *qnext;
  struct mk_op *done_next;
  mk_done_why done_why;
  int on_done;
  mk_result result;       /* valid while on the done list for MK_DONE_XFER */

  int post;               /* POST with `body`, else GET */
  char *url;              /* calls and downloads: full URL */
  char *body;
  size_t body_len;
  int attempts;           /* retries spent on the current exchange */
  int garbled;            /* polls: garbled answers in a row (retried `retries` times) */

  char *task_id;          /* jobs, once accepted */
  double created;         /* monotonic time the op was made */
  double accepted;        /* jobs: time the task was accepted (or adopted) */
  int polls;
  int expired;            /* the deadline passed while an exchange was in flight or its answer unread */
  int hold;               /* jobs: stop createTask at the door (mk_engine_hold) */
  int held;               /* at the door: rate token spent, slot kept, waits for mk_engine_send */
  int released;           /* released during a step: freed when it ends */
  struct mk_op *released_next;
  char server_state[32];
  double progress;        /* jobs: the record's last progress (0-100), -1 when none */

  char *path, *tmp_path;  /* downloads */
  int send_auth;
  struct mk_upload *upload; /* uploads: what the request sends (owned) */

  int budget;             /* jobs on the default schedule: ranked when polls are rationed (priority.h) */
  mk_rank rank;           /* ... their place in the lane */

  mk_request *request;    /* requests to the listener, until answered */
} mk_op;

struct mk_queue {
  mk_op *head, *tail;
  int len;
};

typedef struct mk_config {
  const char *base_url;     /* no trailing slash */
  const char *upload_url;   /* root of the upload API, no trailing slash; NULL: base_url */
  const char *api_key;      /* may be NULL: API ops then fail with config */
  const char *user_agent;
  const char *ca_file;      /* NULL: system CAs */
  long timeout_ms, connect_timeout_ms;
  int retries;
  size_t max_body;          /* API response cap, bytes */
  long long max_download;   /* download cap, bytes; 0 = none */
  int max_connections;
  int submit_limit; double submit_per;  /* limit <= 0 disables */
  int poll_limit; double poll_per;
  const char *share;        /* the account's windows: "file:/path", "redis://host:port/db" or "host"
                               (the Lua layer's); NULL: the client's own */
  int clients;              /* clients sharing the account (the fallback while the store is away); 0: ask the store */
  uint64_t seed;            /* 0: seed from the clock */
  double record_grace;      /* seconds a new task's record may be missing ("recordInfo is null") */
  int budget;               /* jobs follow the default schedule, ranked when polls are rationed */
  double time_scale;        /* the default schedule's times are multiplied by it (0: 1) */
  mk_durations *durations;  /* what is known of the models' durations (not owned); NULL: the engine's own */
  const char *listen;       /* "host:port": a listener for callbacks on this loop (listener.h); NULL: none */
} mk_config;

typedef struct mk_engine {
  CURLM *multi;
  char *base_url;
  char origin[256];
  char *upload_base;        /* the upload API's root: the key goes there too, and nowhere else */
  struct curl_slist *upload_headers;
  struct curl_slist *pin;   /* CURLOPT_RESOLVE: `localhost` at base_url's port is loopback, whatever a resolver says */
  char *key, *key_json;     /* to redact the key from answers (key_json: as JSON escapes it), or NULL */
  pid_t pid;                /* the process that made the engine: a forked child must not touch its connections */
  int stepping;             /* see "Reentrancy" above */
  mk_op *released;          /* ops released during the step */
  struct curl_slist *api_headers, *auth_file_headers;
  char *user_agent, *ca_file;
  int has_key;
  long timeout_ms, connect_timeout_ms;
  int retries;
  double record_grace;
  size_t max_body;
  long long max_download;
  mk_grants grants;          /* rate windows: the client's own, or the account's in a store */
  mk_heap timers;
  mk_op **slots;
  uint32_t nslots, cap_slots;
  uint32_t *free_slots, *gens;  /* gens[slot]: bumped when a slot is freed */
  uint32_t nfree;
  mk_queue wait_submit, wait_poll, wait_slot;
  mk_queue wait_due;        /* budget jobs due on the recommended schedule (they are in the lane too) */
  mk_ranks ranks;            /* budget jobs that may be polled, ranked (priority.h) */
  int budget;
  double time_scale;
  mk_durations *durations, own_durations;
  mk_listener *listener;    /* callbacks in, or NULL */
  mk_op *done_head, *done_tail;
  mk_xfer *spare;           /* reusable transfers (each keeps its easy handle) */
  mk_xfer *flying;          /* transfers in flight (API and downloads) */
  int in_flight, max_in_flight;
  int held;                 /* createTasks at the door: each keeps an in-flight slot */
  uint64_t rng;
  unsigned long long requests, polls_sent, creates_sent;
  unsigned long long rate_limited; /* answers 429 (HTTP or body code) */
  unsigned long long ranked_polls; /* polls the lane chose by rank, the grants falling short */
  unsigned long long wakeups;  /* returns from poll(): shows there is no busy loop */
  struct pollfd *pfds;         /* the sockets libcurl wants watched, and for what */
  size_t npfds, cap_pfds;
  struct pollfd *ready;        /* scratch: the sockets one poll found ready */
  size_t nready_cap;
  double curl_due;             /* when libcurl's own timer runs out; -1: none */
  double store_due;            /* when the rate store next needs a look; -1: none */
} mk_engine;

mk_engine *mk_engine_new(const mk_config *cfg, char *err, size_t errlen);
void mk_engine_free(mk_engine *e);

double mk_now(void);                 /* monotonic seconds */
double mk_random(mk_engine *e);      /* uniform in [0, 1) */

/* Make ops. NULL when out of memory. The op's handle is mk_op_handle(op). */
mk_op *mk_engine_submit(mk_engine *e, const char *body, size_t len, double deadline);
mk_op *mk_engine_adopt(mk_engine *e, const char *task_id, double deadline);
mk_op *mk_engine_call(mk_engine *e, int post, const char *path, const char *body, size_t len);
mk_op *mk_engine_download(mk_engine *e, const char *url, const char *path);
/* POST upload_url/api/file-stream-upload with `u` (the op owns it from here;
 * freed with the op, or at once when NULL is returned). Retried as reads are. */
mk_op *mk_engine_upload(mk_engine *e, struct mk_upload *u);
mk_op *mk_engine_timer(mk_engine *e, double seconds);
/* Make a job's createTask, still waiting in line, stop at the door: once it
 * has its rate token and a transfer slot it goes on the done list (READY)
 * instead of out, and keeps both until mk_engine_send lets it go. The caller
 * can so record "about to send" durably first, and a createTask that never
 * left is known never to have left. -1 when the op is not such a job. */
int mk_engine_hold(mk_op *op);
/* Send a createTask held at the door. -1 when the op is not held there. */
int mk_engine_send(mk_engine *e, mk_op *op);
/* createTask answered with a task id: the job polls recordInfo from now on. */
int mk_engine_accept(mk_engine *e, mk_op *op, const char *task_id);
/* What the lane knows of a job: its model (NULL: unknown) and whether a
 * callback is expected (its polls are then the fallback). */
void mk_engine_job_info(mk_engine *e, mk_op *op, const char *model, int callback);
/* The job's callback ended it (see mk_lane_callback_ended); then release it. */
void mk_engine_called_back(mk_engine *e, mk_op *op);

uint64_t mk_op_handle(const mk_op *op);
mk_op *mk_engine_lookup(mk_engine *e, uint64_t handle);

/* Start the op's next exchange after `delay` seconds (a retry, or a poll on
 * a schedule of the user's): at that time, exactly. */
int mk_engine_schedule(mk_engine *e, mk_op *op, double delay);
/* The job's next poll, `delay` seconds from now on its schedule. A budget
 * job may be polled sooner, from MK_MIN_GAP on, when the lane ranks it
 * first; a callback job not before its fallback time. */
int mk_engine_schedule_poll(mk_engine *e, mk_op *op, double delay);
/* Stop everything the op is doing and free it (during a step: when it ends). */
void mk_engine_release(mk_engine *e, mk_op *op);
/* Bracket a step: the code that runs Lua with ops in hand (see "Reentrancy"). */
void mk_engine_begin_step(mk_engine *e);
void mk_engine_end_step(mk_engine *e);
/* Abort the op's transfer and timers, keep the op. */
void mk_engine_stop(mk_engine *e, mk_op *op);

/* Drive timers and I/O for up to `timeout` seconds (0: do what is ready,
 * never wait), returning early once something is on the done list.
 * Returns 0, or -1 with err set on a libcurl multi failure. */
int mk_engine_run(mk_engine *e, double timeout, char *err, size_t errlen);
mk_op *mk_engine_pop_done(mk_engine *e);
/* Put an op just popped back at the front of the done list. */
void mk_engine_unpop_done(mk_engine *e, mk_op *op);
/* Seconds until the engine next needs to run (0: now), or -1 when idle. */
double mk_engine_next_wakeup(mk_engine *e);
/* The sockets to watch (fd and POLLIN/POLLOUT), for a host's own event loop. */
const struct pollfd *mk_engine_sockets(mk_engine *e, size_t *n);
/* Start what may start now: after the Lua layer answered the store's questions. */
void mk_engine_pump(mk_engine *e);
/* Ops not yet released. */
uint32_t mk_engine_live(const mk_engine *e);
/* Answer a request to the listener with an HTTP status, and release its op. */
void mk_engine_respond(mk_engine *e, mk_op *op, int status);

#endif

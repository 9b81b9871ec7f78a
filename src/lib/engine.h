/* engine.h: one libcurl multi handle and everything that waits on it.
 *
 * An "op" is anything the engine runs for its host: a job (createTask, then
 * recordInfo polls until it ends), a one-off API call, a download, an
 * upload (upload.h), or a plain timer. Each op has at most one transfer in
 * flight and one pending timer, and carries its endpoint (what its next
 * exchange is: URL, method, rate lane, name in messages) from the moment it
 * is made.
 *
 * Driving libcurl. Until a host asks for the sockets (mk_engine_sockets),
 * libcurl runs the transfers itself: curl_multi_perform, and curl_multi_poll
 * to wait (the cheaper way). From the first mk_engine_sockets on, for the
 * engine's life, through its socket interface: libcurl names the sockets to
 * watch (on_socket), and the engine polls them, or a host's event loop does.
 * libcurl's two ways are not mixed: the switch goes one way, once, and hands
 * over the sockets of the transfers in flight (curl_multi_socket_all).
 *
 * The engine judges every answer itself, in C, as it arrives (reply.h reads
 * it, judge.h decides, job.h and call.h apply the decision) and never calls
 * its host: `mk_engine_run` moves time and I/O forward and queues events
 * (event.h) for what the host must hear of; a poll that changes nothing
 * makes none, so the host runs no code for it.
 *
 * Reentrancy. The host reads the events after mk_engine_run returned, and
 * its code may call back into the engine while it does (the Lua bindings
 * run Lua: any allocation may run a __gc finaliser, and a debug hook may
 * raise). The bindings bracket that with mk_engine_begin_step /
 * mk_engine_end_step, and during the step:
 *  - releasing an op (cancel) stops it at once (no request, timer or queue
 *    place is left) but frees it only when the step ends; until then
 *    mk_engine_lookup no longer finds it, and scheduling it does nothing.
 *    So a pointer to an op stays valid memory for the whole step, and the rule
 *    for the bindings is: after the host's code ran, an op is touched only
 *    once it has been looked up again by its handle. (The bindings hold no
 *    op at all while they read events: an event names its op by handle.)
 *  - making ops (submit, adopt, call, download, timer) is done at once; their
 *    first request goes out on the next mk_engine_run.
 *  - mk_engine_run and mk_engine_free are not called (the bindings refuse a
 *    step inside a step, and defer close to the end of the step).
 * An event is taken off the queue only once the host has it (mk_engine_event
 * then mk_engine_event_done): an error that escapes while the host reads one
 * leaves it first in line for the next step. What the Lua API does in each
 * case is written once, in src/engine.c's l_step, and in docs/embedding.md.
 *
 * A job's deadline never cuts short a createTask in flight: its answer is
 * waited for (the task id must not be lost), and then the job ends with kind
 * deadline. A job past its deadline never sends another request. */
#ifndef MODKIE_ENGINE_H
#define MODKIE_ENGINE_H

#include <curl/curl.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "durations.h"
#include "event.h"
#include "grant.h"
#include "heap.h"
#include "listener.h"
#include "priority.h"
#include "redact.h"
#include "state.h"

/* Longer task ids are refused: they would not fit a recordInfo request line. */
#define MK_MAX_TASK_ID 1024

typedef enum { MK_OP_JOB = 1, MK_OP_CALL, MK_OP_DOWNLOAD, MK_OP_TIMER, MK_OP_UPLOAD, MK_OP_REQUEST } mk_op_type;

/* What an op's next exchange talks to (see mk_endpoint_name). */
typedef enum {
  MK_EP_NONE = 0,     /* timers */
  MK_EP_CREATE,       /* POST /api/v1/jobs/createTask: the create lane */
  MK_EP_RECORD,       /* GET /api/v1/jobs/recordInfo?taskId=: the poll lane */
  MK_EP_CREDIT,       /* GET /api/v1/chat/credit */
  MK_EP_DOWNLOAD_URL, /* POST /api/v1/common/download-url */
  MK_EP_DOWNLOAD,     /* a file, any URL */
  MK_EP_UPLOAD        /* POST <upload_url>/api/file-stream-upload */
} mk_endpoint;

/* The endpoint's name in messages ("createTask", "recordInfo", "credit",
 * "download-url", "download", "file-stream-upload"), NULL for none; and back
 * (NONE when unknown). */
const char *mk_endpoint_name(mk_endpoint ep);
mk_endpoint mk_endpoint_named(const char *name);

/* How a job's next poll is timed. */
typedef enum {
  MK_INTERVAL_DEFAULT = 0, /* the gateway's recommended schedule, jittered (schedule.h) */
  MK_INTERVAL_FIXED,       /* every `poll_interval` seconds */
  MK_INTERVAL_ASK          /* the host decides: an INTERVAL event, answered with mk_job_interval */
} mk_interval_mode;

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
  mk_endpoint endpoint;   /* the next exchange's (a job's changes from CREATE to RECORD when accepted) */
  mk_job_state state;     /* jobs */
  mk_timer timer;         /* next poll, retry, or (timers) the alarm */
  mk_timer deadline;      /* jobs */
  mk_xfer *xfer;          /* in flight, or NULL */
  mk_queue *queue;        /* waiting for a rate token or a free slot, or NULL */
  struct mk_op *qprev, *qnext;
  mk_result result;       /* the exchange that just finished, while it is judged */

  int post;               /* POST with `body`, else GET */
  char *url;              /* the next exchange's full URL */
  char *body;
  size_t body_len;
  int attempts;           /* retries spent on the current exchange */
  int garbled;            /* polls: garbled answers in a row (retried `retries` times) */

  char *task_id;          /* jobs, once accepted */
  double created;         /* monotonic time the op was made */
  double accepted;        /* jobs: time the task was accepted (or adopted) */
  double seen;            /* jobs: time a poll last showed the task's record (0: never) */
  int polls;
  int expired;            /* the deadline passed while createTask was in flight */
  int hold;               /* jobs: stop every createTask attempt at the door (mk_engine_hold) */
  int held;               /* at the door: rate token spent, slot kept, waits for mk_engine_send */
  int asking;             /* jobs: waiting for the host's answer to an INTERVAL event */
  int released;           /* released during a step: freed when it ends */
  struct mk_op *released_next;
  char server_state[40];
  double progress;        /* jobs: the record's last progress (0-100), NAN when none */

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
  mk_interval_mode interval_mode;
  double poll_interval;     /* MK_INTERVAL_FIXED: seconds */
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
  mk_secrets secrets;        /* the key's spellings, to redact from answers (none: a key too short to redact) */
  pid_t pid;                /* the process that made the engine: a forked child must not touch its connections */
  int stepping;             /* see "Reentrancy" above */
  mk_op *released;          /* ops released during the step */
  struct curl_slist *api_headers, *auth_file_headers;
  char *user_agent, *ca_file;
  int has_key;
  long timeout_ms, connect_timeout_ms;
  int retries;
  double record_grace;
  mk_interval_mode interval_mode;
  double poll_interval;
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
  mk_ranks ranks;           /* budget jobs that may be polled, ranked (priority.h) */
  double time_scale;
  mk_durations *durations, own_durations;
  mk_listener *listener;    /* callbacks in, or NULL */
  mk_event *events, *events_tail; /* for the host, oldest first */
  mk_xfer *spare;           /* reusable transfers (each keeps its easy handle) */
  mk_xfer *flying;          /* transfers in flight (API and downloads) */
  int in_flight, max_in_flight;
  int held;                 /* createTasks at the door: each keeps an in-flight slot */
  uint64_t rng;
  unsigned long long requests, polls_sent, creates_sent;
  unsigned long long events_made; /* events queued for the host: a poll that changes nothing makes none */
  unsigned long long rate_limited; /* answers 429 (HTTP or body code) */
  unsigned long long unavailable;  /* answers 455, the gateway's "service unavailable" (HTTP or body code) */
  unsigned long long ranked_polls; /* polls the lane chose by rank, the grants falling short */
  unsigned long long wakeups;  /* returns from poll(): shows there is no busy loop */
  struct pollfd *pfds;         /* the sockets libcurl wants watched, and for what */
  size_t npfds, cap_pfds;
  struct pollfd *ready;        /* scratch: the sockets one poll found ready */
  size_t nready_cap;
  int drive_sockets;           /* libcurl driven by its socket interface (from the first mk_engine_sockets
                                  on), else by curl_multi_perform and curl_multi_poll */
  int added;                   /* the poll drive: a transfer was added since the last curl_multi_perform */
  int perform_due;             /* the poll drive: a round ended without waiting; the next one performs */
  double curl_due;             /* when libcurl's own timer runs out; -1: none */
  double store_due;            /* when the rate store next needs a look; -1: none */
  double watchdog_due;         /* when the watchdog next walks the transfers in flight */
} mk_engine;

mk_engine *mk_engine_new(const mk_config *cfg, char *err, size_t errlen);
void mk_engine_free(mk_engine *e);

double mk_now(void);                 /* monotonic seconds */
double mk_random(mk_engine *e);      /* uniform in [0, 1) */

/* Make ops. NULL when out of memory. The op's handle is mk_op_handle(op). */
mk_op *mk_engine_submit(mk_engine *e, const char *body, size_t len, double deadline);
/* A job of a task created earlier (1 to MK_MAX_TASK_ID bytes): it polls from now on. */
mk_op *mk_engine_adopt(mk_engine *e, const char *task_id, double deadline);
/* One call of an API endpoint: RECORD with `arg` the task id (1 to
 * MK_MAX_TASK_ID bytes), CREDIT, DOWNLOAD_URL with `body`. NULL also for
 * another endpoint or a task id out of bounds. */
mk_op *mk_engine_call(mk_engine *e, mk_endpoint ep, const char *arg, const char *body, size_t len);
mk_op *mk_engine_download(mk_engine *e, const char *url, const char *path);
/* POST upload_url/api/file-stream-upload with `u` (the op owns it from here;
 * freed with the op, or at once when NULL is returned). Retried as reads are. */
mk_op *mk_engine_upload(mk_engine *e, struct mk_upload *u);
mk_op *mk_engine_timer(mk_engine *e, double seconds);
/* Make a job's createTask, still waiting in line, stop at the door: once it
 * has its rate token and a transfer slot it is held there (a READY event)
 * instead of sent, and keeps both until mk_engine_send lets it go. The caller
 * can so record "about to send" durably first, and a createTask that never
 * left is known never to have left. Every attempt stops there: a retry after
 * an answer that said nothing was created (429, 455; a RETRY event) comes
 * back to the door, a READY event again. -1 when the op is not such a job. */
int mk_engine_hold(mk_op *op);
/* Send a createTask held at the door. -1 when the op is not held there. */
int mk_engine_send(mk_engine *e, mk_op *op);

uint64_t mk_op_handle(const mk_op *op);
mk_op *mk_engine_lookup(mk_engine *e, uint64_t handle);

/* For the state machine (job.c, call.c): start the op's exchange now, past
 * its line (a createTask let go from the door). */
void mk_engine_start(mk_engine *e, mk_op *op);
/* Start the op's next exchange after `delay` seconds (0: in line now): a
 * retry, or a poll on a schedule of the host's, at that time exactly. */
int mk_engine_schedule(mk_engine *e, mk_op *op, double delay);
/* A job's next poll, `delay` seconds from now on the default schedule. A
 * budget job may be polled sooner, from MK_MIN_GAP on, when the lane ranks
 * it first; a callback job not before its fallback time (priority.h). */
int mk_engine_schedule_poll(mk_engine *e, mk_op *op, double delay);
/* What the lane knows of a job: its model (NULL: unknown) and whether a
 * callback is expected (its polls are then the fallback). */
void mk_engine_job_info(mk_engine *e, mk_op *op, const char *model, int callback);
/* The job's callback ended it: counted for the fallback ranks, then it stops as on cancel (no event). */
void mk_engine_called_back(mk_engine *e, mk_op *op);
/* Answer a request to the listener with an HTTP status, and release its op. */
void mk_engine_respond(mk_engine *e, mk_op *op, int status);
/* Point a job at its task: from now on it polls recordInfo. 0, or -1 out of memory. */
int mk_engine_accept(mk_engine *e, mk_op *op, const char *task_id);
/* Stop everything the op is doing and free it (during a step: when it ends). */
void mk_engine_release(mk_engine *e, mk_op *op);
/* Stop the op: a job ends cancelled, any op is released. No event. */
void mk_engine_cancel(mk_engine *e, mk_op *op);
/* Bracket a step: the host's code running while events are read (see "Reentrancy"). */
void mk_engine_begin_step(mk_engine *e);
void mk_engine_end_step(mk_engine *e);
/* Abort the op's transfer and timers, keep the op. */
void mk_engine_stop(mk_engine *e, mk_op *op);

/* Count an answer that refused for the account's limits (429) or the
 * gateway's unavailability (455): its HTTP status, and its body's code when
 * it has one (`has_code`). */
void mk_engine_count_refusal(mk_engine *e, long http, int has_code, long code);

/* Queue an event for the host (it takes ev; NULL is out of memory and is dropped). */
void mk_engine_emit(mk_engine *e, mk_event *ev);
/* The oldest event not yet handed to the host, or NULL; it stays queued until
 * mk_engine_event_done says the host has it. */
mk_event *mk_engine_event(mk_engine *e);
void mk_engine_event_done(mk_engine *e);

/* Drive timers and I/O for up to `timeout` seconds (0: do what is ready,
 * never wait), returning early once an event is queued. Returns 0, or -1
 * with err set on a libcurl multi failure. */
int mk_engine_run(mk_engine *e, double timeout, char *err, size_t errlen);
/* Seconds until the engine next needs to run (0: now), or -1 when idle. */
double mk_engine_next_wakeup(mk_engine *e);
/* The sockets to watch (fd and POLLIN/POLLOUT), for a host's own event loop.
 * The first call switches the engine to libcurl's socket interface, for good
 * (see "Driving libcurl" above). */
const struct pollfd *mk_engine_sockets(mk_engine *e, size_t *n);
/* Start what may start now: after the host answered the store's questions. */
void mk_engine_pump(mk_engine *e);
/* Ops not yet released. */
uint32_t mk_engine_live(const mk_engine *e);

#endif

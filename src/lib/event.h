/* event.h: what the engine tells its host, as data. The job state machine
 * (job.h) and the calls (call.h) queue events while the engine runs; the
 * host takes them off the queue after mk_engine_run returned. An event is
 * self-contained: it names its op by handle (never by pointer) and owns
 * whatever it carries, so the host may run any code while it reads one (the
 * op may be gone by then: a stale handle finds nothing).
 *
 * A poll that changes nothing makes no event: the host hears of state
 * changes, progress, ends, and the questions only it can answer. */
#ifndef MODKIE_EVENT_H
#define MODKIE_EVENT_H

#include <stdint.h>

#include "kinds.h"
#include "record.h"
#include "state.h"

typedef enum {
  MK_EV_ACCEPTED = 1, /* createTask accepted: task_id */
  MK_EV_READY,        /* a held createTask is at the door (mk_engine_hold) */
  MK_EV_STATE,        /* a job's state, server state or progress changed */
  MK_EV_INTERVAL,     /* "when does job h poll next?": answer with mk_job_interval */
  MK_EV_RETRY,        /* an exchange failed and is tried again after `delay` */
  MK_EV_DONE,         /* a job ended: state, and the reading or the error */
  MK_EV_REPLY,        /* a call or download ended: its data (or path), or the error */
  MK_EV_TIMER,        /* a timer op fired */
  MK_EV_STORE,        /* the account's rate store went away or came back (no op) */
  MK_EV_REQUEST       /* a request to the listener: answer it with mk_engine_respond */
} mk_event_type;

/* An error, as the Lua layer's modkie.Error receives it. */
typedef struct mk_error {
  mk_kind kind;
  char message[400];
  long status;         /* HTTP status, 0 when none */
  long code;           /* API code, 0 when none */
  int retryable;
  double retry_after;  /* seconds, -1 when the server gave none */
} mk_error;

typedef struct mk_event {
  mk_event_type type;
  uint64_t h;              /* the op's handle (0 for STORE) */
  mk_job_state state;      /* STATE, DONE: the job's state; REPLY: SUCCESS or ERROR */
  char server_state[40];   /* STATE, DONE: the gateway's word, "" when none */
  int polls;               /* DONE: recordInfo answers seen; INTERVAL: polls so far */
  double progress;         /* STATE, DONE: 0-100, NAN when none */
  double updated_at;       /* STATE, DONE: the record's updateTime (Unix seconds), NAN when none */
  char *task_id;           /* ACCEPTED: the new id; DONE, REPLY, RETRY with an error: the job's, or NULL */
  double elapsed;          /* INTERVAL: seconds since the task was accepted */
  double fallback;         /* INTERVAL: the default schedule's answer, jittered */
  int attempt;             /* RETRY: which retry this is (1, 2, ...) */
  double delay;            /* RETRY: seconds until it */
  int has_error;
  mk_error error;          /* DONE, REPLY, RETRY: what went wrong (has_error) */
  int has_reading;
  cJSON *doc;              /* DONE with a reading, REPLY of a call: the answer, owned */
  mk_reading reading;      /* DONE: the record read (success, or failed) */
  const cJSON *data;       /* REPLY of a call: the answer's data (may be NULL) */
  char *path;              /* REPLY of a download: the file; REQUEST: the path asked */
  char *body;              /* REQUEST: the body, whole */
  size_t body_len;
  char **headers;          /* REQUEST: name, value, name, value, … (NULL-terminated) */
  size_t nheaders;         /* REQUEST: pairs */
  char *text;              /* STORE: "away" or "back"; the reason in `message` */
  char *message;           /* STORE: why it is away */
  struct mk_event *next;
} mk_event;

/* A new event of `type` for handle h, all else empty; NULL out of memory. */
mk_event *mk_event_new(mk_event_type type, uint64_t h);
void mk_event_free(mk_event *ev);

#endif

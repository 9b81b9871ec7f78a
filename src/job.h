/* job.h: the decisions. Given what an exchange returned, decide what happens
 * next: accept, poll again (and when), retry (and when), or end, with which
 * error kind. Pure functions of their inputs and the engine's random source;
 * no I/O, no Lua. */
#ifndef MODKIE_JOB_H
#define MODKIE_JOB_H

#include "engine.h"

/* Longer task ids are refused: they would not fit a recordInfo request line. */
#define MK_MAX_TASK_ID 1024

/* The facts the bindings read out of a response body. */
typedef struct mk_reply {
  const mk_result *res;
  int json;             /* the body decoded to a JSON object */
  int has_code;
  long code;            /* envelope "code" */
  const char *message;  /* envelope "msg" or "message", may be NULL */
  int has_data;         /* envelope "data" present and not null */
  const char *task_id;  /* createTask: data.taskId */
  const char *state;    /* recordInfo: data.state */
  double progress;      /* recordInfo: data.progress (0-100), -1 when absent */
} mk_reply;

typedef enum {
  MK_NEXT_DONE = 1,     /* the op ends: verdict.state says how */
  MK_NEXT_RETRY,        /* run the same exchange again after verdict.delay */
  MK_NEXT_POLL,         /* the job goes on: poll again (bindings pick the delay) */
  MK_NEXT_ACCEPTED      /* createTask accepted: reply.task_id is the task */
} mk_next;

typedef struct mk_verdict {
  mk_next next;
  mk_job_state state;   /* DONE: MK_SUCCESS, MK_FAILED or MK_ERROR */
  const char *kind;     /* MK_ERROR: the error kind */
  char message[320];
  long status;          /* HTTP status, 0 when none */
  long code;            /* API code, 0 when none */
  int retryable;        /* the caller may try again later */
  int garbled;          /* RETRY of a poll because the answer was garbled */
  double delay;         /* RETRY: seconds to wait */
} mk_verdict;

void mk_judge_create(mk_engine *e, const mk_op *op, const mk_reply *r, mk_verdict *v);
void mk_judge_poll(mk_engine *e, const mk_op *op, const mk_reply *r, mk_verdict *v);
/* One-off calls (credits, recordInfo, download-url) and downloads. */
void mk_judge_call(mk_engine *e, const mk_op *op, const mk_reply *r, mk_verdict *v);

/* Server state string -> MK_QUEUED, MK_RUNNING, MK_SUCCESS or MK_FAILED.
 * Unknown states count as running: never terminal, never an error. */
mk_job_state mk_classify_state(const char *s);
const char *mk_state_name(mk_job_state s);

/* The gateway's recommended polling schedule, jittered with u in [0,1):
 * 2-3 s for the first 30 s, 5-10 s until 2 min, then 15-30 s. */
double mk_default_interval(double elapsed, double u);

/* Exponential backoff with full jitter, or Retry-After when the server gave one. */
double mk_backoff(mk_engine *e, int attempt, double retry_after, double cap);

#endif

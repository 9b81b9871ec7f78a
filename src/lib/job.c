/* job.c: the job state machine (see job.h). */
#include "job.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "judge.h"
#include "schedule.h"

#define MAX_INTERVAL 1e6 /* seconds: a poll interval, as the option's range says */

/* What happened to a job. */
typedef enum {
  ON_DOOR = 0,       /* its held createTask reached the door */
  ON_SEND,           /* the host let it go */
  ON_RETRY,          /* its exchange failed and is tried again */
  ON_ACCEPTED,       /* createTask answered with a task id */
  ON_ACCEPTED_LATE,  /* ... after the job's deadline passed */
  ON_POLLED,         /* a poll says it goes on */
  ON_ENDED,          /* a poll says it ended (success or failed) */
  ON_ERROR,          /* its exchange failed for good */
  ON_DEADLINE,       /* its deadline passed */
  ON_INTERVAL,       /* the host said when to poll next */
  ON_CANCEL          /* the host cancelled it */
} input;

/* What a transition does, applied in this order. */
enum {
  HOLD = 1 << 0,          /* keep the token and the slot at the door */
  SEND = 1 << 1,          /* start the held createTask */
  ACCEPT = 1 << 2,        /* point the job at its task: it polls from now on */
  COUNT_RETRY = 1 << 3,   /* one more attempt (and garbled answer) on this exchange */
  COUNT_POLL = 1 << 4,    /* one more answer from recordInfo */
  SETTLE = 1 << 5,        /* the exchange went through: attempts and garbled back to 0 */
  NOTE_RECORD = 1 << 6,   /* keep the record's state and progress; a STATE event when either changed */
  EMIT_READY = 1 << 7,
  EMIT_ACCEPTED = 1 << 8,
  EMIT_RETRY = 1 << 9,
  EMIT_DONE = 1 << 10,
  BACKOFF = 1 << 11,      /* the same exchange again after the verdict's delay */
  NEXT_POLL = 1 << 12,    /* time the next poll (interval mode), or ask the host */
  SCHEDULE = 1 << 13,     /* poll when the host said */
  RELEASE = 1 << 14       /* the job is over: free it (always last) */
};

#define S(state) (1u << (state))
#define POLLING (S(MK_QUEUED) | S(MK_RUNNING))
#define ALIVE (S(MK_SUBMITTING) | POLLING)
#define KEEP (-1)         /* the state stays */
#define VERDICT (-2)      /* the state the answer says */

static const struct transition {
  unsigned from; /* the states it applies in */
  input on;
  int to;        /* an mk_job_state, KEEP or VERDICT */
  unsigned does;
} TRANSITIONS[] = {
  {S(MK_SUBMITTING), ON_DOOR,          KEEP,         HOLD | EMIT_READY},
  {S(MK_SUBMITTING), ON_SEND,          KEEP,         SEND},
  {S(MK_SUBMITTING), ON_RETRY,         KEEP,         COUNT_RETRY | EMIT_RETRY | BACKOFF},
  {S(MK_SUBMITTING), ON_ACCEPTED,      MK_QUEUED,    ACCEPT | EMIT_ACCEPTED | NEXT_POLL},
  {S(MK_SUBMITTING), ON_ACCEPTED_LATE, MK_ERROR,     EMIT_ACCEPTED | EMIT_DONE | RELEASE},
  {S(MK_SUBMITTING), ON_ERROR,         MK_ERROR,     EMIT_DONE | RELEASE},
  {POLLING,          ON_RETRY,         KEEP,         COUNT_RETRY | EMIT_RETRY | BACKOFF},
  {POLLING,          ON_POLLED,        VERDICT,      COUNT_POLL | SETTLE | NOTE_RECORD | NEXT_POLL},
  {POLLING,          ON_ENDED,         VERDICT,      COUNT_POLL | EMIT_DONE | RELEASE},
  {POLLING,          ON_ERROR,         MK_ERROR,     EMIT_DONE | RELEASE},
  {POLLING,          ON_INTERVAL,      KEEP,         SCHEDULE},
  {ALIVE,            ON_DEADLINE,      MK_ERROR,     EMIT_DONE | RELEASE},
  {ALIVE,            ON_CANCEL,        MK_CANCELLED, RELEASE},
};

/* What came with an input: the verdict and the reply it was judged from
 * (answers), the seconds (ON_INTERVAL). */
typedef struct given {
  mk_verdict *v;
  mk_reply *r;
  double seconds;
  mk_job_state was;  /* the state before the transition */
} given;

static int same_number(double a, double b) {
  return a == b || (isnan(a) && isnan(b));
}

/* A STATE event, or nothing when the record says what the job knew. */
static void note_record(mk_engine *e, mk_op *op, const given *g) {
  const char *word = g->r->state;
  mk_event *ev;
  if (!word || (g->was == op->state && !strncmp(op->server_state, word, sizeof op->server_state - 1) &&
                same_number(op->progress, g->r->progress)))
    return; /* no state: a record not shown yet ("recordInfo is null") */
  snprintf(op->server_state, sizeof op->server_state, "%s", word);
  op->progress = g->r->progress;
  if ((ev = mk_event_new(MK_EV_STATE, mk_op_handle(op)))) {
    ev->state = op->state;
    snprintf(ev->server_state, sizeof ev->server_state, "%s", word);
    ev->progress = g->r->progress;
    ev->updated_at = g->r->updated_at;
  }
  mk_engine_emit(e, ev);
}

/* The task id a DONE event names: the job's; or, for a createTask that did
 * not succeed yet named a task (an ambiguous answer), the one it named, so
 * that the task can be adopted; or the late acceptance's. */
static const char *done_task_id(const mk_op *op, input on, const given *g) {
  const char *named = g->r->task_id;
  if (on == ON_ACCEPTED_LATE) return named;
  if (!op->task_id && named && named[0] && strlen(named) <= MK_MAX_TASK_ID) return named;
  return op->task_id;
}

/* The DONE event: the record read (an ended poll), or the error. */
static void emit_done(mk_engine *e, mk_op *op, input on, const given *g) {
  mk_event *ev = mk_event_new(MK_EV_DONE, mk_op_handle(op));
  if (!ev) {
    mk_engine_emit(e, NULL);
    return;
  }
  ev->state = op->state;
  ev->polls = op->polls;
  ev->task_id = mk_copy_str(done_task_id(op, on, g));
  if (on == ON_ENDED) {
    ev->doc = mk_reply_take(g->r);
    ev->progress = g->r->progress;
    ev->updated_at = g->r->updated_at;
    if (g->r->state) snprintf(ev->server_state, sizeof ev->server_state, "%s", g->r->state);
    ev->has_reading = 1;
    /* the reading points into what the event owns (its doc, its copy of the id): never into the op */
    if (mk_record_read(ev->doc, ev->task_id, NULL, 0, &ev->reading) != 0) {
      mk_event_free(ev);
      mk_engine_emit(e, NULL);
      return;
    }
    if (ev->reading.outcome == MK_READ_SUCCESS || ev->reading.outcome == MK_READ_FAILED) {
      ev->state = ev->reading.outcome == MK_READ_SUCCESS ? MK_SUCCESS : MK_FAILED;
      mk_engine_emit(e, ev);
      return;
    }
    /* judged ended, yet not the contract (a code that is no number beside a fail record) */
    ev->state = MK_ERROR;
    ev->has_error = 1;
    ev->error.kind = MK_KIND_PROTOCOL;
    ev->error.status = op->result.http;
    snprintf(ev->error.message, sizeof ev->error.message, "recordInfo: %s", ev->reading.problem);
    mk_engine_emit(e, ev);
    return;
  }
  ev->has_error = 1;
  if (on == ON_DEADLINE) {
    ev->error.kind = MK_KIND_DEADLINE;
    snprintf(ev->error.message, sizeof ev->error.message, "the job did not end within its deadline (%g s)",
             op->deadline.due - op->created);
  } else if (on == ON_ACCEPTED_LATE) {
    ev->error.kind = MK_KIND_DEADLINE;
    snprintf(ev->error.message, sizeof ev->error.message,
             "the deadline passed while createTask was in flight; task %.200s was created", g->r->task_id);
  } else {
    ev->error = g->v->error;
  }
  mk_engine_emit(e, ev);
}

/* Time the next poll: the engine's interval mode, or the host's answer to an INTERVAL event. */
static void next_poll(mk_engine *e, mk_op *op, input on) {
  double elapsed = on == ON_ACCEPTED ? 0 : mk_now() - op->accepted;
  double fallback;
  mk_event *ev;
  if (e->interval_mode == MK_INTERVAL_FIXED) {
    mk_engine_schedule(e, op, e->poll_interval);
    return;
  }
  fallback = mk_default_interval(elapsed / e->time_scale, mk_random(e)) * e->time_scale;
  if (e->interval_mode == MK_INTERVAL_DEFAULT) { /* on the budget: ranked when polls are rationed */
    mk_engine_schedule_poll(e, op, fallback);
    return;
  }
  op->asking = 1;
  if ((ev = mk_event_new(MK_EV_INTERVAL, mk_op_handle(op)))) {
    ev->elapsed = elapsed;
    ev->polls = op->polls;
    ev->fallback = fallback;
  } else {
    op->asking = 0; /* no memory to ask: the default schedule */
    mk_engine_schedule(e, op, fallback);
  }
  mk_engine_emit(e, ev);
}

/* The one function that changes a job: the transition for (state, input)
 * from the table, its actions in order. An input with no transition in the
 * job's state changes nothing. */
static void apply(mk_engine *e, mk_op *op, input on, given *g) {
  const struct transition *t = NULL;
  size_t i;
  unsigned does;
  mk_event *ev;
  for (i = 0; i < sizeof TRANSITIONS / sizeof TRANSITIONS[0] && !t; i++)
    if (TRANSITIONS[i].on == on && (TRANSITIONS[i].from & S(op->state))) t = &TRANSITIONS[i];
  if (!t) return;
  does = t->does;
  g->was = op->state;
  if (t->to == VERDICT) op->state = g->v->state;
  else if (t->to != KEEP) op->state = (mk_job_state)t->to;

  if (does & HOLD) {
    /* every attempt stops here, a retry after a 429 too: until the host lets
     * it go, the host knows this createTask has not left (op->hold stays set
     * until the task is accepted) */
    op->held = 1;
    e->held++;
  }
  if (does & SEND) {
    op->held = 0;
    e->held--;
    mk_engine_start(e, op);
    return; /* the start may have answered at once (a request that could not be set up) */
  }
  if (does & ACCEPT) op->hold = 0; /* its polls never stop at the door */
  if ((does & ACCEPT) && mk_engine_accept(e, op, g->r->task_id) != 0) {
    /* no memory for the poll's URL: the job ends, with its task id */
    g->v->error.kind = MK_KIND_CONFIG;
    snprintf(g->v->error.message, sizeof g->v->error.message, "out of memory after task %.200s was created",
             g->r->task_id);
    op->state = MK_ERROR;
    does = EMIT_ACCEPTED | EMIT_DONE | RELEASE;
    on = ON_ERROR;
  }
  if (does & COUNT_RETRY) {
    op->attempts++;
    op->garbled = g->v->garbled ? op->garbled + 1 : 0;
  }
  if (does & COUNT_POLL) op->polls++;
  if (does & SETTLE) op->attempts = op->garbled = 0;
  if ((does & NOTE_RECORD) && g->r->state) op->seen = mk_now(); /* record_grace counts from here (judge.c) */
  if (does & NOTE_RECORD) note_record(e, op, g);
  if (does & EMIT_READY) mk_engine_emit(e, mk_event_new(MK_EV_READY, mk_op_handle(op)));
  if (does & EMIT_ACCEPTED) {
    if ((ev = mk_event_new(MK_EV_ACCEPTED, mk_op_handle(op))) && !(ev->task_id = mk_copy_str(g->r->task_id))) {
      mk_event_free(ev);
      ev = NULL;
    }
    mk_engine_emit(e, ev);
  }
  if (does & EMIT_RETRY) {
    if ((ev = mk_event_new(MK_EV_RETRY, mk_op_handle(op)))) {
      ev->attempt = op->attempts;
      ev->delay = g->v->delay;
      ev->has_error = 1;
      ev->error = g->v->error;
      ev->task_id = mk_copy_str(op->task_id);
    }
    mk_engine_emit(e, ev);
  }
  if (does & EMIT_DONE) emit_done(e, op, on, g);
  if (on == ON_ENDED && op->rank.callback) mk_ranks_callback_ended(&e->ranks, 1); /* a poll saw it before any callback */
  if (does & BACKOFF) mk_engine_schedule(e, op, g->v->delay);
  if (does & NEXT_POLL) next_poll(e, op, on);
  if (does & SCHEDULE) {
    op->asking = 0;
    mk_engine_schedule(e, op, g->seconds);
  }
  if (does & RELEASE) mk_engine_release(e, op);
}

void mk_job_answered(mk_engine *e, mk_op *op) {
  mk_reply r;
  mk_verdict v;
  given g;
  input on;
  mk_reply_read(&r, op->result.body, op->result.body_len);
  mk_engine_count_refusal(e, op->result.http, r.has_code, r.code);
  if (op->state == MK_SUBMITTING) {
    mk_judge_create(e, op, &r, &v);
    on = v.next == MK_NEXT_RETRY ? ON_RETRY
       : v.next == MK_NEXT_ACCEPTED ? (op->expired ? ON_ACCEPTED_LATE : ON_ACCEPTED)
       : ON_ERROR;
  } else {
    mk_judge_poll(e, op, &r, &v);
    on = v.next == MK_NEXT_RETRY ? ON_RETRY
       : v.next == MK_NEXT_POLL ? ON_POLLED
       : v.state == MK_ERROR ? ON_ERROR
       : ON_ENDED;
  }
  memset(&g, 0, sizeof g);
  g.v = &v;
  g.r = &r;
  apply(e, op, on, &g);
  mk_reply_free(&r);
}

static void apply_plain(mk_engine *e, mk_op *op, input on, double seconds) {
  mk_verdict v;
  mk_reply r;
  given g;
  memset(&v, 0, sizeof v);
  mk_reply_none(&r);
  memset(&g, 0, sizeof g);
  g.v = &v;
  g.r = &r;
  g.seconds = seconds;
  apply(e, op, on, &g);
}

void mk_job_door(mk_engine *e, mk_op *op) {
  apply_plain(e, op, ON_DOOR, 0);
}

int mk_job_send(mk_engine *e, mk_op *op) {
  if (op->type != MK_OP_JOB || !op->held) return -1;
  apply_plain(e, op, ON_SEND, 0);
  return 0;
}

void mk_job_deadline(mk_engine *e, mk_op *op) {
  apply_plain(e, op, ON_DEADLINE, 0);
}

int mk_job_interval(mk_engine *e, mk_op *op, double seconds) {
  if (op->type != MK_OP_JOB || !op->asking) return -1;
  if (!(seconds > 0)) seconds = 0; /* NaN too */
  if (seconds > MAX_INTERVAL) seconds = MAX_INTERVAL;
  apply_plain(e, op, ON_INTERVAL, seconds);
  return 0;
}

void mk_job_cancel(mk_engine *e, mk_op *op) {
  apply_plain(e, op, ON_CANCEL, 0);
}

/* judge.h: what an answer means. Given an op and what its exchange returned
 * (the transport's result and the reply's facts), decide what happens next:
 * accept, poll again, retry (and when), or end, with which error. Pure
 * functions of their inputs and the engine's random source: no I/O, no
 * change to the op. job.h and call.h apply the verdict. */
#ifndef MODKIE_JUDGE_H
#define MODKIE_JUDGE_H

#include "engine.h"
#include "event.h"
#include "reply.h"

typedef enum {
  MK_NEXT_DONE = 1,     /* the op ends: verdict.state says how */
  MK_NEXT_RETRY,        /* run the same exchange again after verdict.delay */
  MK_NEXT_POLL,         /* the job goes on: poll again on its schedule */
  MK_NEXT_ACCEPTED      /* createTask accepted: reply.task_id is the task */
} mk_next;

typedef struct mk_verdict {
  mk_next next;
  mk_job_state state;   /* DONE: MK_SUCCESS, MK_FAILED or MK_ERROR; POLL: the record's state */
  mk_error error;       /* MK_ERROR, and a RETRY's cause: kind, message, status, code, retryable */
  int garbled;          /* RETRY of a poll because the answer was garbled */
  double delay;         /* RETRY: seconds to wait */
} mk_verdict;

void mk_judge_create(mk_engine *e, const mk_op *op, const mk_reply *r, mk_verdict *v);
void mk_judge_poll(mk_engine *e, const mk_op *op, const mk_reply *r, mk_verdict *v);
/* One-off calls (recordInfo, credit, download-url) and downloads. */
void mk_judge_call(mk_engine *e, const mk_op *op, const mk_reply *r, mk_verdict *v);

#endif

/* job.h: the job state machine. Every change to a job (its createTask at
 * the door, sent, retried, accepted, polled, its interval given, its end,
 * its deadline, its cancel) is one input, applied by one function
 * (job.c's `apply`) from one table (job.c's TRANSITIONS): the state it moves
 * to, and the actions taken in a fixed order (count, emit events, schedule,
 * release). An answer is judged first (judge.h) into the input it is.
 *
 *   SUBMITTING --door--> (held) --send--> SUBMITTING --accepted--> QUEUED
 *   SUBMITTING --retry--> SUBMITTING        QUEUED/RUNNING --polled--> QUEUED/RUNNING
 *   QUEUED/RUNNING --ended--> SUCCESS | FAILED
 *   any live state --error | deadline--> ERROR, --cancel--> CANCELLED
 *
 * A job's next poll is timed by the engine's interval mode: the default
 * schedule or a fixed number in C, or (MK_INTERVAL_ASK) an INTERVAL event
 * the host answers with mk_job_interval. A poll that changes neither the
 * state, the server state nor the progress makes no event. Invariants: a
 * job ends exactly once, with exactly one DONE event (none when cancelled:
 * the host cancelled it); RELEASE is the last action of any transition. */
#ifndef MODKIE_JOB_H
#define MODKIE_JOB_H

#include "engine.h"

/* The job's exchange ended (op->result): judge it and apply what it means. */
void mk_job_answered(mk_engine *e, mk_op *op);
/* Its held createTask reached the door (taken off its line, slot and token kept). */
void mk_job_door(mk_engine *e, mk_op *op);
/* The host lets a createTask at the door go. -1 when it is not held there. */
int mk_job_send(mk_engine *e, mk_op *op);
/* Its deadline passed (no createTask in flight). */
void mk_job_deadline(mk_engine *e, mk_op *op);
/* The host's answer to an INTERVAL event: poll in `seconds` (clamped to
 * 0 - 1e6, NaN 0). -1 when the job was not asking. */
int mk_job_interval(mk_engine *e, mk_op *op, double seconds);
/* The host cancelled it: it ends cancelled, no event. */
void mk_job_cancel(mk_engine *e, mk_op *op);

#endif

/* call.h: one-off calls (recordInfo, credit, download-url), downloads and
 * timers: what ends them. A call's answer is judged (judge.h): a transient
 * failure is retried after a backoff (a RETRY event), anything else ends it
 * with a REPLY event carrying the answer (or the file's path) or the error,
 * and the op is released. A timer ends with a TIMER event. */
#ifndef MODKIE_CALL_H
#define MODKIE_CALL_H

#include "engine.h"

/* The call's or download's exchange ended (op->result). */
void mk_call_answered(mk_engine *e, mk_op *op);
/* The timer op is due. */
void mk_timer_fired(mk_engine *e, mk_op *op);

#endif

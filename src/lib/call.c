/* call.c: what ends calls, downloads and timers (see call.h). */
#include "call.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "judge.h"

void mk_call_answered(mk_engine *e, mk_op *op) {
  mk_reply r;
  mk_verdict v;
  mk_event *ev;
  if (op->type == MK_OP_DOWNLOAD) mk_reply_none(&r);
  else mk_reply_read(&r, op->result.body, op->result.body_len);
  mk_engine_count_refusal(e, op->result.http, r.has_code, r.code);
  mk_judge_call(e, op, &r, &v);
  if (v.next == MK_NEXT_RETRY) {
    op->attempts++;
    if ((ev = mk_event_new(MK_EV_RETRY, mk_op_handle(op)))) {
      ev->attempt = op->attempts;
      ev->delay = v.delay;
      ev->has_error = 1;
      ev->error = v.error;
    }
    mk_engine_emit(e, ev);
    mk_engine_schedule(e, op, v.delay);
  } else if ((ev = mk_event_new(MK_EV_REPLY, mk_op_handle(op)))) {
    ev->state = v.state;
    if (v.state == MK_ERROR) {
      ev->has_error = 1;
      ev->error = v.error;
    } else if (op->type == MK_OP_DOWNLOAD) {
      if (!(ev->path = mk_copy_str(op->path))) {
        mk_event_free(ev);
        ev = NULL;
      }
    } else {
      ev->data = r.data; /* a node of the doc the event takes */
      ev->doc = mk_reply_take(&r);
    }
    mk_engine_emit(e, ev);
    mk_engine_release(e, op);
  } else {
    mk_engine_emit(e, NULL);
    mk_engine_release(e, op);
  }
  mk_reply_free(&r);
}

void mk_timer_fired(mk_engine *e, mk_op *op) {
  mk_engine_emit(e, mk_event_new(MK_EV_TIMER, mk_op_handle(op)));
  mk_engine_release(e, op);
}

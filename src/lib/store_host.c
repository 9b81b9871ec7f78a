/* store_host.c: a store answered by whoever drives the engine. The windows
 * of an OpenResty shared dict are reachable only from Lua, and the engine
 * never calls Lua: it leaves the question open, mk_engine_run returns, the
 * Lua layer answers from the dict (mk_store_host_answer) between steps. */
#include <stdlib.h>

#include "ratelimit.h"

static void host_ask(mk_store *s, mk_lane lane, int want, int limit, double per, double now) {
  (void)now;
  s->question[lane].want = want;
  s->question[lane].limit = limit;
  s->question[lane].per = per;
  s->host_questions |= 1 << lane;
}

static void host_free(mk_store *s) {
  free(s);
}

static const mk_store_ops host_ops = {"host", host_ask, NULL, NULL, NULL, host_free};

mk_store *mk_store_host_new(void) {
  mk_store *s = calloc(1, sizeof *s);
  if (s) s->ops = &host_ops;
  return s;
}

void mk_store_host_answer(mk_store *s, mk_lane lane, const mk_store_answer *a) {
  if (!(s->host_questions & (1 << lane))) return; /* nothing asked: dropped */
  s->host_questions &= ~(1 << lane);
  s->answer[lane] = *a;
  s->answer[lane].ready = 1;
}

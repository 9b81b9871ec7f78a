#include "priority.h"

#include <math.h>

#define USUAL_END 0.95      /* the quantile of a model's durations that counts as its usual end */
#define MARGIN 10.0         /* seconds after the usual end before a callback job is polled, at least */
#define MARGIN_SHARE 0.1    /* ... or this share of the usual end */
#define MISSED_PRIOR 1.0    /* callbacks missing, of PRIOR_JOBS, before any is seen: 10 % */
#define PRIOR_JOBS 10.0

void mk_ranks_init(mk_ranks *l, mk_durations *known, double scale, double fresh) {
  l->ranked.items = l->early.items = NULL;
  l->ranked.len = l->ranked.cap = l->early.len = l->early.cap = 0;
  l->known = known;
  l->scale = scale > 0 ? scale : 1;
  l->rescored = -1;
  l->fresh = fresh;
  l->callback_jobs = l->callback_missed = 0;
}

void mk_ranks_free(mk_ranks *l) {
  mk_heap_free(&l->ranked);
  mk_heap_free(&l->early);
}

int mk_ranks_reserve(mk_ranks *l, size_t n) {
  return mk_heap_reserve(&l->ranked, n) != 0 || mk_heap_reserve(&l->early, n) != 0 ? -1 : 0;
}

double mk_ranks_score(mk_ranks *l, const mk_rank *r, double now) {
  double age = now - r->started, gap = age - r->seen, before, after, p;
  if (r->age_unknown) return HUGE_VAL; /* adopted: it may have ended long ago */
  if (gap < 0) gap = 0;
  before = mk_durations_survival(l->known, r->model, r->seen);
  after = mk_durations_survival(l->known, r->model, age);
  p = before > 0 ? 1 - after / before : 1;
  if (r->callback) /* it ended unseen only if its callback went missing too */
    p *= (l->callback_missed + MISSED_PRIOR) / (l->callback_jobs + PRIOR_JOBS);
  return p * gap;
}

int mk_ranks_add(mk_ranks *l, mk_rank *r, double now) {
  r->ranked.owner = r->early.owner = r;
  mk_heap_set(&l->ranked, &r->ranked, -mk_ranks_score(l, r, now)); /* cannot fail: reserved */
  if (r->due <= now) return 1;
  mk_heap_set(&l->early, &r->early, r->due);
  return 0;
}

mk_rank *mk_ranks_now_due(mk_ranks *l, double now) {
  mk_timer *t = mk_heap_top(&l->early);
  if (!t || t->due > now) return NULL;
  mk_heap_remove(&l->early, t);
  return t->owner;
}

double mk_ranks_next_due(const mk_ranks *l) {
  mk_timer *t = mk_heap_top(&l->early);
  return t ? t->due : -1;
}

mk_rank *mk_ranks_best(mk_ranks *l, double now) {
  mk_timer *t;
  if (!l->ranked.len) return NULL;
  if (l->rescored < 0 || now - l->rescored >= l->fresh) { /* ranks move with time: work them out again */
    size_t i;
    for (i = 0; i < l->ranked.len; i++) {
      t = l->ranked.items[i];
      t->due = -mk_ranks_score(l, t->owner, now);
    }
    mk_heap_rebuild(&l->ranked);
    l->rescored = now;
  }
  t = mk_heap_top(&l->ranked);
  return t->owner;
}

void mk_ranks_remove(mk_ranks *l, mk_rank *r) {
  mk_heap_remove(&l->ranked, &r->ranked);
  mk_heap_remove(&l->early, &r->early);
}

double mk_ranks_fallback_at(mk_ranks *l, const mk_rank *r) {
  double usual = mk_durations_quantile(l->known, r->model, USUAL_END), margin;
  if (usual < 0) usual = mk_durations_prior_quantile(l->known, USUAL_END); /* nothing known yet */
  margin = MARGIN_SHARE * usual;
  if (margin < MARGIN * l->scale) margin = MARGIN * l->scale;
  return r->started + usual + margin;
}

void mk_ranks_callback_ended(mk_ranks *l, int missed) {
  l->callback_jobs++;
  if (missed) l->callback_missed++;
}

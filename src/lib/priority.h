/* priority.h: which job to poll next when polls are rationed.
 *
 * The account may send 10 recordInfo a second; a few hundred jobs in flight
 * want more. First come, first served spends that budget on young jobs,
 * which cannot have ended, while old ones wait their turn. Here every job
 * polled on the budget (the default schedule) waits in a lane from the
 * moment it may be polled again (MK_MIN_GAP after its last poll) and is
 * ranked by
 *
 *     p * dt,   p = the chance it ended since its last poll, dt ago
 *
 * with p from what is known of its model's durations (durations.h): 1 -
 * S(age) / S(age at the last poll). Ranking by p alone spends everything on
 * the oldest jobs and starves the rest; p * dt is the index of the polling
 * rates that minimise the mean notice delay (each job polled at a rate
 * proportional to the square root of its hazard), so a job past its
 * model's usual end goes first, a young one waits, and a job that fails at
 * once is still reached (durations.h keeps mass for that).
 *
 * When the grants cover every job that is due on the gateway's recommended
 * schedule, the engine polls exactly those (the lane changes nothing); only
 * when they do not does it take the best ranked jobs, due or not.
 *
 * A job submitted with a callback URL is polled only as the fallback for a
 * callback that did not come: first once its model's usual end (the 95th
 * percentile) plus a margin has passed, then on the budget, its rank
 * weighted by the share of callbacks that went missing so far. */
#ifndef MODKIE_PRIORITY_H
#define MODKIE_PRIORITY_H

#include "durations.h"
#include "heap.h"

#define MK_MIN_GAP 2.0      /* seconds between two polls of a job: the recommended schedule's shortest */
#define MK_RECHECK 30.0     /* seconds: a callback job's fallback time is worked out again this often */

/* A job's place in the lane; embedded in the job. */
typedef struct mk_rank {
  mk_timer ranked;      /* in ranks->ranked while it waits: due = -score */
  mk_timer early;       /* in ranks->early while it waits and is not due yet: due = when it is */
  mk_model *model;
  double started;       /* monotonic time the task started (accepted or adopted) */
  double seen;          /* its age at its last poll (0: not polled yet) */
  double due;           /* when the recommended schedule (or a retry) wants its next poll */
  int age_unknown;      /* adopted: started long before, age unknown until ranked once */
  int callback;         /* a callback is expected: polls are the fallback */
  int fallback_done;    /* the first fallback poll is behind it */
} mk_rank;

typedef struct mk_ranks {
  mk_heap ranked;       /* every waiting job, best first */
  mk_heap early;        /* the waiting jobs not yet due, earliest first */
  mk_durations *known;
  double scale;         /* MK_MIN_GAP, MK_RECHECK and the fallback margin are multiplied by it */
  double rescored;      /* when the ranks were last worked out */
  double fresh;         /* seconds a rank stays good enough */
  unsigned long long callback_jobs, callback_missed; /* callback jobs ended; those a poll found first */
} mk_ranks;

void mk_ranks_init(mk_ranks *l, mk_durations *known, double scale, double fresh);
void mk_ranks_free(mk_ranks *l);
/* Room for n jobs in all, so that adding cannot fail until then: 0, or -1 out of memory. */
int mk_ranks_reserve(mk_ranks *l, size_t n);

/* Put a job in the lane. Returns 1 when it is due now (r->due <= now). */
int mk_ranks_add(mk_ranks *l, mk_rank *r, double now);
/* A waiting job whose due time came, taken off the not-yet-due heap; NULL when none. */
mk_rank *mk_ranks_now_due(mk_ranks *l, double now);
/* When the next waiting job falls due, or -1. */
double mk_ranks_next_due(const mk_ranks *l);
/* The best ranked waiting job (still in the lane), or NULL. */
mk_rank *mk_ranks_best(mk_ranks *l, double now);
/* Take a job out of the lane (a no-op when it is not in it). */
void mk_ranks_remove(mk_ranks *l, mk_rank *r);
/* Its rank now (see the top of this file). */
double mk_ranks_score(mk_ranks *l, const mk_rank *r, double now);

/* A callback job: the monotonic time of its first fallback poll, from what is known now. */
double mk_ranks_fallback_at(mk_ranks *l, const mk_rank *r);
/* A callback job ended, by its callback or (missed) by a poll. */
void mk_ranks_callback_ended(mk_ranks *l, int missed);

#endif

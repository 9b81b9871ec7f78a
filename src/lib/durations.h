/* durations.h: what is known of how long each model's jobs take.
 *
 * Per model, the last MK_KEEP durations of jobs that succeeded (seconds from
 * the task's creation to its end, as the gateway's records say), and the
 * same pooled over every model. From them a survival function: the chance
 * that a job of the model is still running at a given age. It is the
 * model's own once it knows MK_MIN_KNOWN durations, else the pooled one's,
 * else a prior; every one keeps some mass for a job that fails at once and
 * for one that runs past everything seen so far:
 *
 *   early  MK_EARLY of the mass, uniform from 0 to the shortest duration seen
 *   body   the rest, the durations seen (their empirical distribution,
 *          linear between neighbours)
 *   tail   MK_TAIL of the mass, beyond the longest: exponential, its mean
 *          the spread of the durations seen (at least a quarter of the longest)
 *
 * The prior, before anything is known, is log-uniform from 5 s to 10 min
 * (times `scale`): a young job is likelier to end soon than an old one, the
 * shape of the gateway's recommended schedule. */
#ifndef MODKIE_DURATIONS_H
#define MODKIE_DURATIONS_H

#include <stddef.h>

#define MK_KEEP 100      /* durations kept per model */
#define MK_MIN_KNOWN 5   /* durations needed before they are trusted */
#define MK_MAX_MODELS 1024 /* models known at most; more share the pooled entry */

typedef struct mk_model {
  char *name;            /* NULL for the pooled entry */
  double ring[MK_KEEP];  /* the last durations, in arrival order (a ring) */
  int n, next;
  double sorted[MK_KEEP]; /* ring, sorted; valid unless dirty */
  int dirty;
} mk_model;

typedef struct mk_durations {
  mk_model **models;
  size_t n, cap;
  mk_model all;          /* every model's durations pooled */
  double scale;          /* the prior's times are multiplied by it (time_scale) */
} mk_durations;

void mk_durations_init(mk_durations *d, double scale);
void mk_durations_free(mk_durations *d);
/* The entry of `name` (made on first use; NULL name, out of memory or too
 * many models: the pooled entry). Entries live as long as `d`. */
mk_model *mk_durations_model(mk_durations *d, const char *name);
/* A job of `m` took `seconds` (ignored unless finite and > 0). */
void mk_durations_add(mk_durations *d, mk_model *m, double seconds);

/* The chance that a job of `m` (NULL: pooled) is still running at `age` seconds. */
double mk_durations_survival(mk_durations *d, mk_model *m, double age);
/* The q-quantile (0-1, nearest rank) of the durations `m` has seen, or of
 * the pooled ones when it knows fewer than MK_MIN_KNOWN; -1 when neither
 * knows enough. */
double mk_durations_quantile(mk_durations *d, mk_model *m, double q);
/* The q-quantile of the prior (nothing known yet). */
double mk_durations_prior_quantile(const mk_durations *d, double q);
/* How many durations `m` knows. */
int mk_durations_known(const mk_model *m);

#endif

#include "durations.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define MK_EARLY 0.02       /* mass for a job that fails at once */
#define MK_TAIL 0.02        /* mass for a job that runs past everything seen */
#define PRIOR_LO 5.0        /* seconds: the prior is log-uniform between these */
#define PRIOR_HI 600.0

void mk_durations_init(mk_durations *d, double scale) {
  memset(d, 0, sizeof *d);
  d->scale = scale > 0 ? scale : 1;
}

void mk_durations_free(mk_durations *d) {
  size_t i;
  for (i = 0; i < d->n; i++) {
    free(d->models[i]->name);
    free(d->models[i]);
  }
  free(d->models);
  d->models = NULL;
  d->n = d->cap = 0;
}

mk_model *mk_durations_model(mk_durations *d, const char *name) {
  size_t i;
  mk_model *m;
  if (!name) return &d->all;
  for (i = 0; i < d->n; i++)
    if (!strcmp(d->models[i]->name, name)) return d->models[i];
  if (d->n == MK_MAX_MODELS) return &d->all;
  if (d->n == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 8;
    mk_model **models = realloc(d->models, cap * sizeof *models);
    if (!models) return &d->all;
    d->models = models;
    d->cap = cap;
  }
  m = calloc(1, sizeof *m);
  if (!m || !(m->name = mk_copy_str(name))) {
    free(m);
    return &d->all;
  }
  d->models[d->n++] = m;
  return m;
}

static void add(mk_model *m, double seconds) {
  m->ring[m->next] = seconds;
  m->next = (m->next + 1) % MK_KEEP;
  if (m->n < MK_KEEP) m->n++;
  m->dirty = 1;
}

void mk_durations_add(mk_durations *d, mk_model *m, double seconds) {
  if (!(seconds > 0 && seconds < 1e9)) return; /* NaN and infinities fail too */
  if (m && m != &d->all) add(m, seconds);
  add(&d->all, seconds);
}

int mk_durations_known(const mk_model *m) {
  return m ? m->n : 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static const double *sorted(mk_model *m) {
  if (m->dirty) {
    memcpy(m->sorted, m->ring, (size_t)m->n * sizeof *m->sorted);
    qsort(m->sorted, (size_t)m->n, sizeof *m->sorted, cmp_double);
    m->dirty = 0;
  }
  return m->sorted;
}

/* The entry whose durations answer for `m`: its own, the pooled ones, or none (the prior). */
static mk_model *source(mk_durations *d, mk_model *m) {
  if (m && m->n >= MK_MIN_KNOWN) return m;
  if (d->all.n >= MK_MIN_KNOWN) return &d->all;
  return NULL;
}

/* The empirical distribution of sorted durations x[0..n-1] at `age`: the
 * share below it, linear between neighbours. */
static double body_cdf(const double *x, int n, double age) {
  int lo = 0, hi = n - 1;
  if (age <= x[0]) return 0;
  if (age >= x[n - 1]) return 1;
  while (hi - lo > 1) { /* x[lo] < age <= x[hi] */
    int mid = (lo + hi) / 2;
    if (x[mid] < age) lo = mid;
    else hi = mid;
  }
  return (lo + (age - x[lo]) / (x[hi] - x[lo])) / (n - 1);
}

/* The mixture's distribution function at `age`, shortest and longest
 * durations `lo` and `hi`, `body` the body's share below `age`. The tail is
 * memoryless, its mean the spread of the durations (at least a quarter of
 * the longest): a job long past everything seen is likelier stuck than about
 * to end, and is polled steadily, not before every other. */
static double mixture(double lo, double hi, double body, double age) {
  double early = age >= lo ? 1 : age / lo;
  double mean = hi - lo > 0.25 * hi ? hi - lo : 0.25 * hi;
  double tail = age <= hi ? 0 : 1 - exp(-(age - hi) / mean);
  return MK_EARLY * early + (1 - MK_EARLY - MK_TAIL) * body + MK_TAIL * tail;
}

double mk_durations_survival(mk_durations *d, mk_model *m, double age) {
  mk_model *src = source(d, m);
  double lo, hi, body;
  if (!(age > 0)) return 1;
  if (src) {
    const double *x = sorted(src);
    lo = x[0];
    hi = x[src->n - 1];
    body = body_cdf(x, src->n, age);
  } else {
    lo = PRIOR_LO * d->scale;
    hi = PRIOR_HI * d->scale;
    body = age <= lo ? 0 : age >= hi ? 1 : log(age / lo) / log(hi / lo);
  }
  return 1 - mixture(lo, hi, body, age);
}

double mk_durations_quantile(mk_durations *d, mk_model *m, double q) {
  mk_model *src = source(d, m);
  int rank;
  if (!src) return -1;
  if (!(q > 0)) q = 0; /* NaN too */
  if (q > 1) q = 1;
  rank = (int)floor(src->n * q + 0.5); /* nearest rank, 1-based */
  if (rank < 1) rank = 1;
  if (rank > src->n) rank = src->n;
  return sorted(src)[rank - 1];
}

double mk_durations_prior_quantile(const mk_durations *d, double q) {
  double lo = PRIOR_LO * d->scale, hi = PRIOR_HI * d->scale;
  return lo * pow(hi / lo, q > 0 ? (q < 1 ? q : 1) : 0);
}

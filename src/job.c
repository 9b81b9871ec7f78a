#include "job.h"

#include <stdio.h>
#include <string.h>

#define BACKOFF_BASE 0.5      /* seconds, first retry's upper bound */
#define CALL_BACKOFF_CAP 10.0 /* one-off calls: the caller is waiting */
#define POLL_BACKOFF_CAP 30.0 /* polls: a job may wait out an outage until its deadline */

/* How an error may be retried. */
typedef enum {
  RETRY_NO = 0,
  RETRY_LIMITED,   /* a garbled answer: reads try again, up to `retries` times */
  RETRY_TRANSIENT  /* network, 5xx, 429, 455: reads try again */
} retry_class;

typedef struct problem {
  retry_class retry;
  int safe;        /* nothing can have been created: even createTask may retry */
} problem;

static const char *endpoint(const mk_op *op) {
  const char *slash, *q;
  static const char *names[] = {"createTask", "recordInfo", "download"};
  if (op->type == MK_OP_JOB) return op->state == MK_SUBMITTING ? names[0] : names[1];
  if (op->type == MK_OP_DOWNLOAD) return names[2];
  q = strchr(op->url, '?');
  for (slash = q ? q : op->url + strlen(op->url); slash > op->url && slash[-1] != '/'; slash--) {}
  return slash;
}

/* Length of the endpoint name (it may be followed by a query string). */
static int endpoint_len(const char *name) {
  return (int)strcspn(name, "?");
}

static void fail(mk_verdict *v, const char *kind, long status, long code) {
  v->next = MK_NEXT_DONE;
  v->state = MK_ERROR;
  v->kind = kind;
  v->status = status;
  v->code = code;
}

/* Look at the transport and the envelope. Returns 1 with v's error fields
 * set when something is wrong, 0 when the exchange succeeded. */
static int find_problem(const mk_op *op, const mk_reply *r, mk_verdict *v, problem *p) {
  const mk_result *res = r->res;
  const char *name = endpoint(op);
  int nlen = endpoint_len(name);
  p->retry = RETRY_NO;
  p->safe = 0;
  if (res->curl != CURLE_OK) {
    if (res->too_large) {
      fail(v, "protocol", res->http, 0);
      snprintf(v->message, sizeof v->message, "%.*s: the response went over the size cap; transfer aborted", nlen, name);
    } else if (res->write_failed) {
      fail(v, "config", res->http, 0);
      snprintf(v->message, sizeof v->message, "%.*s: could not write the file: %s", nlen, name, res->error);
    } else {
      fail(v, "network", res->http, 0);
      snprintf(v->message, sizeof v->message, "%.*s: %s", nlen, name, res->error);
      p->retry = RETRY_TRANSIENT;
      p->safe = !res->sent;
    }
    return 1;
  }
  if (res->http < 200 || res->http > 299) {
    const char *kind = mk_kind_for_code(res->http);
    if (op->type == MK_OP_DOWNLOAD && (res->http == 401 || res->http == 403)) kind = "not_found";
    fail(v, kind, res->http, r->has_code ? r->code : 0);
    snprintf(v->message, sizeof v->message, "%.*s: HTTP %ld%s%s", nlen, name, res->http,
             r->message ? ": " : "", r->message ? r->message : "");
    if (op->type == MK_OP_DOWNLOAD && res->http >= 400 && res->http < 500)
      snprintf(v->message, sizeof v->message, "download: HTTP %ld; the link may have expired (ask client:download_url for a fresh one)", res->http);
    if (mk_code_is_transient(res->http)) p->retry = RETRY_TRANSIENT;
    p->safe = res->http == 429 || res->http == 455;
    return 1;
  }
  if (op->type == MK_OP_DOWNLOAD) return 0;
  if (!r->json || !r->has_code) {
    fail(v, "protocol", res->http, 0);
    snprintf(v->message, sizeof v->message, "%.*s: the response is not the API's JSON envelope (HTTP %ld, %lu bytes)",
             nlen, name, res->http, (unsigned long)res->body_len);
    p->retry = RETRY_LIMITED;
    return 1;
  }
  if (r->code != 200) {
    fail(v, mk_kind_for_code(r->code), res->http, r->code);
    snprintf(v->message, sizeof v->message, "%.*s: code %ld%s%s", nlen, name, r->code,
             r->message ? ": " : "", r->message ? r->message : "");
    if (mk_code_is_transient(r->code)) p->retry = RETRY_TRANSIENT;
    p->safe = r->code == 429 || r->code == 455;
    return 1;
  }
  return 0;
}

static void retry(mk_engine *e, const mk_op *op, mk_verdict *v, double cap) {
  v->next = MK_NEXT_RETRY;
  v->retryable = 1;
  v->delay = mk_backoff(e, op->attempts, op->result.retry_after, cap);
}

/* After retries ran out, a transient error still says it is retryable. */
static void give_up(mk_verdict *v, const problem *p, int retries) {
  size_t n = strlen(v->message);
  /* a job that failed (501) was not charged: it may be submitted again */
  v->retryable = p->retry == RETRY_TRANSIENT || p->safe || !strcmp(v->kind, "failed");
  if (retries > 0 && v->retryable)
    snprintf(v->message + n, sizeof v->message - n, " (gave up after %d retries)", retries);
}

/* Answers that say for certain nothing was created. */
static int definite_refusal(const mk_verdict *v) {
  long c = v->code ? v->code : v->status;
  return !strcmp(v->kind, "auth") || !strcmp(v->kind, "credits") || !strcmp(v->kind, "validation") ||
         !strcmp(v->kind, "not_found") || c == 429 || c == 455 || c == 505;
}

/* The job's deadline passed while this exchange was out: it is not sent again
 * (a createTask retried then would create a task nobody polls, and bill it). */
static void expire(const mk_op *op, mk_verdict *v, const char *what) {
  char why[sizeof v->message];
  memcpy(why, v->message, sizeof why);
  fail(v, "deadline", v->status, v->code);
  snprintf(v->message, sizeof v->message, "the job did not end within its deadline (%g s); %s%.200s",
           op->deadline.due - op->created, what, why);
}

void mk_judge_create(mk_engine *e, const mk_op *op, const mk_reply *r, mk_verdict *v) {
  problem p;
  memset(v, 0, sizeof *v);
  if (find_problem(op, r, v, &p)) {
    if (p.safe && op->expired) {
      expire(op, v, "createTask was not retried, and no task was created: ");
      v->retryable = 1;
      return;
    }
    if (p.safe && op->attempts < e->retries) {
      retry(e, op, v, CALL_BACKOFF_CAP);
      return;
    }
    if (p.safe || definite_refusal(v)) {
      give_up(v, &p, p.safe ? e->retries : 0);
      return;
    }
    {
      char why[sizeof v->message];
      memcpy(why, v->message, sizeof why);
      snprintf(v->message, sizeof v->message,
               "%.240s; the request was sent, so a task may have been created: not retried", why);
    }
    v->kind = "ambiguous";
    return;
  }
  if (r->task_id && r->task_id[0] && strlen(r->task_id) <= MK_MAX_TASK_ID) {
    v->next = MK_NEXT_ACCEPTED;
    return;
  }
  if (r->task_id && r->task_id[0]) {
    fail(v, "protocol", r->res->http, r->code);
    snprintf(v->message, sizeof v->message, "createTask: the taskId is over %d bytes; a task may have been created",
             MK_MAX_TASK_ID);
    return;
  }
  fail(v, "ambiguous", r->res->http, r->code);
  snprintf(v->message, sizeof v->message, "createTask: success without data.taskId; a task may have been created");
}

static void judge_poll(mk_engine *e, const mk_op *op, const mk_reply *r, mk_verdict *v);

/* A record that says the task failed is the job's outcome, whatever envelope
 * carries it: Kie wraps failed records in {"code": 501, "msg": "Playground
 * task failed."}, and the record's own failCode and failMsg say why. */
static int failed_record(const mk_reply *r) {
  return r->res->curl == CURLE_OK && r->json && r->state && mk_classify_state(r->state) == MK_FAILED;
}

/* {"code": 422, "msg": "recordInfo is null"}: the gateway does not show the
 * record yet. Right after createTask that is normal (the record appears a
 * little later); modkie always sends a well-formed task id, so there is no
 * other validation a poll can fail. */
static int record_missing(const mk_reply *r) {
  return r->res->curl == CURLE_OK && !r->has_data &&
         ((r->has_code && r->code == 422) || r->res->http == 422);
}

void mk_judge_poll(mk_engine *e, const mk_op *op, const mk_reply *r, mk_verdict *v) {
  judge_poll(e, op, r, v);
  /* an answer that ends the job wins over the deadline; one that would poll again does not */
  if (op->expired && v->next != MK_NEXT_DONE) {
    if (v->next == MK_NEXT_POLL) v->message[0] = '\0';
    expire(op, v, v->next == MK_NEXT_RETRY ? "last answer: " : "");
    v->state = MK_ERROR;
    v->retryable = 0;
  }
}

static void judge_poll(mk_engine *e, const mk_op *op, const mk_reply *r, mk_verdict *v) {
  problem p;
  memset(v, 0, sizeof *v);
  if (failed_record(r)) {
    v->next = MK_NEXT_DONE;
    v->state = MK_FAILED;
    v->kind = "failed";
    return;
  }
  if (record_missing(r)) {
    double waited = mk_now() - op->accepted;
    if (waited < e->record_grace) { /* poll again on the job's schedule */
      v->next = MK_NEXT_POLL;
      v->state = op->state;
      return;
    }
    fail(v, "not_found", r->res->http, 422);
    snprintf(v->message, sizeof v->message,
             "recordInfo: task %.160s not found: the gateway still answered '%.40s' %d s after it was accepted",
             op->task_id, r->message ? r->message : "code 422", waited < 1e6 ? (int)waited : 1000000);
    return;
  }
  if (!find_problem(op, r, v, &p)) {
    mk_job_state s;
    if (!r->has_data || !r->state) {
      fail(v, "protocol", r->res->http, r->code);
      snprintf(v->message, sizeof v->message, "recordInfo: the record has no state");
      p.retry = RETRY_LIMITED;
    } else {
      s = mk_classify_state(r->state);
      v->next = (s == MK_SUCCESS || s == MK_FAILED) ? MK_NEXT_DONE : MK_NEXT_POLL;
      v->state = s;
      if (s == MK_FAILED) v->kind = "failed";
      return;
    }
  }
  /* A job outlives a gateway outage: transient errors are retried until the
   * job's deadline (unless retries = 0); garbled answers `retries` times in a
   * row, counted apart so that an outage does not use up their allowance. */
  if ((p.retry == RETRY_TRANSIENT && e->retries > 0) ||
      (p.retry == RETRY_LIMITED && op->garbled < e->retries)) {
    retry(e, op, v, POLL_BACKOFF_CAP);
    v->garbled = p.retry == RETRY_LIMITED;
    return;
  }
  give_up(v, &p, p.retry == RETRY_LIMITED ? e->retries : 0);
}

void mk_judge_call(mk_engine *e, const mk_op *op, const mk_reply *r, mk_verdict *v) {
  problem p;
  memset(v, 0, sizeof *v);
  if (!find_problem(op, r, v, &p)) {
    v->next = MK_NEXT_DONE;
    v->state = MK_SUCCESS;
    return;
  }
  if (p.retry != RETRY_NO && op->attempts < e->retries &&
      (op->result.retry_after < 0 || op->result.retry_after <= 60)) {
    retry(e, op, v, CALL_BACKOFF_CAP);
    return;
  }
  give_up(v, &p, p.retry != RETRY_NO ? e->retries : 0);
}

mk_job_state mk_classify_state(const char *s) {
  static const char *queued[] = {"waiting", "queuing", "queued", "pending", "created", "submitted", NULL};
  static const char *failed[] = {"fail", "failed", "failure", "error", "cancelled", "canceled", NULL};
  int i;
  if (!strcmp(s, "success") || !strcmp(s, "succeeded") || !strcmp(s, "completed")) return MK_SUCCESS;
  for (i = 0; failed[i]; i++)
    if (!strcmp(s, failed[i])) return MK_FAILED;
  for (i = 0; queued[i]; i++)
    if (!strcmp(s, queued[i])) return MK_QUEUED;
  return MK_RUNNING;
}

const char *mk_state_name(mk_job_state s) {
  static const char *names[] = {"submitting", "queued", "running", "success", "failed", "error", "cancelled"};
  return (s >= MK_SUBMITTING && s <= MK_CANCELLED) ? names[s] : "error";
}

double mk_default_interval(double elapsed, double u) {
  if (elapsed < 30) return 2 + u;
  if (elapsed < 120) return 5 + 5 * u;
  return 15 + 15 * u;
}

double mk_backoff(mk_engine *e, int attempt, double retry_after, double cap) {
  double ceiling = BACKOFF_BASE;
  if (retry_after >= 0) return retry_after < cap ? retry_after + 0.1 * mk_random(e) : cap;
  while (attempt-- > 0 && ceiling < cap) ceiling *= 2;
  if (ceiling > cap) ceiling = cap;
  return ceiling * mk_random(e);
}

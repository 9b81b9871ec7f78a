/* judge.c: what an answer means (see judge.h). */
#include "judge.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "schedule.h"

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

static void fail(mk_verdict *v, mk_kind kind, long status, long code) {
  v->next = MK_NEXT_DONE;
  v->state = MK_ERROR;
  v->error.kind = kind;
  v->error.status = status;
  v->error.code = code;
}

static void say(mk_verdict *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(mk_verdict *v, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v->error.message, sizeof v->error.message, fmt, ap);
  va_end(ap);
}

/* "… (GET https://host/api/v1/…)": the request an HTTP 404 names, since a
 * wrong base_url (a path too many) makes every call one. */
static void add_request(const mk_op *op, mk_verdict *v) {
  size_t n = strlen(v->error.message);
  if (op->type != MK_OP_DOWNLOAD && op->url)
    snprintf(v->error.message + n, sizeof v->error.message - n, " (%s %.200s)", op->post ? "POST" : "GET", op->url);
}

/* Look at the transport and the envelope. Returns 1 with v's error fields
 * set when something is wrong, 0 when the exchange succeeded. */
static int find_problem(const mk_op *op, const mk_reply *r, mk_verdict *v, problem *p) {
  const mk_result *res = &op->result;
  const char *name = mk_endpoint_name(op->endpoint);
  p->retry = RETRY_NO;
  p->safe = 0;
  v->error.retry_after = res->retry_after;
  if (res->curl != CURLE_OK) {
    if (res->too_large) {
      fail(v, MK_KIND_PROTOCOL, res->http, 0);
      say(v, "%s: the response went over the size cap; transfer aborted", name);
    } else if (res->write_failed) {
      fail(v, MK_KIND_CONFIG, res->http, 0);
      if (op->type == MK_OP_DOWNLOAD && op->path) /* which file: a job may download several */
        say(v, "%s: could not write the file %.200s: %s", name, op->path, res->error);
      else
        say(v, "%s: could not write the file: %s", name, res->error);
    } else if (res->curl == CURLE_UNSUPPORTED_PROTOCOL || res->curl == CURLE_URL_MALFORMAT) {
      /* file://, ftp://, a relative path, a URL with a blank: asking again cannot help */
      fail(v, MK_KIND_PROTOCOL, res->http, 0);
      say(v, "%s: %s (only http and https URLs are fetched)", name, res->error);
    } else {
      fail(v, MK_KIND_NETWORK, res->http, 0);
      say(v, "%s: %s", name, res->error);
      p->retry = RETRY_TRANSIENT;
      p->safe = !res->sent;
    }
    return 1;
  }
  if (res->http < 200 || res->http > 299) {
    mk_kind kind = mk_kind_for_code(res->http);
    if (op->type == MK_OP_DOWNLOAD && (res->http == 401 || res->http == 403)) kind = MK_KIND_NOT_FOUND;
    fail(v, kind, res->http, r->has_code ? r->code : 0);
    say(v, "%s: HTTP %ld%s%.300s", name, res->http, r->message ? ": " : "", r->message ? r->message : "");
    if (op->type == MK_OP_DOWNLOAD && res->http >= 400 && res->http < 500)
      say(v, "download: HTTP %ld; the link may have expired (ask client:download_url for a fresh one)", res->http);
    else if (res->http == 404)
      add_request(op, v);
    if (mk_code_is_transient(res->http)) p->retry = RETRY_TRANSIENT;
    p->safe = res->http == 429 || res->http == 455;
    return 1;
  }
  if (op->type == MK_OP_DOWNLOAD) return 0;
  if (!r->json || !r->has_code) {
    fail(v, MK_KIND_PROTOCOL, res->http, 0);
    say(v, "%s: the response is not the API's JSON envelope (HTTP %ld, %lu bytes)", name, res->http,
        (unsigned long)res->body_len);
    p->retry = RETRY_LIMITED;
    return 1;
  }
  if (r->code != 200) {
    fail(v, mk_kind_for_code(r->code), res->http, r->code);
    say(v, "%s: code %ld%s%.300s", name, r->code, r->message ? ": " : "", r->message ? r->message : "");
    if (mk_code_is_transient(r->code)) p->retry = RETRY_TRANSIENT;
    p->safe = r->code == 429 || r->code == 455;
    return 1;
  }
  return 0;
}

static void retry(mk_engine *e, const mk_op *op, mk_verdict *v, double cap) {
  v->next = MK_NEXT_RETRY;
  v->error.retryable = 1;
  v->delay = mk_backoff(mk_random(e), op->attempts, op->result.retry_after, cap);
}

/* After retries ran out, a transient error still says it is retryable. */
static void give_up(mk_verdict *v, const problem *p, int retries) {
  size_t n = strlen(v->error.message);
  /* a job that failed (501) was not charged: it may be submitted again */
  v->error.retryable = p->retry == RETRY_TRANSIENT || p->safe || v->error.kind == MK_KIND_FAILED;
  if (retries > 0 && v->error.retryable)
    snprintf(v->error.message + n, sizeof v->error.message - n, " (gave up after %d retries)", retries);
}

/* Answers that say for certain nothing was created. */
static int definite_refusal(const mk_verdict *v) {
  long c = v->error.code ? v->error.code : v->error.status;
  mk_kind k = v->error.kind;
  return k == MK_KIND_AUTH || k == MK_KIND_CREDITS || k == MK_KIND_VALIDATION || k == MK_KIND_NOT_FOUND ||
         c == 429 || c == 455 || c == 505;
}

/* The job's deadline passed while this createTask was out: it is not sent
 * again (a createTask retried then would create a task nobody polls, and bill it). */
static void expire(const mk_op *op, mk_verdict *v, const char *what) {
  char why[sizeof v->error.message];
  memcpy(why, v->error.message, sizeof why);
  fail(v, MK_KIND_DEADLINE, v->error.status, v->error.code);
  say(v, "the job did not end within its deadline (%g s); %s%.200s", op->deadline.due - op->created, what, why);
}

void mk_judge_create(mk_engine *e, const mk_op *op, const mk_reply *r, mk_verdict *v) {
  problem p;
  int named = r->task_id && r->task_id[0]; /* the answer names a task: one was created */
  memset(v, 0, sizeof *v);
  if (find_problem(op, r, v, &p)) {
    /* a refusal (429, 455, 4xx) that names a task is no refusal: sent again,
     * it would create (and bill) another task */
    if (named) p.safe = 0;
    if (p.safe && op->expired) {
      expire(op, v, "createTask was not retried, and no task was created: ");
      v->error.retryable = 1;
      return;
    }
    if (p.safe && op->attempts < e->retries) {
      retry(e, op, v, CALL_BACKOFF_CAP);
      return;
    }
    if (p.safe || (!named && definite_refusal(v))) {
      give_up(v, &p, p.safe ? e->retries : 0);
      return;
    }
    {
      char why[sizeof v->error.message];
      memcpy(why, v->error.message, sizeof why);
      if (named)
        say(v, "%.150s; yet the answer names task %.200s, so a task may have been created: not retried", why,
            r->task_id);
      else
        say(v, "%.300s; the request was sent, so a task may have been created: not retried", why);
    }
    v->error.kind = MK_KIND_AMBIGUOUS;
    return;
  }
  if (named && strlen(r->task_id) <= MK_MAX_TASK_ID) {
    v->next = MK_NEXT_ACCEPTED;
    return;
  }
  if (named) { /* a task was created, but its id cannot be polled: not created again */
    fail(v, MK_KIND_AMBIGUOUS, op->result.http, r->code);
    say(v, "createTask: the taskId is over %d bytes, too long to poll; a task may have been created: not retried",
        MK_MAX_TASK_ID);
    return;
  }
  fail(v, MK_KIND_AMBIGUOUS, op->result.http, r->code);
  say(v, "createTask: success without data.taskId; a task may have been created");
}

/* The record's state: the one the job classified the same word as before
 * (most polls), else the word's class. */
static mk_job_state record_state(const mk_op *op, const char *word) {
  return op->server_state[0] && !strcmp(op->server_state, word) ? op->state : mk_classify_state(word);
}

/* A record that says the task failed is the job's outcome, whatever envelope
 * carries it: Kie wraps failed records in {"code": 501, "msg": "Playground
 * task failed."}, and the record's own failCode and failMsg say why. */
static int failed_record(const mk_op *op, const mk_reply *r) {
  return op->result.curl == CURLE_OK && r->json && r->state && record_state(op, r->state) == MK_FAILED;
}

/* {"code": 422, "msg": "recordInfo is null"}: the gateway does not show the
 * record yet. Right after createTask that is normal (the record appears a
 * little later); modkie always sends a well-formed task id, so there is no
 * other validation a poll can fail. */
static int record_missing(const mk_op *op, const mk_reply *r) {
  return op->result.curl == CURLE_OK && !r->has_data && ((r->has_code && r->code == 422) || op->result.http == 422);
}

void mk_judge_poll(mk_engine *e, const mk_op *op, const mk_reply *r, mk_verdict *v) {
  problem p;
  memset(v, 0, sizeof *v);
  if (failed_record(op, r)) {
    v->next = MK_NEXT_DONE;
    v->state = MK_FAILED;
    v->error.kind = MK_KIND_FAILED;
    return;
  }
  if (record_missing(op, r)) {
    /* from the acceptance, or from the last poll that showed the record: a
     * record seen once and then missing (a replica behind) is polled on, not
     * ended, until it has been missing record_grace seconds */
    double waited = mk_now() - (op->seen > op->accepted ? op->seen : op->accepted);
    if (waited < e->record_grace) { /* poll again on the job's schedule */
      v->next = MK_NEXT_POLL;
      v->state = op->state;
      return;
    }
    fail(v, MK_KIND_NOT_FOUND, op->result.http, 422);
    say(v, "recordInfo: task %.160s not found: the gateway still answered '%.40s' %.3g s after %s",
        op->task_id, r->message ? r->message : "code 422", waited < 1e6 ? waited : 1e6,
        op->seen > 0 ? "its record was last seen" : "it was accepted");
    return;
  }
  if (!find_problem(op, r, v, &p)) {
    mk_job_state s;
    if (!r->has_data || !r->state) {
      fail(v, MK_KIND_PROTOCOL, op->result.http, r->code);
      say(v, "recordInfo: the record has no state");
      p.retry = RETRY_LIMITED;
    } else {
      s = record_state(op, r->state);
      v->next = (s == MK_SUCCESS || s == MK_FAILED) ? MK_NEXT_DONE : MK_NEXT_POLL;
      v->state = s;
      if (s == MK_FAILED) v->error.kind = MK_KIND_FAILED;
      return;
    }
  }
  /* A job outlives a gateway outage: transient errors are retried until the
   * job's deadline (unless retries = 0); garbled answers `retries` times in a
   * row, counted apart so that an outage does not use up their allowance. */
  if ((p.retry == RETRY_TRANSIENT && e->retries > 0) || (p.retry == RETRY_LIMITED && op->garbled < e->retries)) {
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

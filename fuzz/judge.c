/* judge.c: libFuzzer harness for the decisions in src/lib/judge.c:
 * mk_judge_create, mk_judge_poll and mk_judge_call over every combination of
 * transport result, HTTP status, envelope facts and retry counters (the facts
 * lib/reply.c takes out of a body, here chosen freely), plus the state
 * classifier on any string. Besides memory safety it checks the contract of
 * docs/design.md §1 and §3:
 *  - createTask is retried only when nothing can have been created
 *    (connect failure before sending, 429, 455) and is accepted only on HTTP
 *    2xx + code 200 + a taskId;
 *  - a call or poll succeeds only on HTTP 2xx and code 200;
 *  - 401 and 402 are never retried; retries stay within `retries`;
 *  - a retry delay is finite and within the cap; an error has a documented
 *    kind and a message. */
#include <math.h>

#include "../src/lib/judge.h"
#include "fuzz.h"

static int documented(mk_kind kind) {
  return kind > MK_KIND_NONE && kind <= MK_KIND_AMBIGUOUS;
}

/* Statuses and codes the contract names, and their neighbours. */
static long pick_code(uint8_t sel, uint32_t raw) {
  static const long known[] = {0, 100, 199, 200, 201, 204, 299, 300, 301, 400, 401, 402, 403, 404, 408, 410, 413,
                               422, 429, 433, 455, 499, 500, 501, 502, 503, 504, 505, 599, 600, -1, 1000};
  if (sel < 200) return known[sel % (sizeof known / sizeof known[0])];
  if (sel < 250) return (long)(raw % 1000);
  return (long)(int32_t)raw;
}

static double pick_retry_after(uint8_t sel) {
  static const double v[] = {-1, 0, 0.5, 1, 9.9, 10, 29, 30, 31, 60, 61, 3600, 1e9, INFINITY};
  return v[sel % (sizeof v / sizeof v[0])];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static mk_engine e; /* the judges use only `retries`, `record_grace` and the random source */
  fz f = {data, size};
  mk_op op;
  mk_result res;
  mk_reply r;
  mk_verdict v;
  uint8_t which = fz_u8(&f) % 4, curl = fz_u8(&f), flags = fz_u8(&f), more = fz_u8(&f);
  char *message, *task_id, *state, *url;
  int ok, ok2xx, enveloped, fine, safe, is401;
  double cap;

  memset(&op, 0, sizeof op);
  memset(&res, 0, sizeof res);
  memset(&r, 0, sizeof r);
  e.rng = 0x9E3779B97F4A7C15ULL ^ fz_u32(&f);
  if (!e.rng) e.rng = 1;
  e.retries = fz_u8(&f) % 8;
  e.record_grace = (double)(fz_u8(&f) % 3) * 60; /* 0: a missing record is not_found at once */

  res.curl = curl < 160 ? CURLE_OK : (CURLcode)(curl % 100);
  res.sent = flags & 1;
  res.too_large = (flags >> 1) & 1 && res.curl != CURLE_OK;
  res.write_failed = (flags >> 2) & 1 && res.curl != CURLE_OK;
  res.http = pick_code(fz_u8(&f), fz_u32(&f));
  res.retry_after = pick_retry_after(fz_u8(&f));
  res.body = "";
  res.body_len = fz_u8(&f);
  res.error = "connection refused";
  mk_reply_none(&r);
  r.json = (flags >> 3) & 1;
  r.has_code = r.json && ((flags >> 4) & 1);
  r.code = r.has_code ? pick_code(fz_u8(&f), fz_u32(&f)) : 0;
  r.has_data = r.json && ((flags >> 5) & 1);
  message = fz_str(&f, 400);
  task_id = fz_str(&f, 64);
  state = fz_str(&f, 40);
  url = fz_str(&f, 120);
  r.message = (more & 1) ? message : NULL;
  r.task_id = r.has_data && (more & 2) ? task_id : NULL;
  r.state = r.has_data && (more & 4) ? state : NULL;

  op.attempts = fz_u8(&f) % 10;
  op.garbled = fz_u8(&f) % 10;
  op.result = res;
  op.url = url;
  op.accepted = mk_now();
  if (which == 0) {
    op.type = MK_OP_JOB;
    op.endpoint = MK_EP_CREATE;
    op.post = 1;
    op.state = MK_SUBMITTING;
    mk_judge_create(&e, &op, &r, &v);
  } else if (which == 1) {
    op.type = MK_OP_JOB;
    op.endpoint = MK_EP_RECORD;
    op.task_id = task_id;
    op.state = (more & 8) ? MK_RUNNING : MK_QUEUED;
    mk_judge_poll(&e, &op, &r, &v);
  } else {
    op.type = which == 2 ? MK_OP_CALL : MK_OP_DOWNLOAD;
    op.endpoint = which == 3 ? MK_EP_DOWNLOAD : (mk_endpoint)(MK_EP_RECORD + (more >> 4) % 3);
    op.post = op.endpoint == MK_EP_DOWNLOAD_URL;
    mk_judge_call(&e, &op, &r, &v);
  }

  ok = res.curl == CURLE_OK;
  ok2xx = ok && res.http >= 200 && res.http <= 299;
  enveloped = r.json && r.has_code;
  fine = ok2xx && (op.type == MK_OP_DOWNLOAD || (enveloped && r.code == 200));
  /* nothing can have been created: not sent, or refused before the queue */
  safe = (!ok && !res.sent && !res.too_large && !res.write_failed) || (ok && (res.http == 429 || res.http == 455)) ||
         (ok2xx && enveloped && (r.code == 429 || r.code == 455));
  if (r.task_id && r.task_id[0]) safe = 0; /* an answer naming a task created one, whatever its status */
  is401 = (ok && (res.http == 401 || res.http == 402)) || (ok2xx && enveloped && (r.code == 401 || r.code == 402));

  FZ_CHECK(v.next >= MK_NEXT_DONE && v.next <= MK_NEXT_ACCEPTED, "next %d", (int)v.next);
  FZ_CHECK(memchr(v.error.message, '\0', sizeof v.error.message) != NULL, "message not terminated");
  if (v.next == MK_NEXT_RETRY) {
    cap = which == 1 ? 30.0 : 10.0;
    FZ_CHECK(isfinite(v.delay) && v.delay >= 0 && v.delay <= cap + 0.1, "delay %g (cap %g)", v.delay, cap);
    FZ_CHECK(!is401, "401/402 retried (http %ld, code %ld)", res.http, r.code);
    FZ_CHECK(e.retries > 0, "retried with retries = 0");
    if (which != 1) FZ_CHECK(op.attempts < e.retries, "attempt %d of %d retried", op.attempts, e.retries);
    if (which == 1 && v.garbled) FZ_CHECK(op.garbled < e.retries, "garbled %d of %d retried", op.garbled, e.retries);
  }
  if (v.next == MK_NEXT_DONE && v.state == MK_ERROR) {
    FZ_CHECK(documented(v.error.kind), "undocumented kind %d", (int)v.error.kind);
    FZ_CHECK(v.error.message[0] != '\0', "an error without a message (kind %s)", mk_kind_name(v.error.kind));
    FZ_CHECK(v.error.status == 0 || v.error.status == res.http, "status %ld, http %ld", v.error.status, res.http);
  }
  switch (which) {
    case 0:
      if (v.next == MK_NEXT_RETRY) FZ_CHECK(safe, "createTask retried when a task may exist (curl %d sent %d http %ld code %ld)",
                                            (int)res.curl, res.sent, res.http, r.code);
      FZ_CHECK((v.next == MK_NEXT_ACCEPTED) == (fine && r.task_id && r.task_id[0]),
               "accepted %d: http %ld code %ld task '%s'", v.next == MK_NEXT_ACCEPTED, res.http, r.code,
               r.task_id ? r.task_id : "(none)");
      if (v.next == MK_NEXT_DONE) FZ_CHECK(v.state == MK_ERROR, "createTask done in state %d", (int)v.state);
      if (v.next == MK_NEXT_DONE && v.error.kind == MK_KIND_AMBIGUOUS)
        FZ_CHECK(!v.error.retryable, "ambiguous but retryable");
      break;
    case 1:
      FZ_CHECK(v.next != MK_NEXT_ACCEPTED, "a poll accepted");
      if (v.next == MK_NEXT_POLL || (v.next == MK_NEXT_DONE && v.state != MK_ERROR)) {
        mk_job_state s = mk_classify_state(r.state ? r.state : "");
        /* the documented exceptions (issue 10): "recordInfo is null" (422, no
         * data) is polled through the grace window; a fail record is the job's
         * outcome in any envelope (Kie's code 501) */
        int missing = res.curl == CURLE_OK && !r.has_data && ((r.has_code && r.code == 422) || res.http == 422);
        int failed_record = res.curl == CURLE_OK && r.json && r.state && s == MK_FAILED;
        if ((missing && v.next == MK_NEXT_POLL) || (failed_record && v.state == MK_FAILED)) break;
        FZ_CHECK(fine && r.state, "a poll went on without HTTP 2xx, code 200 and a state");
        FZ_CHECK(v.state == s, "state %d, classified %d", (int)v.state, (int)s);
        FZ_CHECK((v.next == MK_NEXT_DONE) == (s == MK_SUCCESS || s == MK_FAILED), "done %d for state %d",
                 v.next == MK_NEXT_DONE, (int)s);
      }
      break;
    default:
      FZ_CHECK(v.next == MK_NEXT_DONE || v.next == MK_NEXT_RETRY, "a call got next %d", (int)v.next);
      FZ_CHECK((v.next == MK_NEXT_DONE && v.state == MK_SUCCESS) == fine, "success %d but fine %d",
               v.next == MK_NEXT_DONE && v.state == MK_SUCCESS, fine);
  }

  /* the classifier: total over strings, never an error or a job-side state */
  {
    mk_job_state s = mk_classify_state(state);
    FZ_CHECK(s == MK_QUEUED || s == MK_RUNNING || s == MK_SUCCESS || s == MK_FAILED, "'%s' -> %d", state, (int)s);
    FZ_CHECK(mk_state_name(s) != NULL && mk_state_name((mk_job_state)(int8_t)more) != NULL, "no name");
  }
  free(message);
  free(task_id);
  free(state);
  free(url);
  return 0;
}

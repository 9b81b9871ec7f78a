/* record.h: the one reader of the gateway's answers about a task, behind
 * both a job's end (a recordInfo answer) and `modkie.webhook.parse` (a
 * callback body), so the same body reads the same way on both paths.
 *
 * What it accepts, as the gateway's documentation shows them (see
 * docs/webhooks.md and spec/conformance/):
 *  - the envelope {code, msg | message, data = record}, or a bare record
 *    (ModKie's task.completed webhook);
 *  - Kie's states waiting/queuing/generating/success/fail and ModKie's
 *    pending/processing (judge.h's mk_classify_state); resultJson a JSON
 *    string or an object (ModKie's webhook calls it result); resultUrls a
 *    list, one URL, or a list written as a string; resultWaterMarkUrls are
 *    not outputs;
 *  - failCode a string ("500", "GENERATION_FAILED"), an integer, "" or null;
 *    a fail record inside a code 501 envelope keeps its own failCode/failMsg;
 *  - credits as creditsConsumed, consumeCredits or creditsCharged, fractional;
 *  - times in Unix milliseconds (or seconds); costTime in seconds or in
 *    milliseconds, decided from the record itself (mk_record_cost_seconds);
 *  - progress 0-100 and updateTime where the gateway gives them;
 *  - the per-model callbacks of Kie's older APIs (Veo, Runway, Suno, 4o
 *    Image, Flux Kontext): no state, the envelope's code says how it ended;
 *  - those APIs' own records: Runway's states and videoInfo, successFlag or
 *    status for a state (mk_record_state_word), errorCode and errorMessage
 *    for failCode and failMsg, outputs in `response` (Suno's songs in
 *    response.sunoData), 4o Image's progress a fraction, Flux Kontext's
 *    times in ISO 8601.
 * Absent, null and "" are the same; a number may be a numeric string
 * (json.h's mk_json_number); NaN and the infinities count as absent. */
#ifndef MODKIE_RECORD_H
#define MODKIE_RECORD_H

#include <stddef.h>

#include "json.h"

typedef enum {
  MK_READ_SUCCESS = 1, /* the task succeeded: the result's fields below */
  MK_READ_FAILED,      /* it ran and failed: the failure's fields below */
  MK_READ_UNENDED,     /* it has not ended (server_state says where it is) */
  MK_READ_BROKEN       /* not the contract: `problem` says why */
} mk_read_outcome;

typedef struct mk_reading {
  mk_read_outcome outcome;
  char problem[320];         /* UNENDED, BROKEN: the message */
  int has_code;
  double code;               /* the envelope's code, when it is a number */
  const cJSON *record;       /* the record (raw), or NULL (BROKEN before one was found) */
  const char *task_id;       /* the record's id, else the job's; NULL when there is none */
  const char *model;         /* the record's model, else the job's; may be NULL */
  const char *server_state;  /* the record's state word (or Suno's callbackType); may be NULL */
  /* the result (read for SUCCESS, and for any record when asked for the shape) */
  const cJSON *output;       /* the decoded result: a node of the record or of output_doc */
  cJSON *output_doc;         /* owned: resultJson decoded from a string */
  const char *output_text;   /* resultJson, a string that is not JSON: the output is that text */
  char **urls;               /* owned: every output URL, in order */
  size_t nurls;
  double credits, created_at, completed_at, updated_at, cost_time, progress; /* NAN: absent */
  /* the failure (FAILED) */
  int fail_code_kind;        /* 0 none, 1 a number (fail_code), 2 a string (fail_code_text) */
  double fail_code;
  const char *fail_code_text;
  const char *fail_message;  /* failMsg, or the envelope's msg when its code says the failure */
} mk_reading;

/* Read `doc` (a decoded callback body or recordInfo answer) about the task
 * `job_id` of model `job_model` (either may be NULL: they fill in what the
 * record lacks). With `shape` the result's fields are read whatever the
 * state (the CLI's status shows a running task's times). 0, or -1 out of
 * memory. The reading points into doc, job_id and job_model: they must live
 * until it is freed (mk_reading_free). */
int mk_record_read(const cJSON *doc, const char *job_id, const char *job_model, int shape, mk_reading *r);
void mk_reading_free(mk_reading *r);

/* Unix seconds from a time that may be in milliseconds (above 1e11); NAN when none. */
double mk_record_seconds(const cJSON *v);
/* costTime in seconds. The API reference says milliseconds (its example:
 * 15000 for a 32 s task), every callback example gives seconds (8 for a task
 * whose completeTime - createTime is 10 s). With both times there, the unit is
 * the one whose reading is nearer that span, on a log scale: seconds unless
 * that is more than sqrt(1000) (about 31.6) times the span. Without them, 1000
 * or more is milliseconds (no documented job takes 16 minutes, none takes
 * under a second). NAN when none. */
double mk_record_cost_seconds(const cJSON *cost, double created, double completed);
/* The record's progress, 0 to 100, or NAN. */
double mk_record_progress(const cJSON *rec);
/* Where the record says its task is: its `state`; without one, the per-model
 * records' `status` (4o Image, Suno: SUCCESS, GENERATING, PENDING,
 * GENERATE_FAILED, …) or `successFlag` (4o Image, Flux Kontext, Veo: 0
 * GENERATING, 1 SUCCESS, 2 CREATE_TASK_FAILED, 3 GENERATE_FAILED). NULL when
 * none says (or state is not a string). */
const char *mk_record_state_word(const cJSON *rec);

#endif

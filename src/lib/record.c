/* record.c: the record reader (see record.h). */
#include "record.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "state.h"

/* Where outputs are named, in order; the first place that names any wins.
 * resultWaterMarkUrls (the same outputs, watermarked) and originUrls are not
 * outputs: the clean ones are. videoUrl is Runway's record (its videoInfo;
 * videoInfo.imageUrl is the video's cover, not an output), audioUrl Suno's
 * (streamAudioUrl is the same song streamed). */
static const char *const URL_KEYS[] = {"resultUrls", "result_urls", "urls", "resultImageUrl", "video_url",
                                       "audio_url", "videoUrl", "audioUrl"};

/* A present value (not missing, null or ""), else NULL. */
static const cJSON *present(const cJSON *v) {
  return mk_json_present(v) ? v : NULL;
}

/* A present finite number (or numeric string), else NAN. */
static double number(const cJSON *v) {
  double d;
  return present(v) && mk_json_number(v, &d) ? d : NAN;
}

/* Lua's truth of a value: present in the table and not false (null is true). */
static int truthy(const cJSON *v) {
  return v && !cJSON_IsFalse(v);
}

/* Days from 1970-01-01 to a date of the proleptic Gregorian calendar. */
static long days_from_civil(long y, long m, long d) {
  long era, yoe, doy;
  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = y - era * 400;
  doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

/* ISO 8601 with its zone ("2024-03-20T10:30:00Z", "…+08:00", "…+0800"; Flux Kontext's
 * record), in Unix seconds; NAN for anything else. A time without a zone
 * ("2025-06-06 10:30:00", Veo's record) names no instant: NAN. */
static double iso_seconds(const char *s) {
  int y, mo, d, h, mi, sec, n = 0, oh, om;
  double t, frac = 0;
  if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || !n) return NAN;
  /* (%2d takes a sign: "T-1:-5:00" is no time) */
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 60)
    return NAN;
  s += n;
  if (*s == '.' && isdigit((unsigned char)s[1])) {
    frac = strtod(s, NULL);
    for (s++; isdigit((unsigned char)*s); s++) {}
  }
  t = (double)days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec + frac;
  if ((s[0] == 'Z' || s[0] == 'z') && !s[1]) return t;
  /* an offset: +08:00, or +0800 as ISO 8601's basic format writes it */
  if ((s[0] == '+' || s[0] == '-') && isdigit((unsigned char)s[1]) && isdigit((unsigned char)s[2])) {
    const char *m = s[3] == ':' ? s + 4 : s + 3;
    if (!isdigit((unsigned char)m[0]) || !isdigit((unsigned char)m[1]) || m[2]) return NAN;
    oh = (s[1] - '0') * 10 + (s[2] - '0');
    om = (m[0] - '0') * 10 + (m[1] - '0');
    if (oh > 23 || om > 59) return NAN;
    return s[0] == '+' ? t - (oh * 3600 + om * 60) : t + (oh * 3600 + om * 60);
  }
  return NAN;
}

double mk_record_seconds(const cJSON *v) {
  double d = number(v);
  if (isnan(d)) return cJSON_IsString(v) ? iso_seconds(v->valuestring) : NAN;
  return d > 1e11 ? d / 1000 : d; /* after 1973 in ms, or year 5138 in s */
}

double mk_record_cost_seconds(const cJSON *cost, double created, double completed) {
  double c = number(cost);
  if (isnan(c) || c < 0) return NAN;
  if (!isnan(created) && !isnan(completed) && completed >= created) return c <= sqrt(1000) * (completed - created) ? c : c / 1000;
  return c >= 1000 ? c / 1000 : c;
}

double mk_record_progress(const cJSON *rec) {
  const cJSON *v = mk_json_get(rec, "progress");
  double p;
  if (!mk_json_number(v, &p) || p < 0 || p > 100) return NAN;
  /* 4o Image's record (it has a successFlag) writes a fraction as a string: "1.00" */
  if (cJSON_IsString(v) && present(mk_json_get(rec, "successFlag"))) return p <= 1 ? p * 100 : NAN;
  return p;
}

const char *mk_record_state_word(const cJSON *rec) {
  static const char *const flags[] = {"GENERATING", "SUCCESS", "CREATE_TASK_FAILED", "GENERATE_FAILED"};
  const cJSON *state = mk_json_get(rec, "state"), *status;
  double f;
  if (state) return cJSON_IsString(state) ? state->valuestring : NULL;
  status = present(mk_json_get(rec, "status"));
  if (cJSON_IsString(status)) return status->valuestring;
  if (mk_json_number(present(mk_json_get(rec, "successFlag")), &f) && f >= 0 && f <= 3 && f == floor(f))
    return flags[(int)f];
  return NULL;
}

/* ---- URLs ---- */

static int add_url(mk_reading *r, const char *s, size_t n) {
  char **urls, *u;
  if (n == 0) return 0;
  urls = realloc(r->urls, (r->nurls + 1) * sizeof *urls);
  if (!urls) return -1;
  r->urls = urls;
  if (!(u = mk_copy(s, n))) return -1;
  r->urls[r->nurls++] = u;
  return 0;
}

/* Every non-empty string of a JSON array, in order. */
static int take_array(mk_reading *r, const cJSON *list) {
  const cJSON *u;
  if (!cJSON_IsArray(list)) return 0;
  for (u = list->child; u; u = u->next)
    if (cJSON_IsString(u) && add_url(r, u->valuestring, strlen(u->valuestring)) != 0) return -1;
  return 0;
}

static int blank_or_quote(char c) {
  return isspace((unsigned char)c) || c == '"' || c == '\'';
}

/* A list written as a string: '["a","b"]' (JSON), '[a, b]' (unquoted, as one
 * Veo callback example has it), or one URL. */
static int take_string_list(mk_reading *r, const char *s) {
  const char *p = s, *end;
  cJSON *decoded;
  int rc;
  while (isspace((unsigned char)*p)) p++;
  if (*p != '[') return add_url(r, s, strlen(s));
  decoded = mk_json_parse(s, strlen(s));
  if (cJSON_IsArray(decoded) || cJSON_IsObject(decoded)) {
    rc = take_array(r, decoded);
    cJSON_Delete(decoded);
    return rc;
  }
  cJSON_Delete(decoded);
  /* unquoted: the items between the brackets, split at commas, blanks and quotes trimmed */
  end = s + strlen(s);
  while (end > p && isspace((unsigned char)end[-1])) end--;
  if (end - p < 2 || end[-1] != ']') return 0;
  for (p++, end--; p < end;) {
    const char *comma = memchr(p, ',', (size_t)(end - p)), *a = p, *b = comma ? comma : end;
    while (a < b && blank_or_quote(*a)) a++;
    while (b > a && blank_or_quote(b[-1])) b--;
    if (add_url(r, a, (size_t)(b - a)) != 0) return -1;
    p = comma ? comma + 1 : end;
  }
  return 0;
}

static int take(mk_reading *r, const cJSON *list) {
  if (cJSON_IsString(list)) return take_string_list(r, list->valuestring);
  return take_array(r, list);
}

/* The URLs of one place (an object; anything else names none). */
static int take_from(mk_reading *r, const cJSON *where) {
  size_t k;
  for (k = 0; k < sizeof URL_KEYS / sizeof URL_KEYS[0]; k++)
    if (take(r, mk_json_get(where, URL_KEYS[k])) != 0) return -1;
  return 0;
}

/* Groups of places, in order: the output, the record, Veo's, 4o Image's and
 * Flux Kontext's `info` and `response`, Runway's `videoInfo`, Suno's songs
 * (a callback's `data`, a record's `response.sunoData`: one entry per song).
 * The first group that names any URL is the answer. */
static int read_urls(mk_reading *r, const cJSON *rec) {
  static const char *const nested[] = {"info", "response", "videoInfo"};
  const cJSON *songs, *song;
  size_t k;
  if (take_from(r, r->output) != 0) return -1;
  if (r->nurls) return 0;
  if (take_from(r, rec) != 0) return -1;
  if (r->nurls) return 0;
  for (k = 0; k < sizeof nested / sizeof nested[0]; k++) {
    if (take_from(r, mk_json_get(rec, nested[k])) != 0) return -1;
    if (r->nurls) return 0;
  }
  songs = mk_json_get(rec, "data");
  if (!cJSON_IsArray(songs)) songs = mk_json_get(mk_json_get(rec, "response"), "sunoData");
  if (cJSON_IsArray(songs))
    for (song = songs->child; song; song = song->next)
      if (take_from(r, song) != 0) return -1;
  return 0;
}

/* ---- the result and the failure ---- */

/* The decoded result: resultJson (a JSON string or an object), else ModKie's
 * webhook `result`; a string that is not JSON (or is JSON null) stays text. */
static void read_output(mk_reading *r, const cJSON *rec) {
  const cJSON *raw = present(mk_json_get(rec, "resultJson"));
  if (!raw) raw = present(mk_json_get(rec, "result"));
  if (cJSON_IsString(raw)) {
    r->output_doc = mk_json_parse(raw->valuestring, strlen(raw->valuestring));
    if (r->output_doc && !cJSON_IsNull(r->output_doc)) {
      r->output = r->output_doc;
    } else {
      cJSON_Delete(r->output_doc);
      r->output_doc = NULL;
      r->output_text = raw->valuestring;
    }
  } else if (cJSON_IsObject(raw) || cJSON_IsArray(raw)) {
    r->output = raw;
  }
}

static int read_result(mk_reading *r, const cJSON *rec) {
  static const char *const credits[] = {"creditsConsumed", "consumeCredits", "creditsCharged", "credits"};
  const cJSON *model = present(mk_json_get(rec, "model"));
  size_t k;
  read_output(r, rec);
  if (cJSON_IsString(model)) r->model = model->valuestring;
  for (k = 0; k < 4 && isnan(r->credits); k++) r->credits = number(mk_json_get(rec, credits[k]));
  r->created_at = mk_record_seconds(mk_json_get(rec, "createTime"));
  r->completed_at = mk_record_seconds(mk_json_get(rec, "completeTime"));
  r->updated_at = mk_record_seconds(mk_json_get(rec, "updateTime"));
  r->cost_time = mk_record_cost_seconds(mk_json_get(rec, "costTime"), r->created_at, r->completed_at);
  r->progress = mk_record_progress(rec);
  return read_urls(r, rec);
}

/* failCode: a number (a numeric string as its number), any other string as it
 * is; the per-model records' errorCode and errorMessage where there is none. */
static void read_failure(mk_reading *r, const cJSON *rec) {
  const cJSON *code = present(mk_json_get(rec, "failCode")), *msg = present(mk_json_get(rec, "failMsg"));
  if (!code) code = present(mk_json_get(rec, "errorCode"));
  if (!msg) msg = present(mk_json_get(rec, "errorMessage"));
  if (mk_json_number(code, &r->fail_code)) r->fail_code_kind = 1;
  else if (cJSON_IsString(code)) r->fail_code_kind = 2, r->fail_code_text = code->valuestring;
  if (cJSON_IsString(msg)) r->fail_message = msg->valuestring;
}

/* A number as Lua's tostring writes it: whole ones without a fraction. */
static void number_text(double d, char *out, size_t n) {
  if (d == floor(d) && fabs(d) < 1e15) snprintf(out, n, "%.0f", d);
  else snprintf(out, n, "%.14g", d);
}

static int broken(mk_reading *r, const char *fmt, const char *a, const char *b) {
  r->outcome = MK_READ_BROKEN;
  snprintf(r->problem, sizeof r->problem, fmt, a ? a : "", b ? b : "");
  return 0;
}

/* The record of a body: its `data` when that is an object (or an empty list),
 * else the body itself when it is a bare record (no data, and a state or a
 * task id of its own). */
static const cJSON *record_of(const cJSON *doc) {
  const cJSON *data = mk_json_get(doc, "data");
  if (cJSON_IsObject(data) || (cJSON_IsArray(data) && !data->child)) return data;
  if (!present(data) && (mk_json_get(doc, "state") || mk_json_get(doc, "taskId") || mk_json_get(doc, "task_id")))
    return doc;
  return NULL;
}

int mk_record_read(const cJSON *doc, const char *job_id, const char *job_model, int shape, mk_reading *r) {
  const cJSON *code = present(mk_json_get(doc, "code")), *rec, *id, *state;
  const char *msg = NULL, *word;
  char codetext[40];
  memset(r, 0, sizeof *r);
  r->credits = r->created_at = r->completed_at = r->updated_at = r->cost_time = r->progress = NAN;
  r->model = job_model;
  if (code) {
    if (!mk_json_number(code, &r->code)) return broken(r, "code is not a number%s%s", NULL, NULL);
    r->has_code = 1;
  }
  {
    const cJSON *m = present(mk_json_get(doc, "msg"));
    if (!m) m = present(mk_json_get(doc, "message"));
    if (cJSON_IsString(m)) msg = m->valuestring;
  }
  rec = record_of(doc);
  if (!rec) return broken(r, "the body has no record (data)%s%s", msg ? ": " : NULL, msg);
  r->record = rec;
  if (shape && read_result(r, rec) != 0) return -1;
  id = present(mk_json_get(rec, "taskId"));
  if (!id) id = present(mk_json_get(rec, "task_id"));
  if (cJSON_IsString(id)) r->task_id = id->valuestring;
  else if (job_id && job_id[0]) r->task_id = job_id; /* polled: the job knows its id */
  if (r->task_id && job_id && job_id[0] && strcmp(r->task_id, job_id) != 0) {
    /* another task's record (a proxy's cache, a server bug): never this job's result */
    r->task_id = job_id;
    return broken(r, "the answer is the record of another task (%.200s), not of %.200s", id->valuestring, job_id);
  }
  if (!r->task_id)
    return broken(r, "the record has no usable task id (taskId is %s)%s", id ? "not a non-empty string" : "missing",
                  NULL);
  state = mk_json_get(rec, "state");
  word = mk_record_state_word(rec);
  if (!word && !state && r->has_code &&
      (r->code != 200 || truthy(mk_json_get(rec, "info")) || truthy(mk_json_get(rec, "callbackType")) ||
       truthy(mk_json_get(rec, "video_url")))) {
    /* Kie's per-model callbacks (Veo, 4o Image, Flux Kontext: info; Suno:
     * callbackType; Runway: video_url) carry no state: the code says how it
     * ended, except for Suno's early ones (callbackType "text", "first") */
    const char *step = mk_json_string(rec, "callbackType");
    if (step && strcmp(step, "complete") != 0 && strcmp(step, "error") != 0) {
      r->server_state = step;
      r->outcome = MK_READ_UNENDED;
      snprintf(r->problem, sizeof r->problem, "task %.200s has not ended (callbackType %.40s): a final callback follows",
               r->task_id, step);
      return 0;
    }
    word = r->code == 200 ? "success" : "fail";
  }
  if (!word) return broken(r, "the record's state is not a string%s%s", NULL, NULL);
  r->server_state = word;
  switch (mk_classify_state(word)) {
    case MK_SUCCESS:
      if (r->has_code && r->code != 200) {
        number_text(r->code, codetext, sizeof codetext);
        return broken(r, "code %s contradicts state %.40s", codetext, word);
      }
      r->outcome = MK_READ_SUCCESS;
      return shape ? 0 : read_result(r, rec);
    case MK_FAILED:
      r->outcome = MK_READ_FAILED;
      read_failure(r, rec);
      if (!r->fail_code_kind && r->has_code && r->code != 200) {
        r->fail_code_kind = 1; /* the envelope's code, when the record has none */
        r->fail_code = r->code;
      }
      if (!r->fail_message && msg && r->has_code && r->code != 200) r->fail_message = msg;
      return 0;
    default:
      r->outcome = MK_READ_UNENDED;
      snprintf(r->problem, sizeof r->problem, "task %.200s has not ended (state %.40s)", r->task_id, word);
      return 0;
  }
}

void mk_reading_free(mk_reading *r) {
  size_t i;
  for (i = 0; i < r->nurls; i++) free(r->urls[i]);
  free(r->urls);
  cJSON_Delete(r->output_doc);
  r->urls = NULL;
  r->nurls = 0;
  r->output_doc = NULL;
  r->output = NULL;
}

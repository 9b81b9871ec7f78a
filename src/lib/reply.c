/* reply.c: an API answer's envelope facts (see reply.h). */
#include "reply.h"

#include <math.h>
#include <string.h>

#include "record.h"

void mk_reply_none(mk_reply *r) {
  memset(r, 0, sizeof *r);
  r->progress = r->updated_at = NAN;
}

/* The envelope's code: a whole number from 0 to 99999, or a string that
 * reads as a non-zero one ("200", " 200 "); anything else is no code. */
static int read_code(const cJSON *v, long *code) {
  double d;
  if (!mk_json_number(v, &d)) return 0;
  if (!(d >= 0 && d <= 99999) || d != floor(d) || (cJSON_IsString(v) && d == 0)) return 0;
  *code = (long)d;
  return 1;
}

void mk_reply_read(mk_reply *r, const char *body, size_t len) {
  const cJSON *doc, *v;
  mk_reply_none(r);
  if (len == 0) return;
  r->doc = mk_json_parse(body, len);
  doc = r->doc;
  if (!cJSON_IsObject(doc) && !cJSON_IsArray(doc)) return;
  r->json = 1;
  r->has_code = read_code(mk_json_get(doc, "code"), &r->code);
  r->message = mk_json_string(doc, "msg");
  if (!r->message) r->message = mk_json_string(doc, "message");
  v = mk_json_get(doc, "data");
  if (!v || cJSON_IsNull(v)) return;
  r->has_data = 1;
  r->data = v;
  r->task_id = mk_json_string(v, "taskId");
  r->state = mk_record_state_word(v);
  r->progress = mk_record_progress(v);
  r->updated_at = mk_record_seconds(mk_json_get(v, "updateTime"));
}

void mk_reply_free(mk_reply *r) {
  cJSON_Delete(r->doc);
  r->doc = NULL;
}

cJSON *mk_reply_take(mk_reply *r) {
  cJSON *doc = r->doc;
  r->doc = NULL;
  return doc;
}

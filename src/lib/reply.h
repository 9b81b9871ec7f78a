/* reply.h: an API answer read once, in C: the body parsed with cJSON
 * (json.h's rules) and the envelope's facts the judge needs taken out of it.
 * Nothing here decides anything; judge.h does. */
#ifndef MODKIE_REPLY_H
#define MODKIE_REPLY_H

#include <stddef.h>

#include "json.h"

typedef struct mk_reply {
  cJSON *doc;           /* the parsed body, owned (mk_reply_free), or NULL */
  int json;             /* the body is a JSON object or array */
  int has_code;
  long code;            /* envelope "code": a whole number 0-99999, or a string of one */
  const char *message;  /* envelope "msg", else "message", when a string; may be NULL */
  int has_data;         /* envelope "data" present and not null */
  const cJSON *data;    /* ... that value */
  const char *task_id;  /* createTask: data.taskId, when a string */
  const char *state;    /* recordInfo: data.state, when a string */
  double progress;      /* recordInfo: data.progress (0-100), NAN when absent */
  double updated_at;    /* recordInfo: data.updateTime in Unix seconds, NAN when absent */
} mk_reply;

/* Read a body of `len` bytes (body[len] readable). A body that is not JSON
 * leaves everything empty (json 0). */
void mk_reply_read(mk_reply *r, const char *body, size_t len);
/* An empty reply (a download, or no body). */
void mk_reply_none(mk_reply *r);
void mk_reply_free(mk_reply *r);
/* Take the parsed body out of the reply: the caller owns it (an event that
 * hands the answer on); the reply's pointers into it stay valid. */
cJSON *mk_reply_take(mk_reply *r);

#endif

/* event.c: events for the host (see event.h). */
#include "event.h"

#include <math.h>
#include <stdlib.h>

mk_event *mk_event_new(mk_event_type type, uint64_t h) {
  mk_event *ev = calloc(1, sizeof *ev);
  if (!ev) return NULL;
  ev->type = type;
  ev->h = h;
  ev->progress = ev->updated_at = NAN;
  ev->error.retry_after = -1;
  return ev;
}

void mk_event_free(mk_event *ev) {
  size_t i;
  if (!ev) return;
  for (i = 0; ev->headers && ev->headers[i]; i++) free(ev->headers[i]);
  free(ev->headers);
  free(ev->body);
  if (ev->has_reading) mk_reading_free(&ev->reading);
  cJSON_Delete(ev->doc);
  free(ev->task_id);
  free(ev->path);
  free(ev->text);
  free(ev->message);
  free(ev);
}

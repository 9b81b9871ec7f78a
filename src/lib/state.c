/* state.c: job states and the gateway's state words (see state.h). */
#include "state.h"

#include <string.h>

const char *mk_state_name(mk_job_state s) {
  static const char *const names[] = {"submitting", "queued", "running", "success", "failed", "error", "cancelled"};
  return (s >= MK_SUBMITTING && s <= MK_CANCELLED) ? names[s] : "error";
}

mk_job_state mk_classify_state(const char *s) {
  /* Runway's own record says wait and queueing */
  static const char *const queued[] = {"waiting", "queuing", "queued", "pending", "created", "submitted",
                                       "wait", "queueing", NULL};
  static const char *const failed[] = {"fail", "failed", "failure", "error", "cancelled", "canceled", NULL};
  int i;
  if (!strcmp(s, "success") || !strcmp(s, "succeeded") || !strcmp(s, "completed")) return MK_SUCCESS;
  for (i = 0; failed[i]; i++)
    if (!strcmp(s, failed[i])) return MK_FAILED;
  for (i = 0; queued[i]; i++)
    if (!strcmp(s, queued[i])) return MK_QUEUED;
  return MK_RUNNING;
}

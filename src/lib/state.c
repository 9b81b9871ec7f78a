/* state.c: job states and the gateway's state words (see state.h). */
#include "state.h"

#include <string.h>

const char *mk_state_name(mk_job_state s) {
  static const char *const names[] = {"submitting", "queued", "running", "success", "failed", "error", "cancelled"};
  return (s >= MK_SUBMITTING && s <= MK_CANCELLED) ? names[s] : "error";
}

mk_job_state mk_classify_state(const char *s) {
  /* Runway's own record says wait and queueing; Suno's PENDING */
  static const char *const queued[] = {"waiting", "queuing", "queued", "pending", "created", "submitted",
                                       "wait", "queueing", "PENDING", NULL};
  /* the per-model records' status words (4o Image, Flux Kontext, Veo, Suno) */
  static const char *const failed[] = {"fail", "failed", "failure", "error", "cancelled", "canceled",
                                       "CREATE_TASK_FAILED", "GENERATE_FAILED", "GENERATE_AUDIO_FAILED",
                                       "CALLBACK_EXCEPTION", "SENSITIVE_WORD_ERROR", NULL};
  int i;
  if (!strcmp(s, "success") || !strcmp(s, "succeeded") || !strcmp(s, "completed") || !strcmp(s, "SUCCESS"))
    return MK_SUCCESS;
  for (i = 0; failed[i]; i++)
    if (!strcmp(s, failed[i])) return MK_FAILED;
  for (i = 0; queued[i]; i++)
    if (!strcmp(s, queued[i])) return MK_QUEUED;
  return MK_RUNNING;
}

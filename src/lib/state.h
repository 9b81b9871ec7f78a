/* state.h: a job's states, and the gateway's words for where a task is. */
#ifndef MODKIE_STATE_H
#define MODKIE_STATE_H

/* Job states, in the order a job moves through them. */
typedef enum {
  MK_SUBMITTING = 0, MK_QUEUED, MK_RUNNING,
  MK_SUCCESS, MK_FAILED, MK_ERROR, MK_CANCELLED
} mk_job_state;

/* "submitting", "queued", ... */
const char *mk_state_name(mk_job_state s);

/* A server state word -> MK_QUEUED, MK_RUNNING, MK_SUCCESS or MK_FAILED.
 * Kie says waiting, queuing, generating, success, fail; ModKie pending,
 * processing, success, fail; Runway's record wait, queueing, generating,
 * success, fail; the status of 4o Image's and Suno's records GENERATING,
 * PENDING, TEXT_SUCCESS, FIRST_SUCCESS (running), SUCCESS, and
 * CREATE_TASK_FAILED, GENERATE_FAILED, GENERATE_AUDIO_FAILED,
 * CALLBACK_EXCEPTION, SENSITIVE_WORD_ERROR (failed). Unknown words count as
 * running: never terminal, never an error. */
mk_job_state mk_classify_state(const char *s);

#endif

/* kinds.h: the closed list of error kinds, the one vocabulary for what went
 * wrong (the Lua layer's modkie.Error kinds are these names), and how an
 * HTTP status or an API code maps onto it. */
#ifndef MODKIE_KINDS_H
#define MODKIE_KINDS_H

typedef enum {
  MK_KIND_NONE = 0,
  MK_KIND_VALIDATION,  /* the input was refused (400, 413, 422) */
  MK_KIND_CONFIG,      /* our side: no key, a file that cannot be written */
  MK_KIND_AUTH,        /* 401, 403 */
  MK_KIND_CREDITS,     /* 402, 433 */
  MK_KIND_RATE_LIMIT,  /* 429 */
  MK_KIND_NOT_FOUND,   /* 404, 410; a record still missing after the grace window */
  MK_KIND_SERVER,      /* 5xx, 408, 455 */
  MK_KIND_NETWORK,     /* the connection failed */
  MK_KIND_TIMEOUT,     /* a wait ran out (the Lua layer's await) */
  MK_KIND_DEADLINE,    /* a job's deadline passed */
  MK_KIND_FAILED,      /* the job ran and failed (501, a fail record) */
  MK_KIND_PROTOCOL,    /* an answer that is not the contract */
  MK_KIND_CANCELLED,
  MK_KIND_AMBIGUOUS    /* createTask sent, outcome unknown */
} mk_kind;

/* "validation", "config", ...; "protocol" for anything out of range. */
const char *mk_kind_name(mk_kind k);
/* The kind of an HTTP status or API code (401 auth, 402 credits, ...). */
mk_kind mk_kind_for_code(long code);
/* A read (recordInfo, credits) may be retried after this code. */
int mk_code_is_transient(long code);

#endif

/* kinds.c: error kinds (see kinds.h). */
#include "kinds.h"

const char *mk_kind_name(mk_kind k) {
  static const char *const names[] = {"protocol", "validation", "config", "auth", "credits", "rate_limit",
                                      "not_found", "server", "network", "timeout", "deadline", "failed",
                                      "protocol", "cancelled", "ambiguous"};
  return (k > MK_KIND_NONE && k <= MK_KIND_AMBIGUOUS) ? names[k] : "protocol";
}

mk_kind mk_kind_for_code(long code) {
  switch (code) {
    case 401: case 403: return MK_KIND_AUTH;
    case 402: case 433: return MK_KIND_CREDITS;
    case 404: case 410: return MK_KIND_NOT_FOUND;
    case 400: case 413: case 422: return MK_KIND_VALIDATION;
    case 429: return MK_KIND_RATE_LIMIT;
    case 408: case 455: return MK_KIND_SERVER;   /* upstream too slow; maintenance */
    case 501: return MK_KIND_FAILED;
    default: return code >= 500 ? MK_KIND_SERVER : MK_KIND_PROTOCOL;
  }
}

int mk_code_is_transient(long code) {
  return code == 429 || code == 455 || code == 408 || (code >= 500 && code <= 599 && code != 501 && code != 505);
}

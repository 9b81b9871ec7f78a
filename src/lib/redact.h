/* redact.h: no server text carries the API key out of the engine. */
#ifndef MODKIE_REDACT_H
#define MODKIE_REDACT_H

#include "buf.h"

/* Take the API key out of a response body: every occurrence of `key` (and of
 * `key_json`, the key as JSON escapes it, when not NULL) and the token after
 * every "Bearer " becomes "[redacted]", so that no server text that echoes the
 * Authorization header (a proxy's error page, a gateway's msg) carries it out
 * of the engine. NULL key: only the Bearer tokens. 0, or -1 out of memory
 * (the body is then left as it was). A body that spells the key with JSON
 * escapes (\u0073\u006b…) is first rewritten with those characters plain. */
int mk_redact(mk_buf *b, const char *key, const char *key_json);

#endif

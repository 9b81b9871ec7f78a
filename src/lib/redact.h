/* redact.h: no server text carries the API key out of the engine. */
#ifndef MODKIE_REDACT_H
#define MODKIE_REDACT_H

#include <stddef.h>

#include "buf.h"

/* Every spelling of the key a server's text may carry it in: as it is, as
 * JSON escapes it (`/` as `\/`), upper- and lower-cased, percent-encoded
 * (a URL echoed in an error page), and inside base64 (an echoed Basic or
 * proxy header: the characters that come from the key alone, at each of the
 * three offsets a base64 stream may hold it at, in both alphabets). */
typedef struct mk_secret {
  char *text; /* NUL-terminated */
  size_t len;  /* kept: every answer is searched for each */
} mk_secret;

typedef struct mk_secrets {
  mk_secret *forms; /* no two alike */
  size_t count;
} mk_secrets;

/* The spellings of `key`. 0, or -1 out of memory (nothing then to free). */
int mk_secrets_init(mk_secrets *s, const char *key);
/* Overwrite and free them. */
void mk_secrets_free(mk_secrets *s);

/* Take the API key out of a response body: every spelling of it in `s` and
 * the token after every "Bearer " become "[redacted]", so that no server
 * text that echoes the Authorization header (a proxy's error page, a
 * gateway's msg) carries it out of the engine. NULL or empty `s`: only the Bearer
 * tokens. 0, or -1 out of memory (the body is then left as it was). A body
 * that spells the key with JSON escapes (\u0073\u006b…) is first rewritten
 * with those characters plain. */
int mk_redact(mk_buf *b, const mk_secrets *s);

#endif

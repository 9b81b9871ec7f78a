/* http.h: the HTTP pieces the engine needs that are not the job state machine:
 * a capped response buffer, response-header parsing (Retry-After), URL
 * building, and the mapping of HTTP statuses and API codes to error kinds. */
#ifndef MODKIE_HTTP_H
#define MODKIE_HTTP_H

#include <stddef.h>

typedef struct mk_buf {
  char *data;
  size_t len, cap;
  size_t max;      /* bytes allowed; more aborts the transfer */
  int overflow;    /* set when the cap was hit */
} mk_buf;

/* Append; returns 0, or -1 when over the cap or out of memory (overflow set for the cap). */
int mk_buf_append(mk_buf *b, const char *p, size_t n);
void mk_buf_reset(mk_buf *b, size_t max);
void mk_buf_free(mk_buf *b);

/* Retry-After: delta-seconds or an HTTP-date. Returns seconds to wait (>= 0),
 * or -1 when the header line is not a Retry-After or cannot be read.
 * `line` is one raw header line as libcurl hands it (not NUL-terminated). */
double mk_parse_retry_after(const char *line, size_t len, double now_unix);

/* Percent-encode `s` (RFC 3986 unreserved kept) into a new string; NULL when out of memory. */
char *mk_url_escape(const char *s);

/* "scheme://host[:port]" of a URL, lowercased, default port made explicit,
 * written into out; 0 on success, -1 when the URL has no scheme/host. */
int mk_url_origin(const char *url, char *out, size_t outlen);

/* Error kind for an HTTP status or API code (401 auth, 402 credits, ...). */
const char *mk_kind_for_code(long code);
/* A read (GET recordInfo, credits) may be retried after this code. */
int mk_code_is_transient(long code);

#endif

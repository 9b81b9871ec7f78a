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
/* The same into `out`, which has room for 3 * n + 1 bytes: `n` bytes of `s` (NULs encoded as %00). */
void mk_url_escape_into(char *out, const char *s, size_t n);

/* Where a URL connects, as libcurl reads it (its own URL parser, so the two
 * cannot disagree): scheme and host lowercased, IPv4 and IPv6 literals in
 * libcurl's normal form, the port explicit (the scheme's default when absent).
 * This is the one place that normalises origins: the key goes only to
 * base_url's origin, and only this decides what counts as this machine. */
typedef struct mk_origin {
  char scheme[8];   /* "http" or "https" */
  char host[256];   /* e.g. "gw.example", "127.0.0.1", "[::1]" */
  long port;
  int loopback;     /* localhost, a dotted quad in 127.0.0.0/8, or [::1]: never a resolver's choice */
} mk_origin;

/* 0 on success; -1 when the URL is not http(s) with a host, or the host is too long. */
int mk_url_parse_origin(const char *url, mk_origin *o);

/* "scheme://host:port" (see mk_origin) into out; 0 on success, -1 as above or when out is too small. */
int mk_url_origin(const char *url, char *out, size_t outlen);

/* Take the API key out of a response body: every occurrence of `key` (and of
 * `key_json`, the key as JSON escapes it, when not NULL) and the token after
 * every "Bearer " becomes "[redacted]", so that no server text that echoes the
 * Authorization header (a proxy's error page, a gateway's msg) carries it out
 * of the engine. NULL key: only the Bearer tokens. 0, or -1 out of memory
 * (the body is then left as it was). */
int mk_redact(mk_buf *b, const char *key, const char *key_json);

/* Error kind for an HTTP status or API code (401 auth, 402 credits, ...). */
const char *mk_kind_for_code(long code);
/* A read (GET recordInfo, credits) may be retried after this code. */
int mk_code_is_transient(long code);

#endif

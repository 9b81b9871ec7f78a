/* url.h: URLs as the engine needs them: percent-encoding a task id, and the
 * origin (scheme, host, port) a URL connects to. */
#ifndef MODKIE_URL_H
#define MODKIE_URL_H

#include <stddef.h>

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

#endif

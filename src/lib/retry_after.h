/* retry_after.h: how long a server asked us to wait (RFC 9110 Retry-After). */
#ifndef MODKIE_RETRY_AFTER_H
#define MODKIE_RETRY_AFTER_H

#include <stddef.h>

/* Retry-After: delta-seconds or an HTTP-date. Returns seconds to wait (>= 0),
 * or -1 when the header line is not a Retry-After or cannot be read.
 * `line` is one raw header line as libcurl hands it (not NUL-terminated). */
double mk_parse_retry_after(const char *line, size_t len, double now_unix);

#endif

/* retry_after.c: the Retry-After response header (see retry_after.h). */
#include "retry_after.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <time.h>

double mk_parse_retry_after(const char *line, size_t len, double now_unix) {
  static const char name[] = "retry-after:";
  char value[128];
  size_t i, n = sizeof name - 1, vlen = 0;
  char *end;
  double secs;
  if (len < n) return -1;
  for (i = 0; i < n; i++)
    if (tolower((unsigned char)line[i]) != name[i]) return -1;
  while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
  while (i < len && line[i] != '\r' && line[i] != '\n' && vlen < sizeof value - 1) value[vlen++] = line[i++];
  while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t')) vlen--;
  value[vlen] = '\0';
  if (vlen == 0) return -1;
  if (isdigit((unsigned char)value[0])) {
    secs = strtod(value, &end);
    if (*end != '\0' || secs < 0) return -1;
    return secs;
  } else {
    time_t when = curl_getdate(value, NULL);
    if (when == (time_t)-1) return -1;
    secs = (double)when - now_unix;
    return secs > 0 ? secs : 0;
  }
}

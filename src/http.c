#include "http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mk_buf_append(mk_buf *b, const char *p, size_t n) {
  if (n > b->max - b->len) {
    b->overflow = 1;
    return -1;
  }
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    char *data;
    while (cap < b->len + n + 1) cap = cap > SIZE_MAX / 2 ? b->len + n + 1 : cap * 2;
    /* at most max + 1 bytes; compared as cap - 1 (cap is never 0) so that a max
     * of SIZE_MAX ("no limit") does not wrap max + 1 to 0 */
    if (cap - 1 > b->max) cap = b->max + 1;
    data = realloc(b->data, cap);
    if (!data) return -1;
    b->data = data;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

void mk_buf_reset(mk_buf *b, size_t max) {
  /* Keep a modest buffer between uses; give back anything large. */
  if (b->cap > 64 * 1024) {
    free(b->data);
    b->data = NULL;
    b->cap = 0;
  }
  b->len = 0;
  b->max = max;
  b->overflow = 0;
  if (b->data) b->data[0] = '\0';
}

void mk_buf_free(mk_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

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

char *mk_url_escape(const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(s), i, o = 0;
  char *out = malloc(3 * n + 1);
  if (!out) return NULL;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out[o++] = (char)c;
    } else {
      out[o++] = '%';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    }
  }
  out[o] = '\0';
  return out;
}

int mk_url_origin(const char *url, char *out, size_t outlen) {
  const char *p = strstr(url, "://"), *host, *end;
  size_t slen, hlen, i, o = 0;
  int has_port = 0;
  const char *default_port;
  if (!p || p == url) return -1;
  slen = (size_t)(p - url);
  host = p + 3;
  end = host + strcspn(host, "/?#");
  if (memchr(host, '@', (size_t)(end - host))) host = (const char *)memchr(host, '@', (size_t)(end - host)) + 1;
  hlen = (size_t)(end - host);
  if (hlen == 0) return -1;
  /* a port follows the last ':' unless that ':' is inside an IPv6 literal */
  for (i = hlen; i > 0; i--) {
    if (host[i - 1] == ']') break;
    if (host[i - 1] == ':') { has_port = 1; break; }
  }
  default_port = (slen == 5 && strncmp(url, "https", 5) == 0) ? "443" : "80";
  if (slen + 3 + hlen + 7 >= outlen) return -1;
  for (i = 0; i < slen; i++) out[o++] = (char)tolower((unsigned char)url[i]);
  memcpy(out + o, "://", 3);
  o += 3;
  for (i = 0; i < hlen; i++) out[o++] = (char)tolower((unsigned char)host[i]);
  if (!has_port) o += (size_t)snprintf(out + o, outlen - o, ":%s", default_port);
  out[o] = '\0';
  return 0;
}

const char *mk_kind_for_code(long code) {
  switch (code) {
    case 401: case 403: return "auth";
    case 402: case 433: return "credits";
    case 404: case 410: return "not_found";
    case 400: case 413: case 422: return "validation";
    case 429: return "rate_limit";
    case 408: case 455: return "server";   /* upstream too slow; maintenance */
    case 501: return "failed";
    default: return code >= 500 ? "server" : "protocol";
  }
}

int mk_code_is_transient(long code) {
  return code == 429 || code == 455 || code == 408 || (code >= 500 && code <= 599 && code != 501 && code != 505);
}

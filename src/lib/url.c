/* url.c: URLs as the engine needs them (see url.h). */
#include "url.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *mk_url_escape(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(3 * n + 1);
  if (out) mk_url_escape_into(out, s, n);
  return out;
}

void mk_url_escape_into(char *out, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  size_t i, o = 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    /* RFC 3986's unreserved, in ASCII whatever the locale */
    if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-' || c == '_' ||
        c == '.' || c == '~') {
      out[o++] = (char)c;
    } else {
      out[o++] = '%';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    }
  }
  out[o] = '\0';
}

/* A dotted quad of canonical decimal parts (no leading zeros, each <= 255)
 * whose first part is 127. */
static int loopback_v4(const char *h) {
  int part = 0, digits = 0, value = 0, first = -1;
  for (;; h++) {
    if (*h >= '0' && *h <= '9') {
      if (digits && value == 0) return 0; /* a leading zero: some readers take it for octal */
      value = value * 10 + (*h - '0');
      if (++digits > 3 || value > 255) return 0;
    } else if (*h == '.' || *h == '\0') {
      if (!digits) return 0;
      if (part == 0) first = value;
      part++;
      if (*h == '\0') break;
      if (part > 3) return 0;
      digits = value = 0;
    } else {
      return 0;
    }
  }
  return part == 4 && first == 127;
}

int mk_url_parse_origin(const char *url, mk_origin *o) {
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL, *port = NULL;
  int rc = -1;
  size_t i;
  memset(o, 0, sizeof *o);
  if (!u) return -1;
  /* the flags libcurl itself uses for CURLOPT_URL */
  if (curl_url_set(u, CURLUPART_URL, url, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
      strlen(scheme) < sizeof o->scheme && strlen(host) < sizeof o->host && host[0]) {
    for (i = 0; scheme[i]; i++) o->scheme[i] = (char)tolower((unsigned char)scheme[i]);
    for (i = 0; host[i]; i++) o->host[i] = (char)tolower((unsigned char)host[i]);
    o->port = strtol(port, NULL, 10);
    if ((!strcmp(o->scheme, "http") || !strcmp(o->scheme, "https")) && o->port > 0 && o->port <= 65535) {
      o->loopback = !strcmp(o->host, "localhost") || !strcmp(o->host, "[::1]") || loopback_v4(o->host);
      rc = 0;
    }
  }
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(u);
  if (rc != 0) memset(o, 0, sizeof *o);
  return rc;
}

int mk_url_origin(const char *url, char *out, size_t outlen) {
  mk_origin o;
  int n;
  if (mk_url_parse_origin(url, &o) != 0) return -1;
  n = snprintf(out, outlen, "%s://%s:%ld", o.scheme, o.host, o.port);
  if (n < 0 || (size_t)n >= outlen) {
    if (outlen) out[0] = '\0';
    return -1;
  }
  return 0;
}

#include "http.h"

#include <ctype.h>
#include <strings.h>
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
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
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

/* A bearer token's characters (RFC 6750 b64token), and "\/" (a "/" as JSON may escape it). */
static size_t token_len(const char *p, const char *end) {
  const char *q = p;
  while (q < end) {
    unsigned char c = (unsigned char)*q;
    if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=') q++;
    else if (c == '\\' && q + 1 < end && q[1] == '/') q += 2;
    else break;
  }
  return (size_t)(q - p);
}

/* Length of what to redact at p (0: nothing): a key, or the token after "Bearer ". */
static size_t secret_at(const char *p, const char *end, const char *key, size_t klen, const char *kjson, size_t jlen) {
  size_t left = (size_t)(end - p);
  if (klen && left >= klen && memcmp(p, key, klen) == 0) return klen;
  if (jlen && left >= jlen && memcmp(p, kjson, jlen) == 0) return jlen;
  return 0;
}

/* The byte of `s` to scan for first: one rare in JSON text (an upper-case
 * letter, else a digit from 3, else the first byte), so that memchr, which is
 * fast, does most of the work. */
static size_t anchor_of(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (isupper((unsigned char)s[i])) return i;
  for (i = 0; i < n; i++)
    if (s[i] >= '3' && s[i] <= '9') return i;
  return 0;
}

/* Whether `needle` (m bytes, m >= 1) occurs in hay (n bytes). */
static int contains(const char *hay, size_t n, const char *needle, size_t m) {
  size_t k = anchor_of(needle, m);
  const char *p, *end;
  if (m > n) return 0;
  p = hay + k;
  end = hay + (n - m) + k + 1; /* the last place the anchor byte can be */
  while (p < end && (p = memchr(p, (unsigned char)needle[k], (size_t)(end - p))) != NULL) {
    if (memcmp(p - k, needle, m) == 0) return 1;
    p++;
  }
  return 0;
}

/* Whether "bearer", in any case, occurs in s. */
static int has_bearer(const char *s, size_t n) {
  int pass;
  for (pass = 0; pass < 2; pass++) {
    const char *p = s, *end = s + n;
    char c = pass ? 'B' : 'b';
    while (end - p >= 6 && (p = memchr(p, c, (size_t)(end - p - 5))) != NULL) {
      if (strncasecmp(p, "bearer", 6) == 0) return 1;
      p++;
    }
  }
  return 0;
}

int mk_redact(mk_buf *b, const char *key, const char *key_json) {
  static const char mark[] = "[redacted]";
  const size_t mlen = sizeof mark - 1;
  size_t klen = key ? strlen(key) : 0, jlen = key_json ? strlen(key_json) : 0;
  const char *p, *end, *copied;
  char *out = NULL;
  size_t o = 0, cap = 0;
  if (!b->data || !b->len) return 0;
  /* the common case, in a few fast scans: nothing to take out, nothing allocated */
  if ((!klen || !contains(b->data, b->len, key, klen)) && (!jlen || !contains(b->data, b->len, key_json, jlen)) &&
      !has_bearer(b->data, b->len))
    return 0;
  end = b->data + b->len;
  copied = b->data;
  for (p = b->data; p < end;) {
    size_t cut = secret_at(p, end, key, klen, key_json, jlen), skip = 0;
    if (!cut && end - p > 6 && (*p == 'b' || *p == 'B') && strncasecmp(p, "bearer", 6) == 0) {
      /* "Bearer", blanks (or "%20"), then the token */
      const char *t = p + 6;
      while (t < end && (*t == ' ' || *t == '\t')) t++;
      if (t == p + 6 && end - t >= 3 && memcmp(t, "%20", 3) == 0) t += 3;
      if (t > p + 6 && (cut = token_len(t, end)) > 0) skip = (size_t)(t - p);
    }
    if (!cut) {
      p++;
      continue;
    }
    if (!out) {
      cap = b->len + mlen + 1;
      out = malloc(cap);
      if (!out) return -1;
    }
    {
      size_t keep = (size_t)(p - copied) + skip, need = o + keep + mlen + (size_t)(end - p) + 1;
      if (need > cap) {
        char *grown = realloc(out, need);
        if (!grown) {
          free(out);
          return -1;
        }
        out = grown;
        cap = need;
      }
      memcpy(out + o, copied, keep);
      o += keep;
      memcpy(out + o, mark, mlen);
      o += mlen;
      p += skip + cut;
      copied = p;
    }
  }
  if (!out) return 0;
  memcpy(out + o, copied, (size_t)(end - copied));
  o += (size_t)(end - copied);
  out[o] = '\0';
  free(b->data);
  b->data = out;
  b->len = o;
  b->cap = cap;
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

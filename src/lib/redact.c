/* redact.c: the API key taken out of server text (see redact.h). */
#include "redact.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* JSON may spell any character as \uXXXX (or "/" as \/): a server that
 * escapes what it echoes ({"msg":"\u0073\u006b-..."}) would hide the key
 * from a byte search, and the decoder would then hand it to Lua whole. So
 * when the body has such escapes, spell every printable ASCII character
 * plainly (the key's characters all are; '"' and '\' stay escaped) and use
 * that spelling, which means the same JSON, if it shows the key. 0, or -1
 * out of memory (the body is then left as it was). */
static int unescape_if_hiding(mk_buf *b, const char *key, size_t klen) {
  const char *p = b->data, *end = b->data + b->len;
  char *out;
  size_t o = 0;
  if (!klen || !memchr(b->data, '\\', b->len)) return 0;
  out = malloc(b->len + 1);
  if (!out) return -1;
  while (p < end) {
    if (*p != '\\' || p + 1 >= end) {
      out[o++] = *p++;
      continue;
    }
    if (p[1] == '/') {
      out[o++] = '/';
      p += 2;
      continue;
    }
    if (p[1] == 'u' && end - p >= 6) {
      int h0 = hexval((unsigned char)p[2]), h1 = hexval((unsigned char)p[3]), h2 = hexval((unsigned char)p[4]),
          h3 = hexval((unsigned char)p[5]);
      if (h0 == 0 && h1 >= 0 && h2 >= 0 && h3 >= 0) {
        int c = h1 * 256 + h2 * 16 + h3;
        if (c >= 0x20 && c <= 0x7e && c != '"' && c != '\\') {
          out[o++] = (char)c;
          p += 6;
          continue;
        }
      }
    }
    out[o++] = *p++; /* any other escape, kept as it is: its two bytes */
    out[o++] = *p++;
  }
  if (o == b->len || !contains(out, o, key, klen)) {
    free(out);
    return 0;
  }
  out[o] = '\0';
  free(b->data);
  b->data = out;
  b->len = o;
  b->cap = o + 1;
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
  if (unescape_if_hiding(b, key, klen) != 0) return -1;
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

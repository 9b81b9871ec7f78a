/* redact.c: the API key taken out of server text (see redact.h). */
#include "redact.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "url.h"

/* A base64 run shorter than this is not taken for the key: short runs of
 * letters occur in ordinary text. */
#define MIN_BASE64_CORE 8

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

/* Length of the spelling of the key at p (0: none; the longest when two start there). */
static size_t secret_at(const char *p, const char *end, const mk_secrets *s) {
  size_t left = (size_t)(end - p), i, best = 0;
  for (i = 0; s && i < s->count; i++) {
    const mk_secret *f = &s->forms[i];
    if (f->len > best && left >= f->len && memcmp(p, f->text, f->len) == 0) best = f->len;
  }
  return best;
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

/* Whether any spelling of the key occurs in hay. */
static int contains_any(const char *hay, size_t n, const mk_secrets *s) {
  size_t i;
  for (i = 0; s && i < s->count; i++)
    if (contains(hay, n, s->forms[i].text, s->forms[i].len)) return 1;
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
 * plainly (the key's characters all are; '"' and '\' stay escaped, as \" and
 * \\) and use that spelling, which means the same JSON, if it shows the key.
 * 0, or -1 out of memory (the body is then left as it was). */
static int unescape_if_hiding(mk_buf *b, const mk_secrets *s) {
  const char *p = b->data, *end = b->data + b->len;
  char *out;
  size_t o = 0;
  if (!s || !s->count || !memchr(b->data, '\\', b->len)) return 0;
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
        if (c == '"' || c == '\\') { /* escaped still, the short way: \" and \\ mean the same */
          out[o++] = '\\';
          out[o++] = (char)c;
          p += 6;
          continue;
        }
      }
    }
    out[o++] = *p++; /* any other escape, kept as it is: its two bytes */
    out[o++] = *p++;
  }
  if (o == b->len || !contains_any(out, o, s)) {
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

int mk_redact(mk_buf *b, const mk_secrets *s) {
  static const char mark[] = "[redacted]";
  const size_t mlen = sizeof mark - 1;
  const char *p, *end, *copied;
  char *out = NULL;
  size_t o = 0, cap = 0;
  if (!b->data || !b->len) return 0;
  if (unescape_if_hiding(b, s) != 0) return -1;
  /* the common case, in a few fast scans: nothing to take out, nothing allocated */
  if (!contains_any(b->data, b->len, s) && !has_bearer(b->data, b->len)) return 0;
  end = b->data + b->len;
  copied = b->data;
  for (p = b->data; p < end;) {
    size_t cut = secret_at(p, end, s), skip = 0;
    if (!cut && end - p > 6 && (*p == 'b' || *p == 'B') && strncasecmp(p, "bearer", 6) == 0) {
      /* "Bearer", blanks (or "%20"), then the token */
      const char *t = p + 6;
      while (t < end && (*t == ' ' || *t == '\t')) t++;
      if (t == p + 6 && end - t >= 3 && memcmp(t, "%20", 3) == 0) t += 3;
      if (t > p + 6) {
        /* the token, or a spelling of the key there when longer: a
         * percent-encoded key stops token_len at its first "%" */
        size_t token = token_len(t, end), key = secret_at(t, end, s);
        cut = key > token ? key : token;
        if (cut > 0) skip = (size_t)(t - p);
      }
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

/* ---- the spellings of a key ---- */

/* ASCII case, whatever the process locale (a Lua host may set one). */
static char ascii_upper(char c) { return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c; }
static char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

/* Add `form` (n bytes) unless it is empty or already there. 0, or -1 out of memory. */
static int add_form(mk_secrets *s, const char *form, size_t n) {
  size_t i;
  mk_secret *grown;
  char *copy;
  if (n == 0) return 0;
  for (i = 0; i < s->count; i++)
    if (s->forms[i].len == n && memcmp(s->forms[i].text, form, n) == 0) return 0;
  grown = realloc(s->forms, (s->count + 1) * sizeof *grown);
  if (!grown) return -1;
  s->forms = grown;
  if (!(copy = mk_copy(form, n))) return -1;
  s->forms[s->count].text = copy;
  s->forms[s->count++].len = n;
  return 0;
}

/* The key's base64 at offset r (0-2) of a stream: only the characters
 * whose six bits all come from the key, in the standard alphabet and in
 * the URL-safe one (`-` and `_` for `+` and `/`). */
static int add_base64(mk_secrets *s, const char *key, size_t n, int r, char *in, char *out) {
  size_t from = ((size_t)r * 8 + 5) / 6, to = ((size_t)r + n) * 8 / 6, i;
  memset(in, 0, (size_t)r);
  memcpy(in + r, key, n);
  EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)(n + (size_t)r));
  if (to <= from || to - from < MIN_BASE64_CORE) return 0;
  if (add_form(s, out + from, to - from) != 0) return -1;
  for (i = from; i < to; i++) out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
  return add_form(s, out + from, to - from);
}

/* The key percent-encoded as a URL holds it, with upper-case hex digits
 * and again with lower-case ones (%2F, %2f); both again with "/" as it is. */
static int add_percent(mk_secrets *s, const char *key, size_t n, char *out) {
  char *p;
  int keep;
  for (keep = 0; keep < 2; keep++) { /* and again with "/" left as it is (a path; Python's quote) */
    char *q;
    mk_url_escape_into(out, key, n);
    for (p = q = out; keep && *p; p++) {
      if (p[0] == '%' && p[1] == '2' && (p[2] == 'F' || p[2] == 'f')) {
        *q++ = '/';
        p += 2;
      } else {
        *q++ = *p;
      }
    }
    if (keep) *q = '\0';
    if (add_form(s, out, strlen(out)) != 0) return -1;
    for (p = out; (p = strchr(p, '%')) != NULL; p += 3) {
      p[1] = ascii_lower(p[1]);
      p[2] = ascii_lower(p[2]);
    }
    if (add_form(s, out, strlen(out)) != 0) return -1;
  }
  return 0;
}

int mk_secrets_init(mk_secrets *s, const char *key) {
  size_t n = strlen(key), i, o;
  /* room for the longest spelling: percent-encoded (3n), base64 (4/3 of n + 2, and its padding) */
  char *work = malloc(3 * n + 8), *in = malloc(n + 3);
  int rc = 0, r;
  s->forms = NULL;
  s->count = 0;
  if (!work || !in) rc = -1;
  if (!rc) rc = add_form(s, key, n);
  for (o = i = 0; !rc && i < n; i++) { /* as JSON escapes it */
    if (key[i] == '"' || key[i] == '\\' || key[i] == '/') work[o++] = '\\';
    work[o++] = key[i];
  }
  if (!rc) rc = add_form(s, work, o);
  for (o = i = 0; !rc && i < n; i++) { /* as most JSON encoders escape it: "/" left as it is */
    if (key[i] == '"' || key[i] == '\\') work[o++] = '\\';
    work[o++] = key[i];
  }
  if (!rc) rc = add_form(s, work, o);
  for (i = 0; !rc && i < n; i++) work[i] = ascii_upper(key[i]);
  if (!rc) rc = add_form(s, work, n);
  for (i = 0; !rc && i < n; i++) work[i] = ascii_lower(key[i]);
  if (!rc) rc = add_form(s, work, n);
  if (!rc) rc = add_percent(s, key, n, work);
  for (r = 0; !rc && r < 3; r++) rc = add_base64(s, key, n, r, in, work);
  if (work) OPENSSL_cleanse(work, 3 * n + 8); /* (a memset before free may be left out by the compiler) */
  if (in) OPENSSL_cleanse(in, n + 3);
  free(work);
  free(in);
  if (rc) mk_secrets_free(s);
  return rc;
}

void mk_secrets_free(mk_secrets *s) {
  size_t i;
  for (i = 0; i < s->count; i++) {
    OPENSSL_cleanse(s->forms[i].text, s->forms[i].len);
    free(s->forms[i].text);
  }
  free(s->forms);
  s->forms = NULL;
  s->count = 0;
}

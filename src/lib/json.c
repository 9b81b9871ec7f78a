/* json.c: untrusted JSON through cJSON (see json.h). */
#include "json.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Arrays and objects nested deeper than `left` levels (counting v's own). */
static int too_deep(const cJSON *v, int left) {
  const cJSON *c;
  if (!cJSON_IsArray(v) && !cJSON_IsObject(v)) return 0;
  if (left <= 0) return 1;
  for (c = v->child; c; c = c->next)
    if (too_deep(c, left - 1)) return 1;
  return 0;
}

/* The length of a non-JSON number word at p ("NaN", "nan", "Infinity",
 * "inf", any case, with a sign), or 0. Only where a value may start, which
 * the caller knows: outside strings, after one of `[,:` and blanks. */
static size_t number_word(const char *p, const char *end) {
  static const char *const words[] = {"infinity", "nan", "inf"};
  const char *q = p;
  size_t i;
  if (q < end && (*q == '-' || *q == '+')) q++;
  for (i = 0; i < sizeof words / sizeof words[0]; i++) {
    size_t n = strlen(words[i]);
    if ((size_t)(end - q) >= n && strncasecmp(q, words[i], n) == 0 &&
        (q + n == end || !isalnum((unsigned char)q[n])))
      return (size_t)(q + n - p);
  }
  return 0;
}

/* `text` with each non-JSON number word written as null; NULL when there is
 * none (or no memory). A scan of where strings start and end only: the
 * parsing is cJSON's. */
static char *nulled_number_words(const char *text, size_t len, size_t *outlen) {
  const char *p = text, *end = text + len;
  char *out = NULL, *o = NULL, prev = '[';
  int in_string = 0, found = 0;
  for (; p < end; p++) {
    size_t n;
    if (in_string) {
      if (*p == '\\' && p + 1 < end) {
        if (o) *o++ = *p;
        p++;
      } else if (*p == '"') {
        in_string = 0;
      }
    } else if (*p == '"') {
      in_string = 1;
    } else if ((prev == '[' || prev == ',' || prev == ':') && (n = number_word(p, end)) > 0) {
      if (!out) { /* the first one: copy what came before it */
        out = malloc(2 * len + 1); /* each word is at least 3 bytes, "null" 4 */
        if (!out) return NULL;
        memcpy(out, text, (size_t)(p - text));
        o = out + (p - text);
      }
      memcpy(o, "null", 4);
      o += 4;
      p += n - 1;
      prev = 'l';
      found = 1;
      continue;
    }
    if (!in_string && !isspace((unsigned char)*p)) prev = *p;
    if (o) *o++ = *p;
  }
  if (!found) {
    free(out);
    return NULL;
  }
  *o = '\0';
  *outlen = (size_t)(o - out);
  return out;
}

cJSON *mk_json_parse(const char *text, size_t len) {
  cJSON *v;
  if (memchr(text, '\0', len)) return NULL; /* JSON text has no NUL; cJSON would stop at it */
  /* length + 1: cJSON then checks that nothing but blanks follows the value */
  v = cJSON_ParseWithLengthOpts(text, len + 1, NULL, 1);
  if (!v) {
    size_t n = 0;
    char *again = nulled_number_words(text, len, &n);
    if (!again) return NULL;
    v = cJSON_ParseWithLengthOpts(again, n + 1, NULL, 1);
    free(again);
    if (!v) return NULL;
  }
  if (too_deep(v, MK_JSON_MAX_DEPTH)) {
    cJSON_Delete(v);
    return NULL;
  }
  return v;
}

/* cJSON_GetObjectItemCaseSensitive's answer (the first member so named),
 * with the first byte compared before strcmp: a record is read by some 30
 * lookups over its 15 or so members, and strcmp on each pair was 1 % of a
 * whole job's CPU. */
const cJSON *mk_json_get(const cJSON *obj, const char *key) {
  const cJSON *c;
  if (!cJSON_IsObject(obj)) return NULL;
  for (c = obj->child; c && c->string; c = c->next)
    if (c->string[0] == key[0] && strcmp(c->string, key) == 0) return c;
  return NULL;
}

const char *mk_json_string(const cJSON *obj, const char *key) {
  const cJSON *v = mk_json_get(obj, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

int mk_json_present(const cJSON *v) {
  if (!v || cJSON_IsNull(v)) return 0;
  return !(cJSON_IsString(v) && v->valuestring[0] == '\0');
}

int mk_number_from_text(const char *s, double *out) {
  char *end;
  double d;
  if (strpbrk(s, "nN")) return 0; /* "inf", "nan": not numbers to Lua */
  while (isspace((unsigned char)*s)) s++;
  if (!*s) return 0;
  d = strtod(s, &end);
  if (end == s) return 0;
  while (isspace((unsigned char)*end)) end++;
  if (*end || !isfinite(d)) return 0;
  *out = d;
  return 1;
}

int mk_json_number(const cJSON *v, double *out) {
  if (cJSON_IsNumber(v)) {
    if (!isfinite(v->valuedouble)) return 0;
    *out = v->valuedouble;
    return 1;
  }
  return cJSON_IsString(v) && mk_number_from_text(v->valuestring, out);
}

size_t mk_json_unescape_slashes(char *out, const char *s, size_t n) {
  const char *p = s, *end = s + n, *slash;
  size_t m = 0;
  /* each "/" found at once (a body has few): what comes before it copied
   * whole, less its escape. The "\\" before a "/" cannot end an earlier
   * "\\/": that one ended with its "/". */
  while ((slash = memchr(p, '/', (size_t)(end - p)))) {
    size_t k = (size_t)(slash - p);
    if (slash > s && slash[-1] == '\\' && k > 0) k--; /* the escape: left out */
    memcpy(out + m, p, k);
    m += k;
    out[m++] = '/';
    p = slash + 1;
  }
  memcpy(out + m, p, (size_t)(end - p));
  return m + (size_t)(end - p);
}

/* url.c: libFuzzer harness for mk_url_escape and mk_url_origin.
 *
 * mk_url_escape builds the recordInfo query from a task id the gateway sent;
 * mk_url_origin decides whether a download URL (also from the gateway) gets
 * the Authorization header: only when its origin is the base_url's. So
 * besides memory safety the harness checks what the answers mean:
 *  - escape: only unreserved characters and %XX come out, and decoding gives
 *    the input back;
 *  - origin: never writes past `outlen`; and whenever two URLs have the same
 *    origin by mk_url_origin, libcurl (which makes the connection) must
 *    agree on scheme, host and port, or the key would go to another host.
 * Input: a byte for outlen, then two URLs separated by a newline; without a
 * newline the second is the default base_url. */
#include <ctype.h>
#include <curl/curl.h>

#include "../src/lib/url.h"
#include "fuzz.h"

static int unhex(int c) {
  return isdigit(c) ? c - '0' : c - 'A' + 10;
}

static void check_escape(const char *s) {
  char *e = mk_url_escape(s);
  size_t i, o = 0, n = strlen(s);
  FZ_CHECK(e != NULL, "out of memory");
  for (i = 0; e[i]; i++) {
    unsigned char c = (unsigned char)e[i], d;
    if (c == '%') {
      FZ_CHECK(isxdigit((unsigned char)e[i + 1]) && isxdigit((unsigned char)e[i + 2]) &&
               !islower((unsigned char)e[i + 1]) && !islower((unsigned char)e[i + 2]),
               "bad escape in '%s'", e);
      d = (unsigned char)(unhex(e[i + 1]) * 16 + unhex(e[i + 2]));
      i += 2;
    } else {
      FZ_CHECK(isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~', "0x%02x left as is", c);
      d = c;
    }
    FZ_CHECK(o < n && (unsigned char)s[o] == d, "escape does not decode to the input");
    o++;
  }
  FZ_CHECK(o == n, "escape lost bytes");
  free(e);
}

/* Where libcurl would connect for `url`, as "scheme://host:port" (lowercase),
 * parsed with the flags libcurl 7.88 uses for CURLOPT_URL; 0 when it refuses. */
static int curl_origin(const char *url, char *out, size_t outlen) {
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL, *port = NULL;
  int ok = 0;
  size_t i;
  if (!u) abort();
  if (curl_url_set(u, CURLUPART_URL, url, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
    snprintf(out, outlen, "%s://%s:%s", scheme, host, port);
    for (i = 0; out[i]; i++) out[i] = (char)tolower((unsigned char)out[i]);
    ok = 1;
  }
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(u);
  return ok;
}

/* mk_url_origin into a buffer of exactly outlen bytes (ASan sees overflows). */
static int origin(const char *url, size_t outlen, char **out) {
  int rc;
  *out = malloc(outlen);
  if (!*out) abort();
  rc = mk_url_origin(url, *out, outlen);
  if (rc == 0) {
    FZ_CHECK(memchr(*out, '\0', outlen) != NULL, "origin not terminated inside outlen");
    FZ_CHECK(strstr(*out, "://") != NULL, "origin '%s' has no '://'", *out);
  } else {
    FZ_CHECK(rc == -1, "rc %d", rc);
  }
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz f = {data, size};
  uint8_t o = fz_u8(&f);
  size_t outlen = o < 16 ? (size_t)o + 1 : o < 128 ? (size_t)o : 256; /* the engine uses 256 */
  size_t len;
  char *a = fz_rest(&f, &len), *nl = strchr(a, '\n');
  const char *b;
  char *oa, *ob, ca[1024], cb[1024];
  int ra, rb;
  b = nl ? nl + 1 : "https://modkie.com";
  if (nl) *nl = '\0';
  ra = origin(a, outlen, &oa);
  rb = origin(b, outlen, &ob);
  check_escape(a);
  /* the engine's test: the same origin string means the key is sent */
  if (ra == 0 && rb == 0 && strcmp(oa, ob) == 0 && curl_origin(a, ca, sizeof ca) && curl_origin(b, cb, sizeof cb))
    FZ_CHECK(strcmp(ca, cb) == 0, "mk_url_origin: '%s' and '%s' are both %s, but libcurl connects to %s and %s",
             a, b, oa, ca, cb);
  free(oa);
  free(ob);
  free(a);
  return 0;
}

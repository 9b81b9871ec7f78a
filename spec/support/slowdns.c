/* slowdns.c: an LD_PRELOAD shim for spec/audit_embed_spec.lua. A name
 * ending in ".slowdns.test" takes as long to resolve as a DNS server that
 * does not answer: getaddrinfo sleeps MODKIE_SLOW_DNS seconds (default 3),
 * then answers 127.0.0.1 (or fails, when the name starts with "fail.").
 * Every other name goes to the real getaddrinfo. Built by the spec itself. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

static int slow(const char *node) {
  size_t n = node ? strlen(node) : 0, k = strlen(".slowdns.test");
  return n > k && strcmp(node + n - k, ".slowdns.test") == 0;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res) {
  gai_fn real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
  if (slow(node)) {
    const char *s = getenv("MODKIE_SLOW_DNS");
    double secs = s ? atof(s) : 3.0;
    struct timespec ts;
    ts.tv_sec = (time_t)secs;
    ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0) {}
    if (strncmp(node, "fail.", 5) == 0) return EAI_NONAME;
    node = "127.0.0.1";
  }
  return real(node, service, hints, res);
}

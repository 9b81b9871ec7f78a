/* listener.h: a small HTTP server for callbacks, on the engine's own loop.
 *
 * libmicrohttpd in external polling mode with epoll: no thread, no
 * blocking. Its one epoll descriptor is watched beside libcurl's sockets
 * (engine.c), and MHD_run does what is ready. A POST is read whole (at most
 * MK_LISTEN_MAX_BODY bytes, else 413; a connection idle for
 * MK_LISTEN_TIMEOUT seconds is closed), then its connection is suspended
 * and the request handed to `on_request`: the engine makes it an op whose
 * answer the Lua layer gives (mk_listener_answer), and the connection
 * resumes with that status. Other methods get 405 at once. Nothing here
 * knows about signatures or records: the Lua layer decides (client:deliver). */
#ifndef MODKIE_LISTENER_H
#define MODKIE_LISTENER_H

#include <stddef.h>

#define MK_LISTEN_MAX_BODY (1024 * 1024) /* bytes of a callback body, at most */
#define MK_LISTEN_TIMEOUT 10             /* seconds a connection may sit idle */
#define MK_LISTEN_CONNECTIONS 64         /* connections at once, at most */

typedef struct mk_listener mk_listener;

/* One request read whole, waiting for its answer. */
typedef struct mk_request {
  char *path;
  char *body;
  size_t body_len, body_cap;
  char **headers;          /* name, value, name, value, … (names as sent) */
  size_t nheaders;         /* pairs */
  void *owner;             /* the engine's op, or NULL */
  int status;              /* the answer, 0 until given */
  int too_large;
  int suspended;
  struct MHD_Connection *conn;
  struct mk_request *prev, *next; /* the listener's live requests */
  mk_listener *listener;
} mk_request;

/* Called when a request is read whole and waits for mk_listener_answer.
 * Returns 0, or -1 when it cannot be taken (the request is answered 503). */
typedef int (*mk_on_request)(void *ud, mk_request *req);

/* Listen on "host:port" (a numeric IPv4 or [IPv6] address, or localhost;
 * port 0: any free one). NULL with `err` set when it cannot. */
mk_listener *mk_listener_start(const char *address, mk_on_request on_request, void *ud, char *err, size_t errlen);
/* Answer every waiting request 503 and stop. */
void mk_listener_stop(mk_listener *l);
/* The port it listens on. */
int mk_listener_port(const mk_listener *l);
/* The descriptor to watch for reading. */
int mk_listener_fd(const mk_listener *l);
/* Seconds until mk_listener_run is due anyway (0: now), or -1 none. */
double mk_listener_timeout(mk_listener *l);
/* Do what is ready (non-blocking). */
void mk_listener_run(mk_listener *l);
/* Give a waiting request its answer; the request is freed once sent. */
void mk_listener_answer(mk_listener *l, mk_request *req, int status);

#endif

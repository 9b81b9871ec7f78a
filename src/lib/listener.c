#include "listener.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "buf.h"

struct mk_listener {
  struct MHD_Daemon *daemon;
  mk_on_request on_request;
  void *ud;
  mk_request *live;       /* requests not yet freed */
  int port, fd;
  int resumed;            /* a connection was resumed or closed: MHD_run is due (libmicrohttpd's external mode) */
};

static void request_free(mk_request *r) {
  size_t i;
  mk_listener *l = r->listener;
  if (r->prev) r->prev->next = r->next;
  else l->live = r->next;
  if (r->next) r->next->prev = r->prev;
  for (i = 0; i < 2 * r->nheaders; i++) free(r->headers[i]);
  free(r->headers);
  free(r->path);
  free(r->body);
  free(r);
}

static enum MHD_Result respond(struct MHD_Connection *conn, int status) {
  static const char ok[] = "{\"ok\":true}\n", no[] = "{\"ok\":false}\n";
  const char *text = status >= 200 && status < 300 ? ok : no;
  struct MHD_Response *res =
    MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
  enum MHD_Result rc;
  if (!res) return MHD_NO; /* out of memory: the connection is closed */
  MHD_add_response_header(res, "Content-Type", "application/json");
  rc = MHD_queue_response(conn, (unsigned int)status, res);
  MHD_destroy_response(res);
  return rc;
}

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
  mk_request *r = cls;
  char **h;
  (void)kind;
  if (!key || !value) return MHD_YES;
  h = realloc(r->headers, 2 * (r->nheaders + 1) * sizeof *h);
  if (!h) return MHD_NO;
  r->headers = h;
  h[2 * r->nheaders] = mk_copy_str(key);
  h[2 * r->nheaders + 1] = mk_copy_str(value);
  r->nheaders++;
  if (!h[2 * r->nheaders - 2] || !h[2 * r->nheaders - 1]) return MHD_NO;
  return MHD_YES;
}

static int append(mk_request *r, const char *data, size_t n) {
  if (r->too_large || r->body_len + n > MK_LISTEN_MAX_BODY) {
    r->too_large = 1;
    return 0; /* read on and drop: the answer is 413 */
  }
  if (r->body_len + n + 1 > r->body_cap) {
    size_t cap = r->body_cap ? r->body_cap : 4096;
    char *b;
    while (cap < r->body_len + n + 1) cap *= 2;
    b = realloc(r->body, cap);
    if (!b) return -1;
    r->body = b;
    r->body_cap = cap;
  }
  memcpy(r->body + r->body_len, data, n);
  r->body_len += n;
  r->body[r->body_len] = '\0';
  return 0;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *data, size_t *data_size, void **state) {
  mk_listener *l = cls;
  mk_request *r = *state;
  (void)version;
  if (!r) { /* the headers are in: a request begins */
    const char *length;
    if (strcmp(method, MHD_HTTP_METHOD_POST) != 0) return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED);
    length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length && strtod(length, NULL) > MK_LISTEN_MAX_BODY) return respond(conn, MHD_HTTP_CONTENT_TOO_LARGE);
    r = calloc(1, sizeof *r);
    if (!r) return MHD_NO;
    r->listener = l;
    r->conn = conn;
    r->next = l->live;
    if (l->live) l->live->prev = r;
    l->live = r;
    *state = r;
    r->path = mk_copy_str(url);
    return r->path ? MHD_YES : MHD_NO;
  }
  if (*data_size) { /* more of the body */
    if (append(r, data, *data_size) != 0) return MHD_NO;
    *data_size = 0;
    return MHD_YES;
  }
  if (r->status) return respond(conn, r->status); /* resumed with its answer */
  if (r->too_large) return respond(conn, MHD_HTTP_CONTENT_TOO_LARGE);
  if (!r->body && append(r, "", 0) != 0) return MHD_NO; /* an empty body is "" */
  if (MHD_get_connection_values(conn, MHD_HEADER_KIND, add_header, r) < 0) return MHD_NO;
  if (l->on_request(l->ud, r) != 0) return respond(conn, MHD_HTTP_SERVICE_UNAVAILABLE);
  r->suspended = 1;
  MHD_suspend_connection(conn); /* until the Lua layer answers */
  return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **state, enum MHD_RequestTerminationCode why) {
  mk_request *r = *state;
  (void)cls;
  (void)conn;
  (void)why;
  if (!r) return;
  *state = NULL;
  request_free(r); /* answered (or the listener stops): no op holds it any more */
}

/* A connection closed. At MHD_OPTION_CONNECTION_LIMIT libmicrohttpd takes its
 * listening socket out of its epoll set, and puts it back only at the start of
 * a later MHD_run: without that run, connections waiting in the backlog (a
 * burst of more callbacks than the limit) were never accepted, as no event
 * came to wake the listener. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  mk_listener *l = cls;
  (void)conn;
  (void)socket_context;
  if (toe == MHD_CONNECTION_NOTIFY_CLOSED) l->resumed = 1;
}

/* "host:port" into an address: numeric, or localhost. */
static int parse_address(const char *address, struct sockaddr_storage *ss, char *err, size_t errlen) {
  const char *colon = strrchr(address, ':');
  char host[64];
  size_t hlen;
  long port;
  char *end;
  if (!colon || colon == address) {
    snprintf(err, errlen, "listen: '%.80s' is not host:port (e.g. 127.0.0.1:8080)", address);
    return -1;
  }
  port = strtol(colon + 1, &end, 10);
  if (colon[1] == '\0' || *end || port < 0 || port > 65535) {
    snprintf(err, errlen, "listen: the port in '%.80s' is not a number from 0 to 65535", address);
    return -1;
  }
  hlen = (size_t)(colon - address);
  if (address[0] == '[' && hlen >= 2 && address[hlen - 1] == ']') {
    address++;
    hlen -= 2;
  }
  if (hlen >= sizeof host) hlen = sizeof host - 1;
  memcpy(host, address, hlen);
  host[hlen] = '\0';
  memset(ss, 0, sizeof *ss);
  if (!strcmp(host, "localhost")) snprintf(host, sizeof host, "127.0.0.1");
  {
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
      a4->sin_family = AF_INET;
      a4->sin_port = htons((unsigned short)port);
      return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
      a6->sin6_family = AF_INET6;
      a6->sin6_port = htons((unsigned short)port);
      return 0;
    }
  }
  snprintf(err, errlen, "listen: '%.64s' is not a numeric address (or localhost)", host);
  return -1;
}

static void no_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  (void)fmt;
  (void)ap; /* the Lua layer counts and logs what matters; nothing goes to stderr */
}

mk_listener *mk_listener_start(const char *address, mk_on_request on_request, void *ud, char *err, size_t errlen) {
  struct sockaddr_storage ss;
  const union MHD_DaemonInfo *info;
  unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
  mk_listener *l;
  if (parse_address(address, &ss, err, errlen) != 0) return NULL;
  /* dual stack: "[::]" takes IPv4 too, as the callback_url made for it
   * (http://127.0.0.1:port/) needs; libmicrohttpd's IPv6 alone is IPv6 only */
  if (ss.ss_family == AF_INET6) flags |= MHD_USE_DUAL_STACK;
  l = calloc(1, sizeof *l);
  if (!l) {
    snprintf(err, errlen, "listen: out of memory");
    return NULL;
  }
  l->on_request = on_request;
  l->ud = ud;
  l->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_access, l,
                               MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                               MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)MK_LISTEN_TIMEOUT,
                               MHD_OPTION_CONNECTION_LIMIT, (unsigned int)MK_LISTEN_CONNECTIONS,
                               MHD_OPTION_NOTIFY_COMPLETED, on_completed, l,
                               MHD_OPTION_NOTIFY_CONNECTION, on_connection, l,
                               MHD_OPTION_EXTERNAL_LOGGER, no_log, NULL,
                               MHD_OPTION_END);
  if (!l->daemon) {
    snprintf(err, errlen, "listen: cannot listen on %.80s (in use, or not an address of this machine)", address);
    free(l);
    return NULL;
  }
  info = MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_EPOLL_FD);
  l->fd = info ? info->epoll_fd : -1;
  info = MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_BIND_PORT);
  l->port = info ? info->port : 0;
  if (l->fd < 0) {
    snprintf(err, errlen, "listen: libmicrohttpd has no epoll descriptor");
    MHD_stop_daemon(l->daemon);
    free(l);
    return NULL;
  }
  return l;
}

void mk_listener_stop(mk_listener *l) {
  mk_request *r;
  if (!l) return;
  /* a suspended connection must be resumed before the daemon stops */
  for (r = l->live; r; r = r->next) {
    r->owner = NULL;
    if (r->suspended) {
      r->suspended = 0;
      if (!r->status) r->status = MHD_HTTP_SERVICE_UNAVAILABLE;
      MHD_resume_connection(r->conn);
    }
  }
  MHD_run(l->daemon);
  MHD_stop_daemon(l->daemon);
  while (l->live) request_free(l->live);
  free(l);
}

int mk_listener_port(const mk_listener *l) {
  return l->port;
}

int mk_listener_fd(const mk_listener *l) {
  return l->fd;
}

double mk_listener_timeout(mk_listener *l) {
  MHD_UNSIGNED_LONG_LONG ms;
  if (l->resumed) return 0;
  if (MHD_get_timeout(l->daemon, &ms) != MHD_YES) return -1;
  return (double)ms / 1000.0;
}

void mk_listener_run(mk_listener *l) {
  l->resumed = 0;
  MHD_run(l->daemon);
}

void mk_listener_answer(mk_listener *l, mk_request *req, int status) {
  req->owner = NULL;
  if (!req->suspended) return;
  req->status = status >= 100 && status <= 599 ? status : MHD_HTTP_INTERNAL_SERVER_ERROR;
  req->suspended = 0;
  MHD_resume_connection(req->conn);
  l->resumed = 1; /* the answer goes out on the next MHD_run */
}

/* bench/exchange.c: the raw C baseline of the exchange benchmark. W exchanges
 * with C in flight over libcurl's multi interface, half POST download-url
 * with the body in BODY_FILE, half GET recordInfo; each answer is decoded
 * with cJSON and a field read (data, a string; data.state). What libcurl can do on
 * this machine with nothing in the way: easy handles reused, keep-alive,
 * HTTP/2 multiplexing, the same request headers modkie sends.
 *
 *   exchange URL BODY_FILE W C [socket|poll|polls|jobs|jobs-json] [CA_FILE]
 *
 * socket: curl_multi_socket_action driven by epoll (how modkie's engine is
 *         driven, with epoll instead of poll); poll: curl_multi_poll +
 *         curl_multi_perform, the textbook loop.
 * Two more workloads, on the curl_multi_poll loop, each the raw C half of a
 * row of bench/run.lua's "polling and whole jobs" table:
 *   polls: W GETs of a record that stays "generating" (taskId
 *          task_bench_gen), each answer decoded and its state read: what
 *          polling adopted jobs costs, on kept-alive connections;
 *   jobs:  W / 2 jobs, each a POST createTask on a connection of its own
 *          (CURLOPT_FRESH_CONNECT, as modkie sends a create), its taskId
 *          read, then a GET of that task's record (nginx says "success"),
 *          its state read; the create's body is BODY_FILE as it is;
 *   jobs-json: the same jobs with the JSON work modkie's job does: each
 *          create's body encoded from the model and the input (cJSON;
 *          the prompt is BODY_FILE's text, as bench/exchange.lua's
 *          modkie-jobs gives it), and the success's output URLs read from
 *          its resultJson.
 * EXCHANGE_SPIN_US=N (a calibration, not a contender): N µs of this
 * thread's own CPU burnt per unit of work (a job in jobs and jobs-json, else
 * an exchange), to see what N more µs of client work per job comes to in
 * this measurement, kernel included (bench/FINDINGS.md, 8.3).
 * Prints one line: exchanges= errors= wall= cpu= user= sys= rss_kb=
 * (cpu is CLOCK_PROCESS_CPUTIME_ID around the run, user/sys from getrusage;
 * rss_kb is the process's peak, VmHWM). Never fails on time. */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>

/* libcurl 7.88 can leave a multiplexed HTTP/2 transfer unnoticed until a wait
 * times out: never wait longer than this while transfers are active. */
#define WAIT_CAP_MS 50

typedef enum { MIXED, POLLS, JOBS } workload;

typedef struct xfer {
  CURL *easy;
  char *buf;
  size_t len, cap;
  int post;
  char url[600]; /* jobs: the record URL of the task just created */
  char *job_body; /* jobs-json: this job's createTask body (cJSON's text) */
} xfer;

typedef struct bench {
  CURLM *multi;
  int epfd;
  long timeout_ms; /* libcurl's timer, -1: none */
  const char *create_url, *link_url, *record_url, *body;
  const char *base;
  size_t body_len;
  workload work;
  int json_work; /* jobs-json: bodies encoded per job, output URLs read */
  long total, started, done, errors;
  double spin_us; /* EXCHANGE_SPIN_US */
  struct curl_slist *headers;
} bench;

static double now(clockid_t clk) {
  struct timespec ts;
  clock_gettime(clk, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* EXCHANGE_SPIN_US: burn `us` µs of this thread's CPU */
static void spin(double us) {
  double end = now(CLOCK_THREAD_CPUTIME_ID) + us / 1e6;
  while (now(CLOCK_THREAD_CPUTIME_ID) < end) {
  }
}

static long peak_rss_kb(void) {
  char line[256];
  long kb = -1;
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmHWM: %ld", &kb) == 1) break;
  fclose(f);
  return kb;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  xfer *x = ud;
  size_t len = size * n;
  if (x->len + len + 1 > x->cap) {
    size_t cap = x->cap ? x->cap : 1024;
    char *b;
    while (cap < x->len + len + 1) cap *= 2;
    b = realloc(x->buf, cap);
    if (!b) return 0;
    x->buf = b;
    x->cap = cap;
  }
  memcpy(x->buf + x->len, p, len);
  x->len += len;
  return len;
}

/* jobs-json: the createTask body of one job, {"model", "input": {"prompt"}},
 * encoded as a client encodes its caller's input; NULL out of memory */
static char *job_body(const bench *b) {
  cJSON *doc = cJSON_CreateObject(), *input = cJSON_CreateObject();
  char *text = NULL;
  if (doc && input && cJSON_AddStringToObject(doc, "model", "kling/kling-3-0") &&
      cJSON_AddStringToObject(input, "prompt", b->body)) {
    cJSON_AddItemToObject(doc, "input", input);
    input = NULL;
    text = cJSON_PrintUnformatted(doc);
  }
  cJSON_Delete(input);
  cJSON_Delete(doc);
  return text;
}

static void point(bench *b, xfer *x, int post, const char *url) {
  x->len = 0;
  x->post = post;
  curl_easy_setopt(x->easy, CURLOPT_URL, url);
  if (post && b->json_work) {
    free(x->job_body);
    x->job_body = job_body(b);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(x->job_body ? strlen(x->job_body) : 0));
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->job_body ? x->job_body : "");
  } else if (post) {
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b->body_len);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, b->body);
  } else {
    curl_easy_setopt(x->easy, CURLOPT_HTTPGET, 1L);
  }
  /* jobs: a createTask never rides a reused connection */
  if (b->work == JOBS) curl_easy_setopt(x->easy, CURLOPT_FRESH_CONNECT, post ? 1L : 0L);
}

/* Point the easy handle at the next exchange: even ones create, odd ones poll
 * (polls: every one polls; jobs: a create, then its poll, see collect). */
static void next_exchange(bench *b, xfer *x) {
  long i = b->started++;
  if (b->work == POLLS) point(b, x, 0, b->record_url);
  else if (b->work == JOBS) point(b, x, 1, b->create_url);
  else point(b, x, (i % 2) == 0, (i % 2) == 0 ? b->link_url : b->record_url);
}


static int setup(bench *b, xfer *x, const char *ca_file) {
  CURL *c = curl_easy_init();
  CURLcode rc = CURLE_OK;
  if (!c) return -1;
  x->easy = c;
#define SET(opt, val) if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val)
  SET(CURLOPT_PRIVATE, x);
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  SET(CURLOPT_PIPEWAIT, 1L);
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_ACCEPT_ENCODING, "");
  SET(CURLOPT_HTTPHEADER, b->headers);
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, x);
  SET(CURLOPT_USERAGENT, "bench-exchange");
  if (ca_file) SET(CURLOPT_CAINFO, ca_file);
#undef SET
  return rc == CURLE_OK ? 0 : -1;
}

/* jobs-json: a success record's output URLs, from its resultJson (a JSON string
 * in Kie's record): how many, 0 when there is none or it is not JSON */
static int result_urls(const cJSON *data) {
  const cJSON *raw = cJSON_GetObjectItemCaseSensitive(data, "resultJson"), *u;
  cJSON *result;
  int n = 0;
  if (!cJSON_IsString(raw)) return 0;
  result = cJSON_Parse(raw->valuestring);
  cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(result, "resultUrls")) n += cJSON_IsString(u);
  cJSON_Delete(result);
  return n;
}

/* The answer: code 200 and the field of its kind present (mixed: a POST's
 * data is a link, a string). jobs: a create's
 * answer points the handle at the poll of the task it names (its id
 * percent-encoded), read from the same parse; jobs-json: its poll's success
 * has an output URL. */
static int check_answer(bench *b, xfer *x) {
  cJSON *doc = cJSON_ParseWithLength(x->buf ? x->buf : "", x->len), *data, *field;
  int ok;
  if (!doc) return 0;
  data = cJSON_GetObjectItemCaseSensitive(doc, "data");
  field = x->post && b->work == MIXED ? data : cJSON_GetObjectItemCaseSensitive(data, x->post ? "taskId" : "state");
  ok = cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(doc, "code")) && cJSON_IsString(field) &&
       field->valuestring[0] != '\0';
  if (ok && b->work == JOBS && x->post) {
    char *escaped = curl_easy_escape(x->easy, field->valuestring, 0);
    ok = escaped != NULL;
    if (ok) snprintf(x->url, sizeof x->url, "%s/api/v1/jobs/recordInfo?taskId=%s", b->base, escaped);
    curl_free(escaped);
  }
  if (ok && b->json_work && !x->post) ok = result_urls(data) > 0;
  cJSON_Delete(doc);
  return ok;
}

static void collect(bench *b) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(b->multi, &left))) {
    xfer *x = NULL;
    long status = 0;
    int ok;
    CURL *easy = msg->easy_handle;
    CURLcode result = msg->data.result;
    if (msg->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    b->done++;
    ok = result == CURLE_OK && status == 200 && check_answer(b, x);
    if (!ok) {
      b->errors++;
      if (getenv("BENCH_DEBUG") && (result != CURLE_OK || status != 200)) fprintf(stderr, "exchange: %s, HTTP %ld\n", curl_easy_strerror(result), status);
    }
    if (b->spin_us > 0 && !(b->work == JOBS && x->post)) spin(b->spin_us); /* a unit of work done */
    curl_multi_remove_handle(b->multi, easy);
    if (b->work == JOBS && x->post) { /* the job's poll: part of the same job */
      if (ok) {
        point(b, x, 0, x->url);
        curl_multi_add_handle(b->multi, easy);
        continue;
      }
      b->errors++;
      b->done++; /* the poll that could not be sent */
    }
    if (b->started < (b->work == JOBS ? b->total / 2 : b->total)) {
      next_exchange(b, x);
      curl_multi_add_handle(b->multi, easy);
    }
  }
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *ud, void *socketp) {
  bench *b = ud;
  struct epoll_event ev;
  (void)easy;
  memset(&ev, 0, sizeof ev);
  ev.data.fd = s;
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(b->epfd, EPOLL_CTL_DEL, s, NULL);
    curl_multi_assign(b->multi, s, NULL);
    return 0;
  }
  ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
  if (socketp) {
    epoll_ctl(b->epfd, EPOLL_CTL_MOD, s, &ev);
  } else {
    epoll_ctl(b->epfd, EPOLL_CTL_ADD, s, &ev);
    curl_multi_assign(b->multi, s, b); /* any non-NULL: known */
  }
  return 0;
}

static int on_timer(CURLM *multi, long ms, void *ud) {
  (void)multi;
  ((bench *)ud)->timeout_ms = ms;
  return 0;
}

static void run_socket(bench *b) {
  struct epoll_event evs[64];
  int running = 0, i, n;
  curl_multi_socket_action(b->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  collect(b);
  while (b->done < b->total) {
    long wait = b->timeout_ms < 0 || b->timeout_ms > WAIT_CAP_MS ? WAIT_CAP_MS : b->timeout_ms;
    n = epoll_wait(b->epfd, evs, 64, (int)wait);
    if (n <= 0) {
      b->timeout_ms = -1;
      curl_multi_socket_action(b->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    for (i = 0; i < n; i++) {
      int flags = ((evs[i].events & (EPOLLIN | EPOLLHUP)) ? CURL_CSELECT_IN : 0) |
                  ((evs[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                  ((evs[i].events & EPOLLERR) ? CURL_CSELECT_ERR : 0);
      curl_multi_socket_action(b->multi, evs[i].data.fd, flags, &running);
    }
    collect(b);
  }
}

static void run_poll(bench *b) {
  int running = 1;
  while (b->done < b->total) {
    curl_multi_perform(b->multi, &running);
    collect(b);
    if (b->done >= b->total) break;
    curl_multi_poll(b->multi, NULL, 0, WAIT_CAP_MS, NULL);
  }
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *s;
  long n;
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  s = malloc((size_t)n + 1);
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
    free(s);
    s = NULL;
  }
  fclose(f);
  if (s) s[n] = '\0';
  *len = (size_t)n;
  return s;
}

int main(int argc, char **argv) {
  bench b;
  xfer *xs;
  long c, i;
  int use_poll;
  const char *mode;
  const char *ca_file;
  char create_url[512], link_url[512], record_url[512];
  double wall0, cpu0, wall, cpu;
  struct rusage ru;
  if (argc < 5) {
    fprintf(stderr, "usage: %s URL BODY_FILE W C [socket|poll] [CA_FILE]\n", argv[0]);
    return 2;
  }
  memset(&b, 0, sizeof b);
  snprintf(create_url, sizeof create_url, "%s/api/v1/jobs/createTask", argv[1]);
  snprintf(link_url, sizeof link_url, "%s/api/v1/common/download-url", argv[1]);
  mode = argc > 5 ? argv[5] : "socket";
  b.json_work = !strcmp(mode, "jobs-json");
  b.work = !strcmp(mode, "polls") ? POLLS : (!strcmp(mode, "jobs") || b.json_work) ? JOBS : MIXED;
  b.base = argv[1];
  snprintf(record_url, sizeof record_url, "%s/api/v1/jobs/recordInfo?taskId=%s", argv[1],
           b.work == POLLS ? "task_bench_gen" : "task_bench_1");
  b.create_url = create_url;
  b.link_url = link_url;
  b.record_url = record_url;
  b.body = slurp(argv[2], &b.body_len);
  b.spin_us = getenv("EXCHANGE_SPIN_US") ? atof(getenv("EXCHANGE_SPIN_US")) : 0;
  b.total = atol(argv[3]);
  c = atol(argv[4]);
  use_poll = strcmp(mode, "socket") != 0;
  ca_file = argc > 6 ? argv[6] : NULL;
  if (!b.body || b.total < 1 || c < 1) {
    fprintf(stderr, "exchange: bad arguments\n");
    return 2;
  }
  if (b.work == JOBS) b.total = b.total / 2 * 2; /* whole jobs: a create and its poll each */
  if (c > (b.work == JOBS ? b.total / 2 : b.total)) c = b.work == JOBS ? b.total / 2 : b.total;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  b.headers = curl_slist_append(NULL, "Authorization: Bearer bench");
  b.headers = curl_slist_append(b.headers, "Content-Type: application/json");
  b.headers = curl_slist_append(b.headers, "Accept: application/json");
  b.headers = curl_slist_append(b.headers, "Expect:");
  b.multi = curl_multi_init();
  b.timeout_ms = -1;
  b.epfd = epoll_create1(0);
  curl_multi_setopt(b.multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  curl_multi_setopt(b.multi, CURLMOPT_MAX_HOST_CONNECTIONS, c);
  curl_multi_setopt(b.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, c);
  curl_multi_setopt(b.multi, CURLMOPT_MAXCONNECTS, c);
  /* libcurl's default is 100 streams per connection; the server allows more */
  curl_multi_setopt(b.multi, CURLMOPT_MAX_CONCURRENT_STREAMS, c > 100 ? c : 100L);
  if (!use_poll) {
    curl_multi_setopt(b.multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(b.multi, CURLMOPT_SOCKETDATA, &b);
    curl_multi_setopt(b.multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(b.multi, CURLMOPT_TIMERDATA, &b);
  }
  xs = calloc((size_t)c, sizeof *xs);
  wall0 = now(CLOCK_MONOTONIC);
  cpu0 = now(CLOCK_PROCESS_CPUTIME_ID);
  for (i = 0; i < c; i++) {
    if (setup(&b, &xs[i], ca_file) != 0) {
      fprintf(stderr, "exchange: could not set up a handle\n");
      return 1;
    }
    next_exchange(&b, &xs[i]);
    curl_multi_add_handle(b.multi, xs[i].easy);
  }
  if (use_poll) run_poll(&b);
  else run_socket(&b);
  wall = now(CLOCK_MONOTONIC) - wall0;
  cpu = now(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
  getrusage(RUSAGE_SELF, &ru);
  printf("exchanges=%ld errors=%ld wall=%.6f cpu=%.6f user=%.6f sys=%.6f rss_kb=%ld\n", b.done, b.errors, wall, cpu,
         (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6, peak_rss_kb());
  for (i = 0; i < c; i++) {
    curl_multi_remove_handle(b.multi, xs[i].easy);
    curl_easy_cleanup(xs[i].easy);
    free(xs[i].buf);
    free(xs[i].job_body);
  }
  free(xs);
  curl_multi_cleanup(b.multi);
  curl_slist_free_all(b.headers);
  free((char *)b.body);
  curl_global_cleanup();
  return 0;
}

/* reply.c: libFuzzer harness for the whole "response -> facts -> verdict ->
 * state machine -> events -> Lua tables" path of the C core, without a
 * network: arbitrary bytes as the body of an HTTP response to createTask,
 * recordInfo (as a job's poll or as a one-off call), credit, download-url or
 * a download, with any HTTP status and transport outcome, go through the
 * engine's public entry points (lib/job.h's mk_job_answered, lib/call.h's
 * mk_call_answered): lib/reply.c parses the body with cJSON and reads the
 * envelope, lib/judge.c decides, the job state machine (lib/job.c) or the
 * call (lib/call.c) applies the decision and queues the events the Lua layer
 * would receive; each event's result or error then becomes Lua tables
 * through the bindings' converters (src/record.c), in an embedded Lua 5.4.
 *
 * The op is a real one made by the engine, taken off its line before any
 * transfer starts, with its result filled in as the engine's collect() would.
 *
 * Properties: no sanitizer report; no Lua error out of the converters; every
 * event is well-formed (known type, documented error kind, a message, finite
 * delays); createTask is accepted, and a call or poll succeeds, only on HTTP
 * 2xx with an envelope whose code is 200; the op is released or scheduled,
 * never lost; a poll that changes nothing makes no event. */
#include <math.h>

#include "../src/core.h"
#include "../src/lib/call.h"
#include "../src/lib/engine.h"
#include "../src/lib/job.h"
#include "fuzz.h"

#include <lualib.h>

static lua_State *L;
static mk_engine *E;

/* Checks the Lua tables of one event: check(type, t, body, http, curl_ok, kind)
 * raises with a message on a broken property. */
static const char CHECKER[] =
  "local KINDS = {}\n"
  "for k in ('validation config auth credits rate_limit not_found server network timeout deadline failed '\n"
  "  .. 'protocol cancelled ambiguous'):gmatch('%S+') do KINDS[k] = true end\n"
  "local function finite(x) return type(x) == 'number' and x == x and x > -math.huge and x < math.huge end\n"
  "return function(what, t)\n"
  "  if what == 'error' then\n"
  "    assert(type(t) == 'table' and KINDS[t.kind], 'undocumented kind ' .. tostring(t and t.kind))\n"
  "    assert(type(t.message) == 'string' and #t.message > 0, 'error without a message')\n"
  "    assert(t.status == nil or math.type(t.status) == 'integer', 'status not an integer')\n"
  "    assert(t.code == nil or type(t.code) == 'string' or finite(t.code), 'code neither a number nor a string')\n"
  "  else\n"
  "    assert(type(t) == 'table' and t.state == 'success', 'a result not in state success')\n"
  "    assert(type(t.id) == 'string' and #t.id > 0, 'a result without an id')\n"
  "    assert(type(t.urls) == 'table', 'a result without urls')\n"
  "    for i, u in ipairs(t.urls) do assert(type(u) == 'string' and #u > 0, 'url ' .. i) end\n"
  "    for _, k in ipairs({ 'credits', 'created_at', 'completed_at', 'updated_at', 'cost_time', 'progress' }) do\n"
  "      assert(t[k] == nil or finite(t[k]), k .. ' is ' .. tostring(t[k]))\n"
  "    end\n"
  "  end\n"
  "end\n";

static int checker_ref = LUA_NOREF;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  mk_config cfg;
  char err[256];
  (void)argc;
  (void)argv;
  L = luaL_newstate();
  if (!L) abort();
  luaL_openlibs(L);
  if (luaL_loadstring(L, CHECKER) != 0) abort();
  lua_call(L, 0, 1);
  checker_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  memset(&cfg, 0, sizeof cfg);
  cfg.base_url = "http://127.0.0.1:9";
  cfg.api_key = "k";
  cfg.user_agent = "fuzz";
  cfg.timeout_ms = cfg.connect_timeout_ms = 1000;
  cfg.max_body = 1 << 20;
  cfg.max_connections = 4;
  cfg.seed = 7;
  cfg.record_grace = 60;
  E = mk_engine_new(&cfg, err, sizeof err);
  if (!E) {
    fprintf(stderr, "reply: %s\n", err);
    abort();
  }
  return 0;
}

/* Build the tables of an event's payload, protected: (ev) */
static int convert(lua_State *LL) {
  const mk_event *ev = (const mk_event *)lua_touserdata(LL, 1);
  lua_rawgeti(LL, LUA_REGISTRYINDEX, checker_ref);
  if (ev->has_error) {
    lua_pushliteral(LL, "error");
    mk_push_error(LL, &ev->error, ev->task_id);
  } else if (ev->has_reading && ev->reading.outcome == MK_READ_SUCCESS) {
    lua_pushliteral(LL, "result");
    mk_push_result(LL, &ev->reading);
  } else if (ev->has_reading) {
    lua_pushliteral(LL, "error");
    mk_push_reading_error(LL, &ev->reading);
  } else {
    if (ev->data) mk_push_json(LL, ev->data); /* a call's data, as lua-cjson would decode it */
    return 0;
  }
  lua_call(LL, 2, 0);
  return 0;
}

static long pick_http(uint8_t sel) {
  static const long known[] = {200, 200, 200, 200, 201, 204, 299, 0, 301, 400, 401, 402, 403, 404, 413,
                               422, 429, 455, 500, 501, 502, 503, 505, 599};
  return sel < 240 ? known[sel % (sizeof known / sizeof known[0])] : (long)sel * 3;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const NAMES[] = {"create", "poll", "record", "credit", "download-url", "download"};
  fz f = {data, size};
  uint8_t kind = fz_u8(&f) % 6, transport = fz_u8(&f), counters = fz_u8(&f);
  long http = pick_http(fz_u8(&f));
  uint8_t ra = fz_u8(&f);
  mk_op *op = NULL;
  mk_event *ev;
  uint64_t h;
  size_t len;
  char *body;
  int curl_ok, fine, code200 = 0, events = 0, unchanged = 0;
  mk_job_state state_before = MK_QUEUED;
  char word_before[40] = "";
  cJSON *doc;

  switch (kind) {
    case 0: op = mk_engine_submit(E, "{}", 2, 0); break;
    case 1: op = mk_engine_adopt(E, "task_fuzz", 0); break;
    case 2: op = mk_engine_call(E, MK_EP_RECORD, "task_fuzz", NULL, 0); break;
    case 3: op = mk_engine_call(E, MK_EP_CREDIT, NULL, NULL, 0); break;
    case 4: op = mk_engine_call(E, MK_EP_DOWNLOAD_URL, NULL, "{}", 2); break;
    default: op = mk_engine_download(E, "http://127.0.0.1:9/f.mp4", "/nonexistent/modkie-fuzz/f.mp4");
  }
  if (!op) abort();
  mk_engine_stop(E, op); /* off its line: no transfer ever starts */
  h = mk_op_handle(op);
  E->retries = counters % 6;
  E->interval_mode = (mk_interval_mode)((transport >> 5) % 3);
  op->attempts = (counters >> 3) % 6;
  op->garbled = (counters >> 5) % 6;
  if (kind == 0) op->expired = (transport >> 7) & 1;
  if (kind == 1) {
    op->state = state_before = (transport & 64) ? MK_RUNNING : MK_QUEUED;
    snprintf(word_before, sizeof word_before, "%s", (transport & 32) ? "generating" : "waiting");
    snprintf(op->server_state, sizeof op->server_state, "%s", word_before);
  }

  /* what collect() leaves: the body NUL-terminated, exactly sized */
  body = fz_rest(&f, &len);
  memset(&op->result, 0, sizeof op->result);
  op->result.curl = transport % 8 == 7 ? CURLE_RECV_ERROR : CURLE_OK;
  op->result.sent = (transport >> 3) & 1;
  op->result.too_large = op->result.curl != CURLE_OK && ((transport >> 4) & 1);
  op->result.http = http;
  op->result.retry_after = ra < 128 ? -1 : ra < 250 ? (double)(ra - 128) : ra == 250 ? 1e300 : 0.5;
  op->result.body = body;
  op->result.body_len = len;
  op->result.error = "Recv failure: Connection reset by peer";
  curl_ok = op->result.curl == CURLE_OK;

  /* the envelope as the contract reads it: code 200 (a number, or a string of one) */
  doc = mk_json_parse(body, len);
  if (cJSON_IsObject(doc)) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(doc, "code");
    double d;
    const char *word = mk_json_string(cJSON_GetObjectItemCaseSensitive(doc, "data"), "state");
    code200 = mk_json_number(c, &d) && d == 200;
    /* a poll that says what the job knew: same word, same state, no progress */
    unchanged = word && !strcmp(word, word_before) && mk_classify_state(word) == state_before &&
                !cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "data"), "progress");
  }
  cJSON_Delete(doc);
  fine = curl_ok && http >= 200 && http <= 299 && (kind == 5 || code200);

  if (kind <= 1) mk_job_answered(E, op);
  else mk_call_answered(E, op);
  /* op may be freed now: only its handle is used below */

  while ((ev = mk_engine_event(E))) {
    events++;
    FZ_CHECK(ev->h == h, "an event for another op");
    FZ_CHECK(ev->type >= MK_EV_ACCEPTED && ev->type <= MK_EV_REPLY, "event type %d", (int)ev->type);
    if (ev->has_error) {
      FZ_CHECK(ev->error.kind > MK_KIND_NONE && ev->error.kind <= MK_KIND_AMBIGUOUS, "kind %d", (int)ev->error.kind);
      FZ_CHECK(ev->error.message[0] != '\0', "an error without a message (%s)", mk_kind_name(ev->error.kind));
    }
    switch (ev->type) {
      case MK_EV_RETRY:
        FZ_CHECK(isfinite(ev->delay) && ev->delay >= 0 && ev->delay <= 30.1, "retry delay %g", ev->delay);
        break;
      case MK_EV_ACCEPTED:
        FZ_CHECK(kind == 0 && fine, "createTask accepted on HTTP %ld (code 200: %d)", http, code200);
        FZ_CHECK(ev->task_id && ev->task_id[0], "accepted without a task id");
        break;
      case MK_EV_STATE:
        FZ_CHECK(!(kind == 1 && fine && unchanged), "a STATE event for a poll that changed nothing");
        break;
      case MK_EV_INTERVAL:
        FZ_CHECK(isfinite(ev->fallback) && ev->fallback >= 2 && ev->fallback <= 30, "default %g", ev->fallback);
        break;
      case MK_EV_DONE:
      case MK_EV_REPLY:
        if (ev->state == MK_SUCCESS || ev->state == MK_FAILED)
          FZ_CHECK(fine || (ev->state == MK_FAILED && kind == 1), "%s %s on HTTP %ld (code 200: %d)", NAMES[kind],
                   mk_state_name(ev->state), http, code200);
        break;
      default:
        break;
    }
    lua_pushcfunction(L, convert);
    lua_pushlightuserdata(L, ev);
    if (lua_pcall(L, 1, 0, 0) != 0) {
      fprintf(stderr, "reply: the tables of a %s event for %s: %s\n", mk_state_name(ev->state), NAMES[kind],
              lua_tostring(L, -1));
      abort();
    }
    mk_engine_event_done(E);
  }
  /* a poll that changes nothing reaches no host code: no event, unless the host is asked when to poll */
  if (kind == 1 && fine && unchanged && E->interval_mode != MK_INTERVAL_ASK)
    FZ_CHECK(events == 0, "%d events for a poll that changed nothing", events);
  /* the op was released, or scheduled again: release it now */
  if ((op = mk_engine_lookup(E, h))) mk_engine_release(E, op);
  FZ_CHECK(mk_engine_live(E) == 0, "%u ops left alive", (unsigned)mk_engine_live(E));
  free(body);
  /* back to the same heap after every input, so that libFuzzer's leak check
   * (run when an input allocated more than it freed) sees only real leaks */
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}

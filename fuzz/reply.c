/* reply.c: libFuzzer harness for the whole "response -> facts -> verdict ->
 * events" path of the C core, without a network: arbitrary bytes as the
 * body of an HTTP response to createTask, recordInfo (as a job's poll or as
 * a one-off call), credits, download-url or a download, with any HTTP status
 * and transport outcome, go through the real bindings: read_reply decodes
 * the body with lua-cjson (configured as client.lua configures it) in an
 * embedded Lua 5.4 state and reads code, msg/message, data, data.taskId and
 * data.state; mk_judge_* decides; on_create/on_poll/on_call build the event
 * tables the Lua layer receives and reschedule or release the op.
 *
 * read_reply and the on_* handlers are static in core.c, so this file
 * includes core.c (a seam that changes nothing in the module). The op is a
 * real one made by the engine, taken off its queue before any transfer
 * starts, with its result filled in as collect() would.
 *
 * Properties: no sanitizer report; no Lua error out of the handlers; every
 * event is well-formed (known type, documented error kind, a message, finite
 * delays); createTask is accepted, and a call or poll succeeds, only on HTTP
 * 2xx with an envelope whose code is 200. */
#include "../src/core.c"
#include "fuzz.h"

static lua_State *L;
static engine_ud *U;

/* Checks the events of one exchange, in Lua since they are Lua tables.
 * check(events, body, http, kind) raises with a message on a broken property. */
static const char CHECKER[] =
  "local decode = ...\n"
  "local KINDS = {}\n"
  "for k in ('validation config auth credits rate_limit not_found server network timeout deadline failed '\n"
  "  .. 'protocol cancelled ambiguous'):gmatch('%S+') do KINDS[k] = true end\n"
  "local TYPES = { accepted = true, done = true, retry = true, state = true, warning = true, reply = true }\n"
  "local STATES = { success = true, failed = true, error = true, queued = true, running = true }\n"
  "local function finite(x) return type(x) == 'number' and x == x and x > -math.huge and x < math.huge end\n"
  "return function(events, body, http, curl_ok, kind)\n"
  "  if events == nil then return end\n"
  "  local env = decode(body)\n"
  "  local code = type(env) == 'table' and env.code or nil\n"
  "  local code200 = (type(code) == 'number' or type(code) == 'string') and tonumber(code) == 200\n"
  "  local fine = curl_ok and http >= 200 and http <= 299 and (kind == 'download' or code200)\n"
  "  for i, ev in ipairs(events) do\n"
  "    assert(type(ev) == 'table' and TYPES[ev.type], 'event ' .. i .. ': bad type ' .. tostring(ev.type))\n"
  "    assert(math.type(ev.h) == 'integer' or finite(ev.h), 'event without a handle')\n"
  "    if ev.state ~= nil then assert(STATES[ev.state], 'bad state ' .. tostring(ev.state)) end\n"
  "    local e = ev.error\n"
  "    if e ~= nil then\n"
  "      assert(type(e) == 'table' and KINDS[e.kind], 'undocumented kind ' .. tostring(e and e.kind))\n"
  "      assert(type(e.message) == 'string' and #e.message > 0, 'error without a message')\n"
  "      assert(e.status == nil or math.type(e.status) == 'integer', 'status not an integer')\n"
  "      assert(e.code == nil or math.type(e.code) == 'integer', 'code not an integer')\n"
  "    end\n"
  "    if ev.type == 'retry' then\n"
  "      assert(finite(ev.delay) and ev.delay >= 0 and ev.delay <= 30.1, 'retry delay ' .. tostring(ev.delay))\n"
  "    end\n"
  "    if ev.type == 'accepted' then\n"
  "      assert(fine, ('createTask accepted on HTTP %d with code %s'):format(http, tostring(code)))\n"
  "      assert(type(ev.task_id) == 'string' and #ev.task_id > 0, 'accepted without a task id')\n"
  "    end\n"
  "    if (ev.type == 'reply' or ev.type == 'done') and (ev.state == 'success' or ev.state == 'failed') then\n"
  "      assert(fine, ('%s %s on HTTP %d with code %s'):format(kind, ev.state, http, tostring(code)))\n"
  "    end\n"
  "  end\n"
  "end\n";

static int checker_ref = LUA_NOREF;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  L = luaL_newstate();
  if (!L) abort();
  luaL_openlibs(L);
  luaL_requiref(L, "modkie.core", luaopen_modkie_core, 0);
  lua_pop(L, 1);
  /* the engine as client.lua makes it: cjson.safe, decode depth 64 */
  if (luaL_dostring(L, "local core = require 'modkie.core'\n"
                       "local json = require('cjson.safe').new()\n"
                       "json.decode_max_depth(64)\n"
                       "return core.new{ base_url = 'http://127.0.0.1:9', api_key = 'k', decode = json.decode,\n"
                       "  seed = 7, submit_rate = false, poll_rate = false }, json.decode") != 0) {
    fprintf(stderr, "reply: %s\n", lua_tostring(L, -1));
    abort();
  }
  /* stack: engine, decode; the checker takes the decoder */
  if (luaL_loadstring(L, CHECKER) != 0) abort();
  lua_pushvalue(L, -2);
  lua_call(L, 1, 1);
  checker_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  U = (engine_ud *)luaL_checkudata(L, -1, ENGINE_MT);
  luaL_ref(L, LUA_REGISTRYINDEX); /* the engine lives as long as the process */
  lua_settop(L, 0);
  return 0;
}

/* Run the handler the way l_step does, inside a pcall: (op) -> events | nil */
static int handle(lua_State *LL) {
  mk_op *op = (mk_op *)lua_touserdata(LL, 1);
  events ev;
  lua_settop(LL, 1);
  lua_newtable(LL);
  ev.L = LL;
  ev.list = lua_gettop(LL);
  ev.n = 0;
  U->stepping = 1;
  if (op->type == MK_OP_JOB) {
    if (op->state == MK_SUBMITTING) on_create(LL, U, op, &ev);
    else on_poll(LL, U, op, &ev);
  } else {
    on_call(LL, U, op, &ev);
  }
  U->stepping = 0;
  lua_settop(LL, ev.list);
  return 1;
}

static long pick_http(uint8_t sel) {
  static const long known[] = {200, 200, 200, 200, 201, 204, 299, 0, 301, 400, 401, 402, 403, 404, 413,
                               422, 429, 455, 500, 501, 502, 503, 505, 599};
  return sel < 240 ? known[sel % (sizeof known / sizeof known[0])] : (long)sel * 3;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const NAMES[] = {"create", "poll", "record", "credits", "download-url", "download"};
  fz f = {data, size};
  mk_engine *e = U->e;
  uint8_t kind = fz_u8(&f) % 6, transport = fz_u8(&f), counters = fz_u8(&f);
  long http = pick_http(fz_u8(&f));
  uint8_t ra = fz_u8(&f);
  mk_op *op = NULL;
  uint64_t h;
  size_t len;
  char *body;
  int top = lua_gettop(L), curl_ok;

  switch (kind) {
    case 0: op = mk_engine_submit(e, "{}", 2, 0); break;
    case 1: op = mk_engine_adopt(e, "task_fuzz", 0); break;
    case 2: op = mk_engine_call(e, 0, "/api/v1/jobs/recordInfo?taskId=task_fuzz", NULL, 0); break;
    case 3: op = mk_engine_call(e, 0, "/api/v1/chat/credit", NULL, 0); break;
    case 4: op = mk_engine_call(e, 1, "/api/v1/common/download-url", "{}", 2); break;
    default: op = mk_engine_download(e, "http://127.0.0.1:9/f.mp4", "/nonexistent/modkie-fuzz/f.mp4");
  }
  if (!op) abort();
  mk_engine_stop(e, op); /* off its queue: no transfer ever starts */
  h = mk_op_handle(op);
  e->retries = counters % 6;
  op->attempts = (counters >> 3) % 6;
  op->garbled = (counters >> 5) % 6;
  if (kind == 0) op->expired = (transport >> 7) & 1;
  if (kind == 1) {
    op->state = (transport & 64) ? MK_RUNNING : MK_QUEUED;
    snprintf(op->server_state, sizeof op->server_state, "%s", (transport & 32) ? "generating" : "waiting");
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
  op->done_why = MK_DONE_XFER;
  curl_ok = op->result.curl == CURLE_OK; /* the handler may free the op */

  lua_pushcfunction(L, handle);
  lua_pushlightuserdata(L, op);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    fprintf(stderr, "reply: a Lua error escaped the %s handler: %s\n", NAMES[kind], lua_tostring(L, -1));
    abort();
  }
  /* check(events, body, http, curl_ok, kind) */
  lua_rawgeti(L, LUA_REGISTRYINDEX, checker_ref);
  lua_insert(L, -2);
  lua_pushlstring(L, body, len);
  lua_pushinteger(L, http);
  lua_pushboolean(L, curl_ok);
  lua_pushstring(L, kind == 5 ? "download" : NAMES[kind]);
  if (lua_pcall(L, 5, 0, 0) != 0) {
    fprintf(stderr, "reply: property broken for %s: %s\n", NAMES[kind], lua_tostring(L, -1));
    abort();
  }
  /* the handler released the op, or scheduled it again: release it now */
  if ((op = mk_engine_lookup(e, h))) mk_engine_release(e, op);
  FZ_CHECK(mk_engine_live(e) == 0, "%u ops left alive", (unsigned)mk_engine_live(e));
  lua_settop(L, top);
  free(body);
  /* back to the same heap after every input, so that libFuzzer's leak check
   * (run when an input allocated more than it freed) sees only real leaks */
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}

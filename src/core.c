/* core.c: the Lua face of the engine, `modkie.core`.
 *
 * An engine userdata per client; no global state. `step` runs the engine,
 * then turns what finished into event tables: JSON bodies are decoded here
 * with the lua-cjson decoder the Lua layer handed in, the facts the state
 * machine needs are read out, and job.c decides what happens next. Lua code
 * runs only here, after libcurl has returned: never from inside libcurl. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lualib.h>

#include "compat.h"
#include "durations_lua.h"
#include "engine.h"
#include "hmac.h"
#include "job.h"
#include "upload.h"

#define ENGINE_MT "modkie.core.engine"
#define SNIFFER_MT "modkie.core.sniffer"
#define MODKIE_CORE_VERSION "0.1.0"
/* Seconds that enter C from Lua are clamped into [0, MAX_SECONDS] (NaN: 0),
 * so that every cast and sum made with them stays defined. */
#define MAX_SECONDS 1e9
#define MAX_INTERVAL 1e6 /* a poll interval, as the option's range says */
#define MAX_HANDLE 4503599627370496.0 /* 2^52: handles are whole numbers below it */

typedef struct engine_ud {
  mk_engine *e;
  int decode_ref;        /* cjson decode function */
  int interval_ref;      /* poll_interval function, or LUA_NOREF */
  double fixed_interval; /* poll_interval number, or -1 */
  int stepping;          /* a step is under way (see the reentrancy rule at the head of the events section) */
  int close_pending;     /* close was called inside the step: done when it ends */
  int raised_ref;        /* an error Lua raised during a step (Ctrl-C, a bad poll_interval), or LUA_NOREF */
  int events_ref;        /* registry slot: the events not yet handed out (a table), or false */
  int body_ref;          /* step_body, made once so that a step allocates nothing when nothing happened */
  int durations_ref;     /* the durations object the engine ranks polls with, or LUA_NOREF */
  int in_hand;           /* the handlers are on the op u->hand */
  int hand_committed;    /* ... and have started changing the engine for it */
  int hand_n;            /* the number of events before the op in hand's */
  uint64_t hand;
} engine_ud;

static int step_body(lua_State *L);

static engine_ud *check_ud(lua_State *L) {
  engine_ud *u = (engine_ud *)luaL_checkudata(L, 1, ENGINE_MT);
  if (!u->e) luaL_error(L, "modkie: the client is closed");
  return u;
}

/* A forked child shares its parent's sockets: driving (or closing) the
 * parent's client there would speak on the parent's connections. */
static void check_process(lua_State *L, engine_ud *u) {
  if (u->e->pid != getpid())
    luaL_error(L, "modkie: this client was made by process %d, before a fork; a forked child cannot use it "
                  "(its connections are the parent's): make a new client in the child", (int)u->e->pid);
}

static double clamp_seconds(double s) {
  if (!(s > 0)) return 0; /* NaN too */
  return s > MAX_SECONDS ? MAX_SECONDS : s;
}

static double arg_seconds(lua_State *L, int i, double dflt) {
  return clamp_seconds(luaL_optnumber(L, i, dflt));
}

/* ---- options ---- */

/* A number option, within [lo, hi] so that the casts below stay defined. */
static double opt_number(lua_State *L, int t, const char *key, double dflt, double lo, double hi) {
  double v;
  lua_getfield(L, t, key);
  if (lua_isnil(L, -1)) v = dflt;
  else if (lua_type(L, -1) == LUA_TNUMBER) v = lua_tonumber(L, -1);
  else return luaL_error(L, "modkie.core: option '%s' must be a number", key);
  lua_pop(L, 1);
  if (!(v >= lo && v <= hi)) return luaL_error(L, "modkie.core: option '%s' is out of range", key);
  return v;
}

static const char *opt_string(lua_State *L, int t, const char *key) {
  const char *s = NULL;
  lua_getfield(L, t, key);
  if (lua_type(L, -1) == LUA_TSTRING) s = lua_tostring(L, -1);
  else if (!lua_isnil(L, -1)) luaL_error(L, "modkie.core: option '%s' must be a string", key);
  lua_pop(L, 1); /* the string stays alive in the options table */
  return s;
}

/* {limit, per} or false/nil (disabled) */
static void opt_rate(lua_State *L, int t, const char *key, int *limit, double *per) {
  *limit = 0;
  *per = 0;
  lua_getfield(L, t, key);
  if (lua_istable(L, -1)) {
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    if (lua_type(L, -2) != LUA_TNUMBER || lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "modkie.core: option '%s' must be {requests, seconds}", key);
    /* the limiter keeps one timestamp per request of the window: bound it,
     * and keep the cast to int defined */
    double n = lua_tonumber(L, -2), s = lua_tonumber(L, -1);
    if (!(n >= 1 && n <= 1e6 && n == floor(n)) || !(s > 0 && s <= 1e6))
      luaL_error(L, "modkie.core: option '%s' is out of range", key);
    *limit = (int)n;
    *per = s;
    lua_pop(L, 2);
  } else if (!lua_isnil(L, -1) && !(lua_isboolean(L, -1) && !lua_toboolean(L, -1))) {
    luaL_error(L, "modkie.core: option '%s' must be {requests, seconds} or false", key);
  }
  lua_pop(L, 1);
}

static int ref_function(lua_State *L, int t, const char *key, int required) {
  lua_getfield(L, t, key);
  if (lua_isfunction(L, -1)) return luaL_ref(L, LUA_REGISTRYINDEX);
  if (required) return luaL_error(L, "modkie.core: option '%s' must be a function", key);
  lua_pop(L, 1);
  return LUA_NOREF;
}

/* core.new(options) -> engine */
static int l_new(lua_State *L) {
  mk_config cfg;
  engine_ud *u;
  char err[256];
  luaL_checktype(L, 1, LUA_TTABLE);
  memset(&cfg, 0, sizeof cfg);
  cfg.base_url = opt_string(L, 1, "base_url");
  if (!cfg.base_url) return luaL_error(L, "modkie.core: option 'base_url' is required");
  cfg.upload_url = opt_string(L, 1, "upload_url");
  cfg.api_key = opt_string(L, 1, "api_key");
  cfg.user_agent = opt_string(L, 1, "user_agent");
  if (!cfg.user_agent) cfg.user_agent = "modkie/" MODKIE_CORE_VERSION;
  cfg.ca_file = opt_string(L, 1, "ca_file");
  cfg.timeout_ms = (long)(opt_number(L, 1, "timeout", 30, 0.001, 1e6) * 1000);
  cfg.connect_timeout_ms = (long)(opt_number(L, 1, "connect_timeout", 10, 0.001, 1e6) * 1000);
  cfg.retries = (int)opt_number(L, 1, "retries", 4, 0, 1000);
  cfg.max_body = (size_t)opt_number(L, 1, "max_body", 8 * 1024 * 1024, 1, 1e12);
  cfg.max_download = (long long)opt_number(L, 1, "max_download", 0, 0, 1e15);
  cfg.max_connections = (int)opt_number(L, 1, "max_connections", 16, 1, 10000);
  cfg.seed = (uint64_t)opt_number(L, 1, "seed", 0, 0, 9007199254740992.0);
  cfg.record_grace = opt_number(L, 1, "record_grace", 60, 0, 1e6);
  if (cfg.max_connections < 1) cfg.max_connections = 1;
  opt_rate(L, 1, "submit_rate", &cfg.submit_limit, &cfg.submit_per);
  opt_rate(L, 1, "poll_rate", &cfg.poll_limit, &cfg.poll_per);
  cfg.share = opt_string(L, 1, "share");
  cfg.clients = (int)opt_number(L, 1, "clients", 0, 0, 1e6);
  cfg.time_scale = opt_number(L, 1, "time_scale", 1, 1e-6, 1e6);
  cfg.listen = opt_string(L, 1, "listen");
  lua_getfield(L, 1, "poll_interval");
  cfg.budget = lua_isnil(L, -1); /* the default schedule: budget-aware */
  lua_pop(L, 1);
  lua_getfield(L, 1, "durations");
  if (!lua_isnil(L, -1)) cfg.durations = mk_check_durations(L, -1); /* kept alive by durations_ref below */
  lua_pop(L, 1);

  u = (engine_ud *)lua_newuserdata(L, sizeof *u);
  memset(u, 0, sizeof *u);
  u->decode_ref = u->interval_ref = u->raised_ref = u->events_ref = u->body_ref = u->durations_ref = LUA_NOREF;
  u->fixed_interval = -1;
  luaL_getmetatable(L, ENGINE_MT);
  lua_setmetatable(L, -2);

  lua_getfield(L, 1, "poll_interval");
  if (lua_type(L, -1) == LUA_TNUMBER) {
    u->fixed_interval = lua_tonumber(L, -1);
    if (!(u->fixed_interval >= 0 && u->fixed_interval <= MAX_INTERVAL))
      return luaL_error(L, "modkie.core: option 'poll_interval' is out of range");
  }
  lua_pop(L, 1);
  u->decode_ref = ref_function(L, 1, "decode", 1);
  u->interval_ref = ref_function(L, 1, "poll_interval", 0);
  lua_pushboolean(L, 0);
  u->events_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, step_body);
  u->body_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (cfg.durations) {
    lua_getfield(L, 1, "durations");
    u->durations_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }

  u->e = mk_engine_new(&cfg, err, sizeof err);
  if (!u->e) return luaL_error(L, "modkie.core: %s", err);
  return 1;
}

/* ---- making ops ---- */

static int push_handle(lua_State *L, mk_op *op) {
  if (!op) return luaL_error(L, "modkie: out of memory");
  lua_pushnumber(L, (lua_Number)mk_op_handle(op));
  return 1;
}

static mk_op *check_op(lua_State *L, engine_ud *u, int i) {
  lua_Number h = luaL_checknumber(L, i);
  /* not a handle (NaN, infinite, negative, a fraction): nothing, and no undefined cast */
  if (!(h >= 0 && h < MAX_HANDLE) || h != floor(h)) return NULL;
  return mk_engine_lookup(u->e, (uint64_t)h);
}

/* engine:submit(json_body, deadline_seconds, hold, model, callback) -> handle;
 * with hold the createTask waits at the door (a "ready" event) for
 * engine:send(handle); model and callback (a callback URL was given) tell
 * the poll lane what to expect of the job */
static int l_submit(lua_State *L) {
  engine_ud *u = check_ud(L);
  size_t len;
  const char *body = luaL_checklstring(L, 2, &len);
  const char *model = luaL_optstring(L, 5, NULL);
  mk_op *op = mk_engine_submit(u->e, body, len, arg_seconds(L, 3, 0));
  if (op && lua_toboolean(L, 4)) mk_engine_hold(op);
  if (op) mk_engine_job_info(u->e, op, model, lua_toboolean(L, 6));
  return push_handle(L, op);
}

/* engine:send(handle) -> true when a createTask held at the door went out */
static int l_send(lua_State *L) {
  engine_ud *u = check_ud(L);
  mk_op *op;
  check_process(L, u);
  op = check_op(L, u, 2);
  lua_pushboolean(L, op != NULL && mk_engine_send(u->e, op) == 0);
  return 1;
}

/* engine:adopt(task_id, deadline_seconds, model) -> handle */
static int l_adopt(lua_State *L) {
  engine_ud *u = check_ud(L);
  const char *model = luaL_optstring(L, 4, NULL);
  mk_op *op = mk_engine_adopt(u->e, luaL_checkstring(L, 2), arg_seconds(L, 3, 0));
  if (op) mk_engine_job_info(u->e, op, model, 0);
  return push_handle(L, op);
}

/* engine:call("GET"|"POST", path, body?) -> handle */
static int l_call(lua_State *L) {
  engine_ud *u = check_ud(L);
  const char *method = luaL_checkstring(L, 2);
  const char *path = luaL_checkstring(L, 3);
  size_t len = 0;
  const char *body = luaL_optlstring(L, 4, NULL, &len);
  int post = strcmp(method, "POST") == 0;
  if (!post && strcmp(method, "GET") != 0) return luaL_argerror(L, 2, "GET or POST expected");
  return push_handle(L, mk_engine_call(u->e, post, path, body, len));
}

/* engine:download(url, path) -> handle */
static int l_download(lua_State *L) {
  engine_ud *u = check_ud(L);
  return push_handle(L, mk_engine_download(u->e, luaL_checkstring(L, 2), luaL_checkstring(L, 3)));
}

/* engine:upload(path, data, upload_path, file_name, mime) -> handle: the
 * file at `path` streamed from disk, or the string `data` (path nil) */
static int l_upload(lua_State *L) {
  engine_ud *u = check_ud(L);
  const char *path = luaL_optstring(L, 2, NULL);
  size_t len = 0;
  const char *data = path ? NULL : luaL_checklstring(L, 3, &len);
  mk_upload *up = mk_upload_new(path, data, len, luaL_checkstring(L, 4), luaL_checkstring(L, 5),
                                luaL_checkstring(L, 6));
  if (!up) return luaL_error(L, "modkie: out of memory");
  return push_handle(L, mk_engine_upload(u->e, up));
}

/* engine:progress(handle) -> bytes sent, total | nil: an upload's current attempt */
static int l_progress(lua_State *L) {
  engine_ud *u = check_ud(L);
  mk_op *op = check_op(L, u, 2);
  long long sent, total;
  if (!op || op->type != MK_OP_UPLOAD) return 0;
  mk_upload_progress(op->upload, &sent, &total);
  lua_pushnumber(L, (lua_Number)sent);
  lua_pushnumber(L, (lua_Number)total);
  return 2;
}

/* engine:timer(seconds) -> handle */
static int l_timer(lua_State *L) {
  engine_ud *u = check_ud(L);
  return push_handle(L, mk_engine_timer(u->e, clamp_seconds(luaL_checknumber(L, 2))));
}

/* engine:called_back(handle) -> true when the job was live: its callback
 * ended it (counted for the lane's fallback ranks); it stops as on cancel. */
static int l_called_back(lua_State *L) {
  engine_ud *u = check_ud(L);
  mk_op *op = check_op(L, u, 2);
  if (op && op->type == MK_OP_JOB && u->e->pid == getpid()) mk_engine_called_back(u->e, op);
  lua_pushboolean(L, op != NULL);
  return 1;
}

/* engine:respond(handle, status) -> true when the request was waiting: answer
 * a request to the listener (the connection goes on with that status). */
static int l_respond(lua_State *L) {
  engine_ud *u = check_ud(L);
  mk_op *op = check_op(L, u, 2);
  lua_Integer status = luaL_checkinteger(L, 3);
  int live = op && op->type == MK_OP_REQUEST && u->e->pid == getpid();
  if (live) mk_engine_respond(u->e, op, status >= 100 && status <= 599 ? (int)status : 500);
  lua_pushboolean(L, live);
  return 1;
}

/* engine:listening() -> the port the listener listens on, or nil */
static int l_listening(lua_State *L) {
  engine_ud *u = check_ud(L);
  if (!u->e->listener) return 0;
  lua_pushinteger(L, mk_listener_port(u->e->listener));
  return 1;
}

/* engine:cancel(handle) -> true when the op was live. Inside a step the op
 * stops at once and is freed when the step ends (see the reentrancy rule at the head of the events section). */
static int l_cancel(lua_State *L) {
  engine_ud *u = check_ud(L);
  mk_op *op = check_op(L, u, 2);
  /* in a forked child the op's transfer is the parent's: only the Lua side ends */
  if (op && u->e->pid == getpid()) mk_engine_release(u->e, op);
  lua_pushboolean(L, op != NULL);
  return 1;
}

/* ---- events ---- */

/* The reentrancy rule of the Lua API. Lua runs inside a step: the JSON
 * decoder, a poll_interval function, any __gc finaliser (at any allocation),
 * and, in the Lua layer, the log hook while the step's events are handed out.
 * What that Lua may do with the client whose step is under way:
 *
 *   cancel   done at once: the op stops (no request, timer or queue place is
 *            left) and its events of this step are dropped; the engine frees
 *            it when the step ends.
 *   submit   done at once (also adopt, call, download, timer): the request
 *            goes out on the next step.
 *   close    deferred to the end of the step (client:close() returns at once
 *            and the client closes before step returns).
 *   step     refused: "step called from inside step"; return, and step again
 *            from the code that called step.
 *   await    refused (in the Lua layer, also credits, record, download):
 *            "cannot wait from inside client:step"; wait from the code that
 *            calls step.
 *
 * The handlers below keep to one rule: after Lua ran, an op is touched only
 * once it has been looked up again by its handle (u->hand). Ops released while
 * the step is under way stay valid memory until the step ends (the engine is
 * held, see engine.h), which covers the finalisers that may run at any
 * allocation. Each handler does its Lua work first (read the answer, build
 * its events, ask poll_interval) and commits its changes to the engine last,
 * with no Lua after that; a Lua error that escapes before the commit (out of
 * memory, an error raised by a finaliser on Lua 5.1-5.3 and LuaJIT) leaves
 * the op as it was: it goes back on the done list, its events of this step
 * are taken back, and the next step handles it again. However a step ends,
 * the engine is no longer marked as stepping. */

typedef struct events {
  lua_State *L;
  int list;  /* stack index of the events list */
  int n;
} events;

/* Push a new event table {h=, type=}; finish it with emit(). */
static void begin(events *ev, uint64_t h, const char *type) {
  lua_State *L = ev->L;
  lua_createtable(L, 0, 6);
  lua_pushnumber(L, (lua_Number)h);
  lua_setfield(L, -2, "h");
  lua_pushstring(L, type);
  lua_setfield(L, -2, "type");
}

static void emit(events *ev) {
  lua_rawseti(ev->L, ev->list, ++ev->n);
}

static void set_string(lua_State *L, const char *key, const char *value) {
  if (!value) return;
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
}

static void set_number(lua_State *L, const char *key, double value) {
  lua_pushnumber(L, value);
  lua_setfield(L, -2, key);
}

static void set_integer(lua_State *L, const char *key, lua_Integer value) {
  lua_pushinteger(L, value);
  lua_setfield(L, -2, key);
}

/* Set field `error` of the table on top to the verdict's error. */
static void set_error(lua_State *L, const mk_verdict *v, double retry_after, const char *task_id) {
  lua_createtable(L, 0, 7);
  set_string(L, "kind", v->kind);
  set_string(L, "message", v->message);
  if (v->status) set_integer(L, "status", v->status);
  if (v->code) set_integer(L, "code", v->code);
  lua_pushboolean(L, v->retryable);
  lua_setfield(L, -2, "retryable");
  if (retry_after >= 0) set_number(L, "retry_after", retry_after);
  set_string(L, "task_id", task_id);
  lua_setfield(L, -2, "error");
}

static void emit_error(events *ev, const mk_op *op, const char *type, const mk_verdict *v, const char *task_id) {
  begin(ev, mk_op_handle(op), type);
  set_string(ev->L, "state", mk_state_name(MK_ERROR));
  if (op->type == MK_OP_JOB) set_integer(ev->L, "polls", op->polls);
  set_error(ev->L, v, op->result.retry_after, task_id);
  emit(ev);
}

static void emit_retry(events *ev, const mk_op *op, int attempt, const mk_verdict *v) {
  begin(ev, mk_op_handle(op), "retry");
  set_integer(ev->L, "attempt", attempt);
  set_number(ev->L, "delay", v->delay);
  set_error(ev->L, v, op->result.retry_after, op->task_id);
  emit(ev);
}

/* The op in hand, looked up again by its handle now that the handler's Lua
 * work is over: from here on the handler changes the engine and runs no Lua.
 * NULL when the op was released meanwhile (cancelled by that Lua). */
static mk_op *commit(engine_ud *u) {
  u->hand_committed = 1;
  return mk_engine_lookup(u->e, u->hand);
}

/* Keep the error on top of the stack (popped) to raise once the step is over:
 * an error raised while Lua ran inside step (the interpreter's Ctrl-C, a
 * poll_interval that fails) must reach the caller, and no event may be lost. */
static void keep_raised(lua_State *L, engine_ud *u) {
  if (u->raised_ref == LUA_NOREF) u->raised_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else lua_pop(L, 1);
}

/* Decode the body with cjson and read the envelope's facts. Leaves two values
 * on the stack: the decoded envelope (or nil) and its `data` (or nil).
 * Returns -1 when decoding raised (cjson.safe raises only for no memory or an
 * interrupt): the reply is then left to be read again by the next step. */
static int decode_reply(lua_State *L, engine_ud *u, mk_op *op, mk_reply *r) {
  const mk_result *res = &op->result;
  memset(r, 0, sizeof *r);
  r->res = res;
  r->progress = -1;
  lua_pushnil(L);
  lua_pushnil(L);
  if (op->type == MK_OP_DOWNLOAD || res->body_len == 0) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, u->decode_ref);
  lua_pushlstring(L, res->body, res->body_len);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    keep_raised(L, u);
    return -1;
  }
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  lua_replace(L, -3);
  r->json = 1;
  lua_getfield(L, -2, "code");
  if (lua_type(L, -1) == LUA_TNUMBER || lua_type(L, -1) == LUA_TSTRING) {
    /* a whole number in range, or (a string of) one; anything else is no code */
    lua_Number n = lua_tonumber(L, -1);
    if (n >= 0 && n <= 99999 && n == (lua_Number)(long)n && (lua_type(L, -1) == LUA_TNUMBER || n != 0)) {
      r->has_code = 1;
      r->code = (long)n;
    }
  }
  lua_pop(L, 1);
  lua_getfield(L, -2, "msg");
  if (lua_type(L, -1) != LUA_TSTRING) {
    lua_pop(L, 1);
    lua_getfield(L, -2, "message");
  }
  if (lua_type(L, -1) == LUA_TSTRING) r->message = lua_tostring(L, -1); /* anchored in the envelope */
  lua_pop(L, 1);
  lua_getfield(L, -2, "data");
  lua_replace(L, -2);
  if (lua_isnil(L, -1) || lua_islightuserdata(L, -1)) return 0; /* absent, or cjson.null */
  r->has_data = 1;
  if (!lua_istable(L, -1)) return 0;
  lua_getfield(L, -1, "taskId");
  if (lua_type(L, -1) == LUA_TSTRING) r->task_id = lua_tostring(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, -1, "state");
  if (lua_type(L, -1) == LUA_TSTRING) r->state = lua_tostring(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, -1, "progress");
  if (lua_type(L, -1) == LUA_TNUMBER) {
    lua_Number p = lua_tonumber(L, -1);
    if (p >= 0 && p <= 100) r->progress = p; /* NaN fails both */
  }
  lua_pop(L, 1);
  return 0;
}

/* decode_reply, counting the answers that said 429 (an HTTP status, or the
 * body's code in kie's dialect). */
static int read_reply(lua_State *L, engine_ud *u, mk_op *op, mk_reply *r) {
  int rc = decode_reply(L, u, op, r);
  if (rc == 0 && (op->result.http == 429 || (r->has_code && r->code == 429))) u->e->rate_limited++;
  return rc;
}

/* Seconds until the job in hand next polls: the user's function or number,
 * else the gateway's recommended schedule. A function that raises: the job
 * goes on on the default schedule and step raises the error once it is done.
 * Runs Lua: the caller looks the op up again afterwards. */
/* The gateway's recommended schedule, at the engine's time scale. */
static double default_interval(mk_engine *e, double elapsed) {
  return mk_default_interval(elapsed / e->time_scale, mk_random(e)) * e->time_scale;
}

static double next_interval(lua_State *L, engine_ud *u, double elapsed, int polls, events *ev) {
  if (u->interval_ref != LUA_NOREF) {
    double secs = -1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, u->interval_ref);
    lua_pushnumber(L, elapsed);
    lua_pushnumber(L, polls);
    lua_pushnumber(L, (lua_Number)u->hand); /* the Lua layer maps it to the job */
    if (lua_pcall(L, 3, 1, 0) != 0) {
      keep_raised(L, u);
      return default_interval(u->e, elapsed);
    }
    if (lua_type(L, -1) == LUA_TNUMBER) secs = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (secs >= 0 && secs <= MAX_INTERVAL) return secs; /* NaN and infinities fail both */
    /* keep the job going on the default schedule; tell the log why */
    begin(ev, u->hand, "warning");
    lua_pushliteral(L, "poll_interval must return a number of seconds from 0 to 1e6; polling on the default schedule");
    lua_setfield(L, -2, "message");
    emit(ev);
  } else if (u->fixed_interval >= 0) {
    return u->fixed_interval;
  }
  return default_interval(u->e, elapsed);
}

static int out_of_memory(lua_State *L, engine_ud *u) {
  u->hand_committed = 0; /* nothing was changed: the next step handles the answer again */
  return luaL_error(L, "modkie: out of memory");
}

static int on_create(lua_State *L, engine_ud *u, mk_op *op, events *ev) {
  mk_reply r;
  mk_verdict v;
  int top = lua_gettop(L);
  if (read_reply(L, u, op, &r) != 0) return -1;
  if (!(op = mk_engine_lookup(u->e, u->hand))) goto out; /* cancelled while the decoder ran */
  mk_judge_create(u->e, op, &r, &v);
  if (v.next == MK_NEXT_RETRY) {
    emit_retry(ev, op, op->attempts + 1, &v);
    if ((op = commit(u))) {
      op->attempts++;
      mk_engine_schedule(u->e, op, v.delay);
    }
  } else if (v.next == MK_NEXT_ACCEPTED) {
    begin(ev, u->hand, "accepted");
    set_string(L, "task_id", r.task_id);
    emit(ev);
    if (op->expired) {
      mk_verdict d;
      memset(&d, 0, sizeof d);
      d.kind = "deadline";
      snprintf(d.message, sizeof d.message, "the deadline passed while createTask was in flight; task %.200s was created", r.task_id);
      emit_error(ev, op, "done", &d, r.task_id);
      if ((op = commit(u))) mk_engine_release(u->e, op);
    } else {
      double delay = next_interval(L, u, 0, 0, ev);
      if ((op = commit(u))) {
        if (mk_engine_accept(u->e, op, r.task_id) != 0) return out_of_memory(L, u);
        mk_engine_schedule_poll(u->e, op, delay);
      }
    }
  } else {
    emit_error(ev, op, "done", &v, op->task_id);
    if ((op = commit(u))) mk_engine_release(u->e, op);
  }
out:
  lua_settop(L, top);
  return 0;
}

static int on_poll(lua_State *L, engine_ud *u, mk_op *op, events *ev) {
  mk_reply r;
  mk_verdict v;
  int top = lua_gettop(L);
  if (read_reply(L, u, op, &r) != 0) return -1;
  if (!(op = mk_engine_lookup(u->e, u->hand))) goto out;
  mk_judge_poll(u->e, op, &r, &v);
  if (v.next == MK_NEXT_RETRY) {
    emit_retry(ev, op, op->attempts + 1, &v);
    if ((op = commit(u))) {
      op->attempts++;
      op->garbled = v.garbled ? op->garbled + 1 : 0;
      mk_engine_schedule(u->e, op, v.delay);
    }
  } else if (v.next == MK_NEXT_DONE && v.state == MK_ERROR) {
    emit_error(ev, op, "done", &v, op->task_id);
    if ((op = commit(u))) mk_engine_release(u->e, op);
  } else if (v.next == MK_NEXT_DONE) {
    begin(ev, u->hand, "done");
    set_string(L, "state", mk_state_name(v.state));
    set_string(L, "server_state", r.state);
    set_integer(L, "polls", op->polls + 1);
    lua_pushvalue(L, top + 1); /* the whole answer: Lua reads it as a callback body is read */
    lua_setfield(L, -2, "answer");
    emit(ev);
    if ((op = commit(u))) {
      if (op->rank.callback) mk_ranks_callback_ended(&u->e->ranks, 1); /* a poll saw the end before any callback */
      mk_engine_release(u->e, op);
    }
  } else {
    /* a poll that changes neither state nor progress never reaches Lua
     * (no state: a record not shown yet, "recordInfo is null") */
    int changed = r.state && (strncmp(op->server_state, r.state, sizeof op->server_state - 1) != 0 ||
                              op->state != v.state || op->progress != r.progress);
    double delay;
    if (changed) {
      begin(ev, u->hand, "state");
      set_string(L, "state", mk_state_name(v.state));
      set_string(L, "server_state", r.state);
      lua_pushvalue(L, top + 2);
      lua_setfield(L, -2, "record");
      emit(ev);
    }
    delay = next_interval(L, u, mk_now() - op->accepted, op->polls + 1, ev);
    if ((op = commit(u))) {
      op->polls++;
      op->attempts = op->garbled = 0;
      if (changed) {
        snprintf(op->server_state, sizeof op->server_state, "%s", r.state);
        op->state = v.state;
        op->progress = r.progress;
      }
      mk_engine_schedule_poll(u->e, op, delay);
    }
  }
out:
  lua_settop(L, top);
  return 0;
}

static int on_call(lua_State *L, engine_ud *u, mk_op *op, events *ev) {
  mk_reply r;
  mk_verdict v;
  int top = lua_gettop(L);
  if (read_reply(L, u, op, &r) != 0) return -1;
  if (!(op = mk_engine_lookup(u->e, u->hand))) goto out;
  mk_judge_call(u->e, op, &r, &v);
  if (v.next == MK_NEXT_RETRY) {
    emit_retry(ev, op, op->attempts + 1, &v);
    if ((op = commit(u))) {
      op->attempts++;
      mk_engine_schedule(u->e, op, v.delay);
    }
  } else if (v.state == MK_ERROR) {
    emit_error(ev, op, "reply", &v, op->task_id);
    if ((op = commit(u))) mk_engine_release(u->e, op);
  } else {
    begin(ev, u->hand, "reply");
    set_string(L, "state", mk_state_name(MK_SUCCESS));
    if (op->type == MK_OP_DOWNLOAD) {
      set_string(L, "path", op->path);
    } else {
      lua_pushvalue(L, top + 2);
      lua_setfield(L, -2, "data");
    }
    emit(ev);
    if ((op = commit(u))) mk_engine_release(u->e, op);
  }
out:
  lua_settop(L, top);
  return 0;
}

static void on_deadline(engine_ud *u, mk_op *op, events *ev) {
  mk_verdict v;
  memset(&v, 0, sizeof v);
  v.kind = "deadline";
  snprintf(v.message, sizeof v.message, "the job did not end within its deadline (%g s)", op->deadline.due - op->created);
  v.retryable = 0;
  emit_error(ev, op, "done", &v, op->task_id);
  if ((op = commit(u))) mk_engine_release(u->e, op);
}

/* A request to the listener: {type = "request", h, path, headers = {name = value | {values}}, body};
 * the Lua layer answers it with engine:respond(h, status). Header names are lower-cased. */
static void on_request(lua_State *L, engine_ud *u, mk_op *op, events *ev) {
  const mk_request *req = op->request;
  size_t i;
  begin(ev, u->hand, "request");
  if (!req) { /* answered meanwhile (cannot happen before the Lua layer saw it) */
    lua_pop(L, 1);
    return;
  }
  set_string(L, "path", req->path);
  lua_pushlstring(L, req->body, req->body_len);
  lua_setfield(L, -2, "body");
  lua_createtable(L, 0, (int)req->nheaders);
  for (i = 0; i < req->nheaders; i++) {
    char name[128];
    size_t k, n = strlen(req->headers[2 * i]);
    if (n >= sizeof name) continue; /* no header a callback needs is that long */
    for (k = 0; k <= n; k++) name[k] = (char)tolower((unsigned char)req->headers[2 * i][k]);
    lua_getfield(L, -1, name);
    if (lua_isnil(L, -1)) { /* the first: a string */
      lua_pop(L, 1);
      lua_pushstring(L, req->headers[2 * i + 1]);
    } else { /* sent again: a list, as OpenResty gives it */
      if (!lua_istable(L, -1)) {
        lua_createtable(L, 2, 0);
        lua_insert(L, -2);
        lua_rawseti(L, -2, 1);
      }
      lua_pushstring(L, req->headers[2 * i + 1]);
      lua_rawseti(L, -2, (int)mk_rawlen(L, -2) + 1);
    }
    lua_setfield(L, -2, name);
  }
  lua_setfield(L, -2, "headers");
  emit(ev);
}

/* One op off the done list. Returns -1 when its answer could not be read
 * (the decoder raised): it is left to the next step. */
static int handle_op(lua_State *L, engine_ud *u, mk_op *op, events *ev) {
  if (op->done_why == MK_DONE_REQUEST) {
    on_request(L, u, op, ev);
    return 0;
  }
  if (op->done_why == MK_DONE_READY) { /* a createTask held at the door: Lua sends it (engine:send) */
    begin(ev, u->hand, "ready");
    emit(ev);
    return 0;
  }
  if (op->done_why == MK_DONE_TIMER) {
    begin(ev, u->hand, "timer");
    emit(ev);
    if ((op = commit(u))) mk_engine_release(u->e, op);
    return 0;
  }
  if (op->done_why == MK_DONE_DEADLINE) {
    on_deadline(u, op, ev);
    return 0;
  }
  if (op->type == MK_OP_JOB) return op->state == MK_SUBMITTING ? on_create(L, u, op, ev) : on_poll(L, u, op, ev);
  return on_call(L, u, op, ev);
}

/* An event with no op (h = -1): the account's rate store went away or came back. */
static void emit_store(events *ev, const char *state, const char *message) {
  lua_State *L = ev->L;
  lua_createtable(L, 0, 4);
  set_number(L, "h", -1);
  set_string(L, "type", "store");
  set_string(L, "state", state);
  set_string(L, "message", message);
  emit(ev);
}

static void emit_store_news(events *ev, mk_grants *g) {
  int news = g->news;
  if (!news) return;
  g->news = 0;
  /* both since the last step: the state it is in now came last */
  if ((news & MK_NEWS_BACK) && (news & MK_NEWS_AWAY) && g->away) emit_store(ev, "back", NULL);
  if (news & MK_NEWS_AWAY) emit_store(ev, "away", g->why);
  if ((news & MK_NEWS_BACK) && !g->away) emit_store(ev, "back", NULL);
}

/* The step itself, run protected by l_step: (u, timeout). The events list is
 * kept in the registry (u->events_ref) from the moment it is made, so that a
 * step that raises hands its events to the next one. */
static int step_body(lua_State *L) {
  engine_ud *u = (engine_ud *)lua_touserdata(L, 1);
  double timeout = lua_tonumber(L, 2);
  events ev;
  mk_op *op;
  char err[256];
  if (mk_engine_run(u->e, timeout, err, sizeof err) != 0) return luaL_error(L, "modkie: %s", err);
  /* nothing finished: no table made, a frame's update() allocates nothing */
  if (!u->e->done_head && !u->e->grants.news) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, u->events_ref); /* what an earlier step could not hand out */
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawseti(L, LUA_REGISTRYINDEX, u->events_ref);
  }
  ev.L = L;
  ev.list = lua_gettop(L);
  ev.n = (int)mk_rawlen(L, ev.list);
  while ((op = mk_engine_pop_done(u->e))) {
    int held;
    u->hand = mk_op_handle(op);
    u->hand_n = ev.n;
    u->hand_committed = 0;
    u->in_hand = 1;
    held = handle_op(L, u, op, &ev) != 0;
    u->in_hand = 0;
    if (held) { /* its answer is read again by the next step */
      if ((op = mk_engine_lookup(u->e, u->hand))) mk_engine_unpop_done(u->e, op);
      break;
    }
  }
  emit_store_news(&ev, &u->e->grants);
  return 0;
}

/* However the step ended: the engine is no longer stepping; after an error
 * that escaped, the op in hand goes back as it was (see the rule above); ops
 * released during the step are freed. The error object, if any, is on top. */
static void end_step(lua_State *L, engine_ud *u, int failed) {
  u->stepping = 0;
  if (failed && u->in_hand && !u->hand_committed) {
    mk_op *op = mk_engine_lookup(u->e, u->hand);
    size_t n;
    /* take back this op's events (no allocation: only existing slots are cleared) */
    lua_rawgeti(L, LUA_REGISTRYINDEX, u->events_ref);
    if (lua_istable(L, -1)) {
      for (n = mk_rawlen(L, -1); n > (size_t)u->hand_n; n--) {
        lua_pushnil(L);
        lua_rawseti(L, -2, (int)n);
      }
    }
    lua_pop(L, 1);
    if (op && !op->on_done) mk_engine_unpop_done(u->e, op);
  }
  u->in_hand = 0;
  mk_engine_end_step(u->e);
}

static void close_now(lua_State *L, engine_ud *u);

/* engine:step(timeout) -> events | nil. Raises on a libcurl multi failure,
 * and with an error Lua raised inside the step (its events are then handed
 * out by the next step). */
static int l_step(lua_State *L) {
  engine_ud *u = check_ud(L);
  double timeout = arg_seconds(L, 2, 0);
  int rc;
  if (u->stepping)
    return luaL_error(L, "modkie: step called from inside step (a log hook, poll_interval function or finaliser); "
                         "return from it, and step again from the code that called step");
  check_process(L, u);
  lua_settop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, u->body_ref);
  lua_pushlightuserdata(L, u);
  lua_pushnumber(L, timeout);
  u->stepping = 1;
  mk_engine_begin_step(u->e);
  rc = lua_pcall(L, 2, 0, 0);
  end_step(L, u, rc != 0);
  if (rc == 0 && u->raised_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, u->raised_ref);
    rc = 1;
  }
  luaL_unref(L, LUA_REGISTRYINDEX, u->raised_ref); /* an escaped error goes first; a kept one is dropped with it */
  u->raised_ref = LUA_NOREF;
  if (u->close_pending) { /* client:close() from inside the step */
    close_now(L, u);
    if (rc != 0) return lua_error(L);
    return 0;
  }
  if (rc != 0) return lua_error(L); /* the events stay for the next step */
  lua_rawgeti(L, LUA_REGISTRYINDEX, u->events_ref);
  if (!lua_istable(L, -1)) return 0;
  lua_pushboolean(L, 0);
  lua_rawseti(L, LUA_REGISTRYINDEX, u->events_ref);
  if (mk_rawlen(L, -1) == 0) return 0;
  return 1;
}

/* engine:timeout() -> seconds until the engine needs a step, or nil when idle */
static int l_timeout(lua_State *L) {
  engine_ud *u = check_ud(L);
  double t = mk_engine_next_wakeup(u->e);
  if (t < 0) return 0;
  lua_pushnumber(L, t);
  return 1;
}

/* engine:fds() -> { {fd = n, events = "r" | "w" | "rw"}, ... }: the sockets a host's
 * event loop should watch; when one is ready, or timeout() runs out, call step(0). */
static int l_fds(lua_State *L) {
  engine_ud *u = check_ud(L);
  size_t n, i;
  const struct pollfd *p = mk_engine_sockets(u->e, &n);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    int r = (p[i].events & POLLIN) != 0, w = (p[i].events & POLLOUT) != 0;
    lua_createtable(L, 0, 2);
    set_integer(L, "fd", p[i].fd);
    lua_pushstring(L, r && w ? "rw" : w ? "w" : "r");
    lua_setfield(L, -2, "events");
    lua_rawseti(L, -2, (int)i + 1);
  }
  return 1;
}

/* engine:stats() -> table of counters */
static int l_stats(lua_State *L) {
  engine_ud *u = check_ud(L);
  mk_engine *e = u->e;
  lua_createtable(L, 0, 8);
  set_integer(L, "live", (lua_Integer)mk_engine_live(e));
  set_integer(L, "in_flight", (lua_Integer)e->in_flight);
  set_integer(L, "waiting_submit", (lua_Integer)e->wait_submit.len);
  set_integer(L, "waiting_poll", (lua_Integer)(e->wait_poll.len + e->wait_due.len));
  set_integer(L, "ranked_waiting", (lua_Integer)e->ranks.ranked.len);
  set_integer(L, "ranked_polls", (lua_Integer)e->ranked_polls);
  set_integer(L, "held", (lua_Integer)e->held);
  set_integer(L, "timers", (lua_Integer)e->timers.len);
  set_integer(L, "requests", (lua_Integer)e->requests);
  set_integer(L, "creates", (lua_Integer)e->creates_sent);
  set_integer(L, "polls", (lua_Integer)e->polls_sent);
  set_integer(L, "wakeups", (lua_Integer)e->wakeups);
  set_integer(L, "rate_limited", (lua_Integer)e->rate_limited);
  if (e->grants.store) {
    set_string(L, "store", mk_grants_state(&e->grants, mk_now()));
    set_integer(L, "store_grants", (lua_Integer)e->grants.store_grants);
    set_integer(L, "local_grants", (lua_Integer)e->grants.local_grants);
    set_integer(L, "store_outages", (lua_Integer)e->grants.outages);
  }
  return 1;
}

/* ---- an account's windows kept by the Lua layer (rate.shared = ngx.shared.DICT) ---- */

static const char *const LANES[MK_LANES] = {"create", "poll"};

/* engine:questions() -> { {lane =, want =, limit =, per =, account = hex}, ... } | nil:
 * what the host store was asked and the Lua layer answers with engine:answer. */
static int l_questions(lua_State *L) {
  engine_ud *u = check_ud(L);
  mk_store *st = u->e->grants.store;
  char hex[2 * MK_ACCOUNT_BYTES + 1];
  int l, n = 0;
  if (!st || !st->host_questions) return 0;
  for (l = 0; l < MK_ACCOUNT_BYTES; l++) snprintf(hex + 2 * l, 3, "%02x", st->account[l]);
  lua_newtable(L);
  for (l = 0; l < MK_LANES; l++) {
    if (!(st->host_questions & (1 << l))) continue;
    lua_createtable(L, 0, 5);
    set_string(L, "lane", LANES[l]);
    set_integer(L, "want", st->question[l].want);
    set_integer(L, "limit", st->question[l].limit);
    set_number(L, "per", st->question[l].per);
    set_string(L, "account", hex);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

/* engine:answer(lane, granted, retry_in, peers) or engine:answer(lane, nil, why):
 * the Lua layer's answer to a question, between steps; what it grants starts at once. */
static int l_answer(lua_State *L) {
  engine_ud *u = check_ud(L);
  mk_store *st = u->e->grants.store;
  const char *lane = luaL_checkstring(L, 2);
  mk_store_answer a;
  int l = strcmp(lane, "create") == 0 ? MK_LANE_CREATE : strcmp(lane, "poll") == 0 ? MK_LANE_POLL : -1;
  if (l < 0) return luaL_argerror(L, 2, "\"create\" or \"poll\" expected");
  if (!st || strcmp(st->ops->name, "host") != 0)
    return luaL_error(L, "modkie: this engine's rate store is not the host's");
  if (u->stepping) return luaL_error(L, "modkie: answer called from inside step");
  check_process(L, u);
  memset(&a, 0, sizeof a);
  if (lua_isnil(L, 3)) {
    a.away = 1;
    snprintf(a.why, sizeof a.why, "%s", luaL_optstring(L, 4, "the store did not answer"));
  } else {
    lua_Number granted = luaL_checknumber(L, 3), retry = luaL_optnumber(L, 4, 0), peers = luaL_optnumber(L, 5, 0);
    a.granted = granted >= 0 && granted <= 1e6 ? (int)granted : 0;
    a.retry_in = retry >= 0 && retry <= 1e6 ? retry : 0;
    a.peers = peers >= 0 && peers <= 1e6 ? (int)peers : 0;
  }
  mk_store_host_answer(st, (mk_lane)l, &a);
  mk_engine_pump(u->e);
  return 0;
}

static void close_now(lua_State *L, engine_ud *u) {
  if (u->e) {
    /* In a forked child the connections, files and libcurl's handles are the
     * parent's too: cleaning them up would speak on the parent's connections
     * (TLS close_notify, HTTP/2 GOAWAY). The child forgets the engine instead;
     * its copy of the memory is the child's to lose. */
    if (u->e->pid == getpid()) mk_engine_free(u->e);
    u->e = NULL;
  }
  u->close_pending = 0;
  luaL_unref(L, LUA_REGISTRYINDEX, u->decode_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, u->interval_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, u->raised_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, u->events_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, u->body_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, u->durations_ref); /* after the engine: it ranked with it */
  u->decode_ref = u->interval_ref = u->raised_ref = u->events_ref = u->body_ref = u->durations_ref = LUA_NOREF;
}

/* engine:close(), also __gc and __close. Inside a step: done when the step ends. */
static int l_close(lua_State *L) {
  engine_ud *u = (engine_ud *)luaL_checkudata(L, 1, ENGINE_MT);
  if (u->stepping) {
    u->close_pending = 1;
    return 0;
  }
  close_now(L, u);
  return 0;
}

static int l_closed(lua_State *L) {
  engine_ud *u = (engine_ud *)luaL_checkudata(L, 1, ENGINE_MT);
  lua_pushboolean(L, u->e == NULL);
  return 1;
}

/* core.classify_state(s) -> "queued" | "running" | "success" | "failed" */
static int l_classify_state(lua_State *L) {
  lua_pushstring(L, mk_state_name(mk_classify_state(luaL_checkstring(L, 1))));
  return 1;
}

/* core.default_interval(elapsed, u) -> seconds: the default poll schedule, u in [0,1) the jitter draw */
static int l_default_interval(lua_State *L) {
  lua_pushnumber(L, mk_default_interval(luaL_checknumber(L, 1), luaL_checknumber(L, 2)));
  return 1;
}

/* core.origin(url) -> { scheme =, host =, port =, loopback =, origin = "scheme://host:port" }
 * | nil: where an http(s) URL connects, as libcurl reads it (http.c's
 * mk_url_parse_origin, the one place origins are normalised). */
/* core.url_escape(s): `s` percent-encoded the way the engine writes a task
 * id into a URL (every byte but RFC 3986's unreserved ones), so the URLs the
 * Lua layer builds (client:record) encode the same way. */
static int l_url_escape(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char *out = lua_newuserdata(L, 3 * n + 1); /* Lua owns it: nothing to free if a push raises */
  mk_url_escape_into(out, s, n);
  lua_pushstring(L, out);
  return 1;
}

static int l_origin(lua_State *L) {
  mk_origin o;
  char text[300];
  if (mk_url_parse_origin(luaL_checkstring(L, 1), &o) != 0) return 0;
  snprintf(text, sizeof text, "%s://%s:%ld", o.scheme, o.host, o.port);
  lua_createtable(L, 0, 5);
  set_string(L, "scheme", o.scheme);
  set_string(L, "host", o.host);
  set_integer(L, "port", o.port);
  lua_pushboolean(L, o.loopback);
  lua_setfield(L, -2, "loopback");
  set_string(L, "origin", text);
  return 1;
}

/* core.now() -> monotonic seconds */
static int l_now(lua_State *L) {
  lua_pushnumber(L, mk_now());
  return 1;
}

/* core.time() -> Unix seconds with their fraction (the wall clock: the
   journal's times, compared with the gateway's completeTime) */
static int l_time(lua_State *L) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return luaL_error(L, "clock_gettime: %s", strerror(errno));
  lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
  return 1;
}

/* core.mkdir(path) -> true | nil, message  (an existing directory is fine) */
static int l_mkdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (mkdir(path, 0777) == 0 || (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", path, strerror(errno == EEXIST ? ENOTDIR : errno));
  return 2;
}

/* The FILE* of a Lua file handle (io.open's), or an error when closed. */
static FILE *check_file(lua_State *L, int i) {
#if LUA_VERSION_NUM >= 502
  luaL_Stream *p = (luaL_Stream *)luaL_checkudata(L, i, LUA_FILEHANDLE);
  if (!p->closef) luaL_argerror(L, i, "file is closed");
  return p->f;
#else
  FILE **p = (FILE **)luaL_checkudata(L, i, LUA_FILEHANDLE); /* LuaJIT's handle starts with the FILE* too */
  if (!*p) luaL_argerror(L, i, "file is closed");
  return *p;
#endif
}

/* core.fsync(file) -> true | nil, message: flush Lua's buffer, then the OS's to the disk */
static int l_fsync(lua_State *L) {
  FILE *f = check_file(L, 1);
  if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* core.lock(file) -> true | nil, message: an exclusive lock on the open file,
 * without waiting; held until the file is closed or the process ends. */
static int l_lock(lua_State *L) {
  FILE *f = check_file(L, 1);
  if (flock(fileno(f), LOCK_EX | LOCK_NB) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, errno == EWOULDBLOCK ? "locked by another process" : strerror(errno));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* core.fsync_dir(path) -> true | nil, message: make a new name in the folder durable */
static int l_fsync_dir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, O_RDONLY | O_DIRECTORY), rc;
  if (fd < 0) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  rc = fsync(fd);
  close(fd);
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* core.symlink(path) -> true when path names a symbolic link (not followed) */
static int l_symlink(lua_State *L) {
  struct stat st;
  lua_pushboolean(L, lstat(luaL_checkstring(L, 1), &st) == 0 && S_ISLNK(st.st_mode));
  return 1;
}

/* core.opened_as(file, path) -> true | nil, message: the open file is the
 * regular file that path names, without following a symbolic link (so a link
 * put in its place before it was opened is found out before anything is
 * written through it). */
static int l_opened_as(lua_State *L) {
  FILE *f = check_file(L, 1);
  const char *path = luaL_checkstring(L, 2);
  struct stat fs, ps;
  const char *why = NULL;
  if (fstat(fileno(f), &fs) != 0 || lstat(path, &ps) != 0) why = strerror(errno);
  else if (S_ISLNK(ps.st_mode)) why = "it is a symbolic link";
  else if (!S_ISREG(ps.st_mode)) why = "it is not a regular file";
  else if (fs.st_dev != ps.st_dev || fs.st_ino != ps.st_ino) why = "it was replaced while being opened";
  if (!why) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, why);
  return 2;
}


/* core.realpath(path) -> the absolute path with no symlink, "." or ".." |
   nil, message: where the review page's relative links start and end */
static int l_realpath(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char buf[PATH_MAX];
  if (realpath(path, buf) == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  lua_pushstring(L, buf);
  return 1;
}

/* core.isatty(file) -> boolean */
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty(fileno(check_file(L, 1))));
  return 1;
}

/* ---- local files: what an upload will send (upload.h) ---- */

static mk_sniffer **check_sniffer(lua_State *L) {
  mk_sniffer **s = (mk_sniffer **)luaL_checkudata(L, 1, SNIFFER_MT);
  if (!*s) luaL_error(L, "modkie: the sniffer is closed");
  return s;
}

static void push_facts(lua_State *L, const mk_file_facts *f, int file) {
  lua_createtable(L, 0, 6);
  set_integer(L, "size", (lua_Integer)f->size);
  set_string(L, "sha256", f->sha256);
  set_string(L, "mime", f->mime);
  if (file) {
    set_integer(L, "dev", (lua_Integer)f->dev);
    set_integer(L, "ino", (lua_Integer)f->ino);
    set_number(L, "mtime", f->mtime);
  }
}

static const char *const PROBE_REASONS[] = {
  "ok", "missing", "unreadable", "directory", "not_regular", "too_large", "io", "no_memory"
};

/* core.sniffer() -> a libmagic handle, kept for every probe | nil, message */
static int l_sniffer(lua_State *L) {
  char err[256];
  mk_sniffer **s = (mk_sniffer **)lua_newuserdata(L, sizeof *s);
  *s = NULL;
  luaL_getmetatable(L, SNIFFER_MT);
  lua_setmetatable(L, -2);
  *s = mk_sniffer_new(err, sizeof err);
  if (!*s) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

/* sniffer:file(path, max_size) -> { size, sha256, mime, dev, ino, mtime }
 * | nil, message, reason ("missing", "unreadable", "directory", "not_regular",
 * "too_large" (then the size follows), "io", "no_memory"). Reads the file once. */
static int l_sniff_file(lua_State *L) {
  mk_sniffer **s = check_sniffer(L);
  const char *path = luaL_checkstring(L, 2);
  lua_Number max = luaL_optnumber(L, 3, 0);
  mk_file_facts f;
  char err[256];
  mk_probe_status st = mk_probe_file(*s, path, max > 0 && max < 9e18 ? (long long)max : 0, &f, err, sizeof err);
  if (st == MK_PROBE_OK) {
    push_facts(L, &f, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, err);
  lua_pushstring(L, PROBE_REASONS[st]);
  lua_pushnumber(L, (lua_Number)f.size);
  return 4;
}

/* sniffer:data(bytes) -> { size, sha256, mime } */
static int l_sniff_data(lua_State *L) {
  mk_sniffer **s = check_sniffer(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  mk_file_facts f;
  char err[256];
  if (mk_probe_data(*s, data, len, &f, err, sizeof err) != MK_PROBE_OK) return luaL_error(L, "modkie: %s", err);
  push_facts(L, &f, 0);
  return 1;
}

static int l_sniffer_close(lua_State *L) {
  mk_sniffer **s = (mk_sniffer **)luaL_checkudata(L, 1, SNIFFER_MT);
  mk_sniffer_free(*s);
  *s = NULL;
  return 0;
}

/* core.identity(path) -> { size, dev, ino, mtime } | nil: to see whether a
 * file changed since it was probed, without reading it */
static int l_identity(lua_State *L) {
  mk_file_facts f;
  memset(&f, 0, sizeof f);
  if (mk_file_identity(luaL_checkstring(L, 1), &f) != 0) return 0;
  lua_createtable(L, 0, 4);
  set_integer(L, "size", (lua_Integer)f.size);
  set_integer(L, "dev", (lua_Integer)f.dev);
  set_integer(L, "ino", (lua_Integer)f.ino);
  set_number(L, "mtime", f.mtime);
  return 1;
}

static const luaL_Reg sniffer_methods[] = {
  {"file", l_sniff_file}, {"data", l_sniff_data}, {"close", l_sniffer_close}, {NULL, NULL}
};

static const luaL_Reg sniffer_meta[] = {
  {"__gc", l_sniffer_close}, {"__close", l_sniffer_close}, {NULL, NULL}
};

static const luaL_Reg engine_methods[] = {
  {"submit", l_submit}, {"adopt", l_adopt}, {"call", l_call}, {"download", l_download},
  {"upload", l_upload}, {"progress", l_progress},
  {"timer", l_timer}, {"cancel", l_cancel}, {"called_back", l_called_back}, {"send", l_send},
  {"respond", l_respond}, {"listening", l_listening}, {"step", l_step}, {"timeout", l_timeout}, {"fds", l_fds},
  {"stats", l_stats}, {"close", l_close}, {"closed", l_closed},
  {"questions", l_questions}, {"answer", l_answer}, {NULL, NULL}
};

static const luaL_Reg engine_meta[] = {
  {"__gc", l_close}, {"__close", l_close}, {NULL, NULL}
};

static const luaL_Reg functions[] = {
  {"new", l_new}, {"classify_state", l_classify_state}, {"now", l_now}, {"time", l_time}, {"mkdir", l_mkdir},
  {"default_interval", l_default_interval}, {"fsync", l_fsync}, {"isatty", l_isatty},
  {"lock", l_lock}, {"fsync_dir", l_fsync_dir}, {"realpath", l_realpath}, {"origin", l_origin},
  {"url_escape", l_url_escape},
  {"symlink", l_symlink}, {"opened_as", l_opened_as}, {"sniffer", l_sniffer}, {"identity", l_identity},
  {"hmac_sha256", mk_l_hmac_sha256}, {"equal", mk_l_equal}, {NULL, NULL}
};

int luaopen_modkie_core(lua_State *L) {
  curl_global_init(CURL_GLOBAL_DEFAULT); /* reference-counted by libcurl; idempotent */
  luaL_newmetatable(L, ENGINE_MT);
  mk_setfuncs(L, engine_meta);
  mk_newlib(L, engine_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newmetatable(L, SNIFFER_MT);
  mk_setfuncs(L, sniffer_meta);
  mk_newlib(L, sniffer_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  mk_newlib(L, functions);
  lua_pushliteral(L, MODKIE_CORE_VERSION);
  lua_setfield(L, -2, "VERSION");
  lua_pushstring(L, curl_version());
  lua_setfield(L, -2, "curl_version");
  lua_pushinteger(L, MK_MAX_TASK_ID); /* the longest task id the engine takes (a request line must hold it) */
  lua_setfield(L, -2, "MAX_TASK_ID");
  mk_durations_open(L);
  return 1;
}

/* core.c: the Lua face of the engine, `modkie.core`.
 *
 * An engine userdata per client; no global state. `step` runs the engine,
 * then turns what finished into event tables: JSON bodies are decoded here
 * with the lua-cjson decoder the Lua layer handed in, the facts the state
 * machine needs are read out, and job.c decides what happens next. Lua code
 * runs only here, after libcurl has returned: never from inside libcurl. */
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
#include "engine.h"
#include "hmac.h"
#include "job.h"

#define ENGINE_MT "modkie.core.engine"
#define MODKIE_CORE_VERSION "0.1.0"

typedef struct engine_ud {
  mk_engine *e;
  int decode_ref;        /* cjson decode function */
  int interval_ref;      /* poll_interval function, or LUA_NOREF */
  double fixed_interval; /* poll_interval number, or -1 */
  int stepping;          /* guards against step re-entered from a Lua callback */
  int raised_ref;        /* an error Lua raised during a step (Ctrl-C, a bad poll_interval), or LUA_NOREF */
  int carry_ref;         /* events of a step that raised, handed out by the next step, or LUA_NOREF */
} engine_ud;

static engine_ud *check_ud(lua_State *L) {
  engine_ud *u = (engine_ud *)luaL_checkudata(L, 1, ENGINE_MT);
  if (!u->e) luaL_error(L, "modkie: the client is closed");
  return u;
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

  u = (engine_ud *)lua_newuserdata(L, sizeof *u);
  u->e = NULL;
  u->decode_ref = u->interval_ref = u->raised_ref = u->carry_ref = LUA_NOREF;
  u->fixed_interval = -1;
  u->stepping = 0;
  luaL_getmetatable(L, ENGINE_MT);
  lua_setmetatable(L, -2);

  lua_getfield(L, 1, "poll_interval");
  if (lua_type(L, -1) == LUA_TNUMBER) u->fixed_interval = lua_tonumber(L, -1);
  lua_pop(L, 1);
  u->decode_ref = ref_function(L, 1, "decode", 1);
  u->interval_ref = ref_function(L, 1, "poll_interval", 0);

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
  if (h < 0) return NULL;
  return mk_engine_lookup(u->e, (uint64_t)h);
}

/* engine:submit(json_body, deadline_seconds, hold) -> handle; with hold the
 * createTask waits at the door (a "ready" event) for engine:send(handle) */
static int l_submit(lua_State *L) {
  engine_ud *u = check_ud(L);
  size_t len;
  const char *body = luaL_checklstring(L, 2, &len);
  mk_op *op = mk_engine_submit(u->e, body, len, luaL_optnumber(L, 3, 0));
  if (op && lua_toboolean(L, 4)) mk_engine_hold(op);
  return push_handle(L, op);
}

/* engine:send(handle) -> true when a createTask held at the door went out */
static int l_send(lua_State *L) {
  engine_ud *u = check_ud(L);
  mk_op *op = check_op(L, u, 2);
  lua_pushboolean(L, op != NULL && mk_engine_send(u->e, op) == 0);
  return 1;
}

/* engine:adopt(task_id, deadline_seconds) -> handle */
static int l_adopt(lua_State *L) {
  engine_ud *u = check_ud(L);
  return push_handle(L, mk_engine_adopt(u->e, luaL_checkstring(L, 2), luaL_optnumber(L, 3, 0)));
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

/* engine:timer(seconds) -> handle */
static int l_timer(lua_State *L) {
  engine_ud *u = check_ud(L);
  return push_handle(L, mk_engine_timer(u->e, luaL_checknumber(L, 2)));
}

/* engine:cancel(handle) -> true when the op was live */
static int l_cancel(lua_State *L) {
  engine_ud *u = check_ud(L);
  mk_op *op = check_op(L, u, 2);
  if (op) mk_engine_release(u->e, op);
  lua_pushboolean(L, op != NULL);
  return 1;
}

/* ---- events ---- */

typedef struct events {
  lua_State *L;
  int list;  /* stack index of the events list */
  int n;
} events;

/* Push a new event table {h=, type=}; finish it with emit(). */
static void begin(events *ev, mk_op *op, const char *type) {
  lua_State *L = ev->L;
  lua_createtable(L, 0, 6);
  lua_pushnumber(L, (lua_Number)mk_op_handle(op));
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
static void set_error(lua_State *L, const mk_verdict *v, const mk_op *op) {
  lua_createtable(L, 0, 7);
  set_string(L, "kind", v->kind);
  set_string(L, "message", v->message);
  if (v->status) set_integer(L, "status", v->status);
  if (v->code) set_integer(L, "code", v->code);
  lua_pushboolean(L, v->retryable);
  lua_setfield(L, -2, "retryable");
  if (op->result.retry_after >= 0) set_number(L, "retry_after", op->result.retry_after);
  set_string(L, "task_id", op->task_id);
  lua_setfield(L, -2, "error");
}

static void emit_error(events *ev, mk_op *op, const char *type, const mk_verdict *v) {
  begin(ev, op, type);
  set_string(ev->L, "state", mk_state_name(MK_ERROR));
  if (op->type == MK_OP_JOB) set_integer(ev->L, "polls", op->polls);
  set_error(ev->L, v, op);
  emit(ev);
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

/* Seconds until a job's next poll: the user's function or number, else the
 * gateway's recommended schedule. A function that raises: the job goes on
 * on the default schedule and step raises the error once it is done. */
static double next_interval(lua_State *L, engine_ud *u, mk_op *op, events *ev) {
  double elapsed = mk_now() - op->accepted;
  if (u->interval_ref != LUA_NOREF) {
    double secs = -1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, u->interval_ref);
    lua_pushnumber(L, elapsed);
    lua_pushnumber(L, op->polls);
    lua_pushnumber(L, (lua_Number)mk_op_handle(op)); /* the Lua layer maps it to the job */
    if (lua_pcall(L, 3, 1, 0) != 0) {
      keep_raised(L, u);
      return mk_default_interval(elapsed, mk_random(u->e));
    }
    if (lua_type(L, -1) == LUA_TNUMBER) secs = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (secs >= 0 && secs == secs) return secs;
    /* keep the job going on the default schedule; tell the log why */
    begin(ev, op, "warning");
    lua_pushliteral(L, "poll_interval must return a number >= 0; polling on the default schedule");
    lua_setfield(L, -2, "message");
    emit(ev);
  } else if (u->fixed_interval >= 0) {
    return u->fixed_interval;
  }
  return mk_default_interval(elapsed, mk_random(u->e));
}

static void schedule(lua_State *L, engine_ud *u, mk_op *op, double delay) {
  if (mk_engine_schedule(u->e, op, delay) != 0) {
    u->stepping = 0;
    luaL_error(L, "modkie: out of memory");
  }
}

static void emit_retry(events *ev, mk_op *op, const mk_verdict *v) {
  begin(ev, op, "retry");
  set_integer(ev->L, "attempt", op->attempts);
  set_number(ev->L, "delay", v->delay);
  set_error(ev->L, v, op);
  emit(ev);
}

static int on_create(lua_State *L, engine_ud *u, mk_op *op, events *ev) {
  mk_reply r;
  mk_verdict v;
  int top = lua_gettop(L);
  if (read_reply(L, u, op, &r) != 0) return -1;
  mk_judge_create(u->e, op, &r, &v);
  if (v.next == MK_NEXT_RETRY) {
    op->attempts++;
    emit_retry(ev, op, &v);
    schedule(L, u, op, v.delay);
  } else if (v.next == MK_NEXT_ACCEPTED) {
    if (mk_engine_accept(u->e, op, r.task_id) != 0) {
      u->stepping = 0;
      luaL_error(L, "modkie: out of memory");
    }
    begin(ev, op, "accepted");
    set_string(L, "task_id", op->task_id);
    emit(ev);
    if (op->expired) {
      mk_verdict d;
      memset(&d, 0, sizeof d);
      d.kind = "deadline";
      snprintf(d.message, sizeof d.message, "the deadline passed while createTask was in flight; task %.200s was created", op->task_id);
      emit_error(ev, op, "done", &d);
      mk_engine_release(u->e, op);
    } else {
      schedule(L, u, op, next_interval(L, u, op, ev));
    }
  } else {
    emit_error(ev, op, "done", &v);
    mk_engine_release(u->e, op);
  }
  lua_settop(L, top);
  return 0;
}

static int on_poll(lua_State *L, engine_ud *u, mk_op *op, events *ev) {
  mk_reply r;
  mk_verdict v;
  int top = lua_gettop(L);
  if (read_reply(L, u, op, &r) != 0) return -1;
  mk_judge_poll(u->e, op, &r, &v);
  if (v.next == MK_NEXT_RETRY) {
    op->attempts++;
    op->garbled = v.garbled ? op->garbled + 1 : 0;
    emit_retry(ev, op, &v);
    schedule(L, u, op, v.delay);
  } else if (v.next == MK_NEXT_DONE && v.state == MK_ERROR) {
    emit_error(ev, op, "done", &v);
    mk_engine_release(u->e, op);
  } else {
    op->polls++;
    op->attempts = op->garbled = 0;
    if (v.next == MK_NEXT_DONE) {
      begin(ev, op, "done");
      set_string(L, "state", mk_state_name(v.state));
      set_string(L, "server_state", r.state);
      set_integer(L, "polls", op->polls);
      lua_pushvalue(L, top + 1); /* the whole answer: Lua reads it as a callback body is read */
      lua_setfield(L, -2, "answer");
      emit(ev);
      mk_engine_release(u->e, op);
    } else {
      /* a poll that changes neither state nor progress never reaches Lua
       * (no state: a record not shown yet, "recordInfo is null") */
      if (r.state && (strncmp(op->server_state, r.state, sizeof op->server_state - 1) != 0 ||
                      op->state != v.state || op->progress != r.progress)) {
        snprintf(op->server_state, sizeof op->server_state, "%s", r.state);
        op->state = v.state;
        op->progress = r.progress;
        begin(ev, op, "state");
        set_string(L, "state", mk_state_name(v.state));
        set_string(L, "server_state", r.state);
        lua_pushvalue(L, top + 2);
        lua_setfield(L, -2, "record");
        emit(ev);
      }
      schedule(L, u, op, next_interval(L, u, op, ev));
    }
  }
  lua_settop(L, top);
  return 0;
}

static int on_call(lua_State *L, engine_ud *u, mk_op *op, events *ev) {
  mk_reply r;
  mk_verdict v;
  int top = lua_gettop(L);
  if (read_reply(L, u, op, &r) != 0) return -1;
  mk_judge_call(u->e, op, &r, &v);
  if (v.next == MK_NEXT_RETRY) {
    op->attempts++;
    emit_retry(ev, op, &v);
    schedule(L, u, op, v.delay);
  } else if (v.state == MK_ERROR) {
    emit_error(ev, op, "reply", &v);
    mk_engine_release(u->e, op);
  } else {
    begin(ev, op, "reply");
    set_string(L, "state", mk_state_name(MK_SUCCESS));
    if (op->type == MK_OP_DOWNLOAD) {
      set_string(L, "path", op->path);
    } else {
      lua_pushvalue(L, top + 2);
      lua_setfield(L, -2, "data");
    }
    emit(ev);
    mk_engine_release(u->e, op);
  }
  lua_settop(L, top);
  return 0;
}

static void on_deadline(lua_State *L, engine_ud *u, mk_op *op, events *ev) {
  mk_verdict v;
  (void)L;
  memset(&v, 0, sizeof v);
  v.kind = "deadline";
  snprintf(v.message, sizeof v.message, "the job did not end within its deadline (%g s)", op->deadline.due - op->created);
  v.retryable = 0;
  emit_error(ev, op, "done", &v);
  mk_engine_release(u->e, op);
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
  if (!news || !ev->list) return;
  g->news = 0;
  /* both since the last step: the state it is in now came last */
  if ((news & MK_NEWS_BACK) && (news & MK_NEWS_AWAY) && g->away) emit_store(ev, "back", NULL);
  if (news & MK_NEWS_AWAY) emit_store(ev, "away", g->why);
  if ((news & MK_NEWS_BACK) && !g->away) emit_store(ev, "back", NULL);
}

/* engine:step(timeout) -> events | nil  (raises only on a libcurl multi failure) */
static int l_step(lua_State *L) {
  engine_ud *u = check_ud(L);
  double timeout = luaL_optnumber(L, 2, 0);
  events ev;
  mk_op *op;
  char err[256];
  if (u->stepping) return luaL_error(L, "modkie: step called from inside step");
  if (timeout != timeout || timeout < 0) timeout = 0;
  lua_settop(L, 2);
  ev.L = L;
  ev.list = 0;
  ev.n = 0;
  u->stepping = 1;
  if (mk_engine_run(u->e, timeout, err, sizeof err) != 0) {
    u->stepping = 0;
    return luaL_error(L, "modkie: %s", err);
  }
  if (u->carry_ref != LUA_NOREF) { /* what the last step could not hand out */
    lua_rawgeti(L, LUA_REGISTRYINDEX, u->carry_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, u->carry_ref);
    u->carry_ref = LUA_NOREF;
    ev.list = lua_gettop(L);
    ev.n = (int)mk_rawlen(L, ev.list);
  } else if (u->e->done_head || u->e->grants.news) { /* else no table made: a frame's update() allocates nothing */
    lua_newtable(L);
    ev.list = lua_gettop(L);
  }
  while ((op = mk_engine_pop_done(u->e))) {
    int rc = 0;
    if (op->done_why == MK_DONE_TIMER) {
      begin(&ev, op, "timer");
      emit(&ev);
      mk_engine_release(u->e, op);
    } else if (op->done_why == MK_DONE_READY) {
      begin(&ev, op, "ready");
      emit(&ev);
    } else if (op->done_why == MK_DONE_DEADLINE) {
      on_deadline(L, u, op, &ev);
    } else if (op->type == MK_OP_JOB) {
      rc = op->state == MK_SUBMITTING ? on_create(L, u, op, &ev) : on_poll(L, u, op, &ev);
    } else {
      rc = on_call(L, u, op, &ev);
    }
    if (rc != 0) { /* its reply is read again by the next step */
      mk_engine_unpop_done(u->e, op);
      break;
    }
  }
  emit_store_news(&ev, &u->e->grants);
  u->stepping = 0;
  if (u->raised_ref != LUA_NOREF) {
    if (ev.n) {
      lua_pushvalue(L, ev.list);
      u->carry_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, u->raised_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, u->raised_ref);
    u->raised_ref = LUA_NOREF;
    return lua_error(L);
  }
  if (!ev.n) return 0;
  lua_pushvalue(L, ev.list);
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
  set_integer(L, "waiting_poll", (lua_Integer)e->wait_poll.len);
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
 * the Lua layer's answer to a question; what it grants starts at once. */
static int l_answer(lua_State *L) {
  engine_ud *u = check_ud(L);
  mk_store *st = u->e->grants.store;
  const char *lane = luaL_checkstring(L, 2);
  mk_store_answer a;
  int l = strcmp(lane, "create") == 0 ? MK_LANE_CREATE : strcmp(lane, "poll") == 0 ? MK_LANE_POLL : -1;
  if (l < 0) return luaL_argerror(L, 2, "\"create\" or \"poll\" expected");
  if (!st || st->ops->ask == NULL || strcmp(st->ops->name, "host") != 0)
    return luaL_error(L, "modkie: this engine's rate store is not the host's");
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

static int l_close(lua_State *L) {
  engine_ud *u = (engine_ud *)luaL_checkudata(L, 1, ENGINE_MT);
  if (u->stepping) return luaL_error(L, "modkie: close called from inside step");
  if (u->e) {
    mk_engine_free(u->e);
    u->e = NULL;
  }
  luaL_unref(L, LUA_REGISTRYINDEX, u->decode_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, u->interval_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, u->raised_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, u->carry_ref);
  u->decode_ref = u->interval_ref = u->raised_ref = u->carry_ref = LUA_NOREF;
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

static const luaL_Reg engine_methods[] = {
  {"submit", l_submit}, {"adopt", l_adopt}, {"call", l_call}, {"download", l_download},
  {"timer", l_timer}, {"cancel", l_cancel}, {"send", l_send}, {"step", l_step}, {"timeout", l_timeout}, {"fds", l_fds},
  {"stats", l_stats}, {"close", l_close}, {"closed", l_closed},
  {"questions", l_questions}, {"answer", l_answer}, {NULL, NULL}
};

static const luaL_Reg engine_meta[] = {
  {"__gc", l_close}, {"__close", l_close}, {NULL, NULL}
};

static const luaL_Reg functions[] = {
  {"new", l_new}, {"classify_state", l_classify_state}, {"now", l_now}, {"time", l_time}, {"mkdir", l_mkdir},
  {"default_interval", l_default_interval}, {"fsync", l_fsync}, {"isatty", l_isatty},
  {"lock", l_lock}, {"fsync_dir", l_fsync_dir}, {"realpath", l_realpath},
  {"hmac_sha256", mk_l_hmac_sha256}, {"equal", mk_l_equal}, {NULL, NULL}
};

int luaopen_modkie_core(lua_State *L) {
  curl_global_init(CURL_GLOBAL_DEFAULT); /* reference-counted by libcurl; idempotent */
  luaL_newmetatable(L, ENGINE_MT);
  mk_setfuncs(L, engine_meta);
  mk_newlib(L, engine_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  mk_newlib(L, functions);
  lua_pushliteral(L, MODKIE_CORE_VERSION);
  lua_setfield(L, -2, "VERSION");
  lua_pushstring(L, curl_version());
  lua_setfield(L, -2, "curl_version");
  return 1;
}

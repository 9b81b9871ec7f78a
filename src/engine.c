/* engine.c: the Lua face of the engine (lib/engine.c): `core.new` and the
 * engine userdata's methods. It only converts: options into an mk_config,
 * Lua's calls into the engine's, and the engine's events into event tables.
 * The engine judges every answer in C; Lua hears of state changes, progress,
 * ends and the questions only it can answer, as data returned by `step`,
 * never from inside libcurl. One engine userdata per client; no global state.
 *
 * The reentrancy rule of the Lua API. Lua may run while a step reads the
 * engine's events into tables: any allocation may run a __gc finaliser, and
 * a debug hook (lua.c's Ctrl-C) may raise. What that Lua may do with the
 * client whose step is under way:
 *
 *   cancel   done at once: the op stops (no request, timer or queue place is
 *            left); the engine frees it when the step ends, and the Lua layer
 *            drops its events of this step (their handle is stale to it).
 *   submit   done at once (also adopt, call, download, timer, schedule): the
 *            request goes out on the next step.
 *   close    deferred to the end of the step (client:close() returns at once
 *            and the client closes before step returns).
 *   step     refused: "step called from inside step"; return, and step again
 *            from the code that called step.
 *   await    refused (in the Lua layer, also credits, record, download):
 *            "cannot wait from inside client:step"; wait from the code that
 *            calls step.
 *
 * The step holds no op while Lua may run: events name ops by handle. An
 * event is taken off the engine's queue only once its table is in the step's
 * list, and the list lives in the registry from the moment it is made: a Lua
 * error that escapes the step (out of memory, a hook, a finaliser's error on
 * Lua 5.1-5.3 and LuaJIT) loses nothing, the next step hands out what this
 * one could not. However a step ends, the engine is no longer marked as
 * stepping. */
#include <ctype.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "lib/engine.h"
#include "lib/job.h"
#include "lib/redact.h"
#include "lib/upload.h"

#define ENGINE_MT "modkie.core.engine"
#define MODKIE_USER_AGENT "modkie/0.1.0"
/* Seconds that enter C from Lua are clamped into [0, MAX_SECONDS] (NaN: 0),
 * so that every cast and sum made with them stays defined. */
#define MAX_SECONDS 1e9
#define MAX_INTERVAL 1e6 /* a poll interval, as the option's range says */
#define MAX_HANDLE 4503599627370496.0 /* 2^52: handles are whole numbers below it */

typedef struct engine_ud {
  mk_engine *e;
  int stepping;          /* a step is under way (see the reentrancy rule above) */
  int close_pending;     /* close was called inside the step: done when it ends */
  int events_ref;        /* registry slot: the events not yet handed out (a table), or false */
  int body_ref;          /* step_body, made once so that a step allocates nothing when nothing happened */
  int durations_ref;     /* the durations object the engine ranks polls with (kept alive), or LUA_NOREF */
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
    double n, s;
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    if (lua_type(L, -2) != LUA_TNUMBER || lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "modkie.core: option '%s' must be {requests, seconds}", key);
    /* the limiter keeps one timestamp per request of the window: bound it,
     * and keep the cast to int defined */
    n = lua_tonumber(L, -2);
    s = lua_tonumber(L, -1);
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

/* poll_interval: seconds (every poll that far apart), "ask" (the Lua layer
 * answers each job's INTERVAL event with engine:schedule), or nil (the
 * gateway's recommended schedule, in C). */
static void opt_interval(lua_State *L, int t, mk_config *cfg) {
  lua_getfield(L, t, "poll_interval");
  if (lua_type(L, -1) == LUA_TNUMBER) {
    cfg->interval_mode = MK_INTERVAL_FIXED;
    cfg->poll_interval = lua_tonumber(L, -1);
    if (!(cfg->poll_interval >= 0 && cfg->poll_interval <= MAX_INTERVAL))
      luaL_error(L, "modkie.core: option 'poll_interval' is out of range");
  } else if (lua_type(L, -1) == LUA_TSTRING && !strcmp(lua_tostring(L, -1), "ask")) {
    cfg->interval_mode = MK_INTERVAL_ASK;
  } else if (!lua_isnil(L, -1)) {
    luaL_error(L, "modkie.core: option 'poll_interval' must be a number of seconds or \"ask\"");
  }
  lua_pop(L, 1);
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
  if (!cfg.user_agent) cfg.user_agent = MODKIE_USER_AGENT;
  cfg.ca_file = opt_string(L, 1, "ca_file");
  cfg.timeout_ms = (long)(opt_number(L, 1, "timeout", 30, 0.001, 1e6) * 1000);
  cfg.connect_timeout_ms = (long)(opt_number(L, 1, "connect_timeout", 10, 0.001, 1e6) * 1000);
  cfg.retries = (int)opt_number(L, 1, "retries", 4, 0, 1000);
  cfg.max_body = (size_t)opt_number(L, 1, "max_body", 8 * 1024 * 1024, 1, 1e12);
  cfg.max_download = (long long)opt_number(L, 1, "max_download", 0, 0, 1e15);
  cfg.max_connections = (int)opt_number(L, 1, "max_connections", 16, 1, 10000);
  cfg.seed = (uint64_t)opt_number(L, 1, "seed", 0, 0, 9007199254740992.0);
  cfg.record_grace = opt_number(L, 1, "record_grace", 60, 0, 1e6);
  opt_rate(L, 1, "submit_rate", &cfg.submit_limit, &cfg.submit_per);
  opt_rate(L, 1, "poll_rate", &cfg.poll_limit, &cfg.poll_per);
  opt_interval(L, 1, &cfg);
  cfg.share = opt_string(L, 1, "share");
  cfg.clients = (int)opt_number(L, 1, "clients", 0, 0, 1e6);
  cfg.time_scale = opt_number(L, 1, "time_scale", 1, 1e-6, 1e6);
  cfg.listen = opt_string(L, 1, "listen");
  lua_getfield(L, 1, "durations");
  if (!lua_isnil(L, -1)) cfg.durations = mk_check_durations(L, -1); /* kept alive by durations_ref below */
  lua_pop(L, 1);

  u = (engine_ud *)lua_newuserdata(L, sizeof *u);
  memset(u, 0, sizeof *u);
  u->events_ref = u->body_ref = u->durations_ref = LUA_NOREF;
  luaL_getmetatable(L, ENGINE_MT);
  lua_setmetatable(L, -2);
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

static const char *check_task_id(lua_State *L, int i) {
  size_t len;
  const char *id = luaL_checklstring(L, i, &len);
  if (len < 1 || len > MK_MAX_TASK_ID || strlen(id) != len) {
    luaL_argerror(L, i, "a task id of 1 to 1024 bytes expected");
    return NULL;
  }
  return id;
}

/* engine:submit(json_body, deadline_seconds, hold, model, callback) -> handle;
 * with hold each createTask attempt waits at the door (a "ready" event) for
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
  const char *id = check_task_id(L, 2);
  const char *model = luaL_optstring(L, 4, NULL);
  mk_op *op = mk_engine_adopt(u->e, id, arg_seconds(L, 3, 0));
  if (op) mk_engine_job_info(u->e, op, model, 0);
  return push_handle(L, op);
}

/* engine:call("recordInfo", task_id) | engine:call("credit") |
 * engine:call("download-url", json_body) -> handle */
static int l_call(lua_State *L) {
  engine_ud *u = check_ud(L);
  mk_endpoint ep = mk_endpoint_named(luaL_checkstring(L, 2));
  const char *arg = NULL, *body = NULL;
  size_t len = 0;
  if (ep == MK_EP_RECORD) arg = check_task_id(L, 3);
  else if (ep == MK_EP_DOWNLOAD_URL) body = luaL_checklstring(L, 3, &len);
  else if (ep != MK_EP_CREDIT) return luaL_argerror(L, 2, "\"recordInfo\", \"credit\" or \"download-url\" expected");
  return push_handle(L, mk_engine_call(u->e, ep, arg, body, len));
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

/* engine:cancel(handle) -> true when the op was live. Inside a step the op
 * stops at once and is freed when the step ends (see the rule at the top). */
static int l_cancel(lua_State *L) {
  engine_ud *u = check_ud(L);
  mk_op *op = check_op(L, u, 2);
  /* in a forked child the op's transfer is the parent's: only the Lua side ends */
  if (op && u->e->pid == getpid()) mk_engine_cancel(u->e, op);
  lua_pushboolean(L, op != NULL);
  return 1;
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
 * a request to the listener (its connection goes on with that status). */
static int l_respond(lua_State *L) {
  engine_ud *u = check_ud(L);
  mk_op *op = check_op(L, u, 2);
  lua_Integer status = luaL_checkinteger(L, 3);
  int live = op && op->type == MK_OP_REQUEST && u->e->pid == getpid();
  if (live) mk_engine_respond(u->e, op, status >= 100 && status <= 599 ? (int)status : 500);
  lua_pushboolean(L, live);
  return 1;
}

/* engine:redact(text) -> text with the key taken out, as the engine takes it
 * out of every answer: for a callback's body, which reaches Lua through
 * deliver (or the listener) rather than through an answer the engine read. */
static int l_redact(lua_State *L) {
  engine_ud *u = check_ud(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  mk_buf b = {0};
  if (n == 0) {
    lua_settop(L, 2);
    return 1;
  }
  if (!(b.data = mk_copy(s, n))) return luaL_error(L, "modkie: out of memory");
  b.len = n;
  b.cap = n + 1;
  if (mk_redact(&b, &u->e->secrets) != 0) {
    mk_buf_free(&b);
    return luaL_error(L, "modkie: out of memory");
  }
  lua_pushlstring(L, b.data, b.len);
  mk_buf_free(&b);
  return 1;
}

/* engine:listening() -> the port the listener listens on, or nil */
static int l_listening(lua_State *L) {
  engine_ud *u = check_ud(L);
  if (!u->e->listener) return 0;
  lua_pushinteger(L, mk_listener_port(u->e->listener));
  return 1;
}

/* engine:schedule(handle, seconds) -> true when the job asked (an
 * "interval" event) and now polls in that many seconds (0 to 1e6) */
static int l_schedule(lua_State *L) {
  engine_ud *u = check_ud(L);
  mk_op *op = check_op(L, u, 2);
  double secs = luaL_checknumber(L, 3);
  lua_pushboolean(L, op != NULL && mk_job_interval(u->e, op, secs) == 0);
  return 1;
}

/* ---- events ---- */

/* A request to the listener: path, body and headers = {name = value | {values}}
 * (names lower-cased; a header sent twice is a list, as OpenResty gives it). */
static void push_request(lua_State *L, const mk_event *ev) {
  size_t i;
  mk_set_string(L, "path", ev->path);
  lua_pushlstring(L, ev->body, ev->body_len);
  lua_setfield(L, -2, "body");
  lua_createtable(L, 0, (int)ev->nheaders);
  for (i = 0; i < ev->nheaders; i++) {
    char name[128];
    const char *raw = ev->headers[2 * i];
    size_t k, n = strlen(raw);
    if (n >= sizeof name) continue; /* no header a callback needs is that long */
    for (k = 0; k <= n; k++) name[k] = (char)tolower((unsigned char)raw[k]);
    lua_getfield(L, -1, name);
    if (lua_isnil(L, -1)) { /* the first: a string */
      lua_pop(L, 1);
      lua_pushstring(L, ev->headers[2 * i + 1]);
    } else { /* sent again: a list */
      if (!lua_istable(L, -1)) {
        lua_createtable(L, 2, 0);
        lua_insert(L, -2);
        lua_rawseti(L, -2, 1);
      }
      lua_pushstring(L, ev->headers[2 * i + 1]);
      lua_rawseti(L, -2, (int)mk_rawlen(L, -2) + 1);
    }
    lua_setfield(L, -2, name);
  }
  lua_setfield(L, -2, "headers");
}

/* Push the table of one event. May raise (out of memory): the event then
 * stays queued for the next step. */
static void push_event(lua_State *L, const mk_event *ev) {
  static const char *const TYPES[] = {"", "accepted", "ready", "state", "interval", "retry",
                                      "done", "reply", "timer", "store", "request"};
  lua_createtable(L, 0, 8);
  lua_pushnumber(L, ev->type == MK_EV_STORE ? -1 : (lua_Number)ev->h); /* store news: no op */
  lua_setfield(L, -2, "h");
  mk_set_string(L, "type", TYPES[ev->type]);
  switch (ev->type) {
    case MK_EV_ACCEPTED:
      mk_set_string(L, "task_id", ev->task_id);
      break;
    case MK_EV_STATE:
      mk_set_string(L, "state", mk_state_name(ev->state));
      mk_set_string(L, "server_state", ev->server_state);
      if (!isnan(ev->progress)) {
        mk_push_count(L, ev->progress);
        lua_setfield(L, -2, "progress");
      }
      mk_set_number(L, "updated_at", ev->updated_at);
      break;
    case MK_EV_INTERVAL:
      mk_set_number(L, "elapsed", ev->elapsed);
      mk_set_integer(L, "polls", ev->polls);
      mk_set_number(L, "default", ev->fallback);
      break;
    case MK_EV_RETRY:
      mk_set_integer(L, "attempt", ev->attempt);
      mk_set_number(L, "delay", ev->delay);
      mk_push_error(L, &ev->error, ev->task_id);
      lua_setfield(L, -2, "error");
      break;
    case MK_EV_DONE:
      mk_set_string(L, "state", mk_state_name(ev->state));
      if (ev->server_state[0]) mk_set_string(L, "server_state", ev->server_state);
      mk_set_integer(L, "polls", ev->polls);
      if (!isnan(ev->progress)) {
        mk_push_count(L, ev->progress);
        lua_setfield(L, -2, "progress");
      }
      mk_set_number(L, "updated_at", ev->updated_at);
      if (ev->has_error) mk_push_error(L, &ev->error, ev->task_id);
      else if (ev->reading.outcome == MK_READ_SUCCESS) mk_push_result(L, &ev->reading);
      else mk_push_reading_error(L, &ev->reading);
      lua_setfield(L, -2, !ev->has_error && ev->reading.outcome == MK_READ_SUCCESS ? "result" : "error");
      break;
    case MK_EV_REPLY:
      mk_set_string(L, "state", mk_state_name(ev->state));
      if (ev->has_error) {
        mk_push_error(L, &ev->error, NULL);
        lua_setfield(L, -2, "error");
      } else if (ev->path) {
        mk_set_string(L, "path", ev->path);
      } else if (ev->data) {
        mk_push_json(L, ev->data);
        lua_setfield(L, -2, "data");
      }
      break;
    case MK_EV_STORE:
      mk_set_string(L, "state", ev->text);
      mk_set_string(L, "message", ev->message);
      break;
    case MK_EV_REQUEST:
      push_request(L, ev);
      break;
    default: /* READY, TIMER: the handle says it all */
      break;
  }
}

/* The step itself, run protected by l_step: (u, timeout). The events list is
 * kept in the registry (u->events_ref) from the moment it is made, so that a
 * step that raises hands its events to the next one. */
static int step_body(lua_State *L) {
  engine_ud *u = (engine_ud *)lua_touserdata(L, 1);
  double timeout = lua_tonumber(L, 2);
  const mk_event *ev;
  char err[256];
  int list, n;
  if (mk_engine_run(u->e, timeout, err, sizeof err) != 0) return luaL_error(L, "modkie: %s", err);
  /* nothing to say: no table made, a frame's update() allocates nothing */
  if (!mk_engine_event(u->e)) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, u->events_ref); /* what an earlier step could not hand out */
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawseti(L, LUA_REGISTRYINDEX, u->events_ref);
  }
  list = lua_gettop(L);
  n = (int)mk_rawlen(L, list);
  while ((ev = mk_engine_event(u->e))) {
    push_event(L, ev);
    lua_rawseti(L, list, ++n);
    mk_engine_event_done(u->e); /* only now: the list has it */
  }
  return 0;
}

static void close_now(lua_State *L, engine_ud *u);

/* engine:step(timeout) -> events | nil. Raises on a libcurl multi failure,
 * and with a Lua error that escaped the step (its events are then handed out
 * by the next step). */
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
  u->stepping = 0;
  mk_engine_end_step(u->e);
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
 * event loop should watch; when one is ready, or timeout() runs out, call step(0).
 * The first call hands libcurl over to the host's loop (engine.h, "Driving
 * libcurl"), which may run the transfers in flight: not in a forked child. */
static int l_fds(lua_State *L) {
  engine_ud *u = check_ud(L);
  size_t n, i;
  const struct pollfd *p;
  check_process(L, u);
  p = mk_engine_sockets(u->e, &n);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    int r = (p[i].events & POLLIN) != 0, w = (p[i].events & POLLOUT) != 0;
    lua_createtable(L, 0, 2);
    mk_set_integer(L, "fd", p[i].fd);
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
  lua_createtable(L, 0, 12);
  mk_set_integer(L, "live", (lua_Integer)mk_engine_live(e));
  mk_set_integer(L, "in_flight", (lua_Integer)e->in_flight);
  mk_set_integer(L, "waiting_submit", (lua_Integer)e->wait_submit.len);
  mk_set_integer(L, "waiting_poll", (lua_Integer)(e->wait_poll.len + e->wait_due.len));
  mk_set_integer(L, "ranked_waiting", (lua_Integer)e->ranks.ranked.len);
  mk_set_integer(L, "ranked_polls", (lua_Integer)e->ranked_polls);
  mk_set_integer(L, "held", (lua_Integer)e->held);
  mk_set_integer(L, "timers", (lua_Integer)e->timers.len);
  mk_set_integer(L, "requests", (lua_Integer)e->requests);
  mk_set_integer(L, "creates", (lua_Integer)e->creates_sent);
  mk_set_integer(L, "polls", (lua_Integer)e->polls_sent);
  mk_set_integer(L, "events", (lua_Integer)e->events_made);
  mk_set_integer(L, "wakeups", (lua_Integer)e->wakeups);
  mk_set_string(L, "drive", e->drive_sockets ? "sockets" : "poll"); /* how libcurl is driven (engine.h) */
  mk_set_integer(L, "rate_limited", (lua_Integer)e->rate_limited);
  mk_set_integer(L, "unavailable", (lua_Integer)e->unavailable);
  if (e->grants.store) {
    mk_set_string(L, "store", mk_grants_state(&e->grants, mk_now()));
    mk_set_integer(L, "store_grants", (lua_Integer)e->grants.store_grants);
    mk_set_integer(L, "local_grants", (lua_Integer)e->grants.local_grants);
    mk_set_integer(L, "store_outages", (lua_Integer)e->grants.outages);
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
    mk_set_string(L, "lane", LANES[l]);
    mk_set_integer(L, "want", st->question[l].want);
    mk_set_integer(L, "limit", st->question[l].limit);
    mk_set_number(L, "per", st->question[l].per);
    mk_set_string(L, "account", hex);
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
  luaL_unref(L, LUA_REGISTRYINDEX, u->events_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, u->body_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, u->durations_ref); /* after the engine: it ranked with it */
  u->events_ref = u->body_ref = u->durations_ref = LUA_NOREF;
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

static const luaL_Reg engine_methods[] = {
  {"submit", l_submit}, {"adopt", l_adopt}, {"call", l_call}, {"download", l_download},
  {"upload", l_upload}, {"progress", l_progress},
  {"timer", l_timer}, {"cancel", l_cancel}, {"send", l_send}, {"schedule", l_schedule}, {"step", l_step},
  {"called_back", l_called_back}, {"respond", l_respond}, {"listening", l_listening},
  {"redact", l_redact},
  {"timeout", l_timeout}, {"fds", l_fds}, {"stats", l_stats}, {"close", l_close}, {"closed", l_closed},
  {"questions", l_questions}, {"answer", l_answer}, {NULL, NULL}
};

static const luaL_Reg engine_meta[] = {
  {"__gc", l_close}, {"__close", l_close}, {NULL, NULL}
};

void mk_engine_register(lua_State *L) {
  mk_register_class(L, ENGINE_MT, engine_meta, engine_methods);
}

const luaL_Reg mk_engine_functions[] = {
  {"new", l_new}, {NULL, NULL}
};

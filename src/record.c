/* record.c: the Lua face of the record reader (lib/record.c):
 * `core.read_record`, and the tables a reading becomes, for this and for the
 * engine's DONE events (engine.c), so that a callback body and a poll's
 * answer read the same way. */
#include <math.h>
#include <string.h>

#include "core.h"
#include "lib/state.h"

void mk_set_string(lua_State *L, const char *key, const char *value) {
  if (!value) return;
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
}

void mk_set_number(lua_State *L, const char *key, double value) {
  if (isnan(value)) return;
  lua_pushnumber(L, value);
  lua_setfield(L, -2, key);
}

void mk_set_integer(lua_State *L, const char *key, lua_Integer value) {
  lua_pushinteger(L, value);
  lua_setfield(L, -2, key);
}

void mk_push_count(lua_State *L, double d) {
#if LUA_VERSION_NUM >= 503
  if (d == floor(d) && d >= -9007199254740992.0 && d <= 9007199254740992.0) {
    lua_pushinteger(L, (lua_Integer)d);
    return;
  }
#endif
  lua_pushnumber(L, d);
}

static void set_count(lua_State *L, const char *key, double value) {
  if (isnan(value)) return;
  mk_push_count(L, value);
  lua_setfield(L, -2, key);
}

void mk_push_json(lua_State *L, const cJSON *v) {
  const cJSON *c;
  int n = 0;
  luaL_checkstack(L, 3, "modkie: JSON nested too deep");
  if (cJSON_IsObject(v)) {
    for (c = v->child; c; c = c->next) n++;
    lua_createtable(L, 0, n);
    for (c = v->child; c; c = c->next) { /* a key given twice: the last one, as lua-cjson */
      mk_push_json(L, c);
      lua_setfield(L, -2, c->string);
    }
  } else if (cJSON_IsArray(v)) {
    for (c = v->child; c; c = c->next) n++;
    lua_createtable(L, n, 0);
    for (c = v->child, n = 1; c; c = c->next, n++) {
      mk_push_json(L, c);
      lua_rawseti(L, -2, n);
    }
  } else if (cJSON_IsString(v)) {
    lua_pushstring(L, v->valuestring);
  } else if (cJSON_IsNumber(v)) {
    lua_pushnumber(L, v->valuedouble);
  } else if (cJSON_IsBool(v)) {
    lua_pushboolean(L, cJSON_IsTrue(v));
  } else if (cJSON_IsNull(v)) {
    lua_pushlightuserdata(L, NULL); /* cjson.null */
  } else {
    lua_pushnil(L);
  }
}

void mk_push_result(lua_State *L, const mk_reading *r) {
  size_t i;
  lua_createtable(L, 0, 12);
  mk_set_string(L, "id", r->task_id);
  mk_set_string(L, "model", r->model);
  if (r->outcome == MK_READ_SUCCESS) mk_set_string(L, "state", "success");
  else if (r->server_state) mk_set_string(L, "state", mk_state_name(mk_classify_state(r->server_state)));
  lua_createtable(L, (int)r->nurls, 0);
  for (i = 0; i < r->nurls; i++) {
    lua_pushstring(L, r->urls[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_setfield(L, -2, "urls");
  if (r->output) {
    mk_push_json(L, r->output);
    lua_setfield(L, -2, "output");
  } else {
    mk_set_string(L, "output", r->output_text);
  }
  set_count(L, "credits", r->credits);
  mk_set_number(L, "created_at", r->created_at);
  mk_set_number(L, "completed_at", r->completed_at);
  mk_set_number(L, "updated_at", r->updated_at);
  mk_set_number(L, "cost_time", r->cost_time);
  set_count(L, "progress", r->progress);
  if (r->record) {
    mk_push_json(L, r->record);
    lua_setfield(L, -2, "raw");
  }
}

/* A failure's message as the error's `message`: whole up to MESSAGE_MAX
 * bytes, else cut there (never inside a UTF-8 sequence) with a note of what
 * was left out. A gateway's failMsg is a sentence; megabytes of it would go
 * into every log line and report. `record` keeps the whole text. */
#define MESSAGE_MAX 4096
static void set_message(lua_State *L, const char *msg) {
  size_t len = strlen(msg), keep = MESSAGE_MAX;
  if (len <= MESSAGE_MAX) {
    mk_set_string(L, "message", msg);
    return;
  }
  while (keep > 0 && ((unsigned char)msg[keep] & 0xC0) == 0x80) keep--; /* msg[keep] starts a character */
  lua_pushlstring(L, msg, keep);
  lua_pushfstring(L, " ... (%d more bytes: err.record has the whole text)", (int)(len - keep));
  lua_concat(L, 2);
  lua_setfield(L, -2, "message");
}

void mk_push_reading_error(lua_State *L, const mk_reading *r) {
  lua_createtable(L, 0, 7);
  if (r->outcome == MK_READ_FAILED) {
    mk_set_string(L, "kind", "failed");
    set_message(L, r->fail_message ? r->fail_message : "the job failed");
    if (r->fail_code_kind == 1) set_count(L, "code", r->fail_code);
    else mk_set_string(L, "code", r->fail_code_text);
    lua_pushboolean(L, 1); /* credits are charged only on success: it may be submitted again */
    lua_setfield(L, -2, "retryable");
    if (r->record) {
      mk_push_json(L, r->record);
      lua_setfield(L, -2, "record");
    }
  } else {
    mk_set_string(L, "kind", "protocol");
    mk_set_string(L, "message", r->problem);
    if (r->has_code && r->outcome == MK_READ_BROKEN) set_count(L, "code", r->code);
  }
  mk_set_string(L, "task_id", r->task_id);
  mk_set_string(L, "server_state", r->server_state);
}

void mk_push_error(lua_State *L, const mk_error *err, const char *task_id) {
  lua_createtable(L, 0, 7);
  mk_set_string(L, "kind", mk_kind_name(err->kind));
  mk_set_string(L, "message", err->message);
  if (err->status) mk_set_integer(L, "status", err->status);
  if (err->code) mk_set_integer(L, "code", err->code);
  lua_pushboolean(L, err->retryable);
  lua_setfield(L, -2, "retryable");
  if (err->retry_after >= 0) mk_set_number(L, "retry_after", err->retry_after);
  mk_set_string(L, "task_id", task_id);
}

/* The tables of a reading, run protected by l_read_record: (reading, shape). */
static int push_reading(lua_State *L) {
  const mk_reading *r = (const mk_reading *)lua_touserdata(L, 1);
  if (r->outcome == MK_READ_SUCCESS || (lua_toboolean(L, 2) && r->record)) {
    mk_push_result(L, r);
    return 1;
  }
  lua_pushnil(L);
  mk_push_reading_error(L, r);
  return 2;
}

/* core.read_record(body [, task_id [, model [, shape]]]) -> result | nil, error:
 * read a callback body or a recordInfo answer (JSON text) as the engine reads
 * a job's last answer. `task_id` and `model` fill in what the record lacks.
 * With `shape`, the result's fields of any record, whatever its state (its
 * `state` then says where the task is). The error is a table with `kind`
 * ("failed" or "protocol"), `message`, and where known `code`, `task_id`,
 * `server_state`, `retryable`, `record`. */
static int l_read_record(lua_State *L) {
  size_t len;
  const char *body = luaL_checklstring(L, 1, &len);
  const char *task_id = luaL_optstring(L, 2, NULL), *model = luaL_optstring(L, 3, NULL);
  int shape = lua_toboolean(L, 4), base, rc;
  cJSON *doc = mk_json_parse(body, len);
  mk_reading r;
  if (!cJSON_IsObject(doc)) {
    cJSON_Delete(doc);
    lua_pushnil(L);
    lua_createtable(L, 0, 2);
    mk_set_string(L, "kind", "protocol");
    mk_set_string(L, "message", "the body is not a JSON object");
    return 2;
  }
  if (mk_record_read(doc, task_id, model, shape, &r) != 0) {
    mk_reading_free(&r);
    cJSON_Delete(doc);
    return luaL_error(L, "modkie: out of memory");
  }
  base = lua_gettop(L);
  lua_pushcfunction(L, push_reading);
  lua_pushlightuserdata(L, &r);
  lua_pushboolean(L, shape);
  rc = lua_pcall(L, 2, LUA_MULTRET, 0); /* the reading and doc are freed however it ends */
  mk_reading_free(&r);
  cJSON_Delete(doc);
  if (rc != 0) return lua_error(L);
  return lua_gettop(L) - base;
}

const luaL_Reg mk_record_functions[] = {
  {"read_record", l_read_record}, {NULL, NULL}
};

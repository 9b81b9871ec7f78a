/* core.h: what the binding files of `modkie.core` share. Each file binds one
 * concept of the C library (src/lib/, which knows no Lua) and only converts
 * between Lua and C: engine.c the engine, record.c the record reader, fs.c
 * the file-system helpers, hmac.c HMAC, upload.c the probes of files to
 * upload, durations.c what is known of the models' durations; core.c opens
 * the module. */
#ifndef MODKIE_CORE_H
#define MODKIE_CORE_H

#include "compat.h"
#include "lib/event.h"
#include "lib/json.h"
#include "lib/record.h"

/* The functions each binding file adds to the module table. */
extern const luaL_Reg mk_engine_functions[];
extern const luaL_Reg mk_record_functions[];
extern const luaL_Reg mk_fs_functions[];
extern const luaL_Reg mk_hmac_functions[];
extern const luaL_Reg mk_upload_functions[];
extern const luaL_Reg mk_durations_functions[];

/* Register the metatables of the engine and of the file sniffer (before their functions are used). */
void mk_engine_register(lua_State *L);
void mk_upload_register(lua_State *L);
/* Register a userdata class: metatable `name` with `meta` (__gc, __close) and `methods` as its __index. */
void mk_register_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods);
void mk_durations_register(lua_State *L);
/* The durations object (core.durations) at stack index i, or raise. */
struct mk_durations *mk_check_durations(lua_State *L, int i);

/* Push a JSON value as lua-cjson decodes it: objects and arrays as tables,
 * numbers as floats, null as cjson.null (a NULL light userdata). */
void mk_push_json(lua_State *L, const cJSON *v);
/* Push a reading's result table: { id, model, state, urls, output, credits,
 * created_at, completed_at, updated_at, cost_time, progress, raw }. */
void mk_push_result(lua_State *L, const mk_reading *r);
/* Push the error table of a reading that is no result: kind "failed" (the
 * record's failCode and failMsg) or "protocol". */
void mk_push_reading_error(lua_State *L, const mk_reading *r);
/* Push an engine error as a table: { kind, message, status, code, retryable,
 * retry_after, task_id }. */
void mk_push_error(lua_State *L, const mk_error *err, const char *task_id);

/* t[key] = value on the table on top (nothing for a NULL string or a NAN number). */
void mk_set_string(lua_State *L, const char *key, const char *value);
void mk_set_number(lua_State *L, const char *key, double value);
void mk_set_integer(lua_State *L, const char *key, lua_Integer value);
/* A count as a Lua number: an integer when whole (Lua 5.3 on), as record.number reads one. */
void mk_push_count(lua_State *L, double d);

#endif

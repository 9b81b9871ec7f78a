/* durations.c: the Lua face of lib/durations.h, `core.durations(scale)`.
 *
 * One object holds what a client knows of its models' durations: the engine
 * ranks polls with it (its pointer is handed to core.new, which keeps a
 * reference), the "learn" schedule reads it, and poll_history() /
 * poll_history = … carry it from one client to the next. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "lib/durations.h"

#define DURATIONS_MT "modkie.core.durations"

mk_durations *mk_check_durations(lua_State *L, int i) {
  return (mk_durations *)luaL_checkudata(L, i, DURATIONS_MT);
}

/* A model name argument: a string, or nil for the pooled entry. */
static mk_model *model_arg(lua_State *L, mk_durations *d, int i) {
  return mk_durations_model(d, luaL_optstring(L, i, NULL));
}

/* core.durations(scale) -> durations: scale multiplies the prior's times (time_scale) */
static int l_durations(lua_State *L) {
  double scale = luaL_optnumber(L, 1, 1);
  mk_durations *d;
  if (!(scale >= 1e-6 && scale <= 1e6)) return luaL_argerror(L, 1, "a scale from 1e-6 to 1e6 expected");
  d = (mk_durations *)lua_newuserdata(L, sizeof *d);
  mk_durations_init(d, scale);
  luaL_getmetatable(L, DURATIONS_MT);
  lua_setmetatable(L, -2);
  return 1;
}

/* durations:add(model, seconds): a job of model took that long (nonsense is ignored) */
static int l_add(lua_State *L) {
  mk_durations *d = mk_check_durations(L, 1);
  const char *model = luaL_checkstring(L, 2);
  mk_durations_add(d, mk_durations_model(d, model), luaL_checknumber(L, 3));
  return 0;
}

/* durations:known(model) -> how many durations of model are known */
static int l_known(lua_State *L) {
  mk_durations *d = mk_check_durations(L, 1);
  lua_pushinteger(L, mk_durations_known(model_arg(L, d, 2)));
  return 1;
}

/* durations:quantile(model, q) -> seconds | nil: the model's (else the pooled) q-quantile */
static int l_quantile(lua_State *L) {
  mk_durations *d = mk_check_durations(L, 1);
  double v = mk_durations_quantile(d, model_arg(L, d, 2), luaL_checknumber(L, 3));
  if (v < 0) return 0;
  lua_pushnumber(L, v);
  return 1;
}

/* durations:survival(model, age) -> the chance a job of model still runs at that age */
static int l_survival(lua_State *L) {
  mk_durations *d = mk_check_durations(L, 1);
  lua_pushnumber(L, mk_durations_survival(d, model_arg(L, d, 2), luaL_checknumber(L, 3)));
  return 1;
}

static void push_model(lua_State *L, const mk_model *m) {
  int i, k = 0;
  lua_createtable(L, m->n, 0);
  /* oldest first: fed back in this order, the ring ends up the same */
  for (i = m->n < MK_KEEP ? 0 : m->next; k < m->n; i = (i + 1) % MK_KEEP) {
    lua_pushnumber(L, m->ring[i]);
    lua_rawseti(L, -2, ++k);
  }
}

/* durations:history() -> { [model] = { seconds, … } }, oldest first */
static int l_history(lua_State *L) {
  mk_durations *d = mk_check_durations(L, 1);
  size_t i;
  lua_createtable(L, 0, (int)d->n);
  for (i = 0; i < d->n; i++) {
    if (!d->models[i]->n) continue;
    push_model(L, d->models[i]);
    lua_setfield(L, -2, d->models[i]->name);
  }
  return 1;
}

static int l_gc(lua_State *L) {
  mk_durations_free(mk_check_durations(L, 1));
  return 0;
}

static const luaL_Reg meta[] = {{"__gc", l_gc}, {NULL, NULL}};

static const luaL_Reg methods[] = {
  {"add", l_add}, {"known", l_known}, {"quantile", l_quantile}, {"survival", l_survival},
  {"history", l_history}, {NULL, NULL}
};

void mk_durations_register(lua_State *L) {
  mk_register_class(L, DURATIONS_MT, meta, methods);
}

const luaL_Reg mk_durations_functions[] = {
  {"durations", l_durations}, {NULL, NULL}
};

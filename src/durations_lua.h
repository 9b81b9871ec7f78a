/* durations_lua.h: `core.durations` (see durations_lua.c). */
#ifndef MODKIE_DURATIONS_LUA_H
#define MODKIE_DURATIONS_LUA_H

#include <lua.h>

#include "durations.h"

/* Register the durations metatable and `durations` in the module table on top of the stack. */
void mk_durations_open(lua_State *L);
/* The durations object at stack index i, or raise. */
mk_durations *mk_check_durations(lua_State *L, int i);

#endif

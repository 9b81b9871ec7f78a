/* compat.h: the few Lua C API differences between 5.1/LuaJIT and 5.2-5.4 that modkie uses. */
#ifndef MODKIE_COMPAT_H
#define MODKIE_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 502
#define mk_setfuncs(L, l) luaL_register((L), NULL, (l))
#define mk_rawlen(L, i) lua_objlen((L), (i))
#else
#define mk_setfuncs(L, l) luaL_setfuncs((L), (l), 0)
#define mk_rawlen(L, i) lua_rawlen((L), (i))
#endif

#endif

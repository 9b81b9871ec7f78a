/* hmac.h: the Lua functions of hmac.c, registered by core.c. */
#ifndef MODKIE_HMAC_H
#define MODKIE_HMAC_H

#include <lua.h>

int mk_l_hmac_sha256(lua_State *L);
int mk_l_equal(lua_State *L);

#endif

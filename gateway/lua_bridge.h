/* lua_bridge.h -- the gateway's LuaJIT state: embedded modules and calls into Lua. */
#ifndef GG_LUA_BRIDGE_H
#define GG_LUA_BRIDGE_H

#include <lua.h>
#include <stddef.h>

/* A new state with the standard libraries and the embedded modules (require "ghost.*").
 * Returns NULL when out of memory. The caller owns it (lua_close). */
lua_State *gg_lua_new(void);

/* Call require(module)[fn](args...) with nargs arguments on the stack; leaves nres results.
 * Returns 0, or -1 with the Lua error (and traceback) in err. */
int gg_lua_call(lua_State *L, const char *module, const char *fn, int nargs, int nres, char *err,
                size_t errlen);

#endif

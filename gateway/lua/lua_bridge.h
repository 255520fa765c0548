/* lua_bridge.h -- the gateway's LuaJIT states: embedded modules, a memory budget, and the one
 * protected way from C into Lua. */
#ifndef GG_LUA_BRIDGE_H
#define GG_LUA_BRIDGE_H

#include <lua.h>
#include <stddef.h>

/* gg_lua_protect's result when the state ran out of memory: over its budget, or malloc said
 * no. The state has been collected (full GC) by then. */
#define GG_LUA_ENOMEM (-2)

/* The `lua_memory` option's default, in bytes: config.c applies it when the option is unset
 * (the schema has no default of its own, so this is the one place the number lives). */
#define GG_LUA_MEMORY_DEFAULT ((size_t)256 << 20)

/* A new state with the standard libraries and the embedded modules (require "ghost.*"), whose
 * allocations are counted. It has no budget until gg_lua_set_budget. Returns NULL when out of
 * memory. The caller owns it and closes it with gg_lua_close. */
lua_State *gg_lua_new(void);
/* lua_close, and free what counts the state's memory. NULL is fine. */
void gg_lua_close(lua_State *L);

/* The most the state may hold while Lua code runs under gg_lua_protect; 0: no limit. */
void gg_lua_set_budget(lua_State *L, size_t bytes);
size_t gg_lua_budget(lua_State *L);
/* Bytes the state holds now (garbage not yet collected included). */
size_t gg_lua_used(lua_State *L);

/* Run fn(L, ud) in protected mode, with the nargs values on top of the stack as fn's stack
 * (1..nargs). fn may push, call Lua (lua_call: the error goes to this function's handler,
 * which adds a traceback) and read what it needs into ud; it returns how many values it
 * leaves, adjusted to nres (LUA_MULTRET for all).
 *
 * The budget is enforced only in here: an allocation that would take the state over it fails
 * with Lua's memory error, the call unwinds, and the outermost gg_lua_protect collects the
 * state before it returns. Outside (a C push between calls) nothing is refused but by malloc.
 *
 * Returns 0 with the results in place of the arguments; -1 with the error and its traceback
 * on top (one value); or GG_LUA_ENOMEM with "not enough memory" on top. The caller pops it. */
typedef int (*gg_lua_fn)(lua_State *L, void *ud);
int gg_lua_protect(lua_State *L, gg_lua_fn fn, void *ud, int nargs, int nres);

/* lua_resume(co, nargs) with the budget of co's state enforced, as inside gg_lua_protect (a
 * coroutine catches its own errors). Returns lua_resume's result, or GG_LUA_ENOMEM when the
 * coroutine died out of memory ("not enough memory" on its stack); the state has then been
 * collected. */
int gg_lua_resume(lua_State *co, int nargs);

/* The one message handler for protected calls (gg_lua_protect's, `ghostgate run`'s): the error
 * as text -- a string, else what __tostring gives, else "(error object is not a string: a
 * <type> value)" -- followed by a traceback. Use as lua_pcall's errfunc. */
int gg_lua_traceback(lua_State *L);

/* Call require(module)[fn](args...) with nargs arguments on the stack; leaves nres results.
 * Returns 0, or -1 (GG_LUA_ENOMEM) with the Lua error (and traceback) in err. Protected as
 * gg_lua_protect. */
int gg_lua_call(lua_State *L, const char *module, const char *fn, int nargs, int nres, char *err,
                size_t errlen);

#endif

/* lua_consts.c -- require "ghost.consts": the shared constants of core/errors.h,
 * core/objects.h and lua/lua_consts.h as Lua tables, so that no Lua file writes one of their numbers. */
#include "lua/lua_consts.h"
#include "core/errors.h"
#include "core/objects.h"
#include "core/objiface.h"

#include <lauxlib.h>

int luaopen_ghost_consts(lua_State *L)
{
    lua_createtable(L, 0, 4);

    lua_createtable(L, 0, 16);
#define SET_ERR(name, code, type)                                                                  \
    lua_pushinteger(L, code);                                                                      \
    lua_setfield(L, -2, type);
    GG_ERRORS(SET_ERR)
#undef SET_ERR
    lua_setfield(L, -2, "errors");

    lua_createtable(L, 0, 16);
#define SET_TYPE(name, code, type)                                                                 \
    lua_pushstring(L, type);                                                                       \
    lua_rawseti(L, -2, code);
    GG_ERRORS(SET_TYPE)
#undef SET_TYPE
    lua_setfield(L, -2, "error_types");

    lua_createtable(L, 0, 8);
#define SET_V(name, v)                                                                             \
    lua_pushinteger(L, v);                                                                         \
    lua_setfield(L, -2, #name);
    GG_VERDICTS(SET_V)
    lua_setfield(L, -2, "verdicts");

    lua_createtable(L, 0, 12);
    GG_ADAPTER_CONSTS(SET_V)
#undef SET_V
    lua_setfield(L, -2, "adapter");

    lua_createtable(L, 0, 6); /* remote objects: ext types (defaults, range), interface size */
    lua_pushinteger(L, GG_OBJ_EXT_OBJECT);
    lua_setfield(L, -2, "EXT_OBJECT");
    lua_pushinteger(L, GG_OBJ_EXT_YOURS);
    lua_setfield(L, -2, "EXT_YOURS");
    lua_pushinteger(L, GG_OBJ_EXT_PROMISE);
    lua_setfield(L, -2, "EXT_PROMISE");
    lua_pushinteger(L, GG_OBJ_EXT_MIN);
    lua_setfield(L, -2, "EXT_MIN");
    lua_pushinteger(L, GG_OBJ_EXT_MAX);
    lua_setfield(L, -2, "EXT_MAX");
    lua_pushinteger(L, GG_OBJIFACE_MAX); /* method names an object's interface may list */
    lua_setfield(L, -2, "IFACE_MAX");
    lua_setfield(L, -2, "objects");
    return 1;
}

void gg_lua_consts_preload(lua_State *L)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_getfield(L, -1, "ghost.consts");
    if (lua_isnil(L, -1)) {
        lua_pushcfunction(L, luaopen_ghost_consts);
        lua_setfield(L, -3, "ghost.consts");
    }
    lua_pop(L, 3);
}

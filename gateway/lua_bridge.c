/* lua_bridge.c -- create the LuaJIT state and reach the Lua modules linked into the binary. */
#include "lua_bridge.h"
#include "lua_ghost.h"
#include "lua_modules.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

/* package.preload entry: upvalue 1 is the index into gg_lua_modules. */
static int load_embedded(lua_State *L)
{
    const gg_lua_module *m = &gg_lua_modules[lua_tointeger(L, lua_upvalueindex(1))];
    char chunkname[128];
    snprintf(chunkname, sizeof chunkname, "=%s", m->name);
    if (luaL_loadbuffer(L, (const char *)m->code, m->size, chunkname))
        return lua_error(L);
    lua_pushstring(L, m->name);
    lua_call(L, 1, 1);
    return 1;
}

lua_State *gg_lua_new(void)
{
    lua_State *L = luaL_newstate();
    if (!L) return NULL;
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    for (int i = 0; gg_lua_modules[i].name; i++) {
        const char *name = gg_lua_modules[i].name;
        size_t n = strlen(name);
        lua_pushinteger(L, i);
        lua_pushcclosure(L, load_embedded, 1);
        /* lua/ghost/init.lua is "ghost.init" and also "ghost", as ?/init.lua on package.path. */
        if (n > 5 && strcmp(name + n - 5, ".init") == 0) {
            lua_pushvalue(L, -1);
            lua_pushlstring(L, name, n - 5);
            lua_insert(L, -2);
            lua_settable(L, -4);
        }
        lua_setfield(L, -2, name);
    }
    /* The Lua client library (require "ghost"): the same C as build/lua/ghost/core.so. */
    lua_pushcfunction(L, luaopen_ghost_core);
    lua_setfield(L, -2, "ghost.core");
    lua_pop(L, 2);
    return L;
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

int gg_lua_call(lua_State *L, const char *module, const char *fn, int nargs, int nres, char *err,
                size_t errlen)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_getglobal(L, "require");
    lua_pushstring(L, module);
    if (lua_pcall(L, 1, 1, 0)) goto fail_pop;
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    /* stack: args..., traceback, fn  ->  traceback, fn, args... */
    lua_insert(L, base + 1);
    lua_insert(L, base + 1);
    if (lua_pcall(L, nargs, nres, base + 1)) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
        lua_settop(L, base);
        return -1;
    }
    lua_remove(L, base + 1);
    return 0;
fail_pop:
    snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
    lua_settop(L, base);
    return -1;
}

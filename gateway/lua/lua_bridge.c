/* lua_bridge.c -- create the LuaJIT states, count what they allocate, and enter Lua from C. */
#include "lua/lua_bridge.h"
#include "lua/lua_consts.h"
#include "lua/lua_ghost.h"
#include "lua/lua_modules.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per state, the allocator's user data (lua_getallocf gives it back); gg_lua_close frees it
 * after lua_close, whose frees still count in it. */
typedef struct gg_lua_mem {
    size_t used;
    size_t limit;  /* 0: none */
    size_t gc_at;  /* a full collection before a protected call once used passes this */
    int armed;     /* inside gg_lua_protect: the limit applies */
    int over;      /* an allocation was refused since the outermost gg_lua_protect began */
    int tramp_ref; /* the trampoline and the traceback handler, made once: no closure per call */
    int traceback_ref;
    lua_State *main; /* the main thread: a coroutine cannot always be entered in protected mode */
} gg_lua_mem;

/* Refuse growth past the limit only while armed: a C push outside gg_lua_protect has no
 * protected frame to unwind to, and would end the process in Lua's panic. */
static void *mem_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    gg_lua_mem *m = ud;
    if (nsize == 0) {
        free(ptr);
        m->used -= osize;
        return NULL;
    }
    if (m->armed && m->limit && nsize > osize && m->used - osize + nsize > m->limit) {
        m->over = 1;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p) {
        m->over = 1;
        return NULL;
    }
    m->used = m->used - osize + nsize;
    return p;
}

static gg_lua_mem *mem_of(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

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

int gg_lua_traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_isstring(L, -1))
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is not a string: a %s value)",
                                  luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

typedef struct tramp_arg {
    gg_lua_fn fn;
    void *ud;
} tramp_arg;

/* The one C function every protected entry runs: its last argument says what to do. */
static int trampoline(lua_State *L)
{
    tramp_arg *a = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return a->fn(L, a->ud);
}

static int panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "ghostgate: unprotected Lua error: %s\n", msg ? msg : "?");
    return 0; /* LuaJIT aborts */
}

lua_State *gg_lua_new(void)
{
    gg_lua_mem *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    lua_State *L = lua_newstate(mem_alloc, m);
    if (!L) {
        /* LuaJIT refuses custom allocators on non-GC64 64-bit builds */
        free(m);
        return NULL;
    }
    m->main = L;
    lua_atpanic(L, panic);
    luaL_openlibs(L);
    lua_pushcfunction(L, trampoline);
    m->tramp_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushcfunction(L, gg_lua_traceback);
    m->traceback_ref = luaL_ref(L, LUA_REGISTRYINDEX);
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
    gg_lua_consts_preload(L);
    return L;
}

void gg_lua_close(lua_State *L)
{
    if (!L) return;
    gg_lua_mem *m = mem_of(L);
    lua_close(L);
    free(m); /* after: lua_close's own frees still count in it */
}

void gg_lua_set_budget(lua_State *L, size_t bytes)
{
    gg_lua_mem *m = mem_of(L);
    m->limit = bytes;
    m->gc_at = bytes - bytes / 4;
}

size_t gg_lua_budget(lua_State *L)
{
    return mem_of(L)->limit;
}

size_t gg_lua_used(lua_State *L)
{
    return mem_of(L)->used;
}

static int gc_fn(lua_State *L, void *ud)
{
    (void)ud;
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}

/* A full collection in protected mode, the budget not armed: LuaJIT passes on an error raised
 * by a __gc metamethod, which would otherwise reach the panic handler. */
static void full_gc(gg_lua_mem *m)
{
    lua_State *L = m->main;
    tramp_arg a = {gc_fn, NULL};
    lua_rawgeti(L, LUA_REGISTRYINDEX, m->tramp_ref);
    lua_pushlightuserdata(L, &a);
    if (lua_pcall(L, 1, 0, 0)) lua_pop(L, 1);
}

/* LuaJIT collects once the heap has doubled: garbage alone must not hit the budget. One full
 * collection when past 3/4 of it, and not again until half the room left is used, so a state
 * whose live data sits high does not pay a full GC per call. */
static void collect_if_high(gg_lua_mem *m)
{
    if (!m->limit || m->used <= m->gc_at) return;
    full_gc(m);
    size_t floor = m->limit - m->limit / 4;
    m->gc_at = m->used < m->limit ? m->used + (m->limit - m->used) / 2 : m->limit;
    if (m->gc_at < floor) m->gc_at = floor;
}

int gg_lua_protect(lua_State *L, gg_lua_fn fn, void *ud, int nargs, int nres)
{
    gg_lua_mem *m = mem_of(L);
    int outer = !m->armed;
    int base = lua_gettop(L) - nargs;
    tramp_arg a = {fn, ud};
    if (outer) collect_if_high(m);
    /* No allocation before the pcall: two registry reads and a light userdata. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, m->traceback_ref);
    lua_insert(L, base + 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, m->tramp_ref);
    lua_insert(L, base + 2);
    lua_pushlightuserdata(L, &a);
    if (outer) {
        m->armed = 1;
        m->over = 0;
    }
    int rc = lua_pcall(L, nargs + 1, nres, base + 1);
    if (!outer) {
        lua_remove(L, base + 1);
        return rc == 0 ? 0 : rc == LUA_ERRMEM ? GG_LUA_ENOMEM : -1;
    }
    m->armed = 0;
    lua_remove(L, base + 1);
    if (m->over) {
        /* What the call grew is garbage now that it has unwound (or the Lua code caught the
         * error and went on: the state is brought back under its budget either way). */
        m->over = 0;
        full_gc(m);
        if (rc) {
            lua_settop(L, base);
            lua_pushliteral(L, "not enough memory");
            return GG_LUA_ENOMEM;
        }
    }
    return rc == 0 ? 0 : rc == LUA_ERRMEM ? GG_LUA_ENOMEM : -1;
}

int gg_lua_resume(lua_State *co, int nargs)
{
    gg_lua_mem *m = mem_of(co);
    int outer = !m->armed;
    if (outer) collect_if_high(m);
    if (outer) {
        m->armed = 1;
        m->over = 0;
    }
    int rc = lua_resume(co, nargs);
    if (!outer) return rc;
    m->armed = 0;
    if (m->over) {
        m->over = 0;
        full_gc(m);
        if (rc != 0 && rc != LUA_YIELD) return GG_LUA_ENOMEM;
    }
    return rc == LUA_ERRMEM ? GG_LUA_ENOMEM : rc;
}

typedef struct call_arg {
    const char *module, *fn;
    int nargs, nres;
} call_arg;

static int do_call(lua_State *L, void *ud)
{
    call_arg *c = ud;
    lua_getglobal(L, "require");
    lua_pushstring(L, c->module);
    lua_call(L, 1, 1);
    lua_getfield(L, -1, c->fn);
    lua_replace(L, -2);
    lua_insert(L, 1);
    lua_call(L, c->nargs, c->nres);
    return c->nres;
}

int gg_lua_call(lua_State *L, const char *module, const char *fn, int nargs, int nres, char *err,
                size_t errlen)
{
    call_arg c = {module, fn, nargs, nres};
    int rc = gg_lua_protect(L, do_call, &c, nargs, nres);
    if (rc) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
        lua_pop(L, 1);
    }
    return rc;
}

/* lua_registry.c -- core.register for the Lua library (see lua_registry.h). */
#include "lua/lua_registry.h"

#include "core/registry.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define REG_MT "ghost.registration"

/* Heap-allocated, not Lua memory: a deregistration may finish after the userdata is
 * collected (then `orphan` says the done callback frees it). */
typedef struct reg_state {
    gg_registration *g;
    int stopping, done, orphan;
} reg_state;

static void done_cb(void *arg)
{
    reg_state *s = arg;
    s->g = NULL;
    s->done = 1;
    if (s->orphan) free(s);
}

static reg_state *check(lua_State *L)
{
    reg_state **box = luaL_checkudata(L, 1, REG_MT);
    return *box;
}

static int l_stop(lua_State *L)
{
    reg_state *s = check(L);
    if (!s->stopping) {
        s->stopping = 1;
        gg_registration_stop(s->g, done_cb, s);
    }
    return 0;
}

static int l_done(lua_State *L)
{
    lua_pushboolean(L, check(L)->done);
    return 1;
}

static int l_beats(lua_State *L)
{
    reg_state *s = check(L);
    lua_pushnumber(L, s->g ? (lua_Number)gg_registration_beats(s->g) : 0);
    return 1;
}

static int l_gc(lua_State *L)
{
    reg_state *s = check(L);
    if (s->done) {
        free(s);
        return 0;
    }
    s->orphan = 1;
    if (!s->stopping) {
        s->stopping = 1;
        gg_registration_stop(s->g, done_cb, s);
    }
    return 0;
}

static int l_register(lua_State *L)
{
    uv_loop_t *uv = lua_touserdata(L, lua_upvalueindex(1));
    const char *url = luaL_checkstring(L, 1), *service = luaL_checkstring(L, 2);
    const char *addr = luaL_checkstring(L, 3);
    lua_Number ttl = luaL_checknumber(L, 4);
    char err[256];
    gg_redis_url u;
    if (gg_redis_url_parse(url, &u, err, sizeof err) < 0) goto fail;
    if (!(ttl * 1000 >= GG_REGISTRY_MIN_TTL_MS && ttl * 1000 <= GG_REGISTRY_MAX_TTL_MS)) {
        snprintf(err, sizeof err, "ttl must be a number of seconds from 0.3 to 86400");
        goto fail;
    }
    reg_state **box = lua_newuserdata(L, sizeof *box);
    *box = calloc(1, sizeof **box);
    if (!*box) return luaL_error(L, "ghost: out of memory");
    char host[128] = "", info[200];
    gethostname(host, sizeof host - 1);
    snprintf(info, sizeof info, "ghost.serve host=%s pid=%d", host, (int)getpid());
    (*box)->g = gg_registration_new(uv, &u, service, addr, info, (uint32_t)(ttl * 1000 + 0.5),
                                    NULL, err, sizeof err);
    if (!(*box)->g) {
        free(*box);
        goto fail;
    }
    luaL_getmetatable(L, REG_MT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, lua_upvalueindex(2)); /* the loop's owner lives as long as we do */
    lua_setfenv(L, -2);
    return 1;
fail:
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

void gg_lua_registry_push(lua_State *L, uv_loop_t *uv, int ctx_idx)
{
    ctx_idx = ctx_idx < 0 ? lua_gettop(L) + ctx_idx + 1 : ctx_idx;
    if (luaL_newmetatable(L, REG_MT)) {
        static const luaL_Reg methods[] = {
            {"stop", l_stop}, {"done", l_done}, {"beats", l_beats}, {NULL, NULL}};
        lua_newtable(L);
        for (const luaL_Reg *r = methods; r->name; r++) {
            lua_pushcfunction(L, r->func);
            lua_setfield(L, -2, r->name);
        }
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_pushlightuserdata(L, uv);
    lua_pushvalue(L, ctx_idx);
    lua_pushcclosure(L, l_register, 2);
}

/* policy_host.c -- the ghost.host library: the core functions the policies' Lua state sees
 * (call params, clocks, hashes, logging). See policy_host.h. */
#include "proxy/policy_host.h"
#include "proxy/policy.h"
#include "core/errors.h"
#include "lua/lua_msgpack.h"
#include "proxy/server.h"

#include <lauxlib.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* The host functions reach the server through a cell shared by all of them, set when the
 * server starts (gg_policy_init): a policy file may require "ghost.host" while the config is
 * still being read, before there is a server. Until then `now` is the wall clock and the
 * per-call functions refuse. */
static gg_server *host_srv(lua_State *L)
{
    return *(gg_server **)lua_touserdata(L, lua_upvalueindex(1));
}

/* ctx:args(): the params of the call in its request phase, decoded. */
static int host_args(lua_State *L)
{
    gg_server *srv = host_srv(L);
    char err[128];
    if (!srv || !srv->pol.cur_params)
        return luaL_error(L, "ctx:args() is only available in the request phase");
    gg_policy_host *pol = &srv->pol;
    if (gg_lua_push_msgpack(L, pol->cur_params, pol->cur_len, GG_POLICY_ARGS_DEPTH, err, sizeof err))
        return luaL_error(L, "cannot decode params: %s", err);
    return 1;
}

static int host_args_raw(lua_State *L)
{
    gg_server *srv = host_srv(L);
    if (!srv || !srv->pol.cur_params)
        return luaL_error(L, "ctx:args_raw() is only available in the request phase");
    gg_policy_host *pol = &srv->pol;
    lua_pushlstring(L, pol->cur_params, pol->cur_len);
    return 1;
}

/* Seconds, from the loop's clock (updated once per loop turn: cheap, monotonic). */
static int host_time(lua_State *L);

static int host_now(lua_State *L)
{
    gg_server *srv = host_srv(L);
    if (!srv) return host_time(L); /* a command with no loop (ghostgate token) */
    lua_pushnumber(L, (lua_Number)uv_now(srv->lp.uv) / 1000.0);
    return 1;
}

/* The clocks again, as plain C functions for the policies to call through LuaJIT's FFI: a
 * call through the Lua C API cannot be compiled into a trace (LuaJIT stitches around it),
 * and ratelimit and breaker read the clock on every call. */
double gg_host_now(void *server)
{
    gg_server *srv = server;
    if (srv) return (double)uv_now(srv->lp.uv) / 1000.0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double gg_host_time(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Wall-clock seconds (token expiry). */
static int host_time(lua_State *L)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    lua_pushnumber(L, (lua_Number)tv.tv_sec + (lua_Number)tv.tv_usec / 1e6);
    return 1;
}

/* host.show_address(url): the address as messages and logs may show it (gg_addr_redact). */
static int host_show_address(lua_State *L)
{
    char out[512];
    gg_addr_redact(luaL_checkstring(L, 1), out, sizeof out);
    lua_pushstring(L, out);
    return 1;
}

static void push_hex(lua_State *L, const unsigned char *d, unsigned n)
{
    static const char hex[] = "0123456789abcdef";
    char out[2 * EVP_MAX_MD_SIZE];
    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    lua_pushlstring(L, out, 2 * n);
}

static int host_sha256_hex(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (!EVP_Digest(s, n, md, &len, EVP_sha256(), NULL)) return luaL_error(L, "sha256 failed");
    push_hex(L, md, len);
    return 1;
}

static int host_hmac_sha256_hex(lua_State *L)
{
    size_t kn, n;
    const char *k = luaL_checklstring(L, 1, &kn);
    const char *s = luaL_checklstring(L, 2, &n);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (!HMAC(EVP_sha256(), k, (int)kn, (const unsigned char *)s, n, md, &len))
        return luaL_error(L, "hmac failed");
    push_hex(L, md, len);
    return 1;
}

/* Compare secrets in constant time (for equal lengths; lengths are not secret). */
static int host_consttime_eq(lua_State *L)
{
    size_t an, bn;
    const char *a = luaL_checklstring(L, 1, &an);
    const char *b = luaL_checklstring(L, 2, &bn);
    lua_pushboolean(L, an == bn && CRYPTO_memcmp(a, b, an) == 0);
    return 1;
}

static int host_log(lua_State *L)
{
    gg_server *srv = host_srv(L);
    const char *name = luaL_checkstring(L, 1);
    int level = gg_log_level_parse(name);
    const char *event = luaL_checkstring(L, 2);
    const char *msg = luaL_optstring(L, 3, "");
    const gg_logger fallback = {.level = GG_LOG_WARN, .fd = 2};
    const gg_logger *lg = srv ? &srv->lp.log : &fallback;
    if (strcmp(name, "notice") == 0) { /* a state change: shown at the default level too */
        gg_log_notice(lg, event, "%s", msg);
        return 0;
    }
    if (level < 0) level = GG_LOG_INFO;
    gg_log(lg, level, event, "%s", msg);
    return 0;
}

/* host.cluster_auth_failed(address, limit, window): count a failed authentication in the
 * cluster (cluster_auth.c); nothing without the top-level redis option. */
static int host_cluster_auth_failed(lua_State *L)
{
    gg_server *srv = host_srv(L);
    const char *addr = luaL_checkstring(L, 1);
    int limit = (int)luaL_checkinteger(L, 2);
    double window = luaL_checknumber(L, 3);
    if (srv) gg_cluster_auth_failed(srv, addr, limit, window);
    return 0;
}

static const luaL_Reg host_fns[] = {
    {"args", host_args},
    {"args_raw", host_args_raw},
    {"now", host_now},
    {"time", host_time},
    {"sha256_hex", host_sha256_hex},
    {"hmac_sha256_hex", host_hmac_sha256_hex},
    {"consttime_eq", host_consttime_eq},
    {"log", host_log},
    {"show_address", host_show_address},
    {"cluster_auth_failed", host_cluster_auth_failed},
    {NULL, NULL},
};

static const char host_cell_key = 0; /* its address keys the cell in the registry */

static gg_server **host_cell(lua_State *L)
{
    lua_pushlightuserdata(L, (void *)&host_cell_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    gg_server **cell = lua_touserdata(L, -1);
    if (!cell) {
        lua_pop(L, 1);
        cell = lua_newuserdata(L, sizeof *cell);
        *cell = NULL;
        lua_pushlightuserdata(L, (void *)&host_cell_key);
        lua_pushvalue(L, -2);
        lua_rawset(L, LUA_REGISTRYINDEX);
    }
    return cell; /* left on the stack */
}

/* package.preload["ghost.host"] */
static int open_host(lua_State *L)
{
    host_cell(L);
    int cell = lua_gettop(L);
    lua_newtable(L);
    for (const luaL_Reg *r = host_fns; r->name; r++) {
        lua_pushvalue(L, cell);
        lua_pushcclosure(L, r->func, 1);
        lua_setfield(L, -2, r->name);
    }
    return 1;
}

void gg_policy_preload_host(lua_State *L)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, open_host);
    lua_setfield(L, -2, "ghost.host");
    lua_pop(L, 2);
}

void gg_policy_push_host(lua_State *L, gg_server *srv)
{
    gg_policy_preload_host(L);
    lua_getglobal(L, "require");
    lua_pushstring(L, "ghost.host");
    lua_call(L, 1, 1);
    if (srv) {
        gg_server **cell = host_cell(L);
        *cell = srv;
        lua_pop(L, 1);
        /* the runner writes the running policy's number there, for the watchdog */
        lua_pushlightuserdata(L, &srv->wd.current);
        lua_setfield(L, -2, "current");
        /* for gg_host_now through the FFI (ghost.policy) */
        lua_pushlightuserdata(L, srv);
        lua_setfield(L, -2, "server");
    }
}

/* tls_config.c -- the config's `tls = {...}` table into a server TLS context (tls.h). */
#include "lua/tls_config.h"

#include <lauxlib.h>
#include <stdio.h>

static const char *str_field(lua_State *L, int idx, const char *k)
{
    lua_getfield(L, idx, k);
    const char *v = lua_tostring(L, -1); /* the table keeps it alive */
    lua_pop(L, 1);
    return v;
}

static double num_field(lua_State *L, int idx, const char *k)
{
    lua_getfield(L, idx, k);
    double v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

static int bool_field(lua_State *L, int idx, const char *k)
{
    lua_getfield(L, idx, k);
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static gg_tls_ctx *ctx_from_lua(lua_State *L, int t, int role, int http, char *err, size_t errlen)
{
    gg_tls_conf conf = {
        .cert = str_field(L, t, "cert"),
        .key = str_field(L, t, "key"),
        .ca = str_field(L, t, "ca"),
        .server_name = str_field(L, t, "server_name"),
        .verify_client = bool_field(L, t, "verify_client"),
        .tls12 = bool_field(L, t, "tls12"),
        .handshake_timeout_ms = (uint64_t)(num_field(L, t, "handshake_timeout") * 1000),
        .max_handshakes = (uint32_t)num_field(L, t, "max_handshakes"),
        .http = http,
    };
    return gg_tls_ctx_new(&conf, role, err, errlen);
}

gg_tls_ctx *gg_tls_ctx_from_lua(lua_State *L, int t, int role, char *err, size_t errlen)
{
    return ctx_from_lua(L, t, role, 0, err, errlen);
}

int gg_tls_config_read(lua_State *L, int idx, const char *source, gg_tls_ctx **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    lua_getfield(L, idx, "tls");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    char why[600];
    *out = gg_tls_ctx_from_lua(L, lua_gettop(L), GG_TLS_SERVER, why, sizeof why);
    lua_pop(L, 1);
    if (!*out) {
        snprintf(err, errlen, "%s: %s", source, why);
        return -1;
    }
    return 0;
}

int gg_tls_https_read(lua_State *L, int idx, const char *where, gg_tls_ctx **out, char *err,
                      size_t errlen)
{
    lua_getfield(L, idx, "tls");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
    }
    int t = lua_gettop(L);
    gg_tls_conf conf = {
        .cert = str_field(L, t, "cert"),
        .key = str_field(L, t, "key"),
        .ca = str_field(L, t, "ca"),
        .http = 1, /* no server_name: each URL's host is the name checked */
    };
    char why[600];
    *out = gg_tls_ctx_new(&conf, GG_TLS_CLIENT, why, sizeof why);
    lua_pop(L, 1);
    if (!*out) {
        snprintf(err, errlen, "%s: %s", where, why);
        return -1;
    }
    return 0;
}

int gg_tls_service_read(lua_State *L, int idx, const gg_addr *ups, int n, const char *where,
                        gg_tls_ctx **out, char *err, size_t errlen)
{
    *out = NULL;
    int any = 0;
    for (int i = 0; i < n; i++) any |= ups[i].tls;
    if (!any) return 0;
    lua_getfield(L, idx, "tls");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L); /* defaults: the system's CAs, each address's host */
    }
    char why[600];
    /* https:// URLs (jsonrpc-http) speak HTTP/1.1 inside TLS */
    *out = ctx_from_lua(L, lua_gettop(L), GG_TLS_CLIENT, ups[0].http_path[0] != 0, why, sizeof why);
    lua_pop(L, 1);
    if (!*out) {
        snprintf(err, errlen, "%s: %s", where, why);
        return -1;
    }
    return 0;
}

void gg_tls_push_identity(lua_State *L, int auth_ref, const gg_tls *t)
{
    const char *subject = t ? gg_tls_peer_identity(t) : NULL;
    if (!subject) return;
    lua_pushstring(L, subject);
    lua_setfield(L, -2, "certificate");
    if (auth_ref == LUA_NOREF) return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, auth_ref);
    lua_getfield(L, -1, "certificate");
    lua_insert(L, -2);      /* table, certificate, auth */
    lua_pushvalue(L, -3);   /* the client's table */
    lua_pushstring(L, subject);
    lua_call(L, 3, 0);
}

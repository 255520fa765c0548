/* config.c -- run the config file through ghost.config (Lua) and copy it into C structs. */
#include "proxy/config.h"
#include "core/log.h"
#include "lua/lua_bridge.h"
#include "proxy/policy.h"
#include "lua/tls_config.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double num_field(lua_State *L, int idx, const char *k)
{
    lua_getfield(L, idx, k);
    double v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

static int read_addrs(lua_State *L, int idx, const char *k, const char *where, gg_addr **out,
                      int *n, char *err, size_t errlen)
{
    lua_getfield(L, idx, k);
    int cnt = (int)lua_objlen(L, -1);
    *out = calloc((size_t)(cnt ? cnt : 1), sizeof(gg_addr));
    *n = 0;
    if (!*out) goto oom;
    for (int i = 1; i <= cnt; i++) {
        lua_rawgeti(L, -1, i);
        char why[200];
        if (gg_addr_parse(lua_tostring(L, -1), &(*out)[i - 1], why, sizeof why)) {
            snprintf(err, errlen, "%s[%d]: %s", where, i, why);
            lua_pop(L, 2);
            return -1;
        }
        lua_pop(L, 1);
        (*n)++;
    }
    lua_pop(L, 1);
    return 0;
oom:
    lua_pop(L, 1);
    snprintf(err, errlen, "out of memory");
    return -1;
}

static int read_limits(lua_State *L, int idx, gg_limits *l)
{
    lua_getfield(L, idx, "limits");
    int t = lua_gettop(L);
    l->max_message_size = (size_t)num_field(L, t, "max_message_size");
    l->max_depth = (uint32_t)num_field(L, t, "max_depth");
    l->max_decode_values = (uint32_t)num_field(L, t, "max_decode_values");
    l->max_inflight_per_client = (uint32_t)num_field(L, t, "max_inflight_per_client");
    l->max_refs_per_client = (uint32_t)num_field(L, t, "max_refs_per_client");
    l->max_kept_per_client = (uint32_t)num_field(L, t, "max_kept_per_client");
    l->max_callback_depth = (uint32_t)num_field(L, t, "max_callback_depth");
    l->max_callbacks_in_flight = (uint32_t)num_field(L, t, "max_callbacks_in_flight");
    l->max_clients = (uint32_t)num_field(L, t, "max_clients");
    l->max_calls = (uint32_t)num_field(L, t, "max_calls");
    l->max_write_buffer = (size_t)num_field(L, t, "max_write_buffer");
    l->idle_timeout_ms = (uint64_t)(num_field(L, t, "idle_timeout") * 1000);
    l->message_timeout_ms = (uint64_t)(num_field(L, t, "message_timeout") * 1000);
    l->write_timeout_ms = (uint64_t)(num_field(L, t, "write_timeout") * 1000);
    lua_pop(L, 1);
    return 0;
}

/* objects.ext (validated: distinct, GG_OBJ_EXT_MIN..MAX). */
static void read_objects(lua_State *L, int idx, gg_obj_ext *ext)
{
    gg_obj_ext_default(ext);
    lua_getfield(L, idx, "objects");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "ext");
        if (lua_istable(L, -1)) {
            int t = lua_gettop(L);
            ext->object = (int8_t)num_field(L, t, "object");
            ext->yours = (int8_t)num_field(L, t, "yours");
            ext->promise = (int8_t)num_field(L, t, "promise");
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static int cmp_service(const void *a, const void *b)
{
    return strcmp(((const gg_service_conf *)a)->name, ((const gg_service_conf *)b)->name);
}

static int read_services(lua_State *L, int idx, gg_config *c, char *err, size_t errlen)
{
    lua_getfield(L, idx, "services");
    int t = lua_gettop(L);
    int cnt = 0;
    for (lua_pushnil(L); lua_next(L, t); lua_pop(L, 1)) cnt++;
    c->services = calloc((size_t)(cnt ? cnt : 1), sizeof(gg_service_conf));
    if (!c->services) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (lua_pushnil(L); lua_next(L, t); lua_pop(L, 1)) {
        gg_service_conf *s = &c->services[c->nservices++];
        int v = lua_gettop(L);
        s->name = strdup(lua_tostring(L, -2));
        s->deadline_ms = (uint64_t)(num_field(L, v, "deadline") * 1000);
        s->connections = (int)num_field(L, v, "connections");
        lua_getfield(L, v, "keep_prefix");
        s->keep_prefix = lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, v, "objects");
        s->objects = lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, v, "discover");
        s->discover = lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, v, "error_details");
        s->error_details = lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, v, "method_names");
        s->any_method_name = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "any") == 0;
        lua_pop(L, 1);
        lua_getfield(L, v, "adapter");
        if (lua_isstring(L, -1)) {
            s->protocol = GG_PROTO_ADAPTER;
            s->adapter = strdup(lua_tostring(L, -1));
        }
        lua_pop(L, 1);
        lua_getfield(L, v, "protocol");
        if (!s->adapter && lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "jsonrpc-http") == 0)
            s->protocol = GG_PROTO_JSONRPC_HTTP;
        lua_pop(L, 1);
        char where[200];
        snprintf(where, sizeof where, "%s: services.%s.upstreams", c->source, s->name);
        if (!s->name || read_addrs(L, v, "upstreams", where, &s->upstreams, &s->nupstreams, err,
                                   errlen) ||
            gg_tls_service_read(L, v, s->upstreams, s->nupstreams, where, &s->tls, err, errlen)) {
            lua_settop(L, t - 1);
            return -1;
        }
        snprintf(where, sizeof where, "%s: services.%s", c->source, s->name);
        if (s->adapter && gg_tls_https_read(L, v, where, &s->https, err, errlen)) {
            lua_settop(L, t - 1);
            return -1;
        }
    }
    lua_pop(L, 1);
    /* Sorted, so logs and listings come out in a stable order. */
    qsort(c->services, (size_t)c->nservices, sizeof *c->services, cmp_service);
    return 0;
}

/* Read the normalised config table at the top of c->L into c. */
static int read_config(gg_config *c, char *err, size_t errlen)
{
    lua_State *L = c->L;
    int t = lua_gettop(L);
    char where[200];
    snprintf(where, sizeof where, "%s: listen", c->source);
    if (read_addrs(L, t, "listen", where, &c->listen, &c->nlisten, err, errlen)) return -1;
    lua_getfield(L, t, "log_level");
    c->log_level = gg_log_level_parse(lua_tostring(L, -1));
    lua_pop(L, 1);
    c->drain_timeout_ms = (uint64_t)(num_field(L, t, "drain_timeout") * 1000);
    c->workers = (int)num_field(L, t, "workers");
    c->watchdog_ms = (uint64_t)(num_field(L, t, "watchdog") * 1000);
    lua_getfield(L, t, "lua_memory");
    c->lua_memory = lua_isnumber(L, -1) ? (size_t)lua_tonumber(L, -1) : GG_LUA_MEMORY_DEFAULT;
    lua_pop(L, 1);
    read_limits(L, t, &c->limits);
    read_objects(L, t, &c->obj_ext);
    if (gg_tls_config_read(L, t, c->source, &c->tls, err, errlen)) return -1;
    if (read_services(L, t, c, err, errlen)) return -1;
    lua_getfield(L, t, "http");
    if (lua_istable(L, -1)) {
        int h = lua_gettop(L);
        snprintf(where, sizeof where, "%s: http.listen", c->source);
        if (read_addrs(L, h, "listen", where, &c->http_listen, &c->nhttp, err, errlen)) return -1;
        lua_getfield(L, h, "path");
        c->http_path = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "/rpc");
        lua_pop(L, 1);
        c->http_max_body = (size_t)num_field(L, h, "max_body");
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "redis");
    if (lua_isstring(L, -1)) {
        char why[200];
        if (gg_redis_url_parse(lua_tostring(L, -1), &c->redis_url, why, sizeof why)) {
            snprintf(err, errlen, "%s: redis: %s", c->source, why);
            return -1;
        }
        c->redis = strdup(lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    c->discover_resync_ms = (uint64_t)(num_field(L, t, "discover_resync") * 1000);
    lua_getfield(L, t, "admin");
    if (lua_istable(L, -1)) {
        snprintf(where, sizeof where, "%s: admin.listen", c->source);
        if (read_addrs(L, lua_gettop(L), "listen", where, &c->admin_listen, &c->nadmin, err, errlen))
            return -1;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, t);
    c->table_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
    return 0;
}

/* Validate the table at the top of c->L (ghost.config.normalize) and read it. */
static int normalize_and_read(gg_config *c, char *err, size_t errlen)
{
    lua_State *L = c->L;
    lua_pushstring(L, c->source);
    if (gg_lua_call(L, "ghost.config", "normalize", 2, 2, err, errlen)) return -1;
    if (lua_isnil(L, -2)) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        return -1;
    }
    lua_pop(L, 1);
    return read_config(c, err, errlen);
}

static gg_config *config_new(const char *source, lua_State *L)
{
    gg_config *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->source = strdup(source);
    c->table_ref = LUA_NOREF;
    c->owns_L = 1;
    c->L = L ? L : gg_lua_new();
    if (c->L) gg_policy_preload_host(c->L); /* user policies may require it at load */
    if (!c->source || !c->L) {
        if (L) c->L = NULL; /* the caller still owns it */
        gg_config_free(c);
        return NULL;
    }
    return c;
}

gg_config *gg_config_load(const char *path, char *err, size_t errlen)
{
    return gg_config_load_in(NULL, path, err, errlen);
}

gg_config *gg_config_load_in(lua_State *shared, const char *path, char *err, size_t errlen)
{
    gg_config *c = config_new(path ? path : "<default>", shared);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (shared) c->owns_L = 0;
    lua_State *L = c->L;
    if (path) {
        /* ghost.config.load runs the file in its own environment and validates it. */
        lua_pushstring(L, path);
        if (gg_lua_call(L, "ghost.config", "load", 1, 2, err, errlen)) goto fail;
        if (lua_isnil(L, -2)) {
            snprintf(err, errlen, "%s", lua_tostring(L, -1));
            goto fail;
        }
        lua_pop(L, 1);
        if (read_config(c, err, errlen)) goto fail;
        return c;
    }
    lua_getglobal(L, "require");
    lua_pushstring(L, "deploy.default");
    if (lua_pcall(L, 1, 1, 0)) {
        snprintf(err, errlen, "embedded default config: %s", lua_tostring(L, -1));
        goto fail;
    }
    if (normalize_and_read(c, err, errlen)) goto fail;
    return c;
fail:
    if (!c->owns_L) lua_settop(c->L, 0);
    gg_config_free(c);
    return NULL;
}

gg_config *gg_config_from_table(lua_State *L, const char *source, char *err, size_t errlen)
{
    gg_config *c = config_new(source, L);
    if (!c) {
        gg_lua_close(L);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (normalize_and_read(c, err, errlen)) {
        gg_config_free(c);
        return NULL;
    }
    return c;
}

void gg_config_free(gg_config *c)
{
    if (!c) return;
    for (int i = 0; i < c->nservices; i++) {
        free(c->services[i].name);
        free(c->services[i].upstreams);
        free(c->services[i].adapter);
        gg_tls_ctx_unref(c->services[i].tls);
        gg_tls_ctx_unref(c->services[i].https);
    }
    free(c->http_listen);
    free(c->http_path);
    free(c->admin_listen);
    free(c->redis);
    free(c->services);
    free(c->listen);
    free(c->source);
    gg_tls_ctx_unref(c->tls);
    if (c->L && c->owns_L)
        gg_lua_close(c->L);
    else if (c->L && c->table_ref != LUA_NOREF)
        luaL_unref(c->L, LUA_REGISTRYINDEX, c->table_ref);
    free(c);
}

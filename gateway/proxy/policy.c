/* policy.c -- run the Lua policies of a service for each call; see policy.h. */
#include "proxy/policy.h"
#include "core/errors.h"
#include "lua/lua_bridge.h"
#include "lua/lua_msgpack.h"
#include "proxy/server.h"
#include "lua/tls_config.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define GG_TOKEN_MAX 4096 /* longer tokens are refused before any work */

/* A policy error (rc from gg_lua_protect, its message on top of the stack): one id in the
 * caller's answer and in the log line with the traceback. */
static void policy_error(gg_server *srv, const char *service, const char *phase, int rc,
                         gg_verdict *v)
{
    gg_policy_host *pol = &srv->pol;
    const char *trace = lua_tostring(pol->L, -1);
    char mem[160];
    if (rc == GG_LUA_ENOMEM) {
        if (gg_lua_budget(pol->L))
            snprintf(mem, sizeof mem,
                     "not enough memory (lua_memory is %zu bytes; the state was collected)",
                     gg_lua_budget(pol->L));
        else /* no budget: malloc refused */
            snprintf(mem, sizeof mem, "not enough memory (the state was collected)");
        trace = mem;
    }
    unsigned id = gg_policy_error_id(pol);
    char line[1536];
    /* the traceback goes on one line: a log line is one event */
    size_t n = 0;
    for (const char *p = trace ? trace : "?"; *p && n < sizeof line - 1; p++)
        line[n++] = *p == '\n' ? '|' : *p; /* quotes: the logger escapes them */
    line[n] = 0;
    gg_log(&srv->lp.log, GG_LOG_ERROR, "policy_error", "id=%08x service=%s phase=%s error=\"%s\"", id,
           service, phase, line);
    v->verdict = GG_V_ERROR;
    v->code = GG_ERR_INTERNAL;
    snprintf(v->message, sizeof v->message, "policy error (id %08x; see the gateway log)", id);
}

static int ref_field(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

static int init_fn(lua_State *L, void *ud)
{
    gg_server *srv = ud;
    gg_policy_host *pol = &srv->pol;
    gg_policy_push_host(L, srv);
    pol->host_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getglobal(L, "require");
    lua_pushstring(L, "ghost.gateway");
    lua_call(L, 1, 1);
    int gw = lua_gettop(L);
    pol->request_ref = ref_field(L, gw, "request");
    pol->response_ref = ref_field(L, gw, "response");
    pol->callback_ref = ref_field(L, gw, "callback");
    pol->endpoint_ref = ref_field(L, gw, "endpoint_state");
    pol->endpoints_ref = ref_field(L, gw, "set_endpoints");
    return 0;
}

int gg_policy_init(gg_server *srv, char *err, size_t errlen)
{
    gg_policy_host *pol = &srv->pol;
    lua_State *L = srv->L;
    pol->L = L;
    pol->auth_ref = LUA_NOREF;
    msgpack_sbuffer_init(&pol->out);
    lua_settop(L, 0);
    if (gg_lua_protect(L, init_fn, srv, 0, 0)) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_settop(L, 0);
        return -1;
    }
    return 0;
}

typedef struct build_arg {
    gg_server *srv;
    gg_generation *gen;
} build_arg;

/* The table ghost.gateway.start built is at 1: one pipeline reference per service. */
static int build_fn(lua_State *L, void *ud)
{
    build_arg *b = ud;
    gg_server *srv = b->srv;
    gg_generation *gen = b->gen;
    gg_policy_host *pol = &srv->pol;
    int built = 1;
    lua_getglobal(L, "require");
    lua_pushstring(L, "ghost.gateway");
    lua_call(L, 1, 1);
    int gw = lua_gettop(L);
    lua_getfield(L, built, "services");
    int services = lua_gettop(L);
    for (int i = 0; i < gen->nservices; i++) {
        gg_service *svc = &gen->services[i];
        lua_getfield(L, services, svc->name);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        lua_getfield(L, gw, "flags");
        lua_pushvalue(L, -2);
        lua_call(L, 1, 5);
        svc->has_request = lua_toboolean(L, -5);
        svc->has_response = lua_toboolean(L, -4);
        svc->wants_result = lua_toboolean(L, -3);
        svc->keeps_request = lua_toboolean(L, -2);
        svc->policy_names = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        lua_pop(L, 5);
        svc->pipeline_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        gg_log(&srv->lp.log, GG_LOG_INFO, "policies_loaded", "service=%s request=%d response=%d",
               svc->name, svc->has_request, svc->has_response);
    }
    /* The authenticator belongs to the newest config; identities already given stay. */
    lua_getfield(L, built, "auth");
    int auth = lua_isnil(L, -1) ? LUA_NOREF : luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, built);
    gen->pipelines_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (pol->auth_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, pol->auth_ref);
    pol->auth_ref = auth;
    return 0;
}

int gg_policy_build(gg_server *srv, gg_generation *gen, gg_generation *old, char *err, size_t errlen)
{
    gg_policy_host *pol = &srv->pol;
    lua_State *L = pol->L;
    /* the newest config's budget, from here on (a reload may change it) */
    gg_lua_set_budget(L, gen->cfg->lua_memory);
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, gen->cfg->table_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, pol->host_ref);
    if (old && old->pipelines_ref != LUA_NOREF)
        lua_rawgeti(L, LUA_REGISTRYINDEX, old->pipelines_ref);
    else
        lua_pushnil(L);
    gg_watchdog_enter(&srv->wd, "-", "build", NULL);
    int rc = gg_lua_call(L, "ghost.gateway", "start", 3, 1, err, errlen);
    gg_watchdog_leave(&srv->wd);
    if (rc) return -1;
    build_arg b = {srv, gen};
    if (gg_lua_protect(L, build_fn, &b, 1, 0)) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
        lua_settop(L, 0);
        return -1;
    }
    lua_settop(L, 0);
    return 0;
}

void gg_policy_sync_endpoints(gg_server *srv, gg_generation *gen)
{
    for (int i = 0; i < gen->nservices; i++) {
        if (gen->services[i].conf->discover) {
            gg_policy_endpoints_listed(srv, &gen->services[i]);
            continue;
        }
        for (int e = 0; e < gen->services[i].neps; e++)
            gg_policy_endpoint_changed(srv, &gen->services[i].eps[e]);
    }
}

void gg_policy_generation_free(gg_server *srv, gg_generation *gen)
{
    lua_State *L = srv->pol.L;
    if (!L) return;
    for (int i = 0; i < gen->nservices; i++) {
        gg_service *svc = &gen->services[i];
        if (svc->pipeline_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, svc->pipeline_ref);
        svc->pipeline_ref = LUA_NOREF;
    }
    if (gen->pipelines_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, gen->pipelines_ref);
    gen->pipelines_ref = LUA_NOREF;
}

void gg_policy_stop(gg_server *srv)
{
    msgpack_sbuffer_destroy(&srv->pol.out);
    srv->pol.out.data = NULL;
}

/* The connection's table ({address, host, identity, meta}), made on first use. */
static void push_client(lua_State *L, gg_server *srv, gg_client *c)
{
    if (c->lua_ref > 0) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->lua_ref);
        return;
    }
    lua_createtable(L, 0, 8);
    char peer[80];
    gg_client_peer(c, peer, sizeof peer);
    const char *addr = strncmp(peer, "tcp://", 6) == 0 ? peer + 6 : peer;
    lua_pushstring(L, addr);
    lua_setfield(L, -2, "address");
    const char *colon = strrchr(addr, ':');
    if (colon && addr[0] != 'u') lua_pushlstring(L, addr, (size_t)(colon - addr));
    else lua_pushstring(L, addr);
    lua_setfield(L, -2, "host");
    lua_newtable(L);
    lua_setfield(L, -2, "meta");
    gg_tls_push_identity(L, srv->pol.auth_ref, c->st.tls);
    lua_pushvalue(L, -1);
    c->lua_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    (void)srv;
}

void gg_policy_client_closed(gg_server *srv, gg_client *c)
{
    if (c->lua_ref > 0) luaL_unref(srv->pol.L, LUA_REGISTRYINDEX, c->lua_ref);
    c->lua_ref = 0;
}

static uint32_t slot_of(const gg_call *call)
{
    return (call->id & GG_CALL_IDX_MASK) + 1;
}

/* Read a verdict left on the stack by ghost.policy.request/response: verdict, a, b, c. */
static void read_verdict(gg_server *srv, lua_State *L, int top, gg_verdict *v)
{
    int kind = lua_isnil(L, top + 1) ? GG_V_CONTINUE : (int)lua_tointeger(L, top + 1);
    v->verdict = kind;
    v->retry_after = -1;
    switch (kind) {
    case GG_V_CONTINUE:
        v->endpoint = (int)lua_tointeger(L, top + 2);
        if (lua_isnumber(L, top + 3)) v->deadline = lua_tonumber(L, top + 3);
        break;
    case GG_V_REJECT: {
        v->code = (int)lua_tointeger(L, top + 2);
        if (v->code < 100 || v->code > 999) v->code = GG_ERR_INTERNAL;
        const char *m = lua_tostring(L, top + 3);
        snprintf(v->message, sizeof v->message, "%s", m ? m : "refused");
        if (lua_isnumber(L, top + 4)) v->retry_after = lua_tonumber(L, top + 4);
        break;
    }
    case GG_V_RESPOND: {
        char err[160];
        msgpack_packer pk;
        srv->pol.out.size = 0;
        msgpack_packer_init(&pk, &srv->pol.out, msgpack_sbuffer_write);
        if (gg_lua_pack(L, top + 2, &pk, GG_POLICY_ARGS_DEPTH, err, sizeof err)) {
            v->verdict = GG_V_ERROR;
            v->code = GG_ERR_INTERNAL;
            snprintf(v->message, sizeof v->message, "policy answer cannot be encoded: %s", err);
            break;
        }
        v->result = srv->pol.out.data;
        v->result_len = srv->pol.out.size;
        break;
    }
    case GG_V_RESPOND_RAW: {
        size_t n = 0;
        const char *s = lua_tolstring(L, top + 2, &n);
        srv->pol.out.size = 0;
        if (!s || msgpack_sbuffer_write(&srv->pol.out, s, n)) {
            v->verdict = GG_V_ERROR;
            v->code = GG_ERR_INTERNAL;
            snprintf(v->message, sizeof v->message, "policy raw answer is not a string");
            break;
        }
        v->result = srv->pol.out.data;
        v->result_len = n;
        break;
    }
    case GG_V_RETRY:
        v->delay = lua_tonumber(L, top + 2);
        break;
    default:
        v->verdict = GG_V_CONTINUE;
        v->endpoint = 0;
        break;
    }
}

/* One request or response phase, run by gg_lua_protect: everything it pushes (the client's
 * table on first use, the method name, the result) is inside the protected call. */
typedef struct phase_arg {
    gg_server *srv;
    gg_client *c;
    gg_service *svc;
    gg_call *call;
    const char *method, *result;
    size_t method_len, result_len;
    int kind, code;
    gg_verdict *v;
} phase_arg;

static int request_fn(lua_State *L, void *ud)
{
    phase_arg *a = ud;
    gg_policy_host *pol = &a->srv->pol;
    lua_rawgeti(L, LUA_REGISTRYINDEX, pol->request_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->svc->pipeline_ref);
    lua_pushinteger(L, a->call ? slot_of(a->call) : 0); /* 0: a notification (ghost.policy) */
    push_client(L, a->srv, a->c);
    lua_pushlstring(L, a->method, a->method_len);
    lua_pushinteger(L, 0);
    lua_pushnumber(L, a->v->deadline);
    lua_pushboolean(L, pol->cur_object);
    lua_call(L, 7, 4);
    read_verdict(a->srv, L, 0, a->v);
    return 0;
}

/* Run fn, a phase before the call goes anywhere, with params for ctx:args(): under the
 * watchdog, protected; a Lua error becomes a->v's ERROR verdict. */
static void run_before(phase_arg *a, const char *phase, gg_lua_fn fn, const char *params,
                       size_t params_len)
{
    gg_server *srv = a->srv;
    gg_policy_host *pol = &srv->pol;
    lua_State *L = pol->L;
    int top = lua_gettop(L);
    pol->cur_params = params;
    pol->cur_len = params_len;
    gg_watchdog_enter(&srv->wd, a->svc->name, phase, a->svc->policy_names);
    int rc = gg_lua_protect(L, fn, a, 0, 0);
    gg_watchdog_leave(&srv->wd);
    pol->cur_params = NULL;
    if (rc) policy_error(srv, a->svc->name, phase, rc, a->v);
    lua_settop(L, top);
}

void gg_policy_request(gg_server *srv, gg_client *c, gg_service *svc, gg_call *call,
                       const char *method, uint32_t method_len, const char *params,
                       size_t params_len, gg_verdict *v)
{
    v->endpoint = 0;
    v->deadline = (double)svc->conf->deadline_ms / 1000.0;
    phase_arg a = {.srv = srv, .c = c, .svc = svc, .call = call, .method = method,
                   .method_len = method_len, .v = v};
    run_before(&a, "request", request_fn, params, params_len);
}

void gg_policy_request_object(gg_server *srv, gg_client *c, gg_service *svc, gg_call *call,
                              const char *method, uint32_t method_len, const char *params,
                              size_t params_len, gg_verdict *v)
{
    srv->pol.cur_object = 1;
    gg_policy_request(srv, c, svc, call, method, method_len, params, params_len, v);
    srv->pol.cur_object = 0;
}

static int callback_fn(lua_State *L, void *ud)
{
    phase_arg *a = ud;
    gg_policy_host *pol = &a->srv->pol;
    lua_rawgeti(L, LUA_REGISTRYINDEX, pol->callback_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->svc->pipeline_ref);
    push_client(L, a->srv, a->c);
    lua_pushlstring(L, a->method, a->method_len);
    lua_call(L, 3, 4);
    read_verdict(a->srv, L, 0, a->v);
    return 0;
}

void gg_policy_callback(gg_server *srv, gg_client *c, gg_service *svc, const char *method,
                        uint32_t method_len, gg_verdict *v)
{
    v->endpoint = 0;
    v->deadline = 0;
    phase_arg a = {.srv = srv, .c = c, .svc = svc, .method = method, .method_len = method_len,
                   .v = v};
    run_before(&a, "callback", callback_fn, "\x90", 1); /* ctx:args(): a callback offers none */
}

static int response_fn(lua_State *L, void *ud)
{
    phase_arg *a = ud;
    gg_policy_host *pol = &a->srv->pol;
    gg_call *call = a->call;
    lua_rawgeti(L, LUA_REGISTRYINDEX, pol->response_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->svc->pipeline_ref);
    lua_pushinteger(L, slot_of(call));
    lua_pushinteger(L, a->kind);
    if (a->code)
        lua_pushinteger(L, a->code);
    else
        lua_pushnil(L);
    lua_pushnumber(L, call->start_ns ? (double)(uv_hrtime() - call->start_ns) / 1e9 : 0.0);
    lua_pushinteger(L, call->endpoint);
    if (a->result && a->svc->wants_result)
        lua_pushlstring(L, a->result, a->result_len);
    else
        lua_pushnil(L);
    lua_pushinteger(L, call->attempt ? call->attempt : 1);
    lua_pushboolean(L, call->sent);
    lua_call(L, 9, 3);
    read_verdict(a->srv, L, 0, a->v);
    if (a->v->verdict == GG_V_REJECT) a->v->verdict = GG_V_CONTINUE; /* not a response verdict */
    return 0;
}

void gg_policy_response(gg_server *srv, gg_call *call, int kind, int code, const char *result,
                        size_t result_len, gg_verdict *v)
{
    gg_policy_host *pol = &srv->pol;
    lua_State *L = pol->L;
    gg_service *svc = call->svc;
    int top = lua_gettop(L);
    phase_arg a = {.srv = srv, .svc = svc, .call = call, .result = result,
                   .result_len = result_len, .kind = kind, .code = code, .v = v};
    gg_watchdog_enter(&srv->wd, svc->name, "response", svc->policy_names);
    int rc = gg_lua_protect(L, response_fn, &a, 0, 0);
    gg_watchdog_leave(&srv->wd);
    if (rc) policy_error(srv, svc->name, "response", rc, v);
    lua_settop(L, top);
}

static int endpoint_fn(lua_State *L, void *ud)
{
    gg_endpoint *ep = ud;
    gg_service *svc = ep->svc;
    lua_rawgeti(L, LUA_REGISTRYINDEX, svc->srv->pol.endpoint_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, svc->pipeline_ref);
    lua_pushinteger(L, (int)(ep - svc->eps) + 1);
    lua_pushinteger(L, ep->gone ? 0 : ep->nconnected); /* a draining endpoint takes no call */
    lua_call(L, 3, 0);
    return 0;
}

/* set_endpoints(pipeline, addresses, states): slot i's address ("" when free) and GG_EP_*. */
static int endpoints_fn(lua_State *L, void *ud)
{
    gg_service *svc = ud;
    lua_rawgeti(L, LUA_REGISTRYINDEX, svc->srv->pol.endpoints_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, svc->pipeline_ref);
    lua_createtable(L, svc->neps, 0);
    lua_createtable(L, svc->neps, 0);
    for (int e = 0; e < svc->neps; e++) {
        lua_pushstring(L, svc->eps[e].gone == GG_EP_FREE ? "" : svc->eps[e].addr->text);
        lua_rawseti(L, -3, e + 1);
        lua_pushinteger(L, svc->eps[e].gone);
        lua_rawseti(L, -2, e + 1);
    }
    lua_call(L, 3, 0);
    return 0;
}

/* Run an endpoint hook of svc's pipeline (fn with ud, protected) under the watchdog; a failure
 * is a policy error of phase "endpoint", logged, with nobody to answer. The stack is left as
 * it was. */
static void run_endpoint_hook(gg_server *srv, gg_service *svc, gg_lua_fn fn, void *ud)
{
    lua_State *L = srv->pol.L;
    int top = lua_gettop(L);
    gg_watchdog_enter(&srv->wd, svc->name, "endpoint", svc->policy_names);
    int rc = gg_lua_protect(L, fn, ud, 0, 0);
    gg_watchdog_leave(&srv->wd);
    if (rc) {
        gg_verdict v;
        policy_error(srv, svc->name, "endpoint", rc, &v);
    }
    lua_settop(L, top);
}

void gg_policy_endpoints_listed(gg_server *srv, gg_service *svc)
{
    if (svc->pipeline_ref == LUA_NOREF || !srv->pol.L) return;
    run_endpoint_hook(srv, svc, endpoints_fn, svc);
    for (int e = 0; e < svc->neps; e++)
        if (svc->eps[e].gone != GG_EP_FREE) gg_policy_endpoint_changed(srv, &svc->eps[e]);
}

void gg_policy_endpoint_changed(gg_server *srv, gg_endpoint *ep)
{
    gg_service *svc = ep->svc;
    if (svc->pipeline_ref == LUA_NOREF || !srv->pol.L) return;
    run_endpoint_hook(srv, svc, endpoint_fn, ep);
}

typedef struct auth_arg {
    gg_server *srv;
    gg_client *c;
    const char *token;
    size_t len;
    gg_auth_result *res;
} auth_arg;

/* authenticator:authenticate(client, token) -> identity | nil, code, message, retry_after.
 * Leaves two values, anchored until the caller restores the stack top: the identity (or nil)
 * and the refusal's message (or nil). */
static int auth_fn(lua_State *L, void *ud)
{
    auth_arg *a = ud;
    gg_auth_result *res = a->res;
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->srv->pol.auth_ref);
    lua_getfield(L, -1, "authenticate");
    lua_insert(L, -2); /* authenticate, self */
    push_client(L, a->srv, a->c);
    lua_pushlstring(L, a->token, a->len);
    lua_call(L, 3, 4);
    if (lua_isstring(L, 1)) {
        lua_tolstring(L, 1, NULL); /* a number becomes its string here, protected */
        lua_settop(L, 1);
        lua_pushnil(L);
        return 2;
    }
    int code = (int)lua_tointeger(L, 2);
    res->code = code ? code : GG_ERR_UNAUTHENTICATED;
    res->retry_after = lua_isnumber(L, 4) ? lua_tonumber(L, 4) : -1;
    lua_pushnil(L);
    lua_replace(L, 1);
    lua_pushvalue(L, 3);
    lua_replace(L, 2);
    lua_settop(L, 2);
    return 2;
}

/* Call the authenticator for connection c with the token. Fills res; on success res->identity
 * points at the identity, a Lua string on the stack: the caller uses it before it restores the
 * stack top. */
static void run_auth(gg_server *srv, gg_client *c, const char *token, size_t len,
                     gg_auth_result *res)
{
    gg_policy_host *pol = &srv->pol;
    lua_State *L = pol->L;
    res->code = 0;
    res->retry_after = -1;
    res->identity = NULL;
    res->identity_len = 0;
    res->message = res->buf;
    res->buf[0] = 0;
    auth_arg a = {srv, c, token, len, res};
    gg_watchdog_enter(&srv->wd, "ghost", "auth", NULL);
    int rc = gg_lua_protect(L, auth_fn, &a, 0, 2);
    gg_watchdog_leave(&srv->wd);
    if (rc) {
        gg_verdict v;
        policy_error(srv, "ghost", "auth", rc, &v);
        res->code = v.code;
        snprintf(res->buf, sizeof res->buf, "%s", v.message);
        return;
    }
    if (res->code == 0) {
        res->identity = lua_tolstring(L, -2, &res->identity_len);
        gg_log(&srv->lp.log, GG_LOG_INFO, "authenticated", "identity=%s", res->identity);
        return;
    }
    const char *m = lua_tostring(L, -1);
    res->message = m ? m : "invalid token";
    char peer[80];
    gg_client_peer(c, peer, sizeof peer);
    gg_log(&srv->lp.log, GG_LOG_WARN, "auth_failed", "peer=%s reason=\"%s\"", peer, m ? m : "?");
}

void gg_policy_authenticate(gg_server *srv, gg_client *c, const char *token, size_t len,
                            gg_auth_result *res)
{
    gg_policy_host *pol = &srv->pol;
    lua_State *L = pol->L;
    if (pol->auth_ref == LUA_NOREF || !L) {
        res->code = GG_ERR_NOT_SUPPORTED;
        res->retry_after = -1;
        res->identity = NULL;
        res->identity_len = 0;
        res->message = "authentication is not configured on this gateway";
        return;
    }
    int top = lua_gettop(L);
    run_auth(srv, c, token, len, res);
    /* Lua strings die with the stack: keep copies of what the caller may read. */
    if (res->code == 0) {
        res->identity_len = 0;
        res->identity = NULL;
    } else if (res->message != res->buf) {
        snprintf(res->buf, sizeof res->buf, "%s", res->message);
        res->message = res->buf;
    }
    lua_settop(L, top);
}

void gg_policy_auth(gg_server *srv, gg_client *c, uint32_t msgid, const char *params,
                    size_t params_len)
{
    gg_policy_host *pol = &srv->pol;
    lua_State *L = pol->L;
    char err[160];
    if (pol->auth_ref == LUA_NOREF || !L) {
        gg_reply_error(&c->st, msgid, GG_ERR_NOT_SUPPORTED,
                       "authentication is not configured on this gateway");
        return;
    }
    int top = lua_gettop(L);
    const char *token = NULL;
    /* The token is read from the raw params, [token, ...]: anyone may call ghost.auth, so
     * nothing else of what they send is decoded (a megabyte of nested arrays would cost far
     * more as Lua tables than as bytes). */
    uint32_t tlen = 0;
    size_t h = 0;
    uint8_t first = params_len ? (uint8_t)params[0] : 0;
    if (params_len >= 2 && ((first >= 0x91 && first <= 0x9f) || first == 0xdc || first == 0xdd)) {
        size_t at = first <= 0x9f ? 1 : first == 0xdc ? 3 : 5;
        h = at < params_len ? gg_get_str(params + at, params_len - at, &tlen) : 0;
        if (h && (uint8_t)params[at] != 0xc4 && (uint8_t)params[at] != 0xc5 &&
            (uint8_t)params[at] != 0xc6 && tlen <= GG_TOKEN_MAX && at + h + tlen <= params_len) {
            token = params + at + h;
        } else {
            h = 0;
        }
    }
    if (!h) {
        snprintf(err, sizeof err, "params must be [token], a string of at most %d bytes", GG_TOKEN_MAX);
        gg_reply_error(&c->st, msgid, GG_ERR_BAD_REQUEST, "ghost.auth: %s", err);
        return;
    }
    gg_auth_result res;
    run_auth(srv, c, token, tlen, &res);
    if (res.code == 0) {
        size_t len = res.identity_len;
        char *p = gg_stream_reserve(&c->st, 64 + len);
        if (p) {
            size_t n = gg_put_response_hdr(p, msgid);
            p[n++] = (char)0xc0;
            n += gg_put_map_hdr(p + n, 1);
            n += gg_put_str_hdr(p + n, 8);
            memcpy(p + n, "identity", 8);
            n += 8;
            n += gg_put_str_hdr(p + n, (uint32_t)len);
            memcpy(p + n, res.identity, len);
            gg_stream_commit(&c->st, n + len);
        }
    } else if (res.message == res.buf) { /* a policy error: formatted as before */
        gg_reply_error(&c->st, msgid, res.code, "%s", res.message);
    } else {
        gg_reply_error_full(&c->st, msgid, res.code, res.retry_after, res.message);
    }
    lua_settop(L, top);
}

static int authenticated_fn(lua_State *L, void *ud)
{
    gg_client *c = ud;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->lua_ref);
    lua_getfield(L, -1, "identity");
    lua_pushboolean(L, lua_isstring(L, -1));
    return 1;
}

typedef struct describe_arg {
    gg_server *srv;
    gg_client *c;
} describe_arg;

/* require("ghost.describe").for_client(config, pipelines, client), protected: push_client
 * allocates, so it runs inside the call (gg_lua_protect's contract). */
static int describe_fn(lua_State *L, void *ud)
{
    describe_arg *a = ud;
    gg_generation *gen = a->srv->gen;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "ghost.describe");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "for_client");
    lua_rawgeti(L, LUA_REGISTRYINDEX, gen->cfg->table_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, gen->pipelines_ref);
    push_client(L, a->srv, a->c);
    lua_call(L, 3, 1);
    return 1;
}

int gg_policy_describe(gg_server *srv, gg_client *c, char *err, size_t errlen)
{
    lua_State *L = srv->pol.L;
    gg_generation *gen = srv->gen;
    if (!L || gen->pipelines_ref == LUA_NOREF) {
        snprintf(err, errlen, "no policies are loaded");
        return -1;
    }
    int top = lua_gettop(L);
    describe_arg a = {.srv = srv, .c = c};
    /* The caller's decide phases run here (user policies included): watched like a call. */
    gg_watchdog_enter(&srv->wd, "-", "describe", NULL);
    int rc = gg_lua_protect(L, describe_fn, &a, 0, 1);
    gg_watchdog_leave(&srv->wd);
    if (rc) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        lua_settop(L, top);
        return -1;
    }
    return 0;
}

int gg_policy_client_authenticated(gg_server *srv, gg_client *c)
{
    lua_State *L = srv->pol.L;
    if (!L || c->lua_ref <= 0) return 0;
    int top = lua_gettop(L);
    int yes = gg_lua_protect(L, authenticated_fn, c, 0, 1) == 0 && lua_toboolean(L, -1);
    lua_settop(L, top);
    return yes;
}

typedef struct breakers_arg {
    gg_generation *gen;
    gg_breaker_fn fn;
    void *data;
} breakers_arg;

static int breakers_fn(lua_State *L, void *ud)
{
    breakers_arg *b = ud;
    lua_getglobal(L, "require");
    lua_pushstring(L, "ghost.gateway");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "breakers");
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->gen->pipelines_ref);
    lua_call(L, 1, 1);
    if (!lua_istable(L, -1)) return 0;
    int t = lua_gettop(L);
    for (int i = 1;; i++) {
        lua_rawgeti(L, t, i);
        if (!lua_istable(L, -1)) break;
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        lua_rawgeti(L, -3, 3);
        const char *svc = lua_tostring(L, -3), *up = lua_tostring(L, -2);
        int st = (int)lua_tointeger(L, -1);
        if (svc && up && st >= 0 && st <= 2) b->fn(b->data, svc, up, st);
        lua_pop(L, 4);
    }
    return 0;
}

void gg_policy_breakers(gg_server *srv, gg_generation *gen, gg_breaker_fn fn, void *data)
{
    lua_State *L = srv->pol.L;
    if (!L || gen->pipelines_ref == LUA_NOREF) return;
    int top = lua_gettop(L);
    breakers_arg b = {gen, fn, data};
    gg_lua_protect(L, breakers_fn, &b, 0, 0);
    lua_settop(L, top);
}

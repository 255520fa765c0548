/* adapter.c -- services implemented by a Lua file inside the gateway (`adapter = "x.lua"`).
 *
 * Each adapter has a Lua state of its own (docs/trust.md: what it does there cannot reach the
 * policies, ghost.auth or another adapter), with the lua_memory budget. The file is loaded into
 * it when a config is loaded (lua/ghost/adapter.lua; an error refuses the config with
 * file:line). Each call runs the exported function in a new coroutine (a task) with the decoded
 * params, pushed in protected mode on the new coroutine. The coroutine never calls back into
 * the core: upstream.call and http.request yield an operation to the driver here, which starts
 * it on the loop and resumes the coroutine with the outcome, from the loop's idle phase when it
 * comes later; the outcome's values are made inside the resume (take). So Lua is never
 * re-entered from inside a dispatch, and every resume is one watchdog enter/leave, like a
 * policy call.
 *
 *   upstream.call   a gg_call through gg_dispatch_request, as from a client: the target's
 *                   policies apply. Each task is its own gg_client, not attached to a socket and
 *                   not registered with the server (so neither swept nor closed as a
 *                   connection); its Lua table carries the caller's identity, so the target's
 *                   auth policy sees who the adapter acts for.
 *   http.request    an HTTP/1.1 request on httpc.c connections, kept per host:port for reuse.
 *
 * When the adapter call's deadline passes the core answers 504; the task goes on and its
 * return is dropped (gg_call_find no longer finds the call). The task holds the call's record
 * until it ends, so the id cannot come back for another call meanwhile (calls.h). Registry references (coroutine,
 * client table) are released whichever way a task ends.
 *
 * Ownership: svc->impl is a gg_adapter. Release abandons the tasks (their upstream calls lose
 * their client, their connections close), forgets svc, and frees the adapter (and closes its
 * Lua state) once the last task, connection and handle it counts in `pending` is gone. A
 * task's client table (the caller's identity) is in the policies' state, srv->L. */
#include "upstreams/adapter_int.h"

void gg_ad_maybe_free(gg_adapter *ad)
{
    if (!ad->released || ad->pending) return;
    gg_lua_close(ad->L);
    gg_tls_ctx_unref(ad->https);
    free(ad);
}

/* --- the service --------------------------------------------------------------------------- */

/* Decode the params array onto co as separate values. Returns how many, -1 with why, or -2
 * with why when the params hold more values than limits.max_decode_values (nothing decoded). */
static int push_params(gg_adapter *ad, lua_State *co, const char *p, size_t len, char *err,
                       size_t errlen)
{
    uint32_t budget = gg_ad_limits(ad)->max_decode_values;
    if (!gg_lua_within(p, len, budget)) {
        snprintf(err, errlen, "params have more than %u values (limits.max_decode_values)", budget);
        return -2;
    }
    uint32_t n;
    size_t h;
    unsigned char b = len ? (unsigned char)p[0] : 0;
    if (b >= 0x90 && b <= 0x9f) {
        n = b & 0x0f;
        h = 1;
    } else if (b == 0xdc && len >= 3) {
        n = (uint32_t)((unsigned char)p[1] << 8 | (unsigned char)p[2]);
        h = 3;
    } else if (b == 0xdd && len >= 5) {
        n = (uint32_t)(unsigned char)p[1] << 24 | (uint32_t)(unsigned char)p[2] << 16 |
            (uint32_t)(unsigned char)p[3] << 8 | (uint32_t)(unsigned char)p[4];
        h = 5;
    } else {
        snprintf(err, errlen, "params must be an array");
        return -1;
    }
    if (n > 7000 || !lua_checkstack(co, (int)n + 16)) {
        snprintf(err, errlen, "too many params (%u)", n);
        return -1;
    }
    size_t off = h;
    for (uint32_t i = 0; i < n; i++) {
        size_t used = 0;
        if (gg_lua_unpack(co, p + off, len - off, gg_ad_limits(ad)->max_depth, GG_LUA_MARK, &used, err,
                          errlen))
            return -1;
        off += used;
    }
    return (int)n;
}

typedef struct send_arg {
    ad_task *t;
    const char *method, *params;
    size_t method_len, params_len;
    char err[200];
    int bad; /* push_params' -1 (answered 400) or -2 (over the budget, 413): nothing runs */
} send_arg;

/* On the task's new coroutine, protected: run, its module, the method and the params; what
 * it leaves is what the first resume passes. */
static int send_fn(lua_State *co, void *ud)
{
    send_arg *a = ud;
    gg_adapter *ad = a->t->ad;
    lua_rawgeti(co, LUA_REGISTRYINDEX, ad->run_ref);
    lua_rawgeti(co, LUA_REGISTRYINDEX, ad->mod_ref);
    lua_pushlstring(co, a->method, a->method_len);
    int n = push_params(ad, co, a->params, a->params_len, a->err, sizeof a->err);
    if (n < 0) {
        a->bad = n;
        return 0;
    }
    return lua_gettop(co);
}

static int gg_adapter_send(gg_service *svc, gg_call *call, const char *method, uint32_t method_len,
                           const char *params, size_t params_len)
{
    gg_adapter *ad = svc->impl;
    if (!ad) return GG_ERR_UPSTREAM_UNAVAILABLE;
    gg_server *srv = ad->srv;
    ad_task *t = gg_ad_task_new(ad, call, method, method_len);
    if (!t) return GG_ERR_OVERLOADED;
    lua_State *co = t->co;
    call->endpoint = 1; /* the adapter itself: what breakers count */
    call->sent = 1;
    send_arg a = {.t = t, .method = method, .method_len = method_len, .params = params,
                  .params_len = params_len};
    int rc = gg_lua_protect(co, send_fn, &a, 0, LUA_MULTRET);
    if (!rc && a.bad == -2) {
        gg_ad_task_free(t);
        gg_call_fail(srv, call, GG_ERR_TOO_LARGE, "service '%s': %s", svc->name, a.err);
        return 0;
    }
    if (rc || a.bad) {
        if (rc) snprintf(a.err, sizeof a.err, "%s", rc == GG_LUA_ENOMEM ? "not enough memory" : "?");
        gg_ad_task_free(t);
        gg_call_fail(srv, call, GG_ERR_BAD_REQUEST, "service '%s': cannot decode params: %s",
                     svc->name, a.err);
        return 0;
    }
    int n = lua_gettop(co) - 1;
    if (ad->depth >= MAX_SYNC_DEPTH) {
        t->first_nargs = n;
        gg_ad_op_done(t);
        return 0;
    }
    ad->depth++;
    ad->pending++; /* ad outlives the run even if the run releases it */
    gg_ad_task_run(t, n);
    ad->depth--;
    ad->pending--;
    gg_ad_maybe_free(ad);
    return 0;
}


static void idle_closed(uv_handle_t *h)
{
    gg_adapter *ad = h->data;
    ad->pending--;
    gg_ad_maybe_free(ad);
}

/* Relative adapter paths start at the config file's directory, like policy_path. */
static void resolve_path(const char *source, const char *file, char *out, size_t n)
{
    const char *slash = strrchr(source, '/');
    if (file[0] == '/' || !slash)
        snprintf(out, n, "%s", file);
    else
        snprintf(out, n, "%.*s/%s", (int)(slash - source), source, file);
}

/* Protected, in the adapter's new state: take ghost.adapter's runner before the file runs (the
 * file may replace require or package.loaded in its state: it breaks only itself), then
 * ghost.adapter.load(file, service, helpers) -> module handle | nil, reason. */
static int open_fn(lua_State *L, void *ud)
{
    gg_adapter *ad = ud;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "ghost.adapter");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "run");
    ad->run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "load");
    lua_pushstring(L, ad->file);
    lua_pushstring(L, ad->name);
    lua_createtable(L, 0, 8);
    for (const luaL_Reg *r = gg_ad_helpers; r->name; r++) {
        lua_pushlightuserdata(L, ad);
        lua_pushcclosure(L, r->func, 1);
        lua_setfield(L, -2, r->name);
    }
    gg_lua_push_null(L);
    lua_setfield(L, -2, "null");
    lua_call(L, 3, 2);
    return 2;
}

static int gg_adapter_start(gg_service *svc, char *err, size_t errlen)
{
    gg_server *srv = svc->srv;
    gg_config *cfg = svc->gen->cfg;
    char why[1024];
    gg_adapter *ad = calloc(1, sizeof *ad);
    gg_endpoint *ep = calloc(1, sizeof *ep);
    if (!ad || !ep) {
        free(ad);
        free(ep);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* Its own state: nothing it does to its globals, the string metatable or the modules it
     * requires reaches the gateway's policies and ghost.auth, or another adapter. */
    lua_State *L = gg_lua_new();
    if (!L) {
        free(ad);
        free(ep);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    gg_lua_set_budget(L, cfg->lua_memory);
    ad->L = L;
    ad->srv = srv;
    ad->svc = svc;
    ad->mod_ref = ad->run_ref = LUA_NOREF;
    snprintf(ad->name, sizeof ad->name, "%s", svc->name);
    resolve_path(cfg->source, svc->conf->adapter, ad->file, sizeof ad->file);
    snprintf(ad->pseudo.text, sizeof ad->pseudo.text, "adapter:%.150s", svc->conf->adapter);
    /* The file is code: the watchdog covers it like a config file. */
    gg_watchdog_enter(&srv->wd, svc->name, "adapter_load", ad->file);
    srv->wd.current = 1;
    int rc = gg_lua_protect(L, open_fn, ad, 0, 2);
    gg_watchdog_leave(&srv->wd);
    if (rc || lua_isnil(L, -2)) {
        snprintf(why, sizeof why, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        snprintf(err, errlen, "%s: services.%s.adapter: %s", cfg->source, svc->name, why);
        gg_lua_close(L);
        free(ad);
        free(ep);
        return -1;
    }
    lua_pop(L, 1);
    lua_getfield(L, -1, "names");
    gg_log(&srv->lp.log, GG_LOG_INFO, "adapter_loaded", "service=%s file=%s methods=%s", svc->name,
           ad->file, lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
    lua_pop(L, 1);
    ad->mod_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
    /* One endpoint, always up: the adapter itself (breakers and metrics count per endpoint). */
    ep->svc = svc;
    ep->addr = &ad->pseudo;
    ep->nconnected = 1;
    svc->eps = ep;
    svc->neps = 1;
    svc->impl = ad;
    ad->https = svc->conf->https;
    if (ad->https) gg_tls_ctx_ref(ad->https);
    return 0;
}

static void gg_adapter_release(gg_service *svc)
{
    gg_adapter *ad = svc->impl;
    if (!ad) return;
    svc->impl = NULL;
    svc->neps = 0; /* its endpoint's address lives in ad */
    ad->released = 1;
    ad->svc = NULL;
    while (ad->ready) {
        ad_task *t = ad->ready;
        ad->ready = t->ready_next;
        t->queued = 0;
    }
    ad->ready_tail = NULL;
    while (ad->tasks) {
        ad_task *t = ad->tasks;
        if (!t->running) {
            gg_ad_task_free(t);
            continue;
        }
        /* Inside a dispatch it started: gg_ad_task_run frees it when the dispatch returns. */
        ad->tasks = t->next;
        if (t->next) t->next->prev = NULL;
        t->prev = t->next = NULL;
        gg_ad_task_detach(t);
        t->orphan = 1;
    }
    while (ad->idle_conns) gg_ad_conn_abandon(ad->idle_conns);
    if (ad->mod_ref != LUA_NOREF) luaL_unref(ad->L, LUA_REGISTRYINDEX, ad->mod_ref);
    if (ad->run_ref != LUA_NOREF) luaL_unref(ad->L, LUA_REGISTRYINDEX, ad->run_ref);
    ad->mod_ref = ad->run_ref = LUA_NOREF;
    if (ad->idle_init) {
        uv_idle_stop(&ad->idle);
        uv_close((uv_handle_t *)&ad->idle, idle_closed);
    }
    gg_ad_maybe_free(ad);
}

/* --- gg_upstream_ops: the adapter loads its file at LOAD (a broken one refuses the config),
 * runs in the gateway (no endpoint to pick, nothing to connect) and has no notifications. */

static int adapter_start(gg_service *svc, gg_service *prev, int phase, char *err, size_t errlen)
{
    return phase == GG_UPSTREAM_LOAD ? gg_adapter_start(svc, err, errlen) : 0;
}

static int adapter_send(gg_service *svc, gg_call *call, int endpoint, const char *method,
                        uint32_t method_len, const char *params, size_t params_len)
{
    return gg_adapter_send(svc, call, method, method_len, params, params_len);
}

static int adapter_notify(gg_service *svc, int endpoint, const char *method, uint32_t method_len,
                          const char *params, size_t params_len)
{
    return GG_ERR_NOT_SUPPORTED;
}

static void adapter_release(gg_service *svc, int counted)
{
    gg_adapter_release(svc);
}

static void adapter_describe(const gg_service *svc, gg_upstream_info *out)
{
    out->protocol = "adapter";
    out->not_ready = NULL;
}

const gg_upstream_ops gg_adapter_ops = {
    .name = "adapter",
    .start = adapter_start,
    .send = adapter_send,
    .notify = adapter_notify,
    .release = adapter_release,
    .describe = adapter_describe,
};

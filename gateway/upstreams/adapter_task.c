/* adapter_task.c -- the coroutine driver of adapters: a task per call, the outcome of the
 * operation it waits for, and the resume loop (see adapter.c for how adapters work). */
#include "upstreams/adapter_int.h"

/* --- outcomes ------------------------------------------------------------------------------ */

void gg_ad_res_clear(ad_task *t)
{
    free(t->res_msg);
    free(t->res_data);
    free(t->res_hdrs);
    t->res_msg = t->res_data = t->res_hdrs = NULL;
    t->res_len = t->res_hdrs_len = 0;
    t->res_nhdrs = 0;
    t->res_kind = GG_AD_R_OK;
    t->res_code = t->res_status = 0;
    t->res_retry = -1;
    t->res_type = NULL;
}

__attribute__((format(printf, 5, 6))) void gg_ad_res_error(ad_task *t, int kind, int code,
                                                            const char *type, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gg_ad_res_clear(t);
    t->res_kind = kind;
    t->res_code = code;
    t->res_type = type;
    t->res_msg = strdup(msg);
}

static void on_idle(uv_idle_t *h);

/* The operation ended: resume now if the driver is still starting it, else next turn. */
void gg_ad_op_done(ad_task *t)
{
    gg_adapter *ad = t->ad;
    t->waiting = W_NONE;
    t->done = 1;
    if (t->sync || t->queued) return;
    if (!ad->idle_init) {
        uv_idle_init(ad->srv->lp.uv, &ad->idle);
        ad->idle.data = ad;
        ad->idle_init = 1;
        ad->pending++;
    }
    t->queued = 1;
    t->ready_next = NULL;
    if (ad->ready_tail)
        ad->ready_tail->ready_next = t;
    else
        ad->ready = t;
    ad->ready_tail = t;
    uv_idle_start(&ad->idle, on_idle);
}

/* --- tasks ------------------------------------------------------------------------------------ */

static void task_freed(ad_task *t)
{
    gg_adapter *ad = t->ad;
    free(t);
    ad->pending--;
    gg_ad_maybe_free(ad);
}

static void task_timer_closed(uv_handle_t *h)
{
    task_freed(h->data);
}

/* Stop whatever the task waits for; its upstream calls end unanswered. */
void gg_ad_task_detach(ad_task *t)
{
    gg_server *srv = t->ad->srv;
    gg_call_list_orphan_owner(&t->client.calls);
    gg_server_forget_resume(srv, &t->client);
    gg_ad_drop_http(t);
    if (t->timer_init) uv_timer_stop(&t->timer);
    t->waiting = W_NONE;
}

/* Unlink and free. The caller has answered (or dropped) the call. */
void gg_ad_task_free(ad_task *t)
{
    gg_adapter *ad = t->ad;
    gg_server *srv = ad->srv;
    gg_ad_task_detach(t);
    /* The call may have ended (owed) or not (live); either way its id is still the task's. */
    gg_call *call = gg_call_find(&srv->lp.calls, t->call_id);
    if (!call) call = gg_call_find_owed(&srv->lp.calls, t->call_id);
    if (call) gg_call_unhold(&srv->lp.calls, call);
    if (t->queued) { /* only on release, which empties the queue itself */
        t->queued = 0;
    }
    if (t->prev)
        t->prev->next = t->next;
    else if (ad->tasks == t)
        ad->tasks = t->next;
    if (t->next) t->next->prev = t->prev;
    t->prev = t->next = NULL;
    gg_policy_client_closed(srv, &t->client);
    if (t->co_ref != LUA_NOREF) luaL_unref(ad->L, LUA_REGISTRYINDEX, t->co_ref);
    t->co_ref = LUA_NOREF;
    t->co = NULL;
    gg_ad_res_clear(t);
    free(t->req);
    t->req = NULL;
    if (t->timer_init)
        uv_close((uv_handle_t *)&t->timer, task_timer_closed);
    else
        task_freed(t);
}

/* The caller's identity goes with the task: upstream.call acts on its behalf. The table is in
 * the policies' state (srv->L), where the target's policies read it. */
typedef struct client_arg {
    ad_task *t;
    gg_client *outer;
} client_arg;

static int client_table_fn(lua_State *L, void *ud)
{
    client_arg *a = ud;
    gg_adapter *ad = a->t->ad;
    static const char *const copied[] = {"identity", "identity_key", "scopes", "scope_match",
                                         "expires",  "address",      "host",   "meta"};
    lua_createtable(L, 0, 10);
    int t_idx = lua_gettop(L);
    if (a->outer && a->outer->lua_ref > 0) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, a->outer->lua_ref);
        for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++) {
            lua_getfield(L, -1, copied[i]);
            lua_setfield(L, t_idx, copied[i]);
        }
        lua_pop(L, 1);
    }
    lua_getfield(L, t_idx, "address");
    if (lua_isnil(L, -1)) {
        lua_pushfstring(L, "adapter:%s", ad->name);
        lua_setfield(L, t_idx, "address");
        lua_pushfstring(L, "adapter:%s", ad->name);
        lua_setfield(L, t_idx, "host");
        lua_newtable(L);
        lua_setfield(L, t_idx, "meta");
    }
    lua_pop(L, 1);
    lua_pushstring(L, ad->name);
    lua_setfield(L, t_idx, "adapter");
    a->t->client.lua_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static int task_client_table(ad_task *t, gg_client *outer)
{
    lua_State *L = t->ad->srv->L;
    int top = lua_gettop(L);
    client_arg a = {t, outer};
    int rc = gg_lua_protect(L, client_table_fn, &a, 0, 0);
    lua_settop(L, top);
    return rc;
}

ad_task *gg_ad_task_new(gg_adapter *ad, gg_call *call, const char *method, uint32_t mlen)
{
    gg_server *srv = ad->srv;
    ad_task *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ad = ad;
    t->co_ref = LUA_NOREF;
    t->res_retry = -1;
    gg_stream_init(&t->client.st, &srv->lp, &gg_ad_no_stream_ops, GG_ST_CLOSE_AFTER);
    t->client.proto = &gg_ad_task_proto;
    t->client.last_active = uv_now(srv->lp.uv);
    t->call_id = call->id;
    gg_call_hold(call); /* its id is not reused while the task may still answer it */
    t->attempt = call->attempt;
    t->deadline = call->deadline;
    snprintf(t->method, sizeof t->method, "%.*s", (int)(mlen > 60 ? 60 : mlen), method);
    ad->pending++;
    t->next = ad->tasks;
    if (ad->tasks) ad->tasks->prev = t;
    ad->tasks = t;
    lua_State *L = ad->L;
    /* a thread and a registry slot: the budget is not armed here, only malloc can refuse */
    t->co = lua_newthread(L);
    t->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (task_client_table(t, gg_call_client(call))) {
        gg_ad_task_free(t);
        return NULL;
    }
    return t;
}

/* The live adapter call of t, or NULL when it has ended. */
static gg_call *task_call(ad_task *t)
{
    gg_adapter *ad = t->ad;
    if (ad->released) return NULL;
    gg_call *call = gg_call_find(&ad->srv->lp.calls, t->call_id);
    if (!call || call->svc != ad->svc || call->attempt != t->attempt) return NULL;
    return call;
}

/* What a caller is told of an adapter's own failure, without error_details. */
#define GENERIC_ERROR "adapter error (id %08x; see the gateway's log)"

static int error_details(const gg_adapter *ad)
{
    return ad->svc && ad->svc->conf->error_details;
}

/* One log line per adapter error, with an id the caller also gets. */
static unsigned adapter_error_id(gg_adapter *ad, const char *method, const char *msg,
                                 const char *trace)
{
    gg_server *srv = ad->srv;
    unsigned id = gg_policy_error_id(&srv->pol);
    char line[1536];
    size_t n = 0;
    /* lines joined with '|': one event, one line; quotes are the logger's to escape */
    for (const char *p = msg ? msg : "?"; *p && n < sizeof line - 400; p++)
        line[n++] = *p == '\n' ? '|' : *p;
    for (const char *p = trace ? trace : ""; *p && n < sizeof line - 2; p++) {
        if (p == trace) line[n++] = '|';
        line[n++] = *p == '\n' ? '|' : *p;
    }
    line[n] = 0;
    gg_log(&srv->lp.log, GG_LOG_ERROR, "adapter_error", "id=%08x service=%s method=%s error=\"%s\"",
           id, ad->name, method, line);
    return id;
}

/* Answer with the error map at co[idx] (a table): [map, nil]. */
static void answer_error_map(ad_task *t, gg_call *call, int idx)
{
    gg_adapter *ad = t->ad;
    lua_State *co = t->co;
    char err[200];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (gg_lua_pack(co, idx, &pk, (int)gg_ad_limits(ad)->max_depth, err, sizeof err) ||
        msgpack_sbuffer_write(&sb, "\xc0", 1)) {
        gg_call_fail(ad->srv, call, GG_ERR_INTERNAL, "adapter error cannot be encoded: %s", err);
    } else {
        gg_call_answer(ad->srv, call, sb.data, sb.size);
    }
    msgpack_sbuffer_destroy(&sb);
}

/* The coroutine returned (rc 0) or died (an error outside the runner's xpcall). */
static void task_finish(ad_task *t, int rc)
{
    gg_adapter *ad = t->ad;
    gg_server *srv = ad->srv;
    lua_State *co = t->co;
    gg_call *call = task_call(t);
    /* Off the adapter's list first: answering may end the last call of a draining gateway,
     * whose shutdown releases the adapter (t stays counted in pending until gg_ad_task_free). */
    if (t->prev)
        t->prev->next = t->next;
    else if (ad->tasks == t)
        ad->tasks = t->next;
    if (t->next) t->next->prev = t->prev;
    t->prev = t->next = NULL;
    if (!call) {
        gg_log(&srv->lp.log, GG_LOG_DEBUG, "adapter_late_result", "service=%s method=%s", ad->name,
               t->method);
        if (rc == 0 && lua_tointeger(co, 1) == GG_AD_FAILED && lua_istable(co, 2)) {
            lua_getfield(co, 2, "type");
            if (lua_isstring(co, -1) && strcmp(lua_tostring(co, -1), "adapter_error") == 0) {
                lua_getfield(co, 2, "message");
                lua_getfield(co, 2, "traceback");
                adapter_error_id(ad, t->method, lua_tostring(co, -2), lua_tostring(co, -1));
            }
        }
        gg_ad_task_free(t);
        return;
    }
    if (rc != 0) {
        /* copied: the string is only anchored on the stack cleared below */
        char msg[512];
        if (rc == GG_LUA_ENOMEM && gg_lua_budget(ad->L))
            snprintf(msg, sizeof msg,
                     "not enough memory (lua_memory is %zu bytes; the adapter's state was collected)",
                     gg_lua_budget(ad->L));
        else if (rc == GG_LUA_ENOMEM) /* no budget: malloc refused */
            snprintf(msg, sizeof msg, "not enough memory (the adapter's state was collected)");
        else
            snprintf(msg, sizeof msg, "%s",
                     lua_tostring(co, -1) ? lua_tostring(co, -1) : "error object");
        unsigned id = adapter_error_id(ad, t->method, msg, NULL);
        /* a dead coroutine's stack, outside any Lua call: the budget is not armed */
        lua_settop(co, 0);
        lua_createtable(co, 0, 4);
        lua_pushinteger(co, 500);
        lua_setfield(co, 1, "code");
        if (rc == GG_LUA_ENOMEM)
            lua_pushliteral(co, "internal");
        else
            lua_pushliteral(co, "adapter_error");
        lua_setfield(co, 1, "type");
        if (error_details(ad))
            lua_pushstring(co, msg);
        else
            lua_pushfstring(co, GENERIC_ERROR, id);
        lua_setfield(co, 1, "message");
        lua_pushfstring(co, "%08x", id);
        lua_setfield(co, 1, "id");
        answer_error_map(t, call, 1);
        gg_ad_task_free(t);
        return;
    }
    int status = (int)lua_tointeger(co, 1);
    if (status == GG_AD_DONE) {
        char err[200];
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (lua_gettop(co) < 2) lua_pushnil(co);
        if (msgpack_sbuffer_write(&sb, "\xc0", 1) ||
            gg_lua_pack(co, 2, &pk, (int)gg_ad_limits(ad)->max_depth, err, sizeof err)) {
            lua_settop(co, 0);
            lua_createtable(co, 0, 3);
            lua_pushinteger(co, 500);
            lua_setfield(co, 1, "code");
            lua_pushliteral(co, "bad_result");
            lua_setfield(co, 1, "type");
            lua_pushfstring(co, "cannot encode the result of %s.%s: %s", ad->name, t->method, err);
            lua_setfield(co, 1, "message");
            answer_error_map(t, call, 1);
        } else {
            gg_call_answer(srv, call, sb.data, sb.size);
        }
        msgpack_sbuffer_destroy(&sb);
    } else if (status == GG_AD_FAILED && lua_istable(co, 2)) {
        lua_getfield(co, 2, "type");
        if (lua_isstring(co, -1) && strcmp(lua_tostring(co, -1), "adapter_error") == 0) {
            lua_getfield(co, 2, "message");
            lua_getfield(co, 2, "traceback");
            unsigned id =
                adapter_error_id(ad, t->method, lua_tostring(co, -2), lua_tostring(co, -1));
            lua_pushfstring(co, "%08x", id);
            lua_setfield(co, 2, "id");
            if (!error_details(ad)) { /* the log has the message: it names the adapter's file */
                lua_pushfstring(co, GENERIC_ERROR, id);
                lua_setfield(co, 2, "message");
            }
        }
        answer_error_map(t, call, 2);
    } else if (status == GG_AD_GATEWAY_FAILED) {
        int code = (int)lua_tointeger(co, 2);
        const char *msg = lua_tostring(co, 3);
        gg_call_fail(srv, call, code >= 100 && code <= 999 ? code : GG_ERR_INTERNAL, "%s",
                     msg ? msg : "error");
    } else {
        gg_call_fail(srv, call, GG_ERR_INTERNAL, "adapter runner returned nothing usable");
    }
    gg_ad_task_free(t);
}

/* --- the driver --------------------------------------------------------------------------- */

/* Resume t with nargs values on its stack until it waits or ends. */
void gg_ad_task_run(ad_task *t, int nargs)
{
    gg_adapter *ad = t->ad;
    gg_server *srv = ad->srv;
    for (;;) {
        gg_watchdog_enter(&srv->wd, ad->name, "adapter", ad->file);
        srv->wd.current = 1; /* its report names the adapter's file */
        int rc = gg_lua_resume(t->co, nargs);
        gg_watchdog_leave(&srv->wd);
        if (rc != LUA_YIELD) {
            task_finish(t, rc);
            return;
        }
        int op = (int)lua_tointeger(t->co, 1);
        t->running = 1;
        if (op == GG_AD_OP_CALL)
            nargs = gg_ad_start_call(t);
        else if (op == GG_AD_OP_HTTP)
            nargs = gg_ad_start_http(t);
        else {
            /* A bare coroutine.yield(): nothing would ever resume it. */
            t->running = 0;
            lua_settop(t->co, 0);
            lua_pushliteral(t->co, "coroutine.yield() in an adapter method: only upstream.call "
                                   "and http.request may wait");
            task_finish(t, LUA_ERRRUN);
            return;
        }
        t->running = 0;
        if (t->orphan) { /* the dispatch it started ended the gateway: the adapter is gone */
            gg_ad_task_free(t);
            return;
        }
        if (nargs < 0) return;
    }
}

static void on_idle(uv_idle_t *h)
{
    gg_adapter *ad = h->data;
    /* Only those queued before this turn: a task that is ready again at once waits a turn. */
    ad_task *last = ad->ready_tail;
    while (ad->ready && !ad->released) {
        ad_task *t = ad->ready;
        ad->ready = t->ready_next;
        if (!ad->ready) ad->ready_tail = NULL;
        t->queued = 0;
        t->ready_next = NULL;
        int nargs;
        if (t->first_nargs) {
            nargs = t->first_nargs;
            t->first_nargs = 0;
        } else {
            t->done = 0;
            nargs = gg_ad_push_results(t);
        }
        int was_last = t == last;
        gg_ad_task_run(t, nargs);
        if (was_last) break;
    }
    /* What the tasks wrote (requests upstream, answers) goes out now: with the idle handle
     * stopped the loop would otherwise sleep in poll before its flush. */
    gg_stream_flush_all(&ad->srv->lp);
    if (!ad->released && !ad->ready) uv_idle_stop(h);
}

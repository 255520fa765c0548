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
#include "upstreams/adapter.h"
#include "proxy/dispatch.h"
#include "core/errors.h"
#include "http/httpc.h"
#include "core/json.h"
#include "lua/lua_bridge.h"
#include "lua/lua_msgpack.h"
#include "proxy/server.h"

#include <arpa/inet.h>
#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* The protocol of lua/ghost/adapter.lua. */
#define OP_CALL        1
#define OP_HTTP        2
#define RES_OK         0
#define RES_REMOTE     1
#define RES_GATEWAY    2
#define RES_LOCAL      3
#define DONE           0
#define FAILED         1
#define GATEWAY_FAILED 2

#define W_NONE 0
#define W_CALL 1
#define W_HTTP 2

/* Adapters calling adapters run inline up to this depth; deeper starts wait for a loop turn
 * (a recursive adapter must not grow the C stack without bound). */
#define MAX_SYNC_DEPTH  8
#define MAX_IDLE_CONNS  16
#define IDLE_CONN_MS    30000
#define MAX_FULL_METHOD 255

typedef struct gg_adapter gg_adapter;
typedef struct ad_conn ad_conn;
typedef struct ad_gai ad_gai;

typedef struct ad_task {
    gg_client client; /* first member: the proto callbacks get the task */
    gg_adapter *ad;
    struct ad_task *prev, *next; /* ad->tasks */
    struct ad_task *ready_next;  /* ad->ready */
    lua_State *co;
    int co_ref;
    uint32_t call_id; /* the adapter call it runs; it may end first (deadline) */
    uint8_t attempt;
    uint64_t deadline;
    int op, waiting, queued, sync, done;
    int running;     /* inside task_run: release leaves it to task_run to free */
    int orphan;      /* its adapter was released while it ran */
    int first_nargs; /* start deferred: the values are on co already */
    char method[64]; /* for logs */
    /* the outcome of the operation, kept until the resume */
    int res_kind, res_code, res_status;
    double res_retry;
    const char *res_type;
    char *res_msg;
    char *res_data; /* call: the [error, result] bytes; http: the body */
    size_t res_len;
    char *res_hdrs; /* http: "name\0value\0" pairs */
    size_t res_hdrs_len;
    uint32_t res_nhdrs;
    /* http.request */
    ad_conn *conn;
    ad_gai *gai;
    char *req; /* the request bytes, kept for one retry */
    size_t req_len;
    char key[280]; /* host:port */
    char host[256];
    unsigned port;
    struct sockaddr_storage sa;
    int is_head, idempotent, retried;
    uint64_t http_ms; /* its timeout */
    uv_timer_t timer;
    int timer_init;
} ad_task;

/* An http.request connection; idle ones wait in ad->idle for the next request to the same
 * host:port. */
struct ad_conn {
    gg_httpc hc; /* first member */
    gg_adapter *ad;
    ad_task *task; /* the request in flight; NULL when idle or abandoned */
    ad_conn *next; /* ad->idle */
    int idle;
    int connect_status;
    uint64_t idle_since;
    char key[280];
};

/* A name lookup; it outlives a task that gives up on it (uv_cancel still calls back). */
struct ad_gai {
    uv_getaddrinfo_t req;
    gg_adapter *ad;
    ad_task *task; /* NULL once abandoned */
};

struct gg_adapter {
    gg_server *srv;
    lua_State *L; /* its own state (docs/trust.md): the file, its tasks' coroutines */
    gg_service *svc; /* NULL once released */
    char name[64];
    char file[512];
    gg_addr pseudo; /* the one endpoint policies see: "adapter:<file>" */
    int mod_ref, run_ref;
    ad_task *tasks;
    ad_task *ready, *ready_tail;
    uv_idle_t idle; /* resumes ready tasks, once per loop turn */
    int idle_init;
    ad_conn *idle_conns;
    int nidle;
    int depth;
    int pending; /* tasks, connections, lookups and handles not yet gone */
    int released;
};

static void task_run(ad_task *t, int nargs);
static void http_continue(ad_task *t);

static const gg_limits *limits(gg_adapter *ad)
{
    return &ad->srv->cfg->limits;
}

static void maybe_free(gg_adapter *ad)
{
    if (!ad->released || ad->pending) return;
    gg_lua_close(ad->L);
    free(ad);
}

/* --- outcomes ------------------------------------------------------------------------------ */

static void res_clear(ad_task *t)
{
    free(t->res_msg);
    free(t->res_data);
    free(t->res_hdrs);
    t->res_msg = t->res_data = t->res_hdrs = NULL;
    t->res_len = t->res_hdrs_len = 0;
    t->res_nhdrs = 0;
    t->res_kind = RES_OK;
    t->res_code = t->res_status = 0;
    t->res_retry = -1;
    t->res_type = NULL;
}

__attribute__((format(printf, 5, 6))) static void res_error(ad_task *t, int kind, int code,
                                                            const char *type, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    res_clear(t);
    t->res_kind = kind;
    t->res_code = code;
    t->res_type = type;
    t->res_msg = strdup(msg);
}

static void on_idle(uv_idle_t *h);

/* The operation ended: resume now if the driver is still starting it, else next turn. */
static void op_done(ad_task *t)
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

/* --- the task's client (upstream.call answers) ------------------------------------------- */

static void tc_store(ad_task *t, const char *prefix, const char *body, size_t len)
{
    if (t->waiting != W_CALL) return;
    size_t pl = prefix ? 1 : 0;
    res_clear(t);
    t->res_data = malloc(pl + len + 1);
    if (!t->res_data) {
        res_error(t, RES_GATEWAY, GG_ERR_OVERLOADED, "overloaded", "out of memory");
    } else {
        if (pl) t->res_data[0] = *prefix;
        memcpy(t->res_data + pl, body, len);
        t->res_len = pl + len;
    }
    op_done(t);
}

static void tc_answer(gg_client *c, uint32_t id, const char *body, size_t len)
{
    tc_store((ad_task *)c, NULL, body, len);
}

static void tc_result(gg_client *c, uint32_t id, const char *result, size_t len)
{
    tc_store((ad_task *)c, "\xc0", result, len);
}

static void tc_error(gg_client *c, uint32_t id, int code, double retry_after, const char *message)
{
    ad_task *t = (ad_task *)c;
    if (t->waiting != W_CALL) return;
    res_error(t, RES_GATEWAY, code, gg_error_type(code), "%s", message);
    t->res_retry = retry_after;
    op_done(t);
}

static const gg_client_proto task_proto = {
    .name = "adapter",
    .answer = tc_answer,
    .result = tc_result,
    .error = tc_error,
};

static void no_message(gg_stream *s, const char *msg, const gg_msg *m)
{
    (void)s, (void)msg, (void)m;
}
static void no_frame_error(gg_stream *s, int code, const gg_msg *m)
{
    (void)s, (void)code, (void)m;
}
static void no_eof(gg_stream *s, int status)
{
    (void)s, (void)status;
}
static void no_closed(gg_stream *s)
{
    (void)s;
}

/* The task's client has a stream only because gg_client has one: it is never opened. */
static const gg_stream_ops no_stream_ops = {
    .on_message = no_message,
    .on_frame_error = no_frame_error,
    .on_eof = no_eof,
    .on_closed = no_closed,
};

/* --- tasks ------------------------------------------------------------------------------------ */

static void conn_abandon(ad_conn *c);

/* Let go of the task's HTTP request in progress, if any: its connection is abandoned (closed,
 * the late answer dropped) and a name lookup still running is cancelled. */
static void drop_http(ad_task *t)
{
    if (t->conn) {
        t->conn->task = NULL;
        conn_abandon(t->conn);
        t->conn = NULL;
    }
    if (t->gai) {
        t->gai->task = NULL;
        uv_cancel((uv_req_t *)&t->gai->req);
        t->gai = NULL;
    }
}

static void task_freed(ad_task *t)
{
    gg_adapter *ad = t->ad;
    free(t);
    ad->pending--;
    maybe_free(ad);
}

static void task_timer_closed(uv_handle_t *h)
{
    task_freed(h->data);
}

/* Stop whatever the task waits for; its upstream calls end unanswered. */
static void task_detach(ad_task *t)
{
    gg_server *srv = t->ad->srv;
    gg_call_list_orphan_owner(&t->client.calls);
    gg_server_forget_resume(srv, &t->client);
    drop_http(t);
    if (t->timer_init) uv_timer_stop(&t->timer);
    t->waiting = W_NONE;
}

/* Unlink and free. The caller has answered (or dropped) the call. */
static void task_free(ad_task *t)
{
    gg_adapter *ad = t->ad;
    gg_server *srv = ad->srv;
    task_detach(t);
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
    res_clear(t);
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

static ad_task *task_new(gg_adapter *ad, gg_call *call, const char *method, uint32_t mlen)
{
    gg_server *srv = ad->srv;
    ad_task *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ad = ad;
    t->co_ref = LUA_NOREF;
    t->res_retry = -1;
    gg_stream_init(&t->client.st, &srv->lp, &no_stream_ops, GG_ST_CLOSE_AFTER);
    t->client.proto = &task_proto;
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
        task_free(t);
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
    unsigned id = ((unsigned)getpid() << 16) ^ ++srv->pol.errors;
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
    if (gg_lua_pack(co, idx, &pk, (int)limits(ad)->max_depth, err, sizeof err) ||
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
     * whose shutdown releases the adapter (t stays counted in pending until task_free). */
    if (t->prev)
        t->prev->next = t->next;
    else if (ad->tasks == t)
        ad->tasks = t->next;
    if (t->next) t->next->prev = t->prev;
    t->prev = t->next = NULL;
    if (!call) {
        gg_log(&srv->lp.log, GG_LOG_DEBUG, "adapter_late_result", "service=%s method=%s", ad->name,
               t->method);
        if (rc == 0 && lua_tointeger(co, 1) == FAILED && lua_istable(co, 2)) {
            lua_getfield(co, 2, "type");
            if (lua_isstring(co, -1) && strcmp(lua_tostring(co, -1), "adapter_error") == 0) {
                lua_getfield(co, 2, "message");
                lua_getfield(co, 2, "traceback");
                adapter_error_id(ad, t->method, lua_tostring(co, -2), lua_tostring(co, -1));
            }
        }
        task_free(t);
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
        task_free(t);
        return;
    }
    int status = (int)lua_tointeger(co, 1);
    if (status == DONE) {
        char err[200];
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (lua_gettop(co) < 2) lua_pushnil(co);
        if (msgpack_sbuffer_write(&sb, "\xc0", 1) ||
            gg_lua_pack(co, 2, &pk, (int)limits(ad)->max_depth, err, sizeof err)) {
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
    } else if (status == FAILED && lua_istable(co, 2)) {
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
    } else if (status == GATEWAY_FAILED) {
        int code = (int)lua_tointeger(co, 2);
        const char *msg = lua_tostring(co, 3);
        gg_call_fail(srv, call, code >= 100 && code <= 999 ? code : GG_ERR_INTERNAL, "%s",
                     msg ? msg : "error");
    } else {
        gg_call_fail(srv, call, GG_ERR_INTERNAL, "adapter runner returned nothing usable");
    }
    task_free(t);
}

/* --- upstream.call ------------------------------------------------------------------------- */

/* Push the outcome of the task's operation onto co, its running coroutine (inside the
 * resume: protected, under the budget); returns how many values. */
static int push_outcome(ad_task *t)
{
    gg_adapter *ad = t->ad;
    lua_State *co = t->co;
    char err[160];
    lua_settop(co, 0);
    lua_checkstack(co, 8);
    if (t->res_kind != RES_OK) {
        lua_pushinteger(co, t->res_kind);
        lua_pushinteger(co, t->res_code);
        lua_pushstring(co, t->res_type ? t->res_type : "internal");
        lua_pushstring(co, t->res_msg ? t->res_msg : "");
        if (t->res_retry >= 0)
            lua_pushnumber(co, t->res_retry);
        else
            lua_pushnil(co);
        res_clear(t);
        return 5;
    }
    int n = 2;
    unsigned depth = limits(ad)->max_depth;
    if (t->op == OP_CALL) {
        size_t used = 0;
        lua_pushinteger(co, RES_OK);
        if (!gg_lua_within(t->res_data, t->res_len, limits(ad)->max_decode_values)) {
            snprintf(err, sizeof err, "more than %u values (limits.max_decode_values)",
                     limits(ad)->max_decode_values);
            goto bad;
        }
        if (gg_lua_unpack(co, t->res_data, t->res_len, depth, GG_LUA_MARK, &used, err, sizeof err))
            goto bad;
        if (lua_isnil(co, -1)) {
            lua_pop(co, 1);
            if (gg_lua_unpack(co, t->res_data + used, t->res_len - used, depth, GG_LUA_MARK, NULL,
                              err, sizeof err))
                goto bad;
        } else {
            lua_pushinteger(co, RES_REMOTE);
            lua_replace(co, 1);
        }
    } else {
        lua_pushinteger(co, RES_OK);
        lua_pushinteger(co, t->res_status);
        lua_createtable(co, 0, (int)t->res_nhdrs);
        const char *p = t->res_hdrs, *end = t->res_hdrs + t->res_hdrs_len;
        for (uint32_t i = 0; p && i < t->res_nhdrs && p < end; i++) {
            const char *name = p, *value = p + strlen(p) + 1;
            if (value >= end) break;
            p = value + strlen(value) + 1;
            lua_getfield(co, -1, name);
            if (lua_isstring(co, -1)) { /* repeated: joined as RFC 9110 allows */
                lua_pushliteral(co, ", ");
                lua_pushstring(co, value);
                lua_concat(co, 3);
            } else {
                lua_pop(co, 1);
                lua_pushstring(co, value);
            }
            lua_setfield(co, -2, name);
        }
        lua_pushlstring(co, t->res_data ? t->res_data : "", t->res_len);
        n = 4;
    }
    res_clear(t);
    return n;
bad:
    lua_settop(co, 0);
    res_error(t, RES_GATEWAY, GG_ERR_UPSTREAM_UNAVAILABLE, "upstream_unavailable",
              "the answer cannot be decoded: %s", err);
    return push_outcome(t);
}

/* What the task is resumed with: only t, as a light userdata (nothing to allocate on a
 * suspended coroutine, which cannot be entered in protected mode). ghost.adapter passes it to
 * take() at once, which pushes the outcome from inside the resume. Returns 1. */
static int push_results(ad_task *t)
{
    lua_settop(t->co, 0);
    lua_pushlightuserdata(t->co, t);
    return 1;
}

/* take(t) in ghost.adapter: the outcome of the operation t waited for. */
static int l_take(lua_State *L)
{
    ad_task *t = lua_touserdata(L, 1);
    if (!t || t->co != L) return luaL_error(L, "take: not the running task's operation");
    return push_outcome(t);
}

/* A task whose call has ended (deadline) starts nothing more: no one waits for it, and what
 * it would hold (connections, calls) is better spent on live calls. */
static int past_deadline(ad_task *t)
{
    if (uv_now(t->ad->srv->lp.uv) < t->deadline) return 0;
    res_error(t, RES_GATEWAY, GG_ERR_DEADLINE_EXCEEDED, "deadline_exceeded",
              "the call's deadline has passed");
    return 1;
}

/* Start upstream.call(service, method, n, args...) yielded on co. Returns the values pushed
 * when the outcome is known now, or -1 when the task waits. */
static int start_call(ad_task *t)
{
    gg_adapter *ad = t->ad;
    gg_server *srv = ad->srv;
    lua_State *co = t->co;
    size_t slen, mlen;
    const char *sname = lua_tolstring(co, 2, &slen);
    const char *method = lua_tolstring(co, 3, &mlen);
    int n = (int)lua_tointeger(co, 4);
    char err[200];
    if (!sname || !method || n < 0 || lua_gettop(co) < 4 + n) {
        res_error(t, RES_LOCAL, GG_ERR_BAD_REQUEST, "bad_request", "upstream.call: bad arguments");
        return push_results(t);
    }
    if (past_deadline(t)) return push_results(t);
    gg_service *target = gg_service_find(srv, sname, slen);
    if (!target) {
        res_error(t, RES_GATEWAY, GG_ERR_NO_SUCH_SERVICE, "no_such_service",
                  "no such service '%.*s'", (int)(slen > 64 ? 64 : slen), sname);
        return push_results(t);
    }
    char full[MAX_FULL_METHOD + 1];
    if (slen + 1 + mlen > MAX_FULL_METHOD || mlen == 0) {
        res_error(t, RES_LOCAL, GG_ERR_BAD_REQUEST, "bad_request", "method name empty or too long");
        return push_results(t);
    }
    memcpy(full, sname, slen);
    full[slen] = '.';
    memcpy(full + slen + 1, method, mlen);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, (size_t)n);
    for (int i = 0; i < n; i++) {
        if (gg_lua_pack(co, 5 + i, &pk, (int)limits(ad)->max_depth, err, sizeof err)) {
            msgpack_sbuffer_destroy(&sb);
            res_error(t, RES_LOCAL, GG_ERR_BAD_REQUEST, "bad_request",
                      "argument %d cannot be sent: %s", i + 1, err);
            return push_results(t);
        }
    }
    lua_settop(co, 0);
    if (sb.size > limits(ad)->max_message_size) {
        msgpack_sbuffer_destroy(&sb);
        res_error(t, RES_LOCAL, GG_ERR_TOO_LARGE, "too_large",
                  "the arguments exceed max_message_size");
        return push_results(t);
    }
    t->op = OP_CALL;
    t->waiting = W_CALL;
    t->done = 0;
    t->sync = 1;
    gg_method name = {full, (uint32_t)(slen + 1 + mlen), (uint32_t)slen}; /* built: no search */
    gg_dispatch_request(srv, &t->client, target, 1, &name, sb.data, sb.size);
    t->sync = 0;
    msgpack_sbuffer_destroy(&sb);
    if (t->done) {
        t->done = 0;
        return push_results(t);
    }
    return -1;
}

/* --- http.request ----------------------------------------------------------------------------- */

static void idle_remove(ad_conn *c)
{
    gg_adapter *ad = c->ad;
    if (!c->idle) return;
    for (ad_conn **p = &ad->idle_conns; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    c->idle = 0;
    c->next = NULL;
    ad->nidle--;
}

/* Close a connection nobody waits for (its response, if any, is dropped). */
static void conn_abandon(ad_conn *c)
{
    idle_remove(c);
    gg_httpc_close(&c->hc);
}

/* The request failed: messages name what failed; the Lua side adds "METHOD url: ". */
static void http_fail(ad_task *t, int code, const char *type, const char *why)
{
    if (t->timer_init) uv_timer_stop(&t->timer);
    t->conn = NULL;
    res_error(t, RES_GATEWAY, code, type, "%s", why);
    op_done(t);
}

static void hc_connect(gg_httpc *hc, int status)
{
    ad_conn *c = (ad_conn *)hc;
    if (status < 0) {
        c->connect_status = status;
        return; /* hc_closed follows and reports it */
    }
    ad_task *t = c->task;
    if (!t) {
        gg_httpc_close(&c->hc);
        return;
    }
    if (gg_httpc_send(&c->hc, t->req, t->req_len, NULL, 0, t->is_head,
                      limits(c->ad)->max_message_size)) {
        c->task = NULL;
        t->conn = NULL;
        gg_httpc_close(&c->hc);
        http_fail(t, GG_ERR_OVERLOADED, "overloaded", "out of memory");
    }
}

static void http_continue(ad_task *t);

static void hc_response(gg_httpc *hc, const gg_httpc_resp *r, const char *err)
{
    ad_conn *c = (ad_conn *)hc;
    gg_adapter *ad = c->ad;
    ad_task *t = c->task;
    c->task = NULL;
    if (!t) return;
    t->conn = NULL;
    if (err) {
        /* A kept connection the server closed meanwhile fails before any byte of the
         * response: an idempotent request goes again, once, on a new connection. */
        if (c->hc.responses > 0 && !c->hc.got_bytes && t->idempotent && !t->retried) {
            t->retried = 1;
            http_continue(t);
            return;
        }
        http_fail(t, GG_ERR_UPSTREAM_UNAVAILABLE, "upstream_unavailable", err);
        return;
    }
    if (t->timer_init) uv_timer_stop(&t->timer);
    res_clear(t);
    t->res_status = r->status;
    t->res_data = malloc(r->body_len + 1);
    t->res_hdrs = malloc(r->headers_len + 1);
    if (!t->res_data || !t->res_hdrs) {
        res_error(t, RES_GATEWAY, GG_ERR_OVERLOADED, "overloaded", "out of memory");
    } else {
        memcpy(t->res_data, r->body, r->body_len);
        t->res_len = r->body_len;
        memcpy(t->res_hdrs, r->headers, r->headers_len);
        t->res_hdrs_len = r->headers_len;
        t->res_nhdrs = r->nheaders;
    }
    op_done(t);
    if (c->hc.state != GG_HTTPC_READY) return; /* the server ends the connection */
    if (ad->released) {
        conn_abandon(c);
        return;
    }
    /* Keep it for the next request to the same place, within bounds. */
    if (ad->nidle >= MAX_IDLE_CONNS) {
        ad_conn *oldest = ad->idle_conns;
        while (oldest && oldest->next) oldest = oldest->next;
        if (oldest) conn_abandon(oldest);
    }
    c->idle = 1;
    c->idle_since = uv_now(ad->srv->lp.uv);
    c->next = ad->idle_conns;
    ad->idle_conns = c;
    ad->nidle++;
}

static void hc_closed(gg_httpc *hc)
{
    ad_conn *c = (ad_conn *)hc;
    gg_adapter *ad = c->ad;
    ad_task *t = c->task;
    idle_remove(c);
    if (t) { /* closed before a response: the connection never came up */
        char why[400];
        snprintf(why, sizeof why, "cannot connect to %s: %s", t->key,
                 c->connect_status ? uv_strerror(c->connect_status) : "connection closed");
        http_fail(t, GG_ERR_UPSTREAM_UNAVAILABLE, "upstream_unavailable", why);
    }
    free(c);
    ad->pending--;
    maybe_free(ad);
}

static const gg_httpc_ops ad_conn_ops = {
    .on_connect = hc_connect,
    .on_response = hc_response,
    .on_closed = hc_closed,
};

/* A new connection for t, to t->sa. */
static void http_connect(ad_task *t)
{
    gg_adapter *ad = t->ad;
    ad_conn *c = calloc(1, sizeof *c);
    if (!c) {
        http_fail(t, GG_ERR_OVERLOADED, "overloaded", "out of memory");
        return;
    }
    c->ad = ad;
    c->task = t;
    snprintf(c->key, sizeof c->key, "%s", t->key);
    gg_httpc_init(&c->hc, &ad->srv->lp, &ad_conn_ops, c);
    ad->pending++;
    t->conn = c;
    int rc = gg_httpc_connect(&c->hc, (const struct sockaddr *)&t->sa);
    if (rc) c->connect_status = rc; /* hc_closed reports it */
}

static void on_gai(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    ad_gai *g = req->data;
    gg_adapter *ad = g->ad;
    ad_task *t = g->task;
    if (t) {
        t->gai = NULL;
        if (status < 0 || !res) {
            char why[400];
            snprintf(why, sizeof why, "cannot resolve %s: %s", t->host,
                     uv_strerror(status < 0 ? status : UV_EAI_NONAME));
            http_fail(t, GG_ERR_UPSTREAM_UNAVAILABLE, "upstream_unavailable", why);
        } else {
            memset(&t->sa, 0, sizeof t->sa);
            memcpy(&t->sa, res->ai_addr, res->ai_addrlen);
            /* the port sits at the same offset in sockaddr_in and sockaddr_in6 */
            ((struct sockaddr_in *)&t->sa)->sin_port = htons((uint16_t)t->port);
            http_connect(t);
        }
    }
    if (res) uv_freeaddrinfo(res);
    free(g);
    ad->pending--;
    maybe_free(ad);
}

/* Find t's host: a literal address at once, a name through libuv's resolver (its thread
 * pool: the loop does not block); then connect. */
static void http_open(ad_task *t)
{
    gg_adapter *ad = t->ad;
    memset(&t->sa, 0, sizeof t->sa);
    if (uv_ip4_addr(t->host, (int)t->port, (struct sockaddr_in *)&t->sa) == 0 ||
        uv_ip6_addr(t->host, (int)t->port, (struct sockaddr_in6 *)&t->sa) == 0) {
        http_connect(t);
        return;
    }
    ad_gai *g = calloc(1, sizeof *g);
    if (!g) {
        http_fail(t, GG_ERR_OVERLOADED, "overloaded", "out of memory");
        return;
    }
    struct addrinfo hints = {0};
    hints.ai_socktype = SOCK_STREAM;
    g->ad = ad;
    g->task = t;
    g->req.data = g;
    int rc = uv_getaddrinfo(ad->srv->lp.uv, &g->req, on_gai, t->host, NULL, &hints);
    if (rc) {
        free(g);
        char why[400];
        snprintf(why, sizeof why, "cannot resolve %s: %s", t->host, uv_strerror(rc));
        http_fail(t, GG_ERR_UPSTREAM_UNAVAILABLE, "upstream_unavailable", why);
        return;
    }
    ad->pending++;
    t->gai = g;
}

/* Send t's request on a kept connection to the same host:port, or open a new one. */
static void http_continue(ad_task *t)
{
    gg_adapter *ad = t->ad;
    uint64_t now = uv_now(ad->srv->lp.uv);
    for (ad_conn *c = ad->idle_conns, *next; c && !t->retried; c = next) {
        next = c->next;
        if (now - c->idle_since > IDLE_CONN_MS) { /* the server has likely dropped it */
            conn_abandon(c);
            continue;
        }
        if (strcmp(c->key, t->key) || c->hc.state != GG_HTTPC_READY) continue;
        idle_remove(c);
        if (gg_httpc_send(&c->hc, t->req, t->req_len, NULL, 0, t->is_head,
                          limits(ad)->max_message_size)) {
            conn_abandon(c);
            http_fail(t, GG_ERR_OVERLOADED, "overloaded", "out of memory");
            return;
        }
        c->task = t;
        t->conn = c;
        return;
    }
    http_open(t);
}

static void on_http_timeout(uv_timer_t *timer)
{
    ad_task *t = timer->data;
    if (t->waiting != W_HTTP) return;
    drop_http(t);
    res_error(t, RES_GATEWAY, GG_ERR_DEADLINE_EXCEEDED, "deadline_exceeded",
              "no response within %.3f s", (double)t->http_ms / 1000.0);
    op_done(t);
}

static int is_idempotent(const char *m)
{
    static const char *const safe[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < sizeof safe / sizeof safe[0]; i++)
        if (strcmp(m, safe[i]) == 0) return 1;
    return 0;
}

typedef struct growbuf {
    char *p;
    size_t len, cap;
    int oom;
} growbuf;

static void put(growbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t want = (b->len + n + 1) * 2;
        char *p = realloc(b->p, want);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = want;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void puts_(growbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* Start http.request(method, url, headers, body, timeout) yielded on co. Returns the values
 * pushed when it failed at once, or -1 when the task waits. */
static int start_http(ad_task *t)
{
    gg_adapter *ad = t->ad;
    gg_server *srv = ad->srv;
    lua_State *co = t->co;
    size_t ulen = 0, blen = 0;
    const char *method = lua_tostring(co, 2);
    const char *url = lua_tolstring(co, 3, &ulen);
    const char *body = lua_tolstring(co, 5, &blen);
    double timeout = lua_isnumber(co, 6) ? lua_tonumber(co, 6) : 0;
    struct http_parser_url u;
    growbuf b = {0};
    t->op = OP_HTTP;
    if (past_deadline(t)) return push_results(t);
    http_parser_url_init(&u);
    if (!method || !url || http_parser_parse_url(url, ulen, 0, &u) ||
        !(u.field_set & (1 << UF_HOST)) || !(u.field_set & (1 << UF_SCHEMA))) {
        res_error(t, RES_LOCAL, GG_ERR_BAD_REQUEST, "bad_request", "not an http:// URL");
        goto fail;
    }
    if (u.field_data[UF_SCHEMA].len != 4 ||
        strncasecmp(url + u.field_data[UF_SCHEMA].off, "http", 4)) {
        res_error(t, RES_LOCAL, GG_ERR_NOT_SUPPORTED, "not_supported",
                  "only http:// URLs (for https, run a TLS proxy next to the gateway)");
        goto fail;
    }
    if (u.field_set & (1 << UF_USERINFO)) {
        res_error(t, RES_LOCAL, GG_ERR_BAD_REQUEST, "bad_request",
                  "credentials in the URL are not supported: send an Authorization header");
        goto fail;
    }
    size_t host_off = u.field_data[UF_HOST].off, host_len = u.field_data[UF_HOST].len;
    if (host_len >= sizeof t->host) {
        res_error(t, RES_LOCAL, GG_ERR_BAD_REQUEST, "bad_request", "host name too long");
        goto fail;
    }
    memcpy(t->host, url + host_off, host_len);
    t->host[host_len] = 0;
    t->port = (u.field_set & (1 << UF_PORT)) ? u.port : 80;
    snprintf(t->key, sizeof t->key, "%s:%u", t->host, t->port);
    t->is_head = strcmp(method, "HEAD") == 0;
    t->idempotent = is_idempotent(method);

    /* The request: line, the caller's headers, Host, length, body. */
    int has_host = 0, has_agent = 0;
    puts_(&b, method);
    put(&b, " ", 1);
    if (u.field_set & (1 << UF_PATH))
        put(&b, url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    else
        put(&b, "/", 1);
    if (u.field_set & (1 << UF_QUERY)) {
        put(&b, "?", 1);
        put(&b, url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
    }
    puts_(&b, " HTTP/1.1\r\n");
    if (lua_istable(co, 4)) {
        int nh = (int)lua_objlen(co, 4);
        for (int i = 1; i + 1 <= nh; i += 2) {
            size_t kn = 0, vn = 0;
            lua_rawgeti(co, 4, i);
            lua_rawgeti(co, 4, i + 1);
            const char *k = lua_tolstring(co, -2, &kn);
            const char *v = lua_tolstring(co, -1, &vn);
            int ok = k && v && gg_httpc_header_ok(k, kn, v, vn);
            if (ok) {
                has_host |= kn == 4 && strncasecmp(k, "host", 4) == 0;
                has_agent |= kn == 10 && strncasecmp(k, "user-agent", 10) == 0;
                put(&b, k, kn);
                put(&b, ": ", 2);
                put(&b, v, vn);
                put(&b, "\r\n", 2);
            }
            lua_pop(co, 2);
            if (!ok) {
                res_error(t, RES_LOCAL, GG_ERR_BAD_REQUEST, "bad_request", "bad header");
                goto fail;
            }
        }
    }
    if (!has_host) {
        /* host[:port] as the URL has it ([v6] brackets included) */
        size_t start = host_off, end = host_off + host_len;
        if (start > 0 && url[start - 1] == '[') start--, end++;
        if (u.field_set & (1 << UF_PORT))
            end = u.field_data[UF_PORT].off + u.field_data[UF_PORT].len;
        puts_(&b, "Host: ");
        put(&b, url + start, end - start);
        put(&b, "\r\n", 2);
    }
    if (!has_agent) puts_(&b, "User-Agent: ghostgate\r\n");
    if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
        strcmp(method, "PATCH") == 0) {
        char cl[48];
        snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", blen);
        puts_(&b, cl);
    }
    put(&b, "\r\n", 2);
    if (blen) put(&b, body, blen);
    if (b.oom) {
        res_error(t, RES_GATEWAY, GG_ERR_OVERLOADED, "overloaded", "out of memory");
        goto fail;
    }
    lua_settop(co, 0);
    free(t->req);
    t->req = b.p;
    t->req_len = b.len;
    t->retried = 0;

    /* How long: what is left of the call's deadline, or less if the adapter says so. No
     * request outlives the call it serves (past_deadline refused the ones after it). */
    uint64_t now = uv_now(srv->lp.uv);
    uint64_t ms = t->deadline > now ? t->deadline - now : 1;
    if (timeout > 0 && timeout * 1000.0 < (double)ms) ms = (uint64_t)(timeout * 1000.0);
    if (ms == 0) ms = 1;
    t->http_ms = ms;
    if (!t->timer_init) {
        uv_timer_init(srv->lp.uv, &t->timer);
        t->timer.data = t;
        t->timer_init = 1;
    }
    t->waiting = W_HTTP;
    t->done = 0;
    t->sync = 1;
    uv_timer_start(&t->timer, on_http_timeout, ms, 0);
    http_continue(t);
    t->sync = 0;
    if (t->done) {
        t->done = 0;
        return push_results(t);
    }
    return -1;
fail:
    free(b.p);
    return push_results(t);
}

/* --- the driver --------------------------------------------------------------------------- */

/* Resume t with nargs values on its stack until it waits or ends. */
static void task_run(ad_task *t, int nargs)
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
        if (op == OP_CALL)
            nargs = start_call(t);
        else if (op == OP_HTTP)
            nargs = start_http(t);
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
            task_free(t);
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
            nargs = push_results(t);
        }
        int was_last = t == last;
        task_run(t, nargs);
        if (was_last) break;
    }
    /* What the tasks wrote (requests upstream, answers) goes out now: with the idle handle
     * stopped the loop would otherwise sleep in poll before its flush. */
    gg_stream_flush_all(&ad->srv->lp);
    if (!ad->released && !ad->ready) uv_idle_stop(h);
}

/* --- the service --------------------------------------------------------------------------- */

/* Decode the params array onto co as separate values. Returns how many, -1 with why, or -2
 * with why when the params hold more values than limits.max_decode_values (nothing decoded). */
static int push_params(gg_adapter *ad, lua_State *co, const char *p, size_t len, char *err,
                       size_t errlen)
{
    uint32_t budget = limits(ad)->max_decode_values;
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
        if (gg_lua_unpack(co, p + off, len - off, limits(ad)->max_depth, GG_LUA_MARK, &used, err,
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
    ad_task *t = task_new(ad, call, method, method_len);
    if (!t) return GG_ERR_OVERLOADED;
    lua_State *co = t->co;
    call->endpoint = 1; /* the adapter itself: what breakers count */
    call->sent = 1;
    send_arg a = {.t = t, .method = method, .method_len = method_len, .params = params,
                  .params_len = params_len};
    int rc = gg_lua_protect(co, send_fn, &a, 0, LUA_MULTRET);
    if (!rc && a.bad == -2) {
        task_free(t);
        gg_call_fail(srv, call, GG_ERR_TOO_LARGE, "service '%s': %s", svc->name, a.err);
        return 0;
    }
    if (rc || a.bad) {
        if (rc) snprintf(a.err, sizeof a.err, "%s", rc == GG_LUA_ENOMEM ? "not enough memory" : "?");
        task_free(t);
        gg_call_fail(srv, call, GG_ERR_BAD_REQUEST, "service '%s': cannot decode params: %s",
                     svc->name, a.err);
        return 0;
    }
    int n = lua_gettop(co) - 1;
    if (ad->depth >= MAX_SYNC_DEPTH) {
        t->first_nargs = n;
        op_done(t);
        return 0;
    }
    ad->depth++;
    ad->pending++; /* ad outlives the run even if the run releases it */
    task_run(t, n);
    ad->depth--;
    ad->pending--;
    maybe_free(ad);
    return 0;
}

/* --- the Lua helpers an adapter file sees ----------------------------------------------- */

static gg_adapter *helper_ad(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static int l_bin(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    gg_lua_push_bin(L, s, n);
    return 1;
}

static int l_is_bin(lua_State *L)
{
    size_t n;
    lua_pushboolean(L, gg_lua_tobin(L, 1, &n) != NULL);
    return 1;
}

static int l_map(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    gg_lua_push_map_mt(L);
    lua_setmetatable(L, 1);
    return 1;
}

static int l_log(lua_State *L)
{
    gg_adapter *ad = helper_ad(L);
    int level = gg_log_level_parse(luaL_checkstring(L, 1));
    const char *svc = luaL_checkstring(L, 2);
    const char *msg = luaL_optstring(L, 3, "");
    char line[1024];
    size_t n = 0;
    for (const char *p = msg; *p && n < sizeof line - 1; p++)
        line[n++] = *p == '\n' ? '|' : *p == '"' ? '\'' : *p;
    line[n] = 0;
    gg_log(&ad->srv->lp.log, level < 0 ? GG_LOG_INFO : level, "adapter_log",
           "service=%s message=\"%s\"", svc, line);
    return 0;
}

/* json.encode(v): the value as MessagePack, then through json.h's mapping. */
static int l_json_encode(lua_State *L)
{
    gg_adapter *ad = helper_ad(L);
    char err[200];
    luaL_checkany(L, 1);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    json_t *j = NULL;
    char *text = NULL;
    if (gg_lua_pack(L, 1, &pk, (int)limits(ad)->max_depth, err, sizeof err) == 0 &&
        (j = gg_json_from_msgpack(sb.data, sb.size, (int)limits(ad)->max_depth, err, sizeof err)))
        text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    msgpack_sbuffer_destroy(&sb);
    json_decref(j);
    if (!text) {
        lua_pushnil(L);
        lua_pushfstring(L, "json.encode: %s", j || err[0] == 0 ? "out of memory" : err);
        return 2;
    }
    lua_pushstring(L, text);
    free(text);
    return 1;
}

static int l_json_decode(lua_State *L)
{
    gg_adapter *ad = helper_ad(L);
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char err[200];
    json_error_t je;
    json_t *j = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        lua_pushnil(L);
        lua_pushfstring(L, "json.decode: %s at line %d column %d", je.text, je.line, je.column);
        return 2;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int rc = gg_json_to_msgpack(j, (int)limits(ad)->max_depth, &sb, err, sizeof err);
    json_decref(j);
    if (rc == 0 && gg_lua_unpack(L, sb.data, sb.size, limits(ad)->max_depth, GG_LUA_MARK, NULL, err,
                                 sizeof err) == 0) {
        msgpack_sbuffer_destroy(&sb);
        return 1;
    }
    msgpack_sbuffer_destroy(&sb);
    lua_pushnil(L);
    lua_pushfstring(L, "json.decode: %s", err);
    return 2;
}

static const luaL_Reg helpers[] = {
    {"bin", l_bin}, {"is_bin", l_is_bin},           {"map", l_map},
    {"log", l_log}, {"json_encode", l_json_encode}, {"json_decode", l_json_decode},
    {"take", l_take}, {NULL, NULL},
};

static void idle_closed(uv_handle_t *h)
{
    gg_adapter *ad = h->data;
    ad->pending--;
    maybe_free(ad);
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
    for (const luaL_Reg *r = helpers; r->name; r++) {
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
            task_free(t);
            continue;
        }
        /* Inside a dispatch it started: task_run frees it when the dispatch returns. */
        ad->tasks = t->next;
        if (t->next) t->next->prev = NULL;
        t->prev = t->next = NULL;
        task_detach(t);
        t->orphan = 1;
    }
    while (ad->idle_conns) conn_abandon(ad->idle_conns);
    if (ad->mod_ref != LUA_NOREF) luaL_unref(ad->L, LUA_REGISTRYINDEX, ad->mod_ref);
    if (ad->run_ref != LUA_NOREF) luaL_unref(ad->L, LUA_REGISTRYINDEX, ad->run_ref);
    ad->mod_ref = ad->run_ref = LUA_NOREF;
    if (ad->idle_init) {
        uv_idle_stop(&ad->idle);
        uv_close((uv_handle_t *)&ad->idle, idle_closed);
    }
    maybe_free(ad);
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

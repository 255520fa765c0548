/* lua_ghost.c -- ghost.core: the module, its per-state context, timers, cancellation,
 * signals and values; see lua_ghost.h for the Lua API and lua_ghost_int.h for its files. */
#include "lua/lua_ghost_int.h"
#include "lua/lua_consts.h"
#include "core/addr.h"
#include "core/errors.h"
#include "core/objects.h"
#include "lua/lua_msgpack.h"
#include "lua/lua_registry.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const gg_ghost_fail_types[] = {"deadline_exceeded", "connection_failed",
                                         "connection_lost", "closed", "bad_response"};
const char *const gg_ghost_state_names[] = {"connecting", "open", "closed"};

/* ---- the per-state context -------------------------------------------------------------- */

ctx *gg_ghost_ctx_get(lua_State *L)
{
    ctx *x = lua_touserdata(L, lua_upvalueindex(1));
    if (x->closing) luaL_error(L, "ghost.core: the library is shutting down");
    return x;
}

static void on_signal(uv_signal_t *h, int signum)
{
    ctx *x = h->data;
    ev_rec r = {.kind = EV_SIGNAL, .id = (uint32_t)signum};
    gg_ghost_queue_event(x, &r, NULL, 0, NULL, 0);
}

static int ctx_gc(lua_State *L)
{
    ctx *x = lua_touserdata(L, 1);
    if (x->closing) return 0;
    x->closing = 1;
    gg_stream_flush_all(&x->lp); /* best effort: what scripts queued last */
    for (conn *c = x->conns; c; c = c->next) {
        if (c->box) c->box->c = NULL;
        c->box = NULL;
        /* Calls end without events: no Lua code will run again. */
        while (c->calls.head) gg_ghost_lcall_end(x, c->calls.head);
        if (c->connect_call) gg_ghost_lcall_end(x, c->connect_call);
        gg_stream_close(&c->st);
    }
    while (x->listeners) gg_ghost_listener_close(x->listeners);
    for (int i = 0; i < 2; i++)
        if (!uv_is_closing((uv_handle_t *)&x->sig[i])) uv_close((uv_handle_t *)&x->sig[i], NULL);
    if (!uv_is_closing((uv_handle_t *)&x->hs_sweep)) uv_close((uv_handle_t *)&x->hs_sweep, NULL);
    gg_loop_close(&x->lp);
    uv_run(&x->uv, UV_RUN_DEFAULT);
    uv_loop_close(&x->uv);
    gg_buf_release(&x->ev, &x->lp.bufs);
    gg_loop_free(&x->lp);
    return 0;
}

/* ---- timers, cancellation, signals, values ---------------------------------------------- */

static int l_sleep(lua_State *L)
{
    ctx *x = gg_ghost_ctx_get(L);
    lua_Number ms = luaL_checknumber(L, 1);
    luaL_checkany(L, 2);
    gg_call *call = gg_call_new(&x->lp.calls);
    if (!call) return luaL_error(L, "ghost: too many timers and calls pending");
    lua_pushvalue(L, 2);
    call->waiter_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    call->lkind = GG_LCALL_SLEEP;
    if (ms < 0) ms = 0;
    if (ms > 4e9) ms = 4e9;
    uv_update_time(&x->uv);
    gg_call_set_deadline(&x->lp.calls, call, uv_now(&x->uv) + (uint64_t)ms);
    lua_pushnumber(L, call->id);
    return 1;
}

static int l_cancel(lua_State *L)
{
    ctx *x = gg_ghost_ctx_get(L);
    gg_call *call = gg_call_find(&x->lp.calls, (uint32_t)luaL_checknumber(L, 1));
    if (!call) {
        lua_pushboolean(L, 0);
        return 1;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, call->waiter_ref);
    gg_ghost_lcall_end(x, call);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_signals(lua_State *L)
{
    ctx *x = gg_ghost_ctx_get(L);
    int on = lua_toboolean(L, 1);
    if (on == x->sig_on) return 0;
    x->sig_on = on;
    int nums[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        if (on) {
            uv_signal_start(&x->sig[i], on_signal, nums[i]);
            uv_unref((uv_handle_t *)&x->sig[i]);
        } else {
            uv_signal_stop(&x->sig[i]);
        }
    }
    return 0;
}

static int l_pid(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)getpid());
    return 1;
}

static int l_now(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
    return 1;
}

static int sbuf_write(void *data, const char *buf, size_t len)
{
    return msgpack_sbuffer_write(data, buf, len);
}

static int l_pack(lua_State *L)
{
    luaL_checkany(L, 1);
    int depth = (int)luaL_optinteger(L, 2, GG_DEPTH_CAP);
    lua_settop(L, 1);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, sbuf_write);
    char err[256];
    if (gg_lua_pack(L, 1, &pk, depth, err, sizeof err)) {
        msgpack_sbuffer_destroy(&sb);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushlstring(L, sb.data ? sb.data : "", sb.size);
    msgpack_sbuffer_destroy(&sb);
    return 1;
}

static int l_unpack(lua_State *L)
{
    size_t n, used = 0;
    const char *p = luaL_checklstring(L, 1, &n);
    char err[128];
    if (!gg_lua_within(p, n, READ_MAX_VALUES)) {
        lua_pushnil(L);
        lua_pushfstring(L, "more than %d values", READ_MAX_VALUES);
        return 2;
    }
    if (gg_lua_unpack(L, p, n, READ_MAX_DEPTH, GG_LUA_MARK, &used, err, sizeof err)) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushnumber(L, (lua_Number)used);
    return 2;
}

/* ---- module ----------------------------------------------------------------------------- */

static const luaL_Reg conn_methods[] = {
    {"request", gg_ghost_l_conn_request}, {"notify", gg_ghost_l_conn_notify},
    {"reply", gg_ghost_l_conn_reply},     {"state", gg_ghost_l_conn_state},
    {"close", gg_ghost_l_conn_close},     {"inflight", gg_ghost_l_conn_inflight},
    {"address", gg_ghost_l_conn_address}, {"serve", gg_ghost_l_conn_serve},
    {"serial", gg_ghost_l_conn_serial},   {NULL, NULL},
};

static const luaL_Reg listener_methods[] = {
    {"close", gg_ghost_l_listener_close},
    {"address", gg_ghost_l_listener_address},
    {NULL, NULL},
};

static const luaL_Reg core_funcs[] = {
    {"run", gg_ghost_l_run},
    {"connect", gg_ghost_l_connect},
    {"listen", gg_ghost_l_listen},
    {"sleep", l_sleep},
    {"cancel", l_cancel},
    {"signals", l_signals},
    {"now", l_now},
    {"bin", gg_lua_l_bin}, /* the one set of bin/map helpers (lua_msgpack.c) */
    {"is_bin", gg_lua_l_is_bin},
    {"map", gg_lua_l_map},
    {"pack", l_pack},
    {"unpack", l_unpack},
    {"close_peers", gg_ghost_l_close_peers},
    {"peers", gg_ghost_l_peers},
    {"pid", l_pid},
    {NULL, NULL},
};

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
                      lua_CFunction tostr)
{
    luaL_newmetatable(L, name);
    lua_newtable(L);
    for (const luaL_Reg *r = methods; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    if (tostr) {
        lua_pushcfunction(L, tostr);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
}

/* The context of this Lua state, created on first use and kept in the registry. */
static ctx *ctx_open(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY);
    if (lua_isuserdata(L, -1)) return lua_touserdata(L, -1);
    lua_pop(L, 1);
    ctx *x = lua_newuserdata(L, sizeof *x);
    memset(x, 0, sizeof *x);
    x->closing = 1; /* until initialised: __gc must not touch it */
    lua_newtable(L);
    lua_pushcfunction(L, ctx_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    if (uv_loop_init(&x->uv)) luaL_error(L, "ghost.core: cannot create an event loop");
    gg_loop_limits lim = {
        .max_message = READ_MAX_MESSAGE, .max_depth = READ_MAX_DEPTH, .max_calls = MAX_CALLS};
    if (gg_loop_init(&x->lp, &x->uv, &lim)) {
        uv_loop_close(&x->uv);
        luaL_error(L, "ghost.core: out of memory");
    }
    x->lp.data = x;
    x->lp.calls.on_deadline = gg_ghost_on_deadline;
    for (int i = 0; i < 2; i++) {
        uv_signal_init(&x->uv, &x->sig[i]);
        x->sig[i].data = x;
    }
    uv_timer_init(&x->uv, &x->hs_sweep);
    x->hs_sweep.data = x;
    uv_unref((uv_handle_t *)&x->hs_sweep); /* it keeps no loop alive */
    x->closing = 0;
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, CTX_KEY);
    return x;
}

int luaopen_ghost_core(lua_State *L)
{
    /* A peer that vanishes mid-write must cost an EPIPE, not the process. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
    new_class(L, CONN_MT, conn_methods, gg_ghost_l_conn_gc, gg_ghost_l_conn_tostring);
    new_class(L, LISTEN_MT, listener_methods, gg_ghost_l_listener_gc, NULL);
    gg_lua_consts_preload(L); /* plain luajit: require "ghost.consts" without consts.so */
    ctx *x = ctx_open(L); /* on the stack: the upvalue of every function */
    lua_createtable(L, 0, 24);
    gg_lua_registry_push(L, &x->uv, -2); /* core.register: ghost.serve's register option */
    lua_setfield(L, -2, "register");
    for (const luaL_Reg *r = core_funcs; r->name; r++) {
        lua_pushvalue(L, -2);
        lua_pushcclosure(L, r->func, 1);
        lua_setfield(L, -2, r->name);
    }
    static const struct {
        const char *name;
        int v;
    } consts[] = {{"EV_RESPONSE", EV_RESPONSE},
                  {"EV_FAIL", EV_FAIL},
                  {"EV_WAKE", EV_WAKE},
                  {"EV_CONNECT", EV_CONNECT},
                  {"EV_REQUEST", EV_REQUEST},
                  {"EV_NOTIFY", EV_NOTIFY},
                  {"EV_CLOSED", EV_CLOSED},
                  {"EV_SIGNAL", EV_SIGNAL},
                  {"EV_STRIDE", EV_STRIDE},
                  {"SEND_MAX_MESSAGE", (int)SEND_MAX_MESSAGE},
                  {"SEND_MAX_DEPTH", SEND_MAX_DEPTH},
                  {"READ_MAX_VALUES", READ_MAX_VALUES},
                  {"EXT_OBJECT", GG_OBJ_EXT_OBJECT},
                  {"EXT_YOURS", GG_OBJ_EXT_YOURS},
                  {"EXT_PROMISE", GG_OBJ_EXT_PROMISE}};
    for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++) {
        lua_pushinteger(L, consts[i].v);
        lua_setfield(L, -2, consts[i].name);
    }
    gg_lua_push_null(L);
    lua_setfield(L, -2, "null");
    return 1;
}

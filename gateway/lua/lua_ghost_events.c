/* lua_ghost_events.c -- ghost.core's event queue: libuv callbacks queue what arrived;
 * core.run hands it to Lua after uv_run returns (lua_ghost.h). */
#include "lua/lua_ghost_int.h"
#include "core/addr.h"
#include "core/errors.h"
#include "lua/lua_msgpack.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the event queue -------------------------------------------------------------------- */

void gg_ghost_queue_event(ctx *x, const ev_rec *r, const void *a, size_t alen, const void *b,
                          size_t blen)
{
    if (x->closing) return; /* the Lua state is going away: nobody is waiting */
    ev_rec rec = *r;
    rec.len = (uint32_t)(alen + blen);
    size_t need = sizeof rec + ALIGN8(alen + blen);
    if (gg_buf_reserve(&x->ev, &x->lp.bufs, need)) {
        /* Out of memory: the waiter must still wake, so deliver a failure without payload. */
        static const char oom[] = "out of memory";
        if (r->kind == EV_RESPONSE || r->kind == EV_FAIL) {
            rec.kind = EV_FAIL;
            rec.ftype = FT_BAD_RESPONSE;
            a = oom, alen = sizeof oom - 1, b = NULL, blen = 0;
            rec.len = (uint32_t)alen;
            need = sizeof rec + ALIGN8(alen);
        }
        if (gg_buf_reserve(&x->ev, &x->lp.bufs, need)) {
            fprintf(stderr, "ghost.core: out of memory queueing an event\n");
            abort();
        }
    }
    char *p = x->ev.data + x->ev.len;
    memcpy(p, &rec, sizeof rec);
    if (alen) memcpy(p + sizeof rec, a, alen);
    if (blen) memcpy(p + sizeof rec + alen, b, blen);
    x->ev.len += need;
    /* Queued inside uv_run: the Lua side must get it this turn. A timer that fires first thing
     * in uv_run(UV_RUN_ONCE) would otherwise be followed by a poll that blocks until the next
     * timer or byte, seconds away, with the event waiting in the queue (uv_stop makes that
     * poll return at once). */
    if (x->running) uv_stop(&x->uv);
}

void gg_ghost_queue_fail(ctx *x, gg_call *call, int ft, const char *msg)
{
    ev_rec r = {.kind = EV_FAIL, .ftype = (uint8_t)ft, .ref = call->waiter_ref, .id = call->id};
    gg_ghost_queue_event(x, &r, msg, strlen(msg), NULL, 0);
}

/* ---- core.run: the loop and event delivery ---------------------------------------------- */

static void set_slot(lua_State *L, int t, int i)
{
    lua_rawseti(L, t, i);
}

static void push_ref(lua_State *L, int ref, int owned)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    if (owned) luaL_unref(L, LUA_REGISTRYINDEX, ref);
}

/* Decode error then result from a response body into slots base+4, base+5. */
static int push_response(lua_State *L, int t, int base, const char *p, size_t len)
{
    char err[128];
    size_t used = 0;
    if (gg_lua_unpack(L, p, len, READ_MAX_DEPTH, GG_LUA_MARK, &used, err, sizeof err)) return -1;
    set_slot(L, t, base + 4);
    if (gg_lua_unpack(L, p + used, len - used, READ_MAX_DEPTH, GG_LUA_MARK, NULL, err, sizeof err))
        return -1;
    set_slot(L, t, base + 5);
    return 0;
}

static int deliver(lua_State *L, ctx *x, int t)
{
    int n = 0;
    while (x->ev_off < x->ev.len) {
        ev_rec r;
        memcpy(&r, x->ev.data + x->ev_off, sizeof r);
        const char *pl = x->ev.data + x->ev_off + sizeof r;
        x->ev_off += sizeof r + ALIGN8(r.len); /* first: a Lua error below loses one event only */
        int base = n * EV_STRIDE;
        for (int i = 4; i <= EV_STRIDE; i++) {
            lua_pushnil(L);
            set_slot(L, t, base + i);
        }
        lua_pushinteger(L, r.kind);
        set_slot(L, t, base + 1);
        switch (r.kind) {
        case EV_RESPONSE:
        case EV_FAIL:
        case EV_WAKE:
        case EV_CONNECT:
            push_ref(L, r.ref, 1);
            set_slot(L, t, base + 2);
            lua_pushnumber(L, r.id);
            set_slot(L, t, base + 3);
            if (r.kind == EV_RESPONSE) gg_lua_set_origin(L, r.origin);
            if (r.kind == EV_RESPONSE && push_response(L, t, base, pl, r.len)) {
                lua_pushinteger(L, EV_FAIL);
                set_slot(L, t, base + 1);
                lua_pushstring(L, gg_ghost_fail_types[FT_BAD_RESPONSE]);
                set_slot(L, t, base + 4);
                lua_pushliteral(L, "undecodable response");
                set_slot(L, t, base + 5);
            } else if (r.kind == EV_FAIL) {
                lua_pushstring(L, gg_ghost_fail_types[r.ftype]);
                set_slot(L, t, base + 4);
                lua_pushlstring(L, pl, r.len);
                set_slot(L, t, base + 5);
            }
            break;
        case EV_REQUEST:
        case EV_NOTIFY: {
            push_ref(L, r.ref2, 0);
            set_slot(L, t, base + 2);
            push_ref(L, r.ref, 0);
            set_slot(L, t, base + 3);
            if (r.kind == EV_REQUEST) {
                lua_pushnumber(L, r.id);
                set_slot(L, t, base + 4);
            }
            lua_pushlstring(L, pl, r.mlen);
            set_slot(L, t, base + 5);
            char err[128];
            const char *params = pl + r.mlen;
            gg_lua_set_origin(L, r.origin);
            size_t plen = r.len - r.mlen;
            if (gg_lua_unpack(L, params, plen, READ_MAX_DEPTH, GG_LUA_MARK | GG_LUA_ARGS, NULL, err,
                              sizeof err)) {
                lua_pushstring(L, err);
                set_slot(L, t, base + 6);
                lua_pushinteger(L, -1);
            } else {
                set_slot(L, t, base + 6);
                lua_pushnumber(L, gg_ghost_array_count(params, plen));
            }
            set_slot(L, t, base + 7);
            break;
        }
        case EV_CLOSED:
            push_ref(L, r.ref2, 1);
            set_slot(L, t, base + 2);
            push_ref(L, r.ref, 1);
            set_slot(L, t, base + 3);
            break;
        case EV_SIGNAL:
            lua_pushnil(L);
            set_slot(L, t, base + 2);
            lua_pushnumber(L, r.id);
            set_slot(L, t, base + 3);
            break;
        }
        n++;
    }
    gg_buf_release(&x->ev, &x->lp.bufs);
    x->ev_off = 0;
    /* Drop what the previous, longer batch left behind. */
    for (int i = n * EV_STRIDE + 1; i <= x->last_n * EV_STRIDE; i++) {
        lua_pushnil(L);
        set_slot(L, t, i);
    }
    x->last_n = n;
    return n;
}

int gg_ghost_l_run(lua_State *L)
{
    ctx *x = gg_ghost_ctx_get(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    int nowait = lua_toboolean(L, 2);
    if (x->running) return luaL_error(L, "ghost: the event loop is already running");
    if (x->ev.len == 0) {
        x->running = 1;
        x->L = L;
        gg_stream_flush_all(&x->lp);
        uv_run(&x->uv, nowait ? UV_RUN_NOWAIT : UV_RUN_ONCE);
        gg_stream_flush_all(&x->lp);
        x->running = 0;
        x->L = NULL;
    }
    lua_settop(L, 1);
    int n = deliver(L, x, 1);
    uv_update_time(&x->uv);
    lua_pushinteger(L, n);
    lua_pushboolean(L, n > 0 || uv_loop_alive(&x->uv));
    return 2;
}

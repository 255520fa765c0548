/* lua_ghost_conn.c -- ghost.core's calls and the stream side of its connections:
 * deadlines, answers, peers' messages, connecting (core.connect). */
#include "lua/lua_ghost_int.h"
#include "core/addr.h"
#include "core/errors.h"
#include "lua/lua_msgpack.h"
#include "lua/tls_config.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- calls ------------------------------------------------------------------------------ */

/* End a call through the calls module; a connect waiter also leaves its connection. Its ref
 * now belongs to an event (or was released by the caller). */
void gg_ghost_lcall_end(ctx *x, gg_call *call)
{
    if (call->lkind == GG_LCALL_CONNECT) ((conn *)call->lconn)->connect_call = NULL;
    gg_call_end(&x->lp.calls, call);
}

/* A request left the connection: an idle client keeps no loop alive. */
static void conn_unlinked(gg_call_list *l)
{
    conn *c = (conn *)((char *)l - offsetof(conn, calls));
    /* A peer's handle stays referenced: it is the server's, not a call's. */
    if (l->n == 0 && !c->is_peer && !(c->st.flags & GG_ST_CLOSING)) uv_unref(&c->st.io.handle);
}

void gg_ghost_set_state(conn *c, int state, const char *reason)
{
    c->state = state;
    if (c->box) {
        c->box->state = state;
        if (reason) snprintf(c->box->reason, sizeof c->box->reason, "%s", reason);
    }
}

/* Close a connection: its calls fail at once with `ft`, the connect waiter with
 * connection_failed. */
void gg_ghost_conn_close(conn *c, int ft, const char *why)
{
    if (c->state == ST_CLOSED) return;
    ctx *x = c->x;
    gg_ghost_set_state(c, ST_CLOSED, why);
    if (c->connect_call) {
        gg_call *cc = c->connect_call;
        gg_ghost_queue_fail(x, cc, ft == FT_CLOSED ? FT_CLOSED : FT_CONNECT, why);
        gg_ghost_lcall_end(x, cc);
    }
    while (c->calls.head) {
        gg_call *call = c->calls.head;
        gg_ghost_queue_fail(x, call, ft, why);
        gg_ghost_lcall_end(x, call);
    }
    gg_stream_close(&c->st);
}

void gg_ghost_on_deadline(void *lp, gg_call *call)
{
    ctx *x = ((gg_loop *)lp)->data;
    conn *c = call->lconn;
    char msg[300];
    if (call->lkind == GG_LCALL_SLEEP) {
        ev_rec r = {.kind = EV_WAKE, .ref = call->waiter_ref, .id = call->id};
        gg_ghost_queue_event(x, &r, NULL, 0, NULL, 0);
        gg_ghost_lcall_end(x, call);
        return;
    }
    if (call->lkind == GG_LCALL_CONNECT) {
        snprintf(msg, sizeof msg, "cannot connect to %s: no answer within %.3f s", c->addr,
                 call->timeout_ms / 1000.0);
        gg_ghost_queue_fail(x, call, FT_CONNECT, msg);
        gg_ghost_lcall_end(x, call);
        gg_ghost_conn_close(c, FT_CONNECT, msg);
        return;
    }
    snprintf(msg, sizeof msg, "no answer within %.3f s (client deadline)",
             call->timeout_ms / 1000.0);
    gg_ghost_queue_fail(x, call, FT_DEADLINE, msg);
    gg_ghost_lcall_end(x, call);
}

/* ---- connections ------------------------------------------------------------------------ */

uint32_t gg_ghost_array_count(const char *p, size_t len)
{
    const uint8_t *u = (const uint8_t *)p;
    if (len >= 1 && (u[0] & 0xf0) == 0x90) return u[0] & 0x0f;
    if (len >= 3 && u[0] == 0xdc) return (uint32_t)(u[1] << 8 | u[2]);
    if (len >= 5 && u[0] == 0xdd)
        return (uint32_t)u[1] << 24 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 8 | u[4];
    return 0;
}

static void conn_response(conn *c, const char *msg, const gg_msg *m);

static void peer_message(conn *c, const char *msg, const gg_msg *m)
{
    if (m->type == GG_RESPONSE) { /* to a call made on this peer (a callback) */
        conn_response(c, msg, m);
        return;
    }
    if (c->ref == LUA_NOREF) return; /* not registered (out of memory at accept) */
    if (!gg_lua_within(msg + m->body_off, m->size - m->body_off, c->max_values)) {
        /* Refused before any Lua table is built; the handler does not run. */
        if (m->type == GG_REQUEST)
            gg_reply_error(&c->st, m->msgid, GG_ERR_TOO_LARGE,
                           "params have more than %zu values (max_values)", c->max_values);
        return;
    }
    ev_rec r = {.kind = m->type == GG_REQUEST ? EV_REQUEST : EV_NOTIFY,
                .ref = c->ref,
                .ref2 = c->owner_ref,
                .id = m->msgid,
                .mlen = m->method_len,
                .origin = c->serial};
    gg_ghost_queue_event(c->x, &r, msg + m->method_off, m->method_len, msg + m->body_off,
                         m->size - m->body_off);
}

static void conn_on_message(gg_stream *s, const char *msg, const gg_msg *m)
{
    conn *c = (conn *)s;
    const char *bad = gg_msg_invalid(m);
    if (bad) {
        char why[300];
        if (c->is_peer) {
            if (m->type == GG_REQUEST && m->has_id)
                gg_reply_error(s, m->msgid, GG_ERR_BAD_REQUEST, "%s", bad);
            else
                gg_stream_close_after_flush(s);
            return;
        }
        snprintf(why, sizeof why, "malformed message from %s: %s", c->addr, bad);
        gg_ghost_conn_close(c, FT_BAD_RESPONSE, why);
        return;
    }
    if (c->is_peer || (m->type != GG_RESPONSE && c->owner_ref != LUA_NOREF)) {
        peer_message(c, msg, m); /* a peer's, or a callback to a client that serves */
        return;
    }
    if (m->type == GG_RESPONSE) {
        conn_response(c, msg, m);
    } else if (m->type == GG_REQUEST) {
        gg_reply_error(s, m->msgid, GG_ERR_NOT_SUPPORTED, "this client does not serve requests");
    }
    /* Notifications to a client are ignored: nothing subscribes to them yet. */
}

/* The answer to a call made on c (a client's call, or a peer's callback). */
static void conn_response(conn *c, const char *msg, const gg_msg *m)
{
    ctx *x = c->x;
    gg_call *call = gg_call_find(&x->lp.calls, m->msgid);
    if (!call || call->carrier != &c->calls) return; /* late: dropped */
    if (gg_lua_within(msg + m->body_off, m->size - m->body_off, c->max_values)) {
        ev_rec r = {
            .kind = EV_RESPONSE, .ref = call->waiter_ref, .id = call->id, .origin = c->serial};
        gg_ghost_queue_event(x, &r, msg + m->body_off, m->size - m->body_off, NULL, 0);
    } else {
        char why[100];
        snprintf(why, sizeof why, "the response has more than %zu values (max_values)",
                 c->max_values);
        gg_ghost_queue_fail(x, call, FT_BAD_RESPONSE, why);
    }
    gg_ghost_lcall_end(x, call);
}

static void conn_on_frame_error(gg_stream *s, int code, const gg_msg *m)
{
    conn *c = (conn *)s;
    const char *why = code == GG_ETOOBIG    ? "message exceeds the size limit"
                      : code == GG_ETOODEEP ? "message nested too deeply"
                                            : "malformed MessagePack";
    if (c->is_peer) {
        if (m->type == GG_REQUEST && m->has_id)
            gg_reply_error(s, m->msgid, code == GG_ETOOBIG ? GG_ERR_TOO_LARGE : GG_ERR_BAD_REQUEST,
                           "%s", why);
        gg_stream_close_after_flush(s);
        return;
    }
    char msg[300];
    snprintf(msg, sizeof msg, "%s sent bad data: %s", c->addr, why);
    gg_ghost_conn_close(c, FT_BAD_RESPONSE, msg);
}

static void conn_on_eof(gg_stream *s, int status)
{
    conn *c = (conn *)s;
    if (c->is_peer) {
        gg_ghost_set_state(c, ST_CLOSED, "closed");
        gg_stream_close(s);
        return;
    }
    char msg[300];
    if (s->tls && *gg_tls_error(s->tls))
        snprintf(msg, sizeof msg, "TLS with %s failed: %s", c->addr, gg_tls_error(s->tls));
    else
        snprintf(msg, sizeof msg, "connection to %s lost: %s", c->addr,
                 status == UV_EOF ? "closed by the peer" : uv_strerror(status));
    gg_ghost_conn_close(c, c->connect_call ? FT_CONNECT : FT_LOST, msg);
}

/* TLS: connected once the handshake is done (the server's certificate checked). */
static void conn_on_handshake(gg_stream *s)
{
    conn *c = (conn *)s;
    if (!c->connect_call) return;
    gg_call *cc = c->connect_call;
    ev_rec r = {.kind = EV_CONNECT, .ref = cc->waiter_ref, .id = cc->id};
    gg_ghost_queue_event(c->x, &r, NULL, 0, NULL, 0);
    gg_ghost_lcall_end(c->x, cc);
}

static void conn_on_closed(gg_stream *s)
{
    conn *c = (conn *)s;
    ctx *x = c->x;
    if (c->prev)
        c->prev->next = c->next;
    else
        x->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->state = ST_CLOSED;
    if (c->box) {
        c->box->c = NULL;
        c->box->state = ST_CLOSED;
    }
    while (c->calls.head) { /* callbacks to a peer that went away */
        gg_call *call = c->calls.head;
        gg_ghost_queue_fail(x, call, FT_LOST, "the peer closed the connection");
        gg_ghost_lcall_end(x, call);
    }
    if (c->owner_ref != LUA_NOREF && c->ref != LUA_NOREF) {
        ev_rec r = {.kind = EV_CLOSED, .ref = c->ref, .ref2 = c->owner_ref, .origin = c->serial};
        gg_ghost_queue_event(x, &r, NULL, 0, NULL, 0);
    }
    free(c);
}

const gg_stream_ops gg_ghost_conn_ops = {
    .on_message = conn_on_message,
    .on_frame_error = conn_on_frame_error,
    .on_eof = conn_on_eof,
    .on_drain = NULL,
    .on_closed = conn_on_closed,
    .on_handshake = conn_on_handshake,
};

conn *gg_ghost_conn_new(ctx *x)
{
    conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->x = x;
    c->ref = c->owner_ref = LUA_NOREF;
    c->max_message = SEND_MAX_MESSAGE;
    c->max_depth = SEND_MAX_DEPTH;
    c->max_values = READ_MAX_VALUES;
    c->calls.on_unlink = conn_unlinked;
    c->serial = ++x->serials;
    if (c->serial == 0) c->serial = ++x->serials;
    c->next = x->conns;
    if (x->conns) x->conns->prev = c;
    x->conns = c;
    return c;
}

static void on_connect(uv_connect_t *req, int status)
{
    conn *c = req->data;
    ctx *x = c->x;
    if (status == UV_ECANCELED || c->state == ST_CLOSED) return;
    if (status < 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "cannot connect to %s: %s", c->addr, uv_strerror(status));
        gg_ghost_conn_close(c, FT_CONNECT, msg);
        return;
    }
    gg_ghost_set_state(c, ST_OPEN, NULL);
    c->st.flags |= GG_ST_READY;
    if (c->st.io.handle.type == UV_TCP) uv_tcp_nodelay(&c->st.io.tcp, 1);
    if (c->connect_call && !c->st.tls) { /* with TLS: at the end of the handshake */
        gg_call *cc = c->connect_call;
        ev_rec r = {.kind = EV_CONNECT, .ref = cc->waiter_ref, .id = cc->id};
        gg_ghost_queue_event(x, &r, NULL, 0, NULL, 0);
        gg_ghost_lcall_end(x, cc);
    }
    if (c->calls.n == 0) uv_unref(&c->st.io.handle); /* an idle client keeps no loop alive */
    int rc = gg_stream_start(&c->st);
    if (rc) {
        conn_on_eof(&c->st, rc);
        return;
    }
    gg_stream_flush(&c->st); /* what was queued while connecting */
}


conn_box *gg_ghost_new_box(lua_State *L, conn *c)
{
    conn_box *b = lua_newuserdata(L, sizeof *b);
    memset(b, 0, sizeof *b);
    b->c = c;
    b->state = c->state;
    luaL_getmetatable(L, CONN_MT);
    lua_setmetatable(L, -2);
    c->box = b;
    return b;
}

/* core.connect(addr, waiter?, timeout_ms?, max_message?, max_depth?, max_values?, tls?) ->
 * conn, id. tls: the options table of a tls:// address (tls_config.h). */
int gg_ghost_l_connect(lua_State *L)
{
    ctx *x = gg_ghost_ctx_get(L);
    lua_settop(L, 7);
    const char *addr = luaL_checkstring(L, 1);
    lua_Number tmo = luaL_optnumber(L, 3, 0);
    lua_Number maxm = luaL_optnumber(L, 4, (lua_Number)SEND_MAX_MESSAGE);
    int maxd = (int)luaL_optinteger(L, 5, SEND_MAX_DEPTH);
    lua_Number maxv = luaL_optnumber(L, 6, READ_MAX_VALUES);
    gg_addr a;
    char err[256];
    if (gg_addr_parse(addr, &a, err, sizeof err))
        return gg_ghost_fail3(L, "connection_failed", "%s", err);
    gg_tls_ctx *tls = NULL;
    if (a.tls) {
        if (!lua_istable(L, 7)) {
            lua_newtable(L);
            lua_replace(L, 7);
        }
        if (!(tls = gg_tls_ctx_from_lua(L, 7, GG_TLS_CLIENT, err, sizeof err)))
            return gg_ghost_fail3(L, "connection_failed", "%s", err);
    }
    conn *c = gg_ghost_conn_new(x);
    if (!c) {
        gg_tls_ctx_unref(tls);
        return gg_ghost_fail3(L, "connection_failed", "out of memory");
    }
    c->max_message = maxm > 0 ? (size_t)maxm : SEND_MAX_MESSAGE;
    c->max_depth = maxd < 3 ? 3 : maxd > GG_DEPTH_CAP ? GG_DEPTH_CAP : maxd;
    c->max_values = maxv >= 1 ? (size_t)maxv : READ_MAX_VALUES;
    snprintf(c->addr, sizeof c->addr, "%s", a.text);
    c->state = ST_CONNECTING;
    gg_ghost_new_box(L, c);
    gg_stream_init(&c->st, &x->lp, &gg_ghost_conn_ops, 0);
    c->creq.data = c;
    int rc = tls ? gg_tls_attach(&c->st, tls, NULL) : 0; /* fails only out of memory */
    gg_tls_ctx_unref(tls); /* the connection holds its own reference */
    if (a.kind == GG_ADDR_UNIX) {
        uv_pipe_init(&x->uv, &c->st.io.pipe, 0);
        c->st.io.handle.data = &c->st;
        uv_pipe_connect(&c->creq, &c->st.io.pipe, a.path, on_connect);
        rc = 0;
    } else {
        uv_tcp_init(&x->uv, &c->st.io.tcp);
        c->st.io.handle.data = &c->st;
        if (rc == 0)
            rc = uv_tcp_connect(&c->creq, &c->st.io.tcp, (const struct sockaddr *)&a.sa, on_connect);
        else
            rc = UV_ENOMEM;
    }
    uv_unref(&c->st.io.handle); /* the pending connect keeps the loop alive, not the handle */
    if (!lua_isnoneornil(L, 2)) {
        gg_call *cc = gg_call_new(&x->lp.calls);
        if (!cc) {
            gg_ghost_conn_close(c, FT_CONNECT, "too many calls in flight");
            return gg_ghost_fail3(L, "connection_failed", "too many calls in flight");
        }
        lua_pushvalue(L, 2);
        cc->waiter_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        cc->lconn = c;
        cc->lkind = GG_LCALL_CONNECT;
        c->connect_call = cc;
        if (tmo > 0) {
            uv_update_time(&x->uv);
            if (tmo > 4e9) tmo = 4e9;
            cc->timeout_ms = (uint32_t)tmo;
            gg_call_set_deadline(&x->lp.calls, cc, uv_now(&x->uv) + (uint64_t)tmo);
        }
        lua_pushnumber(L, cc->id);
    } else {
        lua_pushnil(L);
    }
    if (rc) {
        snprintf(err, sizeof err, "cannot connect to %s: %s", c->addr, uv_strerror(rc));
        gg_ghost_conn_close(c, FT_CONNECT, err);
    }
    return 2;
}

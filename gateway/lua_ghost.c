/* lua_ghost.c -- ghost.core: connections, listeners, calls and the event queue; see
 * lua_ghost.h for the Lua API. */
#include "lua_ghost.h"
#include "addr.h"
#include "codec.h"
#include "errors.h"
#include "loop.h"
#include "lua_msgpack.h"
#include "objects.h"
#include "stream.h"

#include <errno.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define CTX_KEY   "ghost.core.ctx"
#define CONN_MT   "ghost.core.conn"
#define LISTEN_MT "ghost.core.listener"

/* Limits of one Lua state's loop. Reading: what a peer may send us. Writing: what we send is
 * checked against the connection's max_message/max_depth (defaults: the gateway's). */
#define READ_MAX_MESSAGE ((size_t)64 << 20)
#define READ_MAX_DEPTH   64
/* Default decoding budget of one params array or response (gg_lua_within), per connection
 * (max_values): a peer's 64 MiB of empty arrays would otherwise become some 5 GB of Lua
 * tables. Checked when a message arrives, so what is queued always decodes within it. */
#define READ_MAX_VALUES  1000000
#define MAX_CALLS        65536
#define SEND_MAX_MESSAGE ((size_t)8 << 20)
#define SEND_MAX_DEPTH   32

enum { EV_RESPONSE = 1, EV_FAIL, EV_WAKE, EV_CONNECT, EV_REQUEST, EV_NOTIFY, EV_CLOSED, EV_SIGNAL };
#define EV_STRIDE 7

enum { FT_DEADLINE, FT_CONNECT, FT_LOST, FT_CLOSED, FT_BAD_RESPONSE };
static const char *const fail_types[] = {"deadline_exceeded", "connection_failed",
                                         "connection_lost", "closed", "bad_response"};

enum { ST_CONNECTING, ST_OPEN, ST_CLOSED };
static const char *const state_names[] = {"connecting", "open", "closed"};

struct conn;
struct listener;

typedef struct ctx {
    uv_loop_t uv;
    gg_loop lp;
    lua_State *L; /* the thread inside core.run, while uv_run runs */
    gg_buf ev;    /* events queued by callbacks, handed to Lua by core.run */
    size_t ev_off;
    int last_n; /* events delivered by the previous core.run (their slots are cleared) */
    int running, closing;
    struct conn *conns;
    struct listener *listeners;
    uint32_t serials; /* the last connection serial given */
    uv_signal_t sig[2];
    int sig_on;
} ctx;

/* One queued event; `len` payload bytes follow, padded to 8. */
typedef struct ev_rec {
    uint8_t kind, ftype;
    uint16_t pad;
    int ref;       /* waiter (owned); peer (EV_REQUEST/NOTIFY: borrowed, EV_CLOSED: owned) */
    int ref2;      /* owner of a peer (same ownership as ref) */
    uint32_t id;   /* call id, msgid or signal number */
    uint32_t mlen; /* EV_REQUEST/NOTIFY: the method's bytes start the payload */
    uint32_t len;
    uint32_t origin; /* serial of the connection the payload came from (remote objects) */
    uint32_t pad2;
} ev_rec;

#define ALIGN8(n) (((n) + 7) & ~(size_t)7)

/* The userdata of a connection: it outlives the connection (state and reason stay readable). */
typedef struct conn_box {
    struct conn *c;
    int state;
    char reason[200];
} conn_box;

typedef struct conn {
    gg_stream st; /* first member */
    ctx *x;
    conn_box *box; /* NULL once the userdata is gone */
    struct conn *prev, *next;
    gg_call *calls; /* in flight here, linked by uprev/unext */
    uint32_t inflight;
    gg_call *connect_call; /* the waiter of core.connect, until connected */
    uv_connect_t creq;
    int state;
    int is_peer;
    int ref, owner_ref; /* peer: its userdata and its server's Lua object, held while open;
                           client: the same once conn:serve() was called (remote objects) */
    uint32_t serial;    /* unique in this Lua state: names the connection to the codec */
    size_t max_message;
    int max_depth;
    size_t max_values; /* decoding budget of what arrives (params, responses) */
    char addr[160];
} conn;

typedef struct listener_box {
    struct listener *l;
} listener_box;

typedef struct listener {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } io;
    ctx *x;
    listener_box *box;
    struct listener *prev, *next;
    int owner_ref;
    int is_unix;
    size_t max_message;
    size_t max_values;
    char path[108];
    char addr[160];
} listener;

/* ---- the event queue -------------------------------------------------------------------- */

static void queue_event(ctx *x, const ev_rec *r, const void *a, size_t alen, const void *b,
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
}

static void queue_fail(ctx *x, gg_call *call, int ft, const char *msg)
{
    ev_rec r = {.kind = EV_FAIL, .ftype = (uint8_t)ft, .ref = call->ref, .id = call->id};
    queue_event(x, &r, msg, strlen(msg), NULL, 0);
}

/* ---- calls ------------------------------------------------------------------------------ */

/* Unlink the call from everything and give it back. Its ref now belongs to an event (or was
 * released by the caller). */
static void call_end(ctx *x, gg_call *call)
{
    conn *c = call->data;
    if (c && call != c->connect_call) {
        if (call->uprev)
            call->uprev->unext = call->unext;
        else
            c->calls = call->unext;
        if (call->unext) call->unext->uprev = call->uprev;
        /* A peer's handle stays referenced: it is the server's, not a call's. */
        if (--c->inflight == 0 && !c->is_peer && !(c->st.flags & GG_ST_CLOSING))
            uv_unref(&c->st.io.handle);
    } else if (c) {
        c->connect_call = NULL;
    }
    if (call->deadline) gg_deadline_remove(&x->lp.calls, call);
    gg_call_release(&x->lp.calls, call);
}

static void set_state(conn *c, int state, const char *reason)
{
    c->state = state;
    if (c->box) {
        c->box->state = state;
        if (reason) snprintf(c->box->reason, sizeof c->box->reason, "%s", reason);
    }
}

/* Close a connection: its calls fail at once with `ft`, the connect waiter with
 * connection_failed. */
static void conn_close(conn *c, int ft, const char *why)
{
    if (c->state == ST_CLOSED) return;
    ctx *x = c->x;
    set_state(c, ST_CLOSED, why);
    if (c->connect_call) {
        gg_call *cc = c->connect_call;
        queue_fail(x, cc, ft == FT_CLOSED ? FT_CLOSED : FT_CONNECT, why);
        call_end(x, cc);
    }
    while (c->calls) {
        gg_call *call = c->calls;
        queue_fail(x, call, ft, why);
        call_end(x, call);
    }
    gg_stream_close(&c->st);
}

static void on_deadline(gg_loop *lp, gg_call *call)
{
    ctx *x = lp->data;
    conn *c = call->data;
    char msg[300];
    if (!c) { /* core.sleep */
        ev_rec r = {.kind = EV_WAKE, .ref = call->ref, .id = call->id};
        queue_event(x, &r, NULL, 0, NULL, 0);
        call_end(x, call);
        return;
    }
    if (call == c->connect_call) {
        snprintf(msg, sizeof msg, "cannot connect to %s: no answer within %.3f s", c->addr,
                 call->client_msgid / 1000.0);
        queue_fail(x, call, FT_CONNECT, msg);
        call_end(x, call);
        conn_close(c, FT_CONNECT, msg);
        return;
    }
    snprintf(msg, sizeof msg, "no answer within %.3f s (client deadline)",
             call->client_msgid / 1000.0);
    queue_fail(x, call, FT_DEADLINE, msg);
    call_end(x, call);
}

/* ---- connections ------------------------------------------------------------------------ */

static uint32_t array_count(const char *p, size_t len)
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
    queue_event(c->x, &r, msg + m->method_off, m->method_len, msg + m->body_off,
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
        conn_close(c, FT_BAD_RESPONSE, why);
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
    if (!call || call->data != c || call == c->connect_call) return; /* late: dropped */
    if (gg_lua_within(msg + m->body_off, m->size - m->body_off, c->max_values)) {
        ev_rec r = {.kind = EV_RESPONSE, .ref = call->ref, .id = call->id, .origin = c->serial};
        queue_event(x, &r, msg + m->body_off, m->size - m->body_off, NULL, 0);
    } else {
        char why[100];
        snprintf(why, sizeof why, "the response has more than %zu values (max_values)",
                 c->max_values);
        queue_fail(x, call, FT_BAD_RESPONSE, why);
    }
    call_end(x, call);
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
    conn_close(c, FT_BAD_RESPONSE, msg);
}

static void conn_on_eof(gg_stream *s, int status)
{
    conn *c = (conn *)s;
    if (c->is_peer) {
        set_state(c, ST_CLOSED, "closed");
        gg_stream_close(s);
        return;
    }
    char msg[300];
    snprintf(msg, sizeof msg, "connection to %s lost: %s", c->addr,
             status == UV_EOF ? "closed by the peer" : uv_strerror(status));
    conn_close(c, FT_LOST, msg);
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
    while (c->calls) { /* callbacks to a peer that went away */
        gg_call *call = c->calls;
        queue_fail(x, call, FT_LOST, "the peer closed the connection");
        call_end(x, call);
    }
    if (c->owner_ref != LUA_NOREF && c->ref != LUA_NOREF) {
        ev_rec r = {.kind = EV_CLOSED, .ref = c->ref, .ref2 = c->owner_ref, .origin = c->serial};
        queue_event(x, &r, NULL, 0, NULL, 0);
    }
    free(c);
}

static const gg_stream_ops conn_ops = {
    .on_message = conn_on_message,
    .on_frame_error = conn_on_frame_error,
    .on_eof = conn_on_eof,
    .on_drain = NULL,
    .on_closed = conn_on_closed,
};

static conn *conn_new(ctx *x)
{
    conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->x = x;
    c->ref = c->owner_ref = LUA_NOREF;
    c->max_message = SEND_MAX_MESSAGE;
    c->max_depth = SEND_MAX_DEPTH;
    c->max_values = READ_MAX_VALUES;
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
        conn_close(c, FT_CONNECT, msg);
        return;
    }
    set_state(c, ST_OPEN, NULL);
    c->st.flags |= GG_ST_READY;
    if (c->st.io.handle.type == UV_TCP) uv_tcp_nodelay(&c->st.io.tcp, 1);
    if (c->connect_call) {
        gg_call *cc = c->connect_call;
        ev_rec r = {.kind = EV_CONNECT, .ref = cc->ref, .id = cc->id};
        queue_event(x, &r, NULL, 0, NULL, 0);
        call_end(x, cc);
    }
    if (c->inflight == 0) uv_unref(&c->st.io.handle); /* an idle client keeps no loop alive */
    int rc = gg_stream_start(&c->st);
    if (rc) {
        conn_on_eof(&c->st, rc);
        return;
    }
    gg_stream_flush(&c->st); /* what was queued while connecting */
}

/* ---- the per-state context -------------------------------------------------------------- */

static ctx *ctx_get(lua_State *L)
{
    ctx *x = lua_touserdata(L, lua_upvalueindex(1));
    if (x->closing) luaL_error(L, "ghost.core: the library is shutting down");
    return x;
}

static void on_signal(uv_signal_t *h, int signum)
{
    ctx *x = h->data;
    ev_rec r = {.kind = EV_SIGNAL, .id = (uint32_t)signum};
    queue_event(x, &r, NULL, 0, NULL, 0);
}

static void listener_closed(uv_handle_t *h)
{
    free(h->data);
}

static void listener_close(listener *l)
{
    ctx *x = l->x;
    if (l->prev)
        l->prev->next = l->next;
    else
        x->listeners = l->next;
    if (l->next) l->next->prev = l->prev;
    if (l->box) l->box->l = NULL;
    if (l->is_unix) unlink(l->path);
    uv_close(&l->io.handle, listener_closed);
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
        while (c->calls) call_end(x, c->calls);
        if (c->connect_call) call_end(x, c->connect_call);
        gg_stream_close(&c->st);
    }
    while (x->listeners) listener_close(x->listeners);
    for (int i = 0; i < 2; i++)
        if (!uv_is_closing((uv_handle_t *)&x->sig[i])) uv_close((uv_handle_t *)&x->sig[i], NULL);
    gg_loop_close(&x->lp);
    uv_run(&x->uv, UV_RUN_DEFAULT);
    uv_loop_close(&x->uv);
    gg_buf_release(&x->ev, &x->lp.bufs);
    gg_loop_free(&x->lp);
    return 0;
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
                lua_pushstring(L, fail_types[FT_BAD_RESPONSE]);
                set_slot(L, t, base + 4);
                lua_pushliteral(L, "undecodable response");
                set_slot(L, t, base + 5);
            } else if (r.kind == EV_FAIL) {
                lua_pushstring(L, fail_types[r.ftype]);
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
                lua_pushnumber(L, array_count(params, plen));
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

static int l_run(lua_State *L)
{
    ctx *x = ctx_get(L);
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

/* ---- writing messages ------------------------------------------------------------------- */

static int pk_write(void *data, const char *buf, size_t len)
{
    gg_stream *s = data;
    return gg_buf_append(&s->out, &s->loop->bufs, buf, len);
}

/* Pack the values at first..last as one array. Returns 0 or -1 with err. */
static int pack_args(lua_State *L, msgpack_packer *pk, int first, int last, int max_depth,
                     char *err, size_t errlen)
{
    int n = last - first + 1;
    if (n < 0) n = 0;
    if (msgpack_pack_array(pk, (size_t)n)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = first; i <= last; i++) {
        char why[200];
        if (gg_lua_pack(L, i, pk, max_depth, why, sizeof why)) {
            snprintf(err, errlen, "argument %d: %s", i - first + 1, why);
            return -1;
        }
    }
    return 0;
}

/* Push nil, kind, message; returns 3 (for `return fail3(...)`). */
static int fail3(lua_State *L, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail3(lua_State *L, const char *kind, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lua_pushnil(L);
    lua_pushstring(L, kind);
    lua_pushstring(L, msg);
    return 3;
}

static conn_box *check_conn(lua_State *L)
{
    return luaL_checkudata(L, 1, CONN_MT);
}

static int too_large(lua_State *L, conn *c, size_t start)
{
    size_t n = c->st.out.len - start;
    c->st.out.len = start;
    return fail3(L, "too_large", "message of %zu bytes exceeds max_message (%zu bytes)", n,
                 c->max_message);
}

/* An idle client connection may have been closed by the peer (idle timeout, restart) without
 * the loop having run since: look before sending, so that the call goes on a new connection
 * instead of failing with connection_lost. One recv(2) per call, only when nothing is in
 * flight (calls that wait for each other); pipelined calls skip it. */
static int peer_closed(conn *c)
{
    uv_os_fd_t fd;
    if (c->inflight || c->state != ST_OPEN || uv_fileno(&c->st.io.handle, &fd)) return 0;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        char msg[300];
        snprintf(msg, sizeof msg, "connection to %s lost: %s", c->addr,
                 n == 0 ? "closed by the peer" : strerror(errno));
        conn_close(c, FT_LOST, msg);
        return 1;
    }
    return 0;
}

/* conn:request(waiter, timeout_ms, method, ...) */
static int l_conn_request(lua_State *L)
{
    conn_box *b = check_conn(L);
    if (lua_isnoneornil(L, 2)) return luaL_argerror(L, 2, "waiter expected");
    lua_Number tmo = luaL_optnumber(L, 3, 0);
    size_t mlen;
    const char *method = luaL_checklstring(L, 4, &mlen);
    conn *c = b->c;
    if (!c || c->state == ST_CLOSED || (c->st.flags & GG_ST_CLOSING) || peer_closed(c))
        return fail3(L, "closed", "%s", b->reason[0] ? b->reason : "connection closed");
    if (mlen == 0 || mlen > GG_METHOD_MAX)
        return fail3(L, "encode", "method name must be 1 to %d bytes", GG_METHOD_MAX);
    ctx *x = c->x;
    gg_call *call = gg_call_new(&x->lp.calls);
    if (!call) return fail3(L, "overloaded", "too many calls in flight (%d)", MAX_CALLS);
    gg_stream *s = &c->st;
    size_t start = s->out.len;
    char *p = gg_stream_reserve(s, 16 + mlen);
    if (!p) {
        gg_call_release(&x->lp.calls, call);
        return fail3(L, "encode", "out of memory");
    }
    s->out.len += gg_put_request_hdr(p, call->id, method, (uint32_t)mlen);
    msgpack_packer pk;
    msgpack_packer_init(&pk, s, pk_write);
    char err[256];
    if (pack_args(L, &pk, 5, lua_gettop(L), c->max_depth - 2, err, sizeof err)) {
        s->out.len = start;
        gg_call_release(&x->lp.calls, call);
        return fail3(L, "encode", "%s", err);
    }
    if (s->out.len - start > c->max_message) {
        gg_call_release(&x->lp.calls, call);
        return too_large(L, c, start);
    }
    gg_stream_commit(s, 0);
    lua_pushvalue(L, 2);
    call->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    call->data = c;
    call->uprev = NULL;
    call->unext = c->calls;
    if (c->calls) c->calls->uprev = call;
    c->calls = call;
    if (c->inflight++ == 0 && !c->is_peer) uv_ref(&s->io.handle);
    if (tmo > 0) {
        uv_update_time(&x->uv);
        if (tmo > 4e9) tmo = 4e9;
        call->client_msgid = (uint32_t)tmo; /* the timeout, for the deadline's message */
        call->deadline = uv_now(&x->uv) + (uint64_t)tmo;
        gg_loop_add_deadline(&x->lp, call);
    }
    lua_pushnumber(L, call->id);
    return 1;
}

/* conn:notify(method, ...) */
static int l_conn_notify(lua_State *L)
{
    conn_box *b = check_conn(L);
    size_t mlen;
    const char *method = luaL_checklstring(L, 2, &mlen);
    conn *c = b->c;
    if (!c || c->state == ST_CLOSED)
        return fail3(L, "closed", "%s", b->reason[0] ? b->reason : "connection closed");
    if (mlen == 0 || mlen > GG_METHOD_MAX)
        return fail3(L, "encode", "method name must be 1 to %d bytes", GG_METHOD_MAX);
    gg_stream *s = &c->st;
    size_t start = s->out.len;
    char *p = gg_stream_reserve(s, 8 + mlen);
    if (!p) return fail3(L, "encode", "out of memory");
    p[0] = (char)0x93;
    p[1] = 0x02;
    size_t n = 2 + gg_put_str_hdr(p + 2, (uint32_t)mlen);
    memcpy(p + n, method, mlen);
    s->out.len += n + mlen;
    msgpack_packer pk;
    msgpack_packer_init(&pk, s, pk_write);
    char err[256];
    if (pack_args(L, &pk, 3, lua_gettop(L), c->max_depth - 2, err, sizeof err)) {
        s->out.len = start;
        return fail3(L, "encode", "%s", err);
    }
    if (s->out.len - start > c->max_message) return too_large(L, c, start);
    gg_stream_commit(s, 0);
    lua_pushboolean(L, 1);
    return 1;
}

/* peer:reply(msgid, error, result) */
static int l_conn_reply(lua_State *L)
{
    conn_box *b = check_conn(L);
    lua_Number id = luaL_checknumber(L, 2);
    lua_settop(L, 4);
    conn *c = b->c;
    if (!c || c->state == ST_CLOSED || (c->st.flags & GG_ST_CLOSING))
        return fail3(L, "closed", "the client has gone");
    gg_stream *s = &c->st;
    size_t start = s->out.len;
    char *p = gg_stream_reserve(s, GG_RESPONSE_HDR_MAX);
    if (!p) return fail3(L, "encode", "out of memory");
    s->out.len += gg_put_response_hdr(p, (uint32_t)id);
    msgpack_packer pk;
    msgpack_packer_init(&pk, s, pk_write);
    char err[256];
    for (int i = 3; i <= 4; i++) {
        if (gg_lua_pack(L, i, &pk, c->max_depth - 1, err, sizeof err)) {
            s->out.len = start;
            return fail3(L, "encode", "%s: %s", i == 3 ? "error" : "result", err);
        }
    }
    if (s->out.len - start > c->max_message) return too_large(L, c, start);
    gg_stream_commit(s, 0);
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:serve(owner): requests arriving on this client connection go to owner.on_request (as
 * a peer's do), and owner.on_closed runs when it closes. Remote objects call this when the
 * first function or object is passed: until then requests are answered not_supported. The
 * connection is then held until it closes (the peer may call back any time). */
static int l_conn_serve(lua_State *L)
{
    conn_box *b = check_conn(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    conn *c = b->c;
    if (!c || c->state == ST_CLOSED) return fail3(L, "closed", "connection closed");
    if (c->owner_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, c->owner_ref);
    lua_pushvalue(L, 2);
    c->owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (c->ref == LUA_NOREF) {
        lua_pushvalue(L, 1);
        c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:serial(): the number naming this connection to the remote-objects layer. */
static int l_conn_serial(lua_State *L)
{
    conn_box *b = check_conn(L);
    if (b->c)
        lua_pushnumber(L, b->c->serial);
    else
        lua_pushnil(L);
    return 1;
}

static int l_conn_state(lua_State *L)
{
    conn_box *b = check_conn(L);
    lua_pushstring(L, state_names[b->c ? b->c->state : ST_CLOSED]);
    if (b->reason[0])
        lua_pushstring(L, b->reason);
    else
        lua_pushnil(L);
    return 2;
}

static int l_conn_close(lua_State *L)
{
    conn_box *b = check_conn(L);
    conn *c = b->c;
    if (!c || c->state == ST_CLOSED) return 0;
    if (c->is_peer) {
        set_state(c, ST_CLOSED, "closed by the server");
        gg_stream_close_after_flush(&c->st);
        return 0;
    }
    conn_close(c, FT_CLOSED, luaL_optstring(L, 2, "connection closed by the client"));
    return 0;
}

static int l_conn_inflight(lua_State *L)
{
    conn_box *b = check_conn(L);
    lua_pushnumber(L, b->c ? b->c->inflight : 0);
    return 1;
}

static int l_conn_address(lua_State *L)
{
    conn_box *b = check_conn(L);
    if (b->c)
        lua_pushstring(L, b->c->addr);
    else
        lua_pushnil(L);
    return 1;
}

static int l_conn_gc(lua_State *L)
{
    conn_box *b = lua_touserdata(L, 1);
    conn *c = b->c;
    if (!c) return 0;
    c->box = NULL;
    b->c = NULL;
    gg_stream_flush(&c->st); /* what is queued goes out if the kernel takes it now */
    if (c->is_peer)
        gg_stream_close(&c->st);
    else
        conn_close(c, FT_CLOSED, "connection object collected");
    return 0;
}

static int l_conn_tostring(lua_State *L)
{
    conn_box *b = check_conn(L);
    lua_pushfstring(L, "ghost.core.conn (%s, %s)", b->c ? b->c->addr : "gone",
                    state_names[b->c ? b->c->state : ST_CLOSED]);
    return 1;
}

static conn_box *new_box(lua_State *L, conn *c)
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

/* core.connect(addr, waiter?, timeout_ms?, max_message?, max_depth?, max_values?) -> conn, id */
static int l_connect(lua_State *L)
{
    ctx *x = ctx_get(L);
    lua_settop(L, 6);
    const char *addr = luaL_checkstring(L, 1);
    lua_Number tmo = luaL_optnumber(L, 3, 0);
    lua_Number maxm = luaL_optnumber(L, 4, (lua_Number)SEND_MAX_MESSAGE);
    int maxd = (int)luaL_optinteger(L, 5, SEND_MAX_DEPTH);
    lua_Number maxv = luaL_optnumber(L, 6, READ_MAX_VALUES);
    gg_addr a;
    char err[256];
    if (gg_addr_parse(addr, &a, err, sizeof err)) return fail3(L, "connection_failed", "%s", err);
    conn *c = conn_new(x);
    if (!c) return fail3(L, "connection_failed", "out of memory");
    c->max_message = maxm > 0 ? (size_t)maxm : SEND_MAX_MESSAGE;
    c->max_depth = maxd < 3 ? 3 : maxd > GG_DEPTH_CAP ? GG_DEPTH_CAP : maxd;
    c->max_values = maxv >= 1 ? (size_t)maxv : READ_MAX_VALUES;
    snprintf(c->addr, sizeof c->addr, "%s", a.text);
    c->state = ST_CONNECTING;
    new_box(L, c);
    gg_stream_init(&c->st, &x->lp, &conn_ops, 0);
    c->creq.data = c;
    int rc;
    if (a.kind == GG_ADDR_UNIX) {
        uv_pipe_init(&x->uv, &c->st.io.pipe, 0);
        c->st.io.handle.data = &c->st;
        uv_pipe_connect(&c->creq, &c->st.io.pipe, a.path, on_connect);
        rc = 0;
    } else {
        uv_tcp_init(&x->uv, &c->st.io.tcp);
        c->st.io.handle.data = &c->st;
        rc = uv_tcp_connect(&c->creq, &c->st.io.tcp, (const struct sockaddr *)&a.sa, on_connect);
    }
    uv_unref(&c->st.io.handle); /* the pending connect keeps the loop alive, not the handle */
    if (!lua_isnoneornil(L, 2)) {
        gg_call *cc = gg_call_new(&x->lp.calls);
        if (!cc) {
            conn_close(c, FT_CONNECT, "too many calls in flight");
            return fail3(L, "connection_failed", "too many calls in flight");
        }
        lua_pushvalue(L, 2);
        cc->ref = luaL_ref(L, LUA_REGISTRYINDEX);
        cc->data = c;
        c->connect_call = cc;
        if (tmo > 0) {
            uv_update_time(&x->uv);
            if (tmo > 4e9) tmo = 4e9;
            cc->client_msgid = (uint32_t)tmo;
            cc->deadline = uv_now(&x->uv) + (uint64_t)tmo;
            gg_loop_add_deadline(&x->lp, cc);
        }
        lua_pushnumber(L, cc->id);
    } else {
        lua_pushnil(L);
    }
    if (rc) {
        snprintf(err, sizeof err, "cannot connect to %s: %s", c->addr, uv_strerror(rc));
        conn_close(c, FT_CONNECT, err);
    }
    return 2;
}

/* ---- listeners -------------------------------------------------------------------------- */

typedef struct accept_args {
    conn *c;
    listener *l;
} accept_args;

/* In a protected call: the userdata of a new peer and the references it holds. */
static int register_peer(lua_State *L)
{
    accept_args *a = lua_touserdata(L, 1);
    new_box(L, a->c);
    a->c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->l->owner_ref);
    a->c->owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static void on_connection(uv_stream_t *server, int status)
{
    listener *l = server->data;
    ctx *x = l->x;
    if (status < 0 || !x->L) return;
    conn *c = conn_new(x);
    if (!c) return;
    c->is_peer = 1;
    c->state = ST_OPEN;
    c->max_message = l->max_message;
    c->max_depth = GG_DEPTH_CAP;
    c->max_values = l->max_values;
    if (l->is_unix)
        uv_pipe_init(&x->uv, &c->st.io.pipe, 0);
    else
        uv_tcp_init(&x->uv, &c->st.io.tcp);
    gg_stream_init(&c->st, &x->lp, &conn_ops, GG_ST_READY);
    if (uv_accept(server, &c->st.io.stream)) {
        gg_stream_close(&c->st);
        return;
    }
    accept_args a = {c, l};
    if (lua_cpcall(x->L, register_peer, &a)) {
        lua_pop(x->L, 1);
        gg_stream_close(&c->st);
        return;
    }
    if (l->is_unix) {
        snprintf(c->addr, sizeof c->addr, "%s", l->addr);
    } else {
        struct sockaddr_storage ss;
        int len = sizeof ss;
        uv_tcp_nodelay(&c->st.io.tcp, 1);
        if (uv_tcp_getpeername(&c->st.io.tcp, (struct sockaddr *)&ss, &len) == 0)
            gg_addr_format_sa((struct sockaddr *)&ss, c->addr, sizeof c->addr);
    }
    if (gg_stream_start(&c->st)) gg_stream_close(&c->st);
}

/* core.listen(addr, owner, max_message?, max_values?) -> listener, bound address */
static int l_listen(lua_State *L)
{
    ctx *x = ctx_get(L);
    const char *addr = luaL_checkstring(L, 1);
    luaL_checkany(L, 2);
    lua_Number maxm = luaL_optnumber(L, 3, (lua_Number)SEND_MAX_MESSAGE);
    lua_Number maxv = luaL_optnumber(L, 4, READ_MAX_VALUES);
    gg_addr a;
    char err[300];
    if (gg_addr_parse(addr, &a, err, sizeof err)) return fail3(L, "listen", "%s", err);
    if (a.kind == GG_ADDR_UNIX && gg_addr_clear_stale(a.path, err, sizeof err))
        return fail3(L, "listen", "%s", err);
    listener *l = calloc(1, sizeof *l);
    if (!l) return fail3(L, "listen", "out of memory");
    l->x = x;
    l->max_message = maxm > 0 ? (size_t)maxm : SEND_MAX_MESSAGE;
    l->max_values = maxv >= 1 ? (size_t)maxv : READ_MAX_VALUES;
    l->io.handle.data = l;
    int rc;
    if (a.kind == GG_ADDR_UNIX) {
        uv_pipe_init(&x->uv, &l->io.pipe, 0);
        l->io.handle.data = l;
        rc = uv_pipe_bind(&l->io.pipe, a.path);
        if (rc == 0) {
            l->is_unix = 1;
            snprintf(l->path, sizeof l->path, "%s", a.path);
        }
        snprintf(l->addr, sizeof l->addr, "%s", a.text);
    } else {
        uv_tcp_init(&x->uv, &l->io.tcp);
        l->io.handle.data = l;
        rc = uv_tcp_bind(&l->io.tcp, (const struct sockaddr *)&a.sa, 0);
    }
    if (rc == 0) rc = uv_listen(&l->io.stream, 1024, on_connection);
    if (rc) {
        if (l->is_unix) unlink(l->path);
        uv_close(&l->io.handle, listener_closed);
        return fail3(L, "listen", "cannot listen on %s: %s", a.text, uv_strerror(rc));
    }
    if (a.kind == GG_ADDR_TCP) {
        struct sockaddr_storage ss;
        int len = sizeof ss;
        uv_tcp_getsockname(&l->io.tcp, (struct sockaddr *)&ss, &len);
        gg_addr_format_sa((struct sockaddr *)&ss, l->addr, sizeof l->addr);
    }
    lua_pushvalue(L, 2);
    l->owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    l->next = x->listeners;
    if (x->listeners) x->listeners->prev = l;
    x->listeners = l;
    listener_box *b = lua_newuserdata(L, sizeof *b);
    b->l = l;
    l->box = b;
    luaL_getmetatable(L, LISTEN_MT);
    lua_setmetatable(L, -2);
    lua_pushstring(L, l->addr);
    return 2;
}

static int l_listener_close(lua_State *L)
{
    listener_box *b = luaL_checkudata(L, 1, LISTEN_MT);
    listener *l = b->l;
    if (!l) return 0;
    luaL_unref(L, LUA_REGISTRYINDEX, l->owner_ref);
    l->owner_ref = LUA_NOREF;
    listener_close(l);
    return 0;
}

static int l_listener_address(lua_State *L)
{
    listener_box *b = luaL_checkudata(L, 1, LISTEN_MT);
    if (b->l)
        lua_pushstring(L, b->l->addr);
    else
        lua_pushnil(L);
    return 1;
}

static int l_listener_gc(lua_State *L)
{
    listener_box *b = lua_touserdata(L, 1);
    if (b->l) {
        listener *l = b->l;
        /* owner_ref keeps the Lua server object; it is released with the listener. */
        luaL_unref(L, LUA_REGISTRYINDEX, l->owner_ref);
        listener_close(l);
    }
    return 0;
}

/* ---- timers, cancellation, signals, values ---------------------------------------------- */

static int l_sleep(lua_State *L)
{
    ctx *x = ctx_get(L);
    lua_Number ms = luaL_checknumber(L, 1);
    luaL_checkany(L, 2);
    gg_call *call = gg_call_new(&x->lp.calls);
    if (!call) return luaL_error(L, "ghost: too many timers and calls pending");
    lua_pushvalue(L, 2);
    call->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (ms < 0) ms = 0;
    if (ms > 4e9) ms = 4e9;
    uv_update_time(&x->uv);
    call->deadline = uv_now(&x->uv) + (uint64_t)ms;
    if (call->deadline == 0) call->deadline = 1; /* 0 means "no deadline" */
    gg_loop_add_deadline(&x->lp, call);
    lua_pushnumber(L, call->id);
    return 1;
}

static int l_cancel(lua_State *L)
{
    ctx *x = ctx_get(L);
    gg_call *call = gg_call_find(&x->lp.calls, (uint32_t)luaL_checknumber(L, 1));
    if (!call) {
        lua_pushboolean(L, 0);
        return 1;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, call->ref);
    call_end(x, call);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_signals(lua_State *L)
{
    ctx *x = ctx_get(L);
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

/* Walk the connections accepted for the owner at index 1: close them (mode 1: after their
 * output, 2: at once) or just count them. Returns how many are not closed yet. */
static int peers_of(lua_State *L, ctx *x, int mode)
{
    int n = 0;
    for (conn *c = x->conns; c; c = c->next) {
        if (!c->is_peer || c->owner_ref == LUA_NOREF) continue;
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->owner_ref);
        int mine = lua_rawequal(L, -1, 1);
        lua_pop(L, 1);
        if (!mine) continue;
        n++;
        if (mode == 0) continue;
        set_state(c, ST_CLOSED, "closed by the server");
        if (mode == 2)
            gg_stream_close(&c->st);
        else
            gg_stream_close_after_flush(&c->st);
    }
    return n;
}

/* core.close_peers(owner, force): close the connections accepted for owner, after their
 * output (at once with force). Returns how many are still open (closing). */
static int l_close_peers(lua_State *L)
{
    ctx *x = ctx_get(L);
    luaL_checkany(L, 1);
    lua_pushnumber(L, peers_of(L, x, lua_toboolean(L, 2) ? 2 : 1));
    return 1;
}

/* core.peers(owner): how many connections accepted for owner are not closed yet. */
static int l_peers(lua_State *L)
{
    ctx *x = ctx_get(L);
    luaL_checkany(L, 1);
    lua_pushnumber(L, peers_of(L, x, 0));
    return 1;
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

static int l_bin(lua_State *L)
{
    size_t n;
    const char *p = gg_lua_tobin(L, 1, &n);
    if (p) {
        lua_settop(L, 1);
        return 1;
    }
    p = luaL_checklstring(L, 1, &n);
    gg_lua_push_bin(L, p, n);
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
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    gg_lua_push_map_mt(L);
    lua_setmetatable(L, 1);
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
    {"request", l_conn_request}, {"notify", l_conn_notify},
    {"reply", l_conn_reply},     {"state", l_conn_state},
    {"close", l_conn_close},     {"inflight", l_conn_inflight},
    {"address", l_conn_address}, {"serve", l_conn_serve},
    {"serial", l_conn_serial},   {NULL, NULL},
};

static const luaL_Reg listener_methods[] = {
    {"close", l_listener_close},
    {"address", l_listener_address},
    {NULL, NULL},
};

static const luaL_Reg core_funcs[] = {
    {"run", l_run},
    {"connect", l_connect},
    {"listen", l_listen},
    {"sleep", l_sleep},
    {"cancel", l_cancel},
    {"signals", l_signals},
    {"now", l_now},
    {"bin", l_bin},
    {"is_bin", l_is_bin},
    {"map", l_map},
    {"pack", l_pack},
    {"unpack", l_unpack},
    {"close_peers", l_close_peers},
    {"peers", l_peers},
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
    x->lp.on_deadline = on_deadline;
    for (int i = 0; i < 2; i++) {
        uv_signal_init(&x->uv, &x->sig[i]);
        x->sig[i].data = x;
    }
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
    new_class(L, CONN_MT, conn_methods, l_conn_gc, l_conn_tostring);
    new_class(L, LISTEN_MT, listener_methods, l_listener_gc, NULL);
    ctx_open(L); /* on the stack: the upvalue of every function */
    lua_createtable(L, 0, 24);
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

/* lua_ghost_listen.c -- ghost.core's listeners (core.listen) and their peers. */
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

static void listener_closed(uv_handle_t *h)
{
    listener *l = h->data;
    gg_tls_ctx_unref(l->tls);
    free(l);
}

void gg_ghost_listener_close(listener *l)
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
/* ---- listeners -------------------------------------------------------------------------- */

/* A peer that opened a TCP connection and never finished its handshake would hold its socket
 * and TLS state for ever: closed once its context's handshake_timeout has passed (checked
 * once a second, so up to a second late). */
void gg_ghost_hs_sweep(uv_timer_t *t)
{
    ctx *x = t->data;
    uint64_t now = uv_now(&x->uv);
    for (conn *c = x->conns; c; c = c->next) {
        if (!c->is_peer || !c->st.tls || !gg_tls_handshake_expired(c->st.tls, now)) continue;
        gg_ghost_set_state(c, ST_CLOSED, "TLS handshake timeout");
        gg_stream_close(&c->st);
    }
}

typedef struct accept_args {
    conn *c;
    listener *l;
} accept_args;

/* In a protected call: the userdata of a new peer and the references it holds. */
static int register_peer(lua_State *L)
{
    accept_args *a = lua_touserdata(L, 1);
    gg_ghost_new_box(L, a->c);
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
    conn *c = gg_ghost_conn_new(x);
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
    gg_stream_init(&c->st, &x->lp, &gg_ghost_conn_ops, GG_ST_READY);
    if (uv_accept(server, &c->st.io.stream) || (l->tls && gg_tls_attach(&c->st, l->tls, NULL))) {
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


/* core.listen(addr, owner, max_message?, max_values?, tls?) -> listener, bound address. tls:
 * the options table of a tls:// address (cert, key, ca, verify_client...: tls_config.h). */
int gg_ghost_l_listen(lua_State *L)
{
    ctx *x = gg_ghost_ctx_get(L);
    lua_settop(L, 5);
    const char *addr = luaL_checkstring(L, 1);
    luaL_checkany(L, 2);
    lua_Number maxm = luaL_optnumber(L, 3, (lua_Number)SEND_MAX_MESSAGE);
    lua_Number maxv = luaL_optnumber(L, 4, READ_MAX_VALUES);
    gg_addr a;
    char err[300];
    if (gg_addr_parse(addr, &a, err, sizeof err)) return gg_ghost_fail3(L, "listen", "%s", err);
    if (a.kind == GG_ADDR_UNIX && gg_addr_clear_stale(a.path, err, sizeof err))
        return gg_ghost_fail3(L, "listen", "%s", err);
    gg_tls_ctx *tls = NULL;
    if (a.tls && !lua_istable(L, 5))
        return gg_ghost_fail3(L, "listen", "%s needs TLS options (cert, key)", a.text);
    if (a.tls && !(tls = gg_tls_ctx_from_lua(L, 5, GG_TLS_SERVER, err, sizeof err)))
        return gg_ghost_fail3(L, "listen", "%s", err);
    listener *l = calloc(1, sizeof *l);
    if (!l) {
        gg_tls_ctx_unref(tls);
        return gg_ghost_fail3(L, "listen", "out of memory");
    }
    l->tls = tls;
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
        return gg_ghost_fail3(L, "listen", "cannot listen on %s: %s", a.text, uv_strerror(rc));
    }
    if (a.kind == GG_ADDR_TCP) {
        struct sockaddr_storage ss;
        int len = sizeof ss;
        uv_tcp_getsockname(&l->io.tcp, (struct sockaddr *)&ss, &len);
        gg_addr_format_sa((struct sockaddr *)&ss, l->addr, sizeof l->addr);
        if (tls) memcpy(l->addr, "tls", 3);
    }
    if (tls && !uv_is_active((uv_handle_t *)&x->hs_sweep))
        uv_timer_start(&x->hs_sweep, gg_ghost_hs_sweep, 1000, 1000);
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

int gg_ghost_l_listener_close(lua_State *L)
{
    listener_box *b = luaL_checkudata(L, 1, LISTEN_MT);
    listener *l = b->l;
    if (!l) return 0;
    luaL_unref(L, LUA_REGISTRYINDEX, l->owner_ref);
    l->owner_ref = LUA_NOREF;
    gg_ghost_listener_close(l);
    return 0;
}

int gg_ghost_l_listener_address(lua_State *L)
{
    listener_box *b = luaL_checkudata(L, 1, LISTEN_MT);
    if (b->l)
        lua_pushstring(L, b->l->addr);
    else
        lua_pushnil(L);
    return 1;
}

int gg_ghost_l_listener_gc(lua_State *L)
{
    listener_box *b = lua_touserdata(L, 1);
    if (b->l) {
        listener *l = b->l;
        /* owner_ref keeps the Lua server object; it is released with the listener. */
        luaL_unref(L, LUA_REGISTRYINDEX, l->owner_ref);
        gg_ghost_listener_close(l);
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
        gg_ghost_set_state(c, ST_CLOSED, "closed by the server");
        if (mode == 2)
            gg_stream_close(&c->st);
        else
            gg_stream_close_after_flush(&c->st);
    }
    return n;
}

/* core.close_peers(owner, force): close the connections accepted for owner, after their
 * output (at once with force). Returns how many are still open (closing). */
int gg_ghost_l_close_peers(lua_State *L)
{
    ctx *x = gg_ghost_ctx_get(L);
    luaL_checkany(L, 1);
    lua_pushnumber(L, peers_of(L, x, lua_toboolean(L, 2) ? 2 : 1));
    return 1;
}

/* core.peers(owner): how many connections accepted for owner are not closed yet. */
int gg_ghost_l_peers(lua_State *L)
{
    ctx *x = gg_ghost_ctx_get(L);
    luaL_checkany(L, 1);
    lua_pushnumber(L, peers_of(L, x, 0));
    return 1;
}

/* lua_ghost_send.c -- ghost.core's connection methods: writing requests, notifications and
 * replies, and the connection object's state, address and lifetime. */
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

/* Push nil, kind, message; returns 3 (for `return gg_ghost_fail3(...)`). */
int gg_ghost_fail3(lua_State *L, const char *kind, const char *fmt, ...)
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
    return gg_ghost_fail3(L, "too_large", "message of %zu bytes exceeds max_message (%zu bytes)",
                          n, c->max_message);
}

/* An idle client connection may have been closed by the peer (idle timeout, restart) without
 * the loop having run since: look before sending, so that the call goes on a new connection
 * instead of failing with connection_lost. One recv(2) per call, only when nothing is in
 * flight (calls that wait for each other); pipelined calls skip it. */
static int peer_closed(conn *c)
{
    uv_os_fd_t fd;
    if (c->calls.n || c->state != ST_OPEN || uv_fileno(&c->st.io.handle, &fd)) return 0;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        char msg[300];
        snprintf(msg, sizeof msg, "connection to %s lost: %s", c->addr,
                 n == 0 ? "closed by the peer" : strerror(errno));
        gg_ghost_conn_close(c, FT_LOST, msg);
        return 1;
    }
    return 0;
}

/* conn:request(waiter, timeout_ms, method, ...) */
int gg_ghost_l_conn_request(lua_State *L)
{
    conn_box *b = check_conn(L);
    if (lua_isnoneornil(L, 2)) return luaL_argerror(L, 2, "waiter expected");
    lua_Number tmo = luaL_optnumber(L, 3, 0);
    size_t mlen;
    const char *method = luaL_checklstring(L, 4, &mlen);
    conn *c = b->c;
    if (!c || c->state == ST_CLOSED || (c->st.flags & GG_ST_CLOSING) || peer_closed(c))
        return gg_ghost_fail3(L, "closed", "%s", b->reason[0] ? b->reason : "connection closed");
    if (mlen == 0 || mlen > GG_METHOD_MAX)
        return gg_ghost_fail3(L, "encode", "method name must be 1 to %d bytes", GG_METHOD_MAX);
    ctx *x = c->x;
    gg_call *call = gg_call_new(&x->lp.calls);
    if (!call) return gg_ghost_fail3(L, "overloaded", "too many calls in flight (%d)", MAX_CALLS);
    gg_stream *s = &c->st;
    size_t start = s->out.len;
    char *p = gg_stream_reserve(s, 16 + mlen);
    if (!p) {
        gg_call_release(&x->lp.calls, call);
        return gg_ghost_fail3(L, "encode", "out of memory");
    }
    s->out.len += gg_put_request_hdr(p, call->id, method, (uint32_t)mlen);
    msgpack_packer pk;
    msgpack_packer_init(&pk, s, pk_write);
    char err[256];
    if (pack_args(L, &pk, 5, lua_gettop(L), c->max_depth - 2, err, sizeof err)) {
        s->out.len = start;
        gg_call_release(&x->lp.calls, call);
        return gg_ghost_fail3(L, "encode", "%s", err);
    }
    if (s->out.len - start > c->max_message) {
        gg_call_release(&x->lp.calls, call);
        return too_large(L, c, start);
    }
    gg_stream_commit(s, 0);
    lua_pushvalue(L, 2);
    call->waiter_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    call->lconn = c;
    call->lkind = GG_LCALL_REQUEST;
    if (c->calls.n == 0 && !c->is_peer) uv_ref(&s->io.handle);
    gg_call_link_carrier(&c->calls, call);
    if (tmo > 0) {
        uv_update_time(&x->uv);
        if (tmo > 4e9) tmo = 4e9;
        call->timeout_ms = (uint32_t)tmo; /* for the deadline's message */
        gg_call_set_deadline(&x->lp.calls, call, uv_now(&x->uv) + (uint64_t)tmo);
    }
    lua_pushnumber(L, call->id);
    return 1;
}

/* conn:notify(method, ...) */
int gg_ghost_l_conn_notify(lua_State *L)
{
    conn_box *b = check_conn(L);
    size_t mlen;
    const char *method = luaL_checklstring(L, 2, &mlen);
    conn *c = b->c;
    if (!c || c->state == ST_CLOSED)
        return gg_ghost_fail3(L, "closed", "%s", b->reason[0] ? b->reason : "connection closed");
    if (mlen == 0 || mlen > GG_METHOD_MAX)
        return gg_ghost_fail3(L, "encode", "method name must be 1 to %d bytes", GG_METHOD_MAX);
    gg_stream *s = &c->st;
    size_t start = s->out.len;
    char *p = gg_stream_reserve(s, 8 + mlen);
    if (!p) return gg_ghost_fail3(L, "encode", "out of memory");
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
        return gg_ghost_fail3(L, "encode", "%s", err);
    }
    if (s->out.len - start > c->max_message) return too_large(L, c, start);
    gg_stream_commit(s, 0);
    lua_pushboolean(L, 1);
    return 1;
}

/* peer:reply(msgid, error, result) */
int gg_ghost_l_conn_reply(lua_State *L)
{
    conn_box *b = check_conn(L);
    lua_Number id = luaL_checknumber(L, 2);
    lua_settop(L, 4);
    conn *c = b->c;
    if (!c || c->state == ST_CLOSED || (c->st.flags & GG_ST_CLOSING))
        return gg_ghost_fail3(L, "closed", "the client has gone");
    gg_stream *s = &c->st;
    size_t start = s->out.len;
    char *p = gg_stream_reserve(s, GG_RESPONSE_HDR_MAX);
    if (!p) return gg_ghost_fail3(L, "encode", "out of memory");
    s->out.len += gg_put_response_hdr(p, (uint32_t)id);
    msgpack_packer pk;
    msgpack_packer_init(&pk, s, pk_write);
    char err[256];
    for (int i = 3; i <= 4; i++) {
        if (gg_lua_pack(L, i, &pk, c->max_depth - 1, err, sizeof err)) {
            s->out.len = start;
            return gg_ghost_fail3(L, "encode", "%s: %s", i == 3 ? "error" : "result", err);
        }
    }
    if (s->out.len - start > c->max_message) return too_large(L, c, start);
    gg_stream_commit(s, 0);
    lua_pushboolean(L, 1);
    return 1;
}

int gg_ghost_l_conn_state(lua_State *L)
{
    conn_box *b = check_conn(L);
    lua_pushstring(L, gg_ghost_state_names[b->c ? b->c->state : ST_CLOSED]);
    if (b->reason[0])
        lua_pushstring(L, b->reason);
    else
        lua_pushnil(L);
    return 2;
}

int gg_ghost_l_conn_close(lua_State *L)
{
    conn_box *b = check_conn(L);
    conn *c = b->c;
    if (!c || c->state == ST_CLOSED) return 0;
    if (c->is_peer) {
        gg_ghost_set_state(c, ST_CLOSED, "closed by the server");
        gg_stream_close_after_flush(&c->st);
        return 0;
    }
    gg_ghost_conn_close(c, FT_CLOSED, luaL_optstring(L, 2, "connection closed by the client"));
    return 0;
}

int gg_ghost_l_conn_inflight(lua_State *L)
{
    conn_box *b = check_conn(L);
    lua_pushnumber(L, b->c ? b->c->calls.n : 0);
    return 1;
}

/* conn:serve(owner): requests arriving on this client connection go to owner.on_request (as
 * a peer's do), and owner.on_closed runs when it closes. Remote objects call this when the
 * first function or object is passed: until then requests are answered not_supported. The
 * connection is then held until it closes (the peer may call back any time). */
int gg_ghost_l_conn_serve(lua_State *L)
{
    conn_box *b = check_conn(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    conn *c = b->c;
    if (!c || c->state == ST_CLOSED) return gg_ghost_fail3(L, "closed", "connection closed");
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
int gg_ghost_l_conn_serial(lua_State *L)
{
    conn_box *b = check_conn(L);
    if (b->c)
        lua_pushnumber(L, b->c->serial);
    else
        lua_pushnil(L);
    return 1;
}

int gg_ghost_l_conn_address(lua_State *L)
{
    conn_box *b = check_conn(L);
    if (b->c)
        lua_pushstring(L, b->c->addr);
    else
        lua_pushnil(L);
    return 1;
}

int gg_ghost_l_conn_gc(lua_State *L)
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
        gg_ghost_conn_close(c, FT_CLOSED, "connection object collected");
    return 0;
}

int gg_ghost_l_conn_tostring(lua_State *L)
{
    conn_box *b = check_conn(L);
    lua_pushfstring(L, "ghost.core.conn (%s, %s)", b->c ? b->c->addr : "gone",
                    gg_ghost_state_names[b->c ? b->c->state : ST_CLOSED]);
    return 1;
}

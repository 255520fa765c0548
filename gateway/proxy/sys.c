/* sys.c -- the gateway's `sys.*` methods; see sys.h. Not a hot path: sys.describe asks Lua
 * (ghost.describe, through gg_policy_describe) what the caller may call and packs it. */
#include "proxy/sys.h"
#include "core/errors.h"
#include "lua/lua_bridge.h"
#include "lua/lua_msgpack.h"
#include "proxy/server.h"

#include <lauxlib.h>
#include <string.h>

static int out_write(void *data, const char *buf, size_t len)
{
    gg_stream *s = data;
    return gg_buf_append(&s->out, &s->loop->bufs, buf, len);
}

/* Queue [1, msgid, nil, <value on top of L>]; pops the value. */
static void reply_value(gg_client *c, uint32_t msgid, lua_State *L)
{
    gg_stream *s = &c->st;
    size_t start = s->out.len;
    char *p = gg_stream_reserve(s, GG_RESPONSE_HDR_MAX + 1);
    if (!p) goto oom;
    size_t n = gg_put_response_hdr(p, msgid);
    p[n++] = (char)0xc0; /* error: nil */
    s->out.len += n;
    msgpack_packer pk;
    msgpack_packer_init(&pk, s, out_write);
    char err[256];
    if (gg_lua_pack(L, -1, &pk, GG_DEPTH_CAP, err, sizeof err)) {
        s->out.len = start;
        lua_pop(L, 1);
        gg_reply_error(s, msgid, GG_ERR_INTERNAL, "sys.describe: %s", err);
        return;
    }
    lua_pop(L, 1);
    gg_stream_commit(s, 0);
    return;
oom:
    lua_pop(L, 1);
    gg_reply_error(s, msgid, GG_ERR_INTERNAL, "out of memory");
}

static void sys_describe(gg_server *srv, gg_client *c, uint32_t msgid)
{
    lua_State *L = srv->pol.L;
    char err[512];
    int top = lua_gettop(L);
    if (gg_policy_describe(srv, c, err, sizeof err)) {
        lua_settop(L, top);
        gg_log(&srv->lp.log, GG_LOG_ERROR, "sys_describe_failed", "reason=\"%s\"", err);
        gg_reply_error(&c->st, msgid, GG_ERR_INTERNAL,
                       "sys.describe failed (see the gateway's log)");
        return;
    }
    reply_value(c, msgid, L);
    lua_settop(L, top);
}

int gg_sys_request(gg_server *srv, gg_client *c, const char *msg, const gg_msg *m)
{
    const char *name = msg + m->method_off + 4;
    uint32_t len = m->method_len - 4;
    if (len == 8 && memcmp(name, "describe", 8) == 0) {
        /* The method names it lists are not for anonymous callers of a gateway with auth. */
        if (srv->pol.auth_ref != LUA_NOREF && !gg_policy_client_authenticated(srv, c)) {
            gg_reply_error(&c->st, m->msgid, GG_ERR_UNAUTHENTICATED,
                           "sys.describe requires authentication: call ghost.auth(token) first");
            return 0;
        }
        sys_describe(srv, c, m->msgid);
    } else if (len == 4 && memcmp(name, "ping", 4) == 0) {
        char *p = gg_stream_reserve(&c->st, GG_RESPONSE_HDR_MAX + 6);
        if (!p) return 0;
        size_t n = gg_put_response_hdr(p, m->msgid);
        memcpy(p + n, "\xc0\xa4pong", 6);
        gg_stream_commit(&c->st, n + 6);
    } else {
        gg_reply_error(&c->st, m->msgid, GG_ERR_NO_SUCH_SERVICE,
                       "no such method 'sys.%.*s' (sys has: describe, ping)",
                       (int)(len > 64 ? 64 : len), name);
    }
    return 0;
}

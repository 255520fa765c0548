/* adapter_call.c -- upstream.call from an adapter: the task is a gg_client of the gateway (not
 * attached to a socket), so the target's policies apply; its answers become the outcome. */
#include "upstreams/adapter_int.h"

/* --- the task's client (upstream.call answers) ------------------------------------------- */

static void tc_store(ad_task *t, const char *prefix, const char *body, size_t len)
{
    if (t->waiting != W_CALL) return;
    size_t pl = prefix ? 1 : 0;
    gg_ad_res_clear(t);
    t->res_data = malloc(pl + len + 1);
    if (!t->res_data) {
        gg_ad_res_error(t, GG_AD_R_GATEWAY, GG_ERR_OVERLOADED, "overloaded", "out of memory");
    } else {
        if (pl) t->res_data[0] = *prefix;
        memcpy(t->res_data + pl, body, len);
        t->res_len = pl + len;
    }
    gg_ad_op_done(t);
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
    gg_ad_res_error(t, GG_AD_R_GATEWAY, code, gg_error_type(code), "%s", message);
    t->res_retry = retry_after;
    gg_ad_op_done(t);
}

const gg_client_proto gg_ad_task_proto = {
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
const gg_stream_ops gg_ad_no_stream_ops = {
    .on_message = no_message,
    .on_frame_error = no_frame_error,
    .on_eof = no_eof,
    .on_closed = no_closed,
};

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
    if (t->res_kind != GG_AD_R_OK) {
        lua_pushinteger(co, t->res_kind);
        lua_pushinteger(co, t->res_code);
        lua_pushstring(co, t->res_type ? t->res_type : "internal");
        lua_pushstring(co, t->res_msg ? t->res_msg : "");
        if (t->res_retry >= 0)
            lua_pushnumber(co, t->res_retry);
        else
            lua_pushnil(co);
        gg_ad_res_clear(t);
        return 5;
    }
    int n = 2;
    unsigned depth = gg_ad_limits(ad)->max_depth;
    if (t->op == GG_AD_OP_CALL) {
        size_t used = 0;
        lua_pushinteger(co, GG_AD_R_OK);
        if (!gg_lua_within(t->res_data, t->res_len, gg_ad_limits(ad)->max_decode_values)) {
            snprintf(err, sizeof err, "more than %u values (limits.max_decode_values)",
                     gg_ad_limits(ad)->max_decode_values);
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
            lua_pushinteger(co, GG_AD_R_REMOTE);
            lua_replace(co, 1);
        }
    } else {
        lua_pushinteger(co, GG_AD_R_OK);
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
    gg_ad_res_clear(t);
    return n;
bad:
    lua_settop(co, 0);
    gg_ad_res_error(t, GG_AD_R_GATEWAY, GG_ERR_UPSTREAM_UNAVAILABLE, "upstream_unavailable",
              "the answer cannot be decoded: %s", err);
    return push_outcome(t);
}

/* What the task is resumed with: only t, as a light userdata (nothing to allocate on a
 * suspended coroutine, which cannot be entered in protected mode). ghost.adapter passes it to
 * take() at once, which pushes the outcome from inside the resume. Returns 1. */
int gg_ad_push_results(ad_task *t)
{
    lua_settop(t->co, 0);
    lua_pushlightuserdata(t->co, t);
    return 1;
}

/* take(t) in ghost.adapter: the outcome of the operation t waited for. */
int gg_ad_l_take(lua_State *L)
{
    ad_task *t = lua_touserdata(L, 1);
    if (!t || t->co != L) return luaL_error(L, "take: not the running task's operation");
    return push_outcome(t);
}

/* A task whose call has ended (deadline) starts nothing more: no one waits for it, and what
 * it would hold (connections, calls) is better spent on live calls. */
int gg_ad_past_deadline(ad_task *t)
{
    if (uv_now(t->ad->srv->lp.uv) < t->deadline) return 0;
    gg_ad_res_error(t, GG_AD_R_GATEWAY, GG_ERR_DEADLINE_EXCEEDED, "deadline_exceeded",
              "the call's deadline has passed");
    return 1;
}

/* Start upstream.call(service, method, n, args...) yielded on co. Returns the values pushed
 * when the outcome is known now, or -1 when the task waits. */
int gg_ad_start_call(ad_task *t)
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
        gg_ad_res_error(t, GG_AD_R_LOCAL, GG_ERR_BAD_REQUEST, "bad_request",
                        "upstream.call: bad arguments");
        return gg_ad_push_results(t);
    }
    if (gg_ad_past_deadline(t)) return gg_ad_push_results(t);
    gg_service *target = gg_service_find(srv, sname, slen);
    if (!target) {
        gg_ad_res_error(t, GG_AD_R_GATEWAY, GG_ERR_NO_SUCH_SERVICE, "no_such_service",
                  "no such service '%.*s'", (int)(slen > 64 ? 64 : slen), sname);
        return gg_ad_push_results(t);
    }
    char full[MAX_FULL_METHOD + 1];
    if (slen + 1 + mlen > MAX_FULL_METHOD || mlen == 0) {
        gg_ad_res_error(t, GG_AD_R_LOCAL, GG_ERR_BAD_REQUEST, "bad_request",
                        "method name empty or too long");
        return gg_ad_push_results(t);
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
        if (gg_lua_pack(co, 5 + i, &pk, (int)gg_ad_limits(ad)->max_depth, err, sizeof err)) {
            msgpack_sbuffer_destroy(&sb);
            gg_ad_res_error(t, GG_AD_R_LOCAL, GG_ERR_BAD_REQUEST, "bad_request",
                      "argument %d cannot be sent: %s", i + 1, err);
            return gg_ad_push_results(t);
        }
    }
    lua_settop(co, 0);
    if (sb.size > gg_ad_limits(ad)->max_message_size) {
        msgpack_sbuffer_destroy(&sb);
        gg_ad_res_error(t, GG_AD_R_LOCAL, GG_ERR_TOO_LARGE, "too_large",
                  "the arguments exceed max_message_size");
        return gg_ad_push_results(t);
    }
    t->op = GG_AD_OP_CALL;
    t->waiting = W_CALL;
    t->done = 0;
    t->sync = 1;
    gg_method name = {full, (uint32_t)(slen + 1 + mlen), (uint32_t)slen}; /* built: no search */
    gg_dispatch_request(srv, &t->client, target, 1, &name, sb.data, sb.size);
    t->sync = 0;
    msgpack_sbuffer_destroy(&sb);
    if (t->done) {
        t->done = 0;
        return gg_ad_push_results(t);
    }
    return -1;
}

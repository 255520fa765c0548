/* lua_msgpack.c -- decode MessagePack into Lua values; see lua_msgpack.h. */
#include "lua_msgpack.h"
#include "codec.h"

#include <lauxlib.h>
#include <msgpack.h>
#include <stdio.h>

static void push_object(lua_State *L, const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: lua_pushnil(L); break;
    case MSGPACK_OBJECT_BOOLEAN: lua_pushboolean(L, o->via.boolean); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: lua_pushnumber(L, (lua_Number)o->via.u64); break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: lua_pushnumber(L, (lua_Number)o->via.i64); break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: lua_pushnumber(L, o->via.f64); break;
    case MSGPACK_OBJECT_STR: lua_pushlstring(L, o->via.str.ptr, o->via.str.size); break;
    case MSGPACK_OBJECT_BIN: lua_pushlstring(L, o->via.bin.ptr, o->via.bin.size); break;
    case MSGPACK_OBJECT_EXT: lua_pushlstring(L, o->via.ext.ptr, o->via.ext.size); break;
    case MSGPACK_OBJECT_ARRAY:
        lua_createtable(L, (int)o->via.array.size, 0);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            push_object(L, &o->via.array.ptr[i]);
            lua_rawseti(L, -2, (int)i + 1);
        }
        break;
    case MSGPACK_OBJECT_MAP:
        lua_createtable(L, 0, (int)o->via.map.size);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            push_object(L, &o->via.map.ptr[i].key);
            if (lua_isnil(L, -1) || (lua_isnumber(L, -1) && lua_tonumber(L, -1) != lua_tonumber(L, -1))) {
                lua_pop(L, 1); /* nil and NaN cannot be keys */
                continue;
            }
            push_object(L, &o->via.map.ptr[i].val);
            lua_rawset(L, -3);
        }
        break;
    default: lua_pushnil(L); break;
    }
}

int gg_lua_push_msgpack(lua_State *L, const char *data, size_t len, unsigned max_depth, char *err,
                        size_t errlen)
{
    /* msgpack-c sizes its allocations from the counts a frame claims (msgpack-c #1013): only
     * bytes the bounded scanner accepted as one whole value reach it. */
    gg_scan_state st;
    gg_scan_limits lim = {.max_message = len, .max_depth = max_depth};
    gg_scan_reset(&st);
    int rc = gg_scan(&st, data, len, &lim);
    if (rc != GG_SCAN_DONE) {
        snprintf(err, errlen, "%s", rc == GG_ETOODEEP ? "value nested too deeply"
                                    : rc == GG_EMALFORMED ? "malformed MessagePack"
                                                          : "truncated MessagePack");
        return -1;
    }
    if (!lua_checkstack(L, (int)max_depth * 3 + 8)) {
        snprintf(err, errlen, "Lua stack exhausted");
        return -1;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    if (msgpack_unpack_next(&u, data, st.msg.size, &off) != MSGPACK_UNPACK_SUCCESS) {
        msgpack_unpacked_destroy(&u);
        snprintf(err, errlen, "malformed MessagePack");
        return -1;
    }
    push_object(L, &u.data);
    msgpack_unpacked_destroy(&u);
    return 0;
}

/* A table is an array when its keys are exactly 1..n. */
static int table_is_array(lua_State *L, int idx, size_t *n)
{
    size_t len = lua_objlen(L, idx), count = 0;
    for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
        count++;
        if (lua_type(L, -2) != LUA_TNUMBER) {
            lua_pop(L, 2);
            return 0;
        }
        lua_Number k = lua_tonumber(L, -2);
        if (k < 1 || k > (lua_Number)len || k != (lua_Number)(size_t)k) {
            lua_pop(L, 2);
            return 0;
        }
    }
    *n = len;
    return count == len;
}

static int pack_value(lua_State *L, int idx, msgpack_packer *pk, int depth, char *err, size_t errlen)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return msgpack_pack_nil(pk);
    case LUA_TBOOLEAN: return lua_toboolean(L, idx) ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case LUA_TNUMBER: {
        lua_Number d = lua_tonumber(L, idx);
        /* range first: converting an out-of-range double (or NaN) to an integer is undefined */
        if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 && d == (lua_Number)(int64_t)d)
            return msgpack_pack_int64(pk, (int64_t)d);
        if (d >= 0 && d < 18446744073709551616.0 && d == (lua_Number)(uint64_t)d)
            return msgpack_pack_uint64(pk, (uint64_t)d);
        return msgpack_pack_double(pk, d);
    }
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return msgpack_pack_str_with_body(pk, s, n);
    }
    case LUA_TTABLE: break;
    default:
        snprintf(err, errlen, "cannot encode a %s", luaL_typename(L, idx));
        return -1;
    }
    if (depth <= 0) {
        snprintf(err, errlen, "value nested too deeply (or a cycle)");
        return -1;
    }
    if (!lua_checkstack(L, 4)) {
        snprintf(err, errlen, "Lua stack exhausted");
        return -1;
    }
    if (idx < 0) idx = lua_gettop(L) + idx + 1;
    size_t n;
    if (table_is_array(L, idx, &n)) {
        if (msgpack_pack_array(pk, n)) return -1;
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, (int)i);
            int rc = pack_value(L, -1, pk, depth - 1, err, errlen);
            lua_pop(L, 1);
            if (rc) return -1;
        }
        return 0;
    }
    size_t count = 0;
    for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) count++;
    if (msgpack_pack_map(pk, count)) return -1;
    for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
        if (pack_value(L, -2, pk, depth - 1, err, errlen) || pack_value(L, -1, pk, depth - 1, err, errlen)) {
            lua_pop(L, 2);
            return -1;
        }
    }
    return 0;
}

int gg_lua_pack(lua_State *L, int idx, msgpack_packer *pk, int max_depth, char *err, size_t errlen)
{
    err[0] = 0;
    int rc = pack_value(L, idx, pk, max_depth, err, errlen);
    if (rc && !err[0]) snprintf(err, errlen, "out of memory");
    return rc ? -1 : 0;
}

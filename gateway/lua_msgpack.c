/* lua_msgpack.c -- decode MessagePack into Lua values; see lua_msgpack.h. */
#include "lua_msgpack.h"
#include "codec.h"

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

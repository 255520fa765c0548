/* lua_msgpack.c -- MessagePack <-> Lua values; see lua_msgpack.h.
 *
 * Decoding walks the bytes directly (no msgpack-c object tree, no zone allocation per value),
 * but only after the bounded scanner has accepted them as one whole value: every count and
 * length below has already been checked against the bytes that are there. */
#include "lua/lua_msgpack.h"
#include "core/codec.h"
#include "core/mphead.h"

#include <ctype.h>
#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ---- ghost.bin values ------------------------------------------------------------------- */

typedef struct gg_bin {
    size_t len;
    char data[];
} gg_bin;

static int bin_tostring(lua_State *L)
{
    gg_bin *b = luaL_checkudata(L, 1, GG_LUA_BIN_MT);
    lua_pushlstring(L, b->data, b->len);
    return 1;
}

static int bin_len(lua_State *L)
{
    gg_bin *b = luaL_checkudata(L, 1, GG_LUA_BIN_MT);
    lua_pushnumber(L, (lua_Number)b->len);
    return 1;
}

static int bin_eq(lua_State *L)
{
    gg_bin *a = luaL_checkudata(L, 1, GG_LUA_BIN_MT);
    gg_bin *b = luaL_checkudata(L, 2, GG_LUA_BIN_MT);
    lua_pushboolean(L, a->len == b->len && memcmp(a->data, b->data, a->len) == 0);
    return 1;
}

/* b .. "x" and "x" .. b concatenate the bytes. */
static int bin_concat(lua_State *L)
{
    for (int i = 1; i <= 2; i++) {
        size_t n;
        const char *p = gg_lua_tobin(L, i, &n);
        if (p) {
            lua_pushlstring(L, p, n);
            lua_replace(L, i);
        }
    }
    lua_concat(L, 2);
    return 1;
}

static void push_bin_mt(lua_State *L)
{
    if (luaL_newmetatable(L, GG_LUA_BIN_MT)) {
        lua_pushcfunction(L, bin_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushcfunction(L, bin_len);
        lua_setfield(L, -2, "__len");
        lua_pushcfunction(L, bin_eq);
        lua_setfield(L, -2, "__eq");
        lua_pushcfunction(L, bin_concat);
        lua_setfield(L, -2, "__concat");
        lua_pushliteral(L, GG_LUA_BIN_MT);
        lua_setfield(L, -2, "__name");
        lua_pushliteral(L, GG_LUA_BIN_MT);
        lua_setfield(L, -2, "__metatable"); /* getmetatable(b) names it; setmetatable refused */
    }
}

void gg_lua_push_map_mt(lua_State *L)
{
    if (luaL_newmetatable(L, GG_LUA_MAP_MT)) {
        lua_pushliteral(L, GG_LUA_MAP_MT);
        lua_setfield(L, -2, "__name");
    }
}

void gg_lua_push_bin(lua_State *L, const char *data, size_t len)
{
    gg_bin *b = lua_newuserdata(L, sizeof *b + len);
    b->len = len;
    if (len) memcpy(b->data, data, len);
    push_bin_mt(L);
    lua_setmetatable(L, -2);
}

const char *gg_lua_tobin(lua_State *L, int idx, size_t *len)
{
    if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return NULL;
    luaL_getmetatable(L, GG_LUA_BIN_MT);
    int is = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (!is) return NULL;
    gg_bin *b = lua_touserdata(L, idx);
    *len = b->len;
    return b->data;
}

void gg_lua_set_origin(lua_State *L, uint32_t origin)
{
    lua_pushnumber(L, origin);
    lua_setfield(L, LUA_REGISTRYINDEX, GG_LUA_ORIGIN);
}

/* ---- ghost.null ------------------------------------------------------------------------- */

void gg_lua_push_null(lua_State *L)
{
    lua_pushlightuserdata(L, NULL);
}

/* ---- decoding --------------------------------------------------------------------------- */

typedef struct dec {
    const uint8_t *p, *end;
    unsigned flags;
    unsigned depth_left;
    unsigned null_below; /* depth_left below this: nil is ghost.null (GG_LUA_MARK) */
} dec;

/* Consume n bytes; NULL when fewer are left (cannot happen after a successful scan). */
static inline const uint8_t *take(dec *d, size_t n)
{
    if ((size_t)(d->end - d->p) < n) return NULL;
    const uint8_t *q = d->p;
    d->p += n;
    return q;
}

static int dec_value(lua_State *L, dec *d);

static int dec_bytes(lua_State *L, dec *d, size_t n, int bin)
{
    const uint8_t *q = take(d, n);
    if (!q) return -1;
    if (bin && (d->flags & GG_LUA_MARK))
        gg_lua_push_bin(L, (const char *)q, n);
    else
        lua_pushlstring(L, (const char *)q, n);
    return 0;
}

static int dec_array(lua_State *L, dec *d, uint32_t n)
{
    if (d->depth_left == 0 || (size_t)(d->end - d->p) < n) return -1;
    d->depth_left--;
    lua_createtable(L, (int)n, 0);
    for (uint32_t i = 0; i < n; i++) {
        if (dec_value(L, d)) return -1;
        lua_rawseti(L, -2, (int)i + 1);
    }
    d->depth_left++;
    return 0;
}

static int dec_map(lua_State *L, dec *d, uint32_t n)
{
    if (d->depth_left == 0 || (size_t)(d->end - d->p) / 2 < n) return -1;
    d->depth_left--;
    lua_createtable(L, 0, (int)n);
    for (uint32_t i = 0; i < n; i++) {
        /* Keys are decoded unmarked: a bin key becomes a string, which a table can look up (a
         * ghost.bin key would be a new object each time, never found again). */
        unsigned flags = d->flags;
        d->flags &= ~GG_LUA_MARK;
        int rc = dec_value(L, d);
        d->flags = flags;
        if (rc) return -1;
        int skip = lua_isnil(L, -1) ||
                   (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1));
        if (dec_value(L, d)) return -1;
        if (skip)
            lua_pop(L, 2); /* nil and NaN cannot be keys */
        else
            lua_rawset(L, -3);
    }
    if (n == 0 && (d->flags & GG_LUA_MARK)) {
        gg_lua_push_map_mt(L);
        lua_setmetatable(L, -2);
    }
    d->depth_left++;
    return 0;
}

/* An ext value goes to the import hook of the remote-objects layer when one is installed
 * (looked up here, not per message: ext values are rare and plain calls pay nothing). The
 * hook gets (type, data, origin) and returns the value; without a hook, the data string. */
static int dec_ext(lua_State *L, dec *d, size_t n)
{
    const uint8_t *t = take(d, 1);
    if (!t) return -1;
    lua_getfield(L, LUA_REGISTRYINDEX, GG_LUA_OBJ_HOOKS);
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "import");
        if (lua_isfunction(L, -1)) {
            const uint8_t *q = take(d, n);
            if (!q) {
                lua_pop(L, 2);
                return -1;
            }
            lua_pushinteger(L, (int8_t)t[0]);
            lua_pushlstring(L, (const char *)q, n);
            lua_getfield(L, LUA_REGISTRYINDEX, GG_LUA_ORIGIN);
            if (lua_pcall(L, 3, 1, 0)) {
                lua_pop(L, 2);
                return -1;
            }
            lua_remove(L, -2);
            return 0;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return dec_bytes(L, d, n, 0);
}

static int dec_value(lua_State *L, dec *d)
{
    const uint8_t *q = take(d, 1);
    if (!q) return -1;
    uint8_t c = *q;
    if (c <= 0x7f) {
        lua_pushnumber(L, c);
        return 0;
    }
    if (c >= 0xe0) {
        lua_pushnumber(L, (int8_t)c);
        return 0;
    }
    if ((c & 0xf0) == 0x80) return dec_map(L, d, c & 0x0f);
    if ((c & 0xf0) == 0x90) return dec_array(L, d, c & 0x0f);
    if ((c & 0xe0) == 0xa0) return dec_bytes(L, d, c & 0x1f, 0);
    switch (c) {
    case 0xc0:
        if ((d->flags & GG_LUA_MARK) && d->depth_left < d->null_below)
            gg_lua_push_null(L); /* keeps its place in an array, its key in a map */
        else
            lua_pushnil(L);
        return 0;
    case 0xc2:
        lua_pushboolean(L, 0);
        return 0;
    case 0xc3:
        lua_pushboolean(L, 1);
        return 0;
    case 0xc4:
        return (q = take(d, 1)) ? dec_bytes(L, d, q[0], 1) : -1;
    case 0xc5:
        return (q = take(d, 2)) ? dec_bytes(L, d, gg_be16(q), 1) : -1;
    case 0xc6:
        return (q = take(d, 4)) ? dec_bytes(L, d, gg_be32(q), 1) : -1;
    case 0xc7:
        return (q = take(d, 1)) ? dec_ext(L, d, q[0]) : -1;
    case 0xc8:
        return (q = take(d, 2)) ? dec_ext(L, d, gg_be16(q)) : -1;
    case 0xc9:
        return (q = take(d, 4)) ? dec_ext(L, d, gg_be32(q)) : -1;
    case 0xca: {
        if (!(q = take(d, 4))) return -1;
        uint32_t u = gg_be32(q);
        float f;
        memcpy(&f, &u, 4);
        lua_pushnumber(L, f);
        return 0;
    }
    case 0xcb: {
        if (!(q = take(d, 8))) return -1;
        uint64_t u = gg_be64(q);
        double f;
        memcpy(&f, &u, 8);
        lua_pushnumber(L, f);
        return 0;
    }
    case 0xcc:
        return (q = take(d, 1)) ? (lua_pushnumber(L, q[0]), 0) : -1;
    case 0xcd:
        return (q = take(d, 2)) ? (lua_pushnumber(L, gg_be16(q)), 0) : -1;
    case 0xce:
        return (q = take(d, 4)) ? (lua_pushnumber(L, gg_be32(q)), 0) : -1;
    case 0xcf:
        return (q = take(d, 8)) ? (lua_pushnumber(L, (lua_Number)gg_be64(q)), 0) : -1;
    case 0xd0:
        return (q = take(d, 1)) ? (lua_pushnumber(L, (int8_t)q[0]), 0) : -1;
    case 0xd1:
        return (q = take(d, 2)) ? (lua_pushnumber(L, (int16_t)gg_be16(q)), 0) : -1;
    case 0xd2:
        return (q = take(d, 4)) ? (lua_pushnumber(L, (int32_t)gg_be32(q)), 0) : -1;
    case 0xd3:
        return (q = take(d, 8)) ? (lua_pushnumber(L, (lua_Number)(int64_t)gg_be64(q)), 0) : -1;
    case 0xd4:
        return dec_ext(L, d, 1);
    case 0xd5:
        return dec_ext(L, d, 2);
    case 0xd6:
        return dec_ext(L, d, 4);
    case 0xd7:
        return dec_ext(L, d, 8);
    case 0xd8:
        return dec_ext(L, d, 16);
    case 0xd9:
        return (q = take(d, 1)) ? dec_bytes(L, d, q[0], 0) : -1;
    case 0xda:
        return (q = take(d, 2)) ? dec_bytes(L, d, gg_be16(q), 0) : -1;
    case 0xdb:
        return (q = take(d, 4)) ? dec_bytes(L, d, gg_be32(q), 0) : -1;
    case 0xdc:
        return (q = take(d, 2)) ? dec_array(L, d, gg_be16(q)) : -1;
    case 0xdd:
        return (q = take(d, 4)) ? dec_array(L, d, gg_be32(q)) : -1;
    case 0xde:
        return (q = take(d, 2)) ? dec_map(L, d, gg_be16(q)) : -1;
    case 0xdf:
        return (q = take(d, 4)) ? dec_map(L, d, gg_be32(q)) : -1;
    default:
        return -1; /* 0xc1 */
    }
}

int gg_lua_unpack(lua_State *L, const char *data, size_t len, unsigned max_depth, unsigned flags,
                  size_t *used, char *err, size_t errlen)
{
    /* Only bytes the bounded scanner accepted as one whole value are walked. */
    gg_scan_state st;
    gg_scan_limits lim = {.max_message = len, .max_depth = max_depth};
    gg_scan_reset(&st);
    int rc = gg_scan(&st, data, len, &lim);
    if (rc != GG_SCAN_DONE) {
        snprintf(err, errlen, "%s",
                 rc == GG_ETOODEEP     ? "value nested too deeply"
                 : rc == GG_EMALFORMED ? "malformed MessagePack"
                                       : "truncated MessagePack");
        return -1;
    }
    if (!lua_checkstack(L, (int)max_depth * 3 + 8)) {
        snprintf(err, errlen, "Lua stack exhausted");
        return -1;
    }
    int top = lua_gettop(L);
    dec d = {(const uint8_t *)data, (const uint8_t *)data + st.msg.size, flags, max_depth,
             (flags & GG_LUA_ARGS) && max_depth ? max_depth - 1 : max_depth};
    if (dec_value(L, &d)) {
        lua_settop(L, top);
        snprintf(err, errlen, "malformed MessagePack");
        return -1;
    }
    if (used) *used = st.msg.size;
    return 0;
}

int gg_lua_push_msgpack(lua_State *L, const char *data, size_t len, unsigned max_depth, char *err,
                        size_t errlen)
{
    return gg_lua_unpack(L, data, len, max_depth, 0, NULL, err, errlen);
}

int gg_lua_within(const char *data, size_t len, size_t max_values)
{
    if (len <= max_values) return 1;
    /* Every header is one value, whatever it contains: count headers to the end. */
    const uint8_t *p = (const uint8_t *)data, *end = p + len;
    size_t seen = 0;
    while (p < end) {
        if (++seen > max_values) return 0;
        uint64_t n = gg_mp_extent(p, (size_t)(end - p));
        if (n == 0) n = 1; /* 0xc1 claims nothing */
        if (n > (uint64_t)(end - p)) break;
        p += n;
    }
    return 1;
}

/* ---- encoding --------------------------------------------------------------------------- */

typedef struct enc {
    lua_State *L;
    msgpack_packer *pk;
    int max_depth;
    int depth;
    int bin_mt, map_mt;                 /* stack indices of the marker metatables */
    int marks, export;                  /* remote objects: by-reference set and hook, or 0 */
    const void *path[GG_DEPTH_CAP + 2]; /* tables being encoded, outermost first */
    char *err;
    size_t errlen;
    char where[160]; /* path to the failing value, built while unwinding */
} enc;

static int enc_value(enc *e, int idx);

static int fail(enc *e, const char *fmt, const char *what)
{
    snprintf(e->err, e->errlen, fmt, what);
    return -1;
}

static int is_ident(const char *s, size_t n)
{
    if (n == 0 || n > 40 || isdigit((unsigned char)s[0])) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_') return 0;
    return 1;
}

/* where = step .. where, truncated to fit. */
static void join_path(enc *e, const char *step)
{
    size_t sl = strlen(step), wl = strlen(e->where);
    if (sl >= sizeof e->where) sl = sizeof e->where - 1;
    if (sl + wl >= sizeof e->where) wl = sizeof e->where - 1 - sl;
    memmove(e->where + sl, e->where, wl);
    memcpy(e->where, step, sl);
    e->where[sl + wl] = 0;
}

/* Prepend one step ("[3]", ".name", "[key]") to the path of a failing value. */
static void prepend_step(enc *e, int key_idx)
{
    lua_State *L = e->L;
    char step[64];
    if (lua_type(L, key_idx) == LUA_TNUMBER) {
        snprintf(step, sizeof step, "[%.17g]", (double)lua_tonumber(L, key_idx));
    } else if (lua_type(L, key_idx) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, key_idx, &n);
        int ident = is_ident(s, n);
        if (ident)
            snprintf(step, sizeof step, ".%s", s);
        else
            snprintf(step, sizeof step, "[\"%.40s\"]", s);
    } else {
        snprintf(step, sizeof step, "[%s key]", lua_typename(L, lua_type(L, key_idx)));
    }
    join_path(e, step);
}

static void prepend_index(enc *e, size_t i)
{
    char step[32];
    snprintf(step, sizeof step, "[%zu]", i);
    join_path(e, step);
}

static int enc_number(enc *e, lua_Number d)
{
    msgpack_packer *pk = e->pk;
    if (d == floor(d) && d >= -9223372036854775808.0 && d < 18446744073709551616.0) {
        if (d < 0) return msgpack_pack_int64(pk, (int64_t)d);
        return msgpack_pack_uint64(pk, (uint64_t)d);
    }
    return msgpack_pack_double(pk, d);
}

/* A value passed by reference: the export hook returns its ext type and payload bytes. */
static int enc_ref(enc *e, int idx)
{
    lua_State *L = e->L;
    if (!e->export) return fail(e, "cannot encode a %s", lua_typename(L, lua_type(L, idx)));
    lua_pushvalue(L, e->export);
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 2, 0)) {
        const char *m = lua_tostring(L, -1);
        int rc = fail(e, "%s", m ? m : "cannot pass by reference");
        lua_pop(L, 1);
        return rc;
    }
    size_t n;
    const char *p = lua_tolstring(L, -1, &n);
    int type = (int)lua_tointeger(L, -2);
    int rc = p ? msgpack_pack_ext(e->pk, n, (int8_t)type) : -1;
    if (rc == 0) rc = msgpack_pack_ext_body(e->pk, p, n);
    lua_pop(L, 2);
    return rc ? fail(e, "%s", "out of memory") : 0;
}

static int enc_table(enc *e, int idx)
{
    lua_State *L = e->L;
    if (e->marks) {
        lua_pushvalue(L, idx);
        lua_rawget(L, e->marks);
        int byref = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (byref) return enc_ref(e, idx);
    }
    const void *self = lua_topointer(L, idx);
    for (int i = 0; i < e->depth; i++)
        if (e->path[i] == self) return fail(e, "%s", "cycle: a table contains itself");
    if (e->depth >= e->max_depth) return fail(e, "%s", "value nested too deeply");
    int force_map = 0;
    if (lua_getmetatable(L, idx)) {
        force_map = lua_rawequal(L, -1, e->map_mt);
        lua_pop(L, 1);
    }
    if (!lua_checkstack(L, 8)) return fail(e, "%s", "Lua stack exhausted");
    /* One pass to tell a sequence (keys exactly 1..n) from a map and count the pairs. */
    size_t n = lua_objlen(L, idx), count = 0;
    int seq = !force_map;
    for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
        count++;
        if (seq) {
            lua_Number k = lua_type(L, -2) == LUA_TNUMBER ? lua_tonumber(L, -2) : 0;
            if (k != floor(k) || k < 1 || k > (lua_Number)n) seq = 0;
        }
    }
    if (count > UINT32_MAX) return fail(e, "%s", "table too large");
    e->path[e->depth++] = self;
    int rc = 0;
    if (seq && count == n) {
        rc = msgpack_pack_array(e->pk, n);
        for (size_t i = 1; rc == 0 && i <= n; i++) {
            lua_rawgeti(L, idx, (int)i);
            rc = enc_value(e, lua_gettop(L));
            lua_pop(L, 1);
            if (rc) prepend_index(e, i);
        }
    } else {
        rc = msgpack_pack_map(e->pk, count);
        for (lua_pushnil(L); rc == 0 && lua_next(L, idx); lua_pop(L, 1)) {
            int top = lua_gettop(L);
            rc = enc_value(e, top - 1);
            if (rc == 0) rc = enc_value(e, top);
            if (rc) {
                prepend_step(e, top - 1);
                lua_pop(L, 2);
                break;
            }
        }
    }
    e->depth--;
    return rc;
}

static int enc_value(enc *e, int idx)
{
    lua_State *L = e->L;
    int rc;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        rc = msgpack_pack_nil(e->pk);
        break;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) != NULL) return fail(e, "cannot encode a %s", "light userdata");
        rc = msgpack_pack_nil(e->pk); /* ghost.null */
        break;
    case LUA_TBOOLEAN:
        rc = lua_toboolean(L, idx) ? msgpack_pack_true(e->pk) : msgpack_pack_false(e->pk);
        break;
    case LUA_TNUMBER:
        rc = enc_number(e, lua_tonumber(L, idx));
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (n > UINT32_MAX) return fail(e, "%s", "string too long");
        rc = msgpack_pack_str(e->pk, n);
        if (rc == 0) rc = msgpack_pack_str_body(e->pk, s, n);
        break;
    }
    case LUA_TTABLE:
        return enc_table(e, idx);
    case LUA_TFUNCTION:
        return enc_ref(e, idx); /* functions always go by reference */
    case LUA_TUSERDATA: {
        int is_bin = 0;
        if (lua_getmetatable(L, idx)) {
            is_bin = lua_rawequal(L, -1, e->bin_mt);
            lua_pop(L, 1);
        }
        if (!is_bin) return fail(e, "cannot encode a %s", "userdata");
        gg_bin *b = lua_touserdata(L, idx);
        if (b->len > UINT32_MAX) return fail(e, "%s", "binary too long");
        rc = msgpack_pack_bin(e->pk, b->len);
        if (rc == 0) rc = msgpack_pack_bin_body(e->pk, b->data, b->len);
        break;
    }
    default: {
        int t = lua_type(L, idx);
        return fail(e, "cannot encode a %s", t == 10 ? "cdata" : lua_typename(L, t));
    }
    }
    return rc ? fail(e, "%s", "out of memory") : 0;
}

int gg_lua_pack(lua_State *L, int idx, msgpack_packer *pk, int max_depth, char *err, size_t errlen)
{
    if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
    if (max_depth > GG_DEPTH_CAP) max_depth = GG_DEPTH_CAP;
    if (!lua_checkstack(L, 8)) {
        snprintf(err, errlen, "Lua stack exhausted");
        return -1;
    }
    int top = lua_gettop(L);
    enc e = {.L = L, .pk = pk, .max_depth = max_depth, .err = err, .errlen = errlen};
    push_bin_mt(L);
    e.bin_mt = lua_gettop(L);
    gg_lua_push_map_mt(L);
    e.map_mt = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, GG_LUA_OBJ_HOOKS);
    if (lua_istable(L, -1)) {
        int hooks = lua_gettop(L);
        lua_getfield(L, hooks, "marks");
        if (lua_istable(L, -1)) e.marks = lua_gettop(L);
        lua_getfield(L, hooks, "export");
        if (lua_isfunction(L, -1)) e.export = lua_gettop(L);
    }
    int rc = enc_value(&e, idx);
    lua_settop(L, top);
    if (rc && e.where[0]) {
        size_t n = strlen(err);
        if (n + 8 < errlen) snprintf(err + n, errlen - n, " (at %s)", e.where);
    }
    return rc;
}

/* --- bin, is_bin, map for Lua --------------------------------------------------------------- */

int gg_lua_l_bin(lua_State *L)
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

int gg_lua_l_is_bin(lua_State *L)
{
    size_t n;
    lua_pushboolean(L, gg_lua_tobin(L, 1, &n) != NULL);
    return 1;
}

int gg_lua_l_map(lua_State *L)
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

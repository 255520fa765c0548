/* fuzz_lua_msgpack.c -- libFuzzer target for the MessagePack -> Lua decoder (gateway/lua/lua_msgpack.c),
 * which turns network bytes into Lua values for policies (ctx:args(), the route policy's hash
 * strategy, ghost.auth's params) and for the Lua client library.
 *
 * Properties: gg_lua_push_msgpack never reads past len and sizes nothing from an unchecked
 * count (ASan); on success it pushes exactly one value, on failure nothing and a reason;
 * the decoded value packs back (gg_lua_pack, same depth) into exactly one MessagePack value,
 * and decoding those bytes gives a value deep-equal to the first one (the mapping loses
 * bin/ext-ness and integer precision beyond 2^53 once, and is stable after that).
 * The first input byte picks max_depth (1..40), whether marks (ghost.bin, ghost.null) are used
 * (bit 7) and whether the value is an argument list (bit 6); gg_lua_within walks the bytes too. */
#include "core/codec.h"
#include "lua/lua_msgpack.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

/* Deep equality of two decoded values; NaN equals NaN; table and ghost.bin keys are matched by
 * count only (two decodings of the same map key are equal but not the same key). */
static const char DEEP_EQ[] =
    "local function eq(a, b, depth)\n"
    "  if depth > 200 then return false end\n"
    "  if a ~= a and b ~= b then return true end\n"
    "  local ta, tb = type(a), type(b)\n"
    "  if ta == 'userdata' and tb == 'userdata' then return tostring(a) == tostring(b) end\n"
    "  if ta ~= 'table' or tb ~= 'table' then return a == b end\n"
    "  local na, nb = 0, 0\n"
    "  for k, v in pairs(a) do\n"
    "    na = na + 1\n"
    "    local tk = type(k)\n"
    "    if tk ~= 'table' and tk ~= 'userdata' and not eq(v, b[k], depth + 1) then return false end\n"
    "  end\n"
    "  for _ in pairs(b) do nb = nb + 1 end\n"
    "  return na == nb\n"
    "end\n"
    "return function(a, b) return eq(a, b, 0) end\n";

static lua_State *L;
static int eq_ref;

static int decode(const char *p, size_t n, unsigned depth, unsigned flags, char *err, size_t errlen)
{
#ifdef GG_LUA_MARK
    return gg_lua_unpack(L, p, n, depth, flags, NULL, err, errlen);
#else
    (void)flags;
    return gg_lua_push_msgpack(L, p, n, depth, err, errlen);
#endif
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L) {
        L = luaL_newstate();
        if (!L) abort();
        luaL_openlibs(L);
        if (luaL_loadstring(L, DEEP_EQ) || lua_pcall(L, 0, 1, 0)) abort();
        eq_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    if (size < 1) return 0;
    unsigned depth = 1 + data[0] % 40;
    unsigned flags = (data[0] & 0x80) ? 0x01 : 0; /* GG_LUA_MARK */
#ifdef GG_LUA_ARGS
    if (data[0] & 0x40) flags |= GG_LUA_ARGS;
#endif
    size--;
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data + 1, size);

#ifdef GG_LUA_MARK
    /* The budget's walk reads nothing past len, and every value takes at least one byte; a
     * budget a value fits in fits it plus one. */
    if (!gg_lua_within(buf, size, size)) abort();
    if (gg_lua_within(buf, size, data[0]) && !gg_lua_within(buf, size, (size_t)data[0] + 1))
        abort();
#endif
    char err[256] = "";
    int top = lua_gettop(L);
    if (decode(buf, size, depth, flags, err, sizeof err)) {
        if (lua_gettop(L) != top || !err[0]) abort(); /* pushed something, or no reason */
        goto out;
    }
    if (lua_gettop(L) != top + 1) abort(); /* exactly one value */

    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (gg_lua_pack(L, top + 1, &pk, (int)depth, err, sizeof err) != 0) abort(); /* decoded, not packable */
    if (lua_gettop(L) != top + 1) abort();

    gg_scan_state st;
    gg_scan_limits lim = {.max_message = sb.size, .max_depth = depth};
    gg_scan_reset(&st);
    if (gg_scan(&st, sb.data, sb.size, &lim) != GG_SCAN_DONE || st.msg.size != sb.size) abort();

    if (decode(sb.data, sb.size, depth, flags, err, sizeof err)) abort();
    lua_rawgeti(L, LUA_REGISTRYINDEX, eq_ref);
    lua_pushvalue(L, top + 1);
    lua_pushvalue(L, top + 2);
    if (lua_pcall(L, 2, 1, 0) || !lua_toboolean(L, -1)) abort(); /* changed on the way */
    msgpack_sbuffer_destroy(&sb);
out:
    lua_settop(L, top);
    free(buf);
    static unsigned runs;
    if (++runs % 256 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}

/* test_lua_msgpack.c -- the Lua <-> MessagePack mapping of gateway/lua/lua_msgpack.c: exact bytes
 * for each Lua value (gg_lua_pack), bin/str and empty-map marks (gg_lua_unpack with
 * GG_LUA_MARK), and the refusals (functions, cycles, depth) with the path of the culprit. */
#include "lua/lua_ghost.h"
#include "lua/lua_msgpack.h"
#include "unit.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>

static lua_State *L;

/* Run `return <expr>` and pack the value; returns the bytes as hex ("" on error: err set). */
static char err[256];
static char hex[4096];

static const char *pack_expr(const char *expr)
{
    char src[512];
    snprintf(src, sizeof src, "local ghost = require 'ghost.core' return %s", expr);
    hex[0] = err[0] = 0;
    if (luaL_loadstring(L, src) || lua_pcall(L, 0, 1, 0)) {
        snprintf(err, sizeof err, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return hex;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int top = lua_gettop(L);
    if (gg_lua_pack(L, -1, &pk, 8, err, sizeof err) == 0) {
        for (size_t i = 0; i < sb.size && 2 * i + 2 < sizeof hex; i++)
            snprintf(hex + 2 * i, 3, "%02x", (unsigned char)sb.data[i]);
    }
    if (lua_gettop(L) != top) snprintf(err, sizeof err, "stack changed");
    lua_settop(L, 0);
    msgpack_sbuffer_destroy(&sb);
    return hex;
}

static void test_scalars(void)
{
    UNIT_EQ_STR(pack_expr("nil"), "c0");
    UNIT_EQ_STR(pack_expr("true"), "c3");
    UNIT_EQ_STR(pack_expr("42"), "2a");
    UNIT_EQ_STR(pack_expr("-1"), "ff");
    UNIT_EQ_STR(pack_expr("2^32"), "cf0000000100000000");
    UNIT_EQ_STR(pack_expr("-(2^63)"), "d38000000000000000");
    UNIT_EQ_STR(pack_expr("2^64 - 2048"), "cffffffffffffff800");
    UNIT_EQ_STR(pack_expr("1.5"), "cb3ff8000000000000");
    UNIT_EQ_STR(pack_expr("2^64"), "cb43f0000000000000"); /* beyond uint64: float */
    UNIT_EQ_STR(pack_expr("'hi'"), "a26869");
    UNIT_EQ_STR(pack_expr("ghost.bin('hi')"), "c4026869");
    UNIT_EQ_STR(pack_expr("ghost.bin('')"), "c400");
}

static void test_tables(void)
{
    UNIT_EQ_STR(pack_expr("{}"), "90");            /* empty table: array */
    UNIT_EQ_STR(pack_expr("ghost.map({})"), "80"); /* marked: map */
    UNIT_EQ_STR(pack_expr("{1, 'a', true}"), "9301a161c3");
    UNIT_EQ_STR(pack_expr("{x = 1}"), "81a17801");
    UNIT_EQ_STR(pack_expr("{[2] = 5}"), "810205"); /* not 1..n: map */
    UNIT_CHECK(strncmp(pack_expr("{[1] = 1, [3] = 3}"), "82", 2) == 0 && strlen(hex) == 10);
    UNIT_EQ_STR(pack_expr("{[1.5] = 1}"), "81cb3ff800000000000001");
    UNIT_EQ_STR(pack_expr("ghost.map({7})"), "810107"); /* a sequence, marked: map */
}

static void test_refusals(void)
{
    pack_expr("{ a = { 1, print } }");
    UNIT_EQ_STR(err, "cannot encode a function (at .a[2])");
    pack_expr("(function() local t = {} t.x = { t } return t end)()");
    UNIT_EQ_STR(err, "cycle: a table contains itself (at .x[1])");
    pack_expr("{{{{{{{{{}}}}}}}}}"); /* 9 levels, limit 8 */
    UNIT_EQ_STR(err, "value nested too deeply (at [1][1][1][1][1][1][1][1])");
    pack_expr("coroutine.create(print)");
    UNIT_EQ_STR(err, "cannot encode a thread");
    pack_expr("{ ['a b'] = io.stdout }");
    UNIT_EQ_STR(err, "cannot encode a userdata (at [\"a b\"])");
}

static int unpack_hex(const char *h, unsigned flags)
{
    char buf[256];
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)strtol((char[]){h[2 * i], h[2 * i + 1], 0}, NULL, 16);
    size_t used = 0;
    int rc = gg_lua_unpack(L, buf, n, 8, flags, &used, err, sizeof err);
    if (rc == 0 && used != n) return -2;
    return rc;
}

/* Evaluate `expr` with the decoded value as `v`; true when it is true. */
static int check_value(const char *expr)
{
    char src[256];
    snprintf(src, sizeof src, "local ghost = require 'ghost.core' return function(v) return %s end",
             expr);
    if (luaL_loadstring(L, src) || lua_pcall(L, 0, 1, 0)) return 0;
    lua_insert(L, -2);
    int ok = lua_pcall(L, 1, 1, 0) == 0 && lua_toboolean(L, -1);
    lua_settop(L, 0);
    return ok;
}

static void test_unpack_marks(void)
{
    /* bin: a string unmarked, a ghost.bin marked; str is a string either way */
    UNIT_EQ_INT(unpack_hex("c4026869", 0), 0);
    UNIT_CHECK(check_value("v == 'hi'"));
    UNIT_EQ_INT(unpack_hex("c4026869", GG_LUA_MARK), 0);
    UNIT_CHECK(check_value("ghost.is_bin(v) and tostring(v) == 'hi' and #v == 2"));
    UNIT_EQ_INT(unpack_hex("a26869", GG_LUA_MARK), 0);
    UNIT_CHECK(check_value("v == 'hi'"));
    /* an empty map keeps its kind marked, so it goes back as a map */
    UNIT_EQ_INT(unpack_hex("80", GG_LUA_MARK), 0);
    UNIT_CHECK(check_value("next(v) == nil and getmetatable(v) ~= nil"));
    UNIT_EQ_INT(unpack_hex("80", 0), 0);
    UNIT_CHECK(check_value("next(v) == nil and getmetatable(v) == nil"));
    /* bin map keys arrive as strings (a table can look them up) */
    UNIT_EQ_INT(unpack_hex("81c4016101", GG_LUA_MARK), 0);
    UNIT_CHECK(check_value("v.a == 1"));
    /* holes, nil and NaN keys */
    UNIT_EQ_INT(unpack_hex("93c001c0", 0), 0);
    UNIT_CHECK(check_value("v[1] == nil and v[2] == 1 and v[3] == nil"));
    UNIT_EQ_INT(unpack_hex("82c001cb7ff800000000000002", 0), 0);
    UNIT_CHECK(check_value("next(v) == nil"));
    /* malformed, truncated, too deep: nothing pushed */
    UNIT_EQ_INT(unpack_hex("c1", 0), -1);
    UNIT_EQ_INT(lua_gettop(L), 0);
    UNIT_EQ_INT(unpack_hex("92", 0), -1);
    UNIT_EQ_STR(err, "truncated MessagePack");
    UNIT_EQ_INT(unpack_hex("919191919191919191c0", 0), -1);
    UNIT_EQ_STR(err, "value nested too deeply");
    UNIT_EQ_INT(lua_gettop(L), 0);
}

/* ghost.null: nil inside arrays and maps keeps its place when marked; nil at the top stays nil;
 * ghost.null packs as nil, so {1, ghost.null, 3} keeps its length. */
static void test_null(void)
{
    UNIT_EQ_STR(pack_expr("ghost.null"), "c0");
    UNIT_EQ_STR(pack_expr("{ghost.null, 1, ghost.null}"), "93c001c0");
    UNIT_EQ_STR(pack_expr("{1, ghost.null, 3}"), "9301c003");
    UNIT_EQ_STR(pack_expr("{a = ghost.null}"), "81a161c0");
    UNIT_EQ_STR(pack_expr("{{ghost.null}}"), "9191c0");
    pack_expr("{ debug.upvalueid(print, 1) }"); /* other light userdata: refused */
    UNIT_CHECK(strncmp(err, "cannot encode a", 15) == 0);
    UNIT_EQ_INT(unpack_hex("93c001c0", GG_LUA_MARK), 0);
    UNIT_CHECK(check_value("#v == 3 and v[1] == ghost.null and v[2] == 1 and v[3] == ghost.null"));
    UNIT_EQ_INT(unpack_hex("82a161c0a16291c0", GG_LUA_MARK), 0);
    UNIT_CHECK(check_value("v.a == ghost.null and #v.b == 1 and v.b[1] == ghost.null"));
    UNIT_EQ_INT(unpack_hex("c0", GG_LUA_MARK), 0);
    UNIT_CHECK(check_value("v == nil"));
    UNIT_EQ_INT(unpack_hex("81c001", GG_LUA_MARK), 0); /* a nil key is still dropped */
    UNIT_CHECK(check_value("next(v) == nil"));
    /* an argument list: a nil argument stays nil, a nil inside one is ghost.null */
    UNIT_EQ_INT(unpack_hex("92c091c0", GG_LUA_MARK | GG_LUA_ARGS), 0);
    UNIT_CHECK(check_value("v[1] == nil and v[2][1] == ghost.null"));
    UNIT_EQ_INT(unpack_hex("93c001c0", 0), 0); /* unmarked: holes, as before */
    UNIT_CHECK(check_value("v[1] == nil and v[3] == nil"));
}

/* The decoding budget counts every value, keys and containers included, from the bytes. */
static void test_within(void)
{
    static const char four[] = "\x92\x90\x91\xc0"; /* [[], [nil]]: 4 values */
    UNIT_CHECK(gg_lua_within(four, 4, 4));
    UNIT_CHECK(!gg_lua_within(four, 4, 3));
    static const char map[] = "\x81\xa1\x61\xcd\x01\x00"; /* {a: 256}: 3 values in 6 bytes */
    UNIT_CHECK(gg_lua_within(map, 6, 3));
    UNIT_CHECK(!gg_lua_within(map, 6, 2));
    static const char str[] = "\xd9\x05hello\x90"; /* a str8 is one value, [] is another */
    UNIT_CHECK(gg_lua_within(str, 8, 2));
    UNIT_CHECK(!gg_lua_within(str, 8, 1));
    /* a count that lies beyond the bytes ends the walk at the end of the bytes */
    static const char liar[] = "\xdd\xff\xff\xff\xff\x90\x90";
    UNIT_CHECK(gg_lua_within(liar, 7, 3));
    UNIT_CHECK(!gg_lua_within(liar, 7, 2));
    size_t n = 1 << 16;
    char *many = malloc(n + 5);
    UNIT_CHECK(many != NULL);
    memcpy(many, "\xdd\x00\x01\x00\x00", 5);
    memset(many + 5, 0x90, n); /* [[], [], ...]: 65537 values */
    UNIT_CHECK(gg_lua_within(many, n + 5, n + 1));
    UNIT_CHECK(!gg_lua_within(many, n + 5, n));
    free(many);
}

int main(void)
{
    L = luaL_newstate();
    luaL_openlibs(L);
    /* ghost.core from the same objects (its bin/map helpers); no loop is run here. */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_ghost_core);
    lua_setfield(L, -2, "ghost.core");
    lua_settop(L, 0);
    UNIT_RUN(test_scalars);
    UNIT_RUN(test_tables);
    UNIT_RUN(test_refusals);
    UNIT_RUN(test_unpack_marks);
    UNIT_RUN(test_null);
    UNIT_RUN(test_within);
    lua_close(L);
    return unit_summary();
}

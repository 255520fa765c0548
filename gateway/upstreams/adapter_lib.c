/* adapter_lib.c -- the Lua helpers an adapter file sees (bin, map, log, json, take). */
#include "upstreams/adapter_int.h"

/* --- the Lua helpers an adapter file sees ----------------------------------------------- */

static gg_adapter *helper_ad(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static int l_log(lua_State *L)
{
    gg_adapter *ad = helper_ad(L);
    int level = gg_log_level_parse(luaL_checkstring(L, 1));
    const char *svc = luaL_checkstring(L, 2);
    const char *msg = luaL_optstring(L, 3, "");
    char line[1024];
    size_t n = 0;
    for (const char *p = msg; *p && n < sizeof line - 1; p++)
        line[n++] = *p == '\n' ? '|' : *p == '"' ? '\'' : *p;
    line[n] = 0;
    gg_log(&ad->srv->lp.log, level < 0 ? GG_LOG_INFO : level, "adapter_log",
           "service=%s message=\"%s\"", svc, line);
    return 0;
}

/* json.encode(v): the value as MessagePack, then through json.h's mapping. */
static int l_json_encode(lua_State *L)
{
    gg_adapter *ad = helper_ad(L);
    char err[200];
    luaL_checkany(L, 1);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    json_t *j = NULL;
    char *text = NULL;
    if (gg_lua_pack(L, 1, &pk, (int)gg_ad_limits(ad)->max_depth, err, sizeof err) == 0 &&
        (j = gg_json_from_msgpack(sb.data, sb.size, (int)gg_ad_limits(ad)->max_depth, err, sizeof err)))
        text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    msgpack_sbuffer_destroy(&sb);
    json_decref(j);
    if (!text) {
        lua_pushnil(L);
        lua_pushfstring(L, "json.encode: %s", j || err[0] == 0 ? "out of memory" : err);
        return 2;
    }
    lua_pushstring(L, text);
    free(text);
    return 1;
}

static int l_json_decode(lua_State *L)
{
    gg_adapter *ad = helper_ad(L);
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char err[200];
    json_error_t je;
    json_t *j = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        lua_pushnil(L);
        lua_pushfstring(L, "json.decode: %s at line %d column %d", je.text, je.line, je.column);
        return 2;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int rc = gg_json_to_msgpack(j, (int)gg_ad_limits(ad)->max_depth, &sb, err, sizeof err);
    json_decref(j);
    if (rc == 0 && gg_lua_unpack(L, sb.data, sb.size, gg_ad_limits(ad)->max_depth, GG_LUA_MARK, NULL, err,
                                 sizeof err) == 0) {
        msgpack_sbuffer_destroy(&sb);
        return 1;
    }
    msgpack_sbuffer_destroy(&sb);
    lua_pushnil(L);
    lua_pushfstring(L, "json.decode: %s", err);
    return 2;
}

const luaL_Reg gg_ad_helpers[] = {
    {"bin", gg_lua_l_bin}, {"is_bin", gg_lua_l_is_bin}, {"map", gg_lua_l_map},
    {"log", l_log}, {"json_encode", l_json_encode}, {"json_decode", l_json_decode},
    {"take", gg_ad_l_take}, {NULL, NULL},
};

/* lua_consts.h -- constants C and Lua share, with their one definition: the policy verdicts
 * and the protocol between the adapter driver (gateway/upstreams/adapter.c) and
 * lua/ghost/adapter.lua. Error codes and types are core/errors.h's GG_ERRORS.
 *
 * Lua reads them from require "ghost.consts", a table built from these X-macros:
 *   errors       { bad_request = 400, ... }       (GG_ERRORS)
 *   error_types  { [400] = "bad_request", ... }
 *   verdicts     { CONTINUE = 0, ... }            (GG_VERDICTS)
 *   adapter      { OP_CALL = 1, R_OK = 0, ... }   (GG_ADAPTER_CONSTS)
 * It is preloaded in every gateway Lua state (gg_lua_new) and by ghost.core; plain luajit also
 * finds it as build/lua/ghost/consts.so, a link to core.so. */
#ifndef GG_LUA_CONSTS_H
#define GG_LUA_CONSTS_H

#include <lua.h>

/* What ghost.policy's request() and response() return to the core. X(NAME, value). */
#define GG_VERDICTS(X)                                                                             \
    X(CONTINUE, 0)                                                                                 \
    X(REJECT, 1)                                                                                   \
    X(RESPOND, 2) /* answer with verdict.result (packed MessagePack) */                            \
    X(RESPOND_RAW, 3)                                                                              \
    X(RETRY, 4)                                                                                    \
    X(ERROR, 5) /* the policy raised: answer `internal` */

enum {
#define GG_V_ENUM_(name, v) GG_V_##name = v,
    GG_VERDICTS(GG_V_ENUM_)
#undef GG_V_ENUM_
};

/* The adapter coroutine protocol. A task yields OP_CALL or OP_HTTP; it is resumed with R_OK
 * or an error kind (R_REMOTE: the upstream answered an error; R_GATEWAY: an error of the
 * gateway or of a transport; R_LOCAL: bad arguments); run() returns DONE, FAILED or
 * GATEWAY_FAILED. X(NAME, value). */
#define GG_ADAPTER_CONSTS(X)                                                                       \
    X(OP_CALL, 1)                                                                                  \
    X(OP_HTTP, 2)                                                                                  \
    X(R_OK, 0)                                                                                     \
    X(R_REMOTE, 1)                                                                                 \
    X(R_GATEWAY, 2)                                                                                \
    X(R_LOCAL, 3)                                                                                  \
    X(DONE, 0)                                                                                     \
    X(FAILED, 1)                                                                                   \
    X(GATEWAY_FAILED, 2)

enum {
#define GG_AD_ENUM_(name, v) GG_AD_##name = v,
    GG_ADAPTER_CONSTS(GG_AD_ENUM_)
#undef GG_AD_ENUM_
};

/* require "ghost.consts": pushes a new table of the four tables above. Exported from core.so
 * too, where build/lua/ghost/consts.so (a link) makes plain luajit find it. */
__attribute__((visibility("default"))) int luaopen_ghost_consts(lua_State *L);

/* Sets package.preload["ghost.consts"] unless something is there already. */
void gg_lua_consts_preload(lua_State *L);

#endif

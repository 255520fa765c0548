/* lua_registry.h -- ghost.core's registration in the Redis registry (registry.c), for
 * ghost.serve's `register` option. */
#ifndef GG_LUA_REGISTRY_H
#define GG_LUA_REGISTRY_H

#include <lua.h>
#include <uv.h>

/* Push core.register(url, service, addr, ttl_seconds) -> registration | nil, err, running on
 * uv. ctx_idx: the stack index of the object that owns uv (kept alive by every registration,
 * so that the loop outlives them). A registration has :stop() (deregister now), :done() (true
 * once deregistered and closed) and :beats(); one collected unstopped is stopped. */
void gg_lua_registry_push(lua_State *L, uv_loop_t *uv, int ctx_idx);

#endif

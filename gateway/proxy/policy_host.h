/* policy_host.h -- the ghost.host library (policy_host.c): the core functions a policy's Lua
 * code calls, bound to the server once it runs. */
#ifndef GG_POLICY_HOST_H
#define GG_POLICY_HOST_H

#include <lua.h>

/* Depth limit for the values ctx:args() decodes and a policy's verdict data is packed with. */
#define GG_POLICY_ARGS_DEPTH 32

struct gg_server;

/* Push the table of core functions Lua sees as require "ghost.host", bound to srv (NULL for a
 * command that runs no loop). */
void gg_policy_push_host(lua_State *L, struct gg_server *srv);
/* Seconds on the loop's clock (the wall clock's monotonic twin when server is NULL), and
 * wall-clock seconds: for Lua through the FFI (ghost.policy), which compiles these calls. */
double gg_host_now(void *server);
double gg_host_time(void);
/* Make require "ghost.host" work before there is a server (while a config is read). */
void gg_policy_preload_host(lua_State *L);

#endif

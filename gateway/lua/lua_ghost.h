/* lua_ghost.h -- ghost.core, the C side of the Lua client and server library (require "ghost").
 *
 * Built twice: into build/ghostgate (preloaded as "ghost.core", so `ghostgate run` scripts
 * need no files) and as build/lua/ghost/core.so for plain luajit. Both run the gateway's own
 * core: gg_loop (buffer pool, scan state, calls with deadlines, end-of-turn flush), gg_stream
 * (framed reads, batched writes) and gg_call (msgid = call id, deadline heap).
 *
 * The C side only moves bytes and wakes waiters; proxies, scheduling and errors are Lua
 * (lua/ghost/). Nothing Lua runs inside a libuv callback: callbacks copy what arrived into an
 * event queue, and core.run() hands the queue to Lua after uv_run returns.
 *
 * The Lua API (each Lua state has its own loop, kept in the registry):
 *
 *   core.run(events, nowait) -> n, alive
 *       Flush queued output, run the loop once (or without blocking), and store the n events
 *       that arrived in events[1 .. n * core.EV_STRIDE], EV_STRIDE slots per event:
 *         EV_RESPONSE  waiter, id, error, result      (error nil on success)
 *         EV_FAIL      waiter, id, type, message      (deadline_exceeded, connection_failed,
 *                                                      connection_lost, closed, bad_response)
 *         EV_WAKE      waiter, id                     (core.sleep)
 *         EV_CONNECT   waiter, id                     (connected)
 *         EV_REQUEST   owner, peer, msgid, method, params, nparams
 *         EV_NOTIFY    owner, peer, nil, method, params, nparams
 *         EV_CLOSED    owner, peer                    (a server's peer went away)
 *         EV_SIGNAL    nil, signum
 *       alive is false when nothing (call, timer, connection attempt, listener) can ever
 *       produce another event.
 *   A waiter is any Lua value (ghost.sched passes a coroutine, a table or a function); it is
 *   held in the registry until its one event is delivered, or its call is cancelled.
 *   core.connect(addr, waiter?, timeout_ms?, max_message?, max_depth?, max_values?) -> conn, id
 *       | nil, "connection_failed", message. With a waiter: EV_CONNECT, or EV_FAIL.
 *   conn:request(waiter, timeout_ms, method, ...) -> id | nil, kind, message
 *       kind: "closed" (the connection is gone: reconnect), "encode", "too_large", "overloaded"
 *   conn:notify(method, ...) -> true | nil, kind, message
 *   conn:reply(msgid, error, result) -> true | nil, kind, message       (server side)
 *   conn:state() -> "connecting" | "open" | "closed", reason
 *   conn:close(), conn:inflight(), conn:address()
 *   core.listen(addr, owner, max_message?, max_values?) -> listener, bound address
 *       | nil, "listen", message
 *       Requests to it are EV_REQUEST events for owner (owner.on_request is ghost.server's).
 *   listener:close(), listener:address()
 *   core.close_peers(owner, force?) -> n   close the connections accepted for owner (after
 *                                          their output; at once with force); n still open
 *   core.peers(owner) -> n                 connections accepted for owner not closed yet
 *   core.sleep(ms, waiter) -> id          core.cancel(id) -> true if it was pending
 *   core.signals(on)                      SIGINT/SIGTERM become EV_SIGNAL events
 *   core.now() -> seconds (monotonic)     core.pid() -> this process's id
 *   core.bin(s), core.is_bin(v), core.map(t), core.pack(v) -> bytes, core.unpack(bytes)
 *   core.null                             ghost.null (lua_msgpack.h)
 * max_values (default core.READ_MAX_VALUES) is the decoding budget of what arrives on a
 * connection: a request with more values in its params is answered 413 too_large from C (no
 * event; a notification is dropped), a response with more fails its call (EV_FAIL
 * bad_response). core.unpack has the default budget. */
#ifndef GG_LUA_GHOST_H
#define GG_LUA_GHOST_H

#include <lua.h>

__attribute__((visibility("default"))) int luaopen_ghost_core(lua_State *L);

#endif

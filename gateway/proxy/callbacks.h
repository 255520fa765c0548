/* callbacks.h -- functions and objects a client passes through the gateway, and the calls an
 * upstream makes on them (docs/protocol.md, "Callbacks through the gateway").
 *
 * The mirror of the upstream objects of dispatch_objects.c and mprpc_objects.c, with the same
 * tables (objtable.h) and the roles swapped:
 *   - each client connection has an owner-side table `own` (GG_OBJ_UPSTREAM kind): what the
 *     client exported, keyed by the client's own id, counting how many times it sent each one
 *     (what the gateway releases to it in the end) and keeping the interface it sent;
 *   - each upstream connection has a holder-side table `held` (GG_OBJ_CLIENT kind) in its
 *     gg_cb_port: random ids the gateway chose for that connection only, each pointing at the
 *     client's entry, counting how many times the upstream was sent it.
 * An upstream's `$call`/`$get` on one of its ids goes to the owning client connection as a
 * request of the gateway's own (a gg_call record with `callback` set: its msgid is the
 * gateway's, its deadline the service's), and the client's answer goes back to the upstream
 * with the upstream's msgid. */
#ifndef GG_CALLBACKS_H
#define GG_CALLBACKS_H

#include "core/calls.h"

#include <stddef.h>
#include <stdint.h>

struct gg_server;
struct gg_client;
struct gg_stream;
struct gg_objtab;
struct gg_buf;
struct gg_service;

/* An upstream connection's side of callbacks, embedded in it (zeroed: nothing yet). */
typedef struct gg_cb_port {
    struct gg_stream *st;        /* where the answers to its requests go */
    struct gg_objtab **up_objs;  /* its own exports' table (a YOURS in a client's answer must
                                  * name one of them) */
    struct gg_objtab *held;      /* client objects given to it; NULL until the first */
    gg_call_list calls;          /* callbacks it asked for, in flight (their owner) */
} gg_cb_port;

/* Rewriting what a client sends toward one upstream connection: a call's params, `$call`
 * args, an answer to a callback. */
typedef struct gg_cb_out {
    struct gg_server *srv;
    struct gg_client *c;
    gg_cb_port *port;
    int code;        /* when a map function refused: the gateway error, and why */
    const char *why;
    struct gg_buf *given; /* the ids given so far (uint64_t each), taken back by gg_cb_undo */
} gg_cb_out;

/* kind 0 (OBJECT [cid, iface] the client owns): recorded in the client's table (the
 * interface with it) and given to the port: appends OBJECT [G, iface]. 0, or -3 with o->why,
 * or GG_OBJ_RW_NOMEM. */
int gg_cb_map_object(gg_cb_out *o, const char *payload, size_t plen, struct gg_buf *out);

/* The send failed after a rewrite: the references given are taken back (and released to the
 * client at the end of the turn). Frees o->given either way with gg_cb_done. */
void gg_cb_undo(gg_cb_out *o);
void gg_cb_done(gg_cb_out *o);

/* kind 1 from an upstream (YOURS G, handed back toward client c): appends YOURS cid, the
 * client's own id. -3 with *why when G is not an object of c given to this port. */
int gg_cb_map_yours(gg_cb_port *port, struct gg_client *c, const char *payload, size_t plen,
                    struct gg_buf *out, const char **why);

/* Rewrite the upstream's params toward client c (objects it carries imported and given to
 * c, YOURS mapped): 0, with the ids given to c appended to `given` (uint64_t each: the caller
 * releases them if the request cannot be written after all); or the gateway error code that
 * refuses the params, with *why (nothing kept). Supplied by the upstream protocol. */
typedef int (*gg_cb_rewrite_fn)(void *ud, struct gg_client *c, const char *params, size_t len,
                                struct gg_buf *out, struct gg_buf *given, const char **why);

/* The upstream of svc sent the request [0, msgid, method, params] on the connection of port.
 * `$call`/`$get` on an id given to that connection go to the owning client; anything else,
 * and every refusal, is answered here on port->st and logged. */
void gg_cb_request(struct gg_server *srv, gg_cb_port *port, struct gg_service *svc,
                   uint32_t msgid, const char *method, uint32_t method_len, const char *params,
                   size_t params_len, gg_cb_rewrite_fn fn, void *ud);

/* The upstream sent `$release` [[[G, n], ...]]: the counts drop. Returns the pairs refused
 * (unknown ids, over-releases, malformed). */
uint32_t gg_cb_release(gg_cb_port *port, const char *params, size_t params_len);

/* A client sent a response (to one of the gateway's callback requests, or a stray one). */
void gg_cb_response(struct gg_server *srv, struct gg_client *c, uint32_t msgid,
                    const char *body, size_t body_len);

/* End a callback with a gateway error to the upstream (the drain timeout, a shutdown). */
void gg_cb_fail(struct gg_server *srv, gg_call *call, int code, const char *message);

/* A callback's deadline passed (gg_dispatch_on_deadline hands it here): 504 to the upstream. */
void gg_cb_on_deadline(struct gg_server *srv, gg_call *call);

/* The upstream connection closed: its callbacks end unanswered, what it held is released. */
void gg_cb_port_closed(struct gg_server *srv, gg_cb_port *port);

/* The client connection closed: its callbacks in flight answer 410 at once, and every id the
 * upstreams hold for its objects answers 410 from now on. */
void gg_cb_client_closed(struct gg_server *srv, struct gg_client *c);

/* The deepest callback in flight to c (the depth of a call c makes now). O(callbacks). */
uint16_t gg_cb_depth(const struct gg_client *c);

/* /metrics: client objects the port's upstream holds (ids given to it). */
void gg_cb_counts(const gg_cb_port *port, uint64_t *held);

#endif

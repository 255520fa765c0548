/* client.h -- a client connection: requests in, answers out, its calls in flight. */
#ifndef GG_CLIENT_H
#define GG_CLIENT_H

#include "core/calls.h"

#include <stddef.h>
#include "core/stream.h"

struct gg_server;
struct gg_listener;

typedef struct gg_client gg_client;

/* How answers reach a client, in its protocol: MessagePack-RPC (client.c) or JSON-RPC over
 * HTTP (a front door). `id` is the client's own id of the call (its msgid, or a slot of an
 * HTTP request). Each writes one whole answer; none may end the call. */
typedef struct gg_client_proto {
    const char *name;
    /* The upstream's [error, result] bytes, passed through. */
    void (*answer)(gg_client *c, uint32_t id, const char *body, size_t len);
    /* A success whose result is already MessagePack. */
    void (*result)(gg_client *c, uint32_t id, const char *result, size_t len);
    /* A gateway error (retry_after < 0: none). */
    void (*error)(gg_client *c, uint32_t id, int code, double retry_after, const char *message);
} gg_client_proto;

/* The MessagePack-RPC protocol of plain client connections. */
extern const gg_client_proto gg_msgpack_proto;

struct gg_client {
    gg_stream st; /* first member */
    const gg_client_proto *proto;
    gg_call_list calls; /* in flight for this client (their owner); calls.n counts them */
    uint64_t last_active; /* loop time (ms) of the last read or answer */
    struct gg_client *prev, *next; /* srv->clients */
    struct gg_client *resume_next; /* srv->resume: to be resumed at the end of this turn */
    int lua_ref;             /* the connection's table for policies (policy.c); 0: none */
    unsigned held : 1;       /* paused by us for backpressure */
    unsigned resume_queued : 1;
    void *data; /* the protocol's own state (an HTTP front door's requests) */
    struct gg_objtab *objs; /* remote objects given to it (objtable.h); NULL until the first */
    struct gg_kept_tab *kept; /* its calls kept for pipelining (promises.h); NULL until the first */
    struct gg_objtab *own;  /* objects it passed (callbacks.h); NULL until the first */
    gg_call_list cbs;       /* the gateway's requests to it in flight (callbacks: their carrier) */
    gg_call_list cb_owed;   /* callbacks ended unanswered: their ids kept until it answers */
};

/* Accept a connection on a listener's server handle; with tls (a tls:// listener) the client
 * must complete a TLS handshake first. */
struct gg_tls_ctx;
void gg_client_accept(struct gg_server *srv, uv_stream_t *server, int is_pipe, struct gg_tls_ctx *tls);
/* Register a client made elsewhere (an HTTP front door's connection): it counts against
 * max_clients, is swept for idleness and closed at shutdown like the others. */
void gg_client_add(struct gg_server *srv, gg_client *c);
void gg_client_remove(struct gg_server *srv, gg_client *c);

/* A call joins the client's calls in flight (backpressure counts them); it leaves them in
 * gg_call_end, which resumes a client held back by their number. */
void gg_client_link_call(gg_client *c, gg_call *call);

/* The client a gateway call answers to, or NULL once it is gone. */
static inline gg_client *gg_call_client(const gg_call *call)
{
    return call->owner ? (gg_client *)((char *)call->owner - offsetof(gg_client, calls)) : NULL;
}

/* The client's remote-object table, made on first use (limits.max_refs_per_client entries);
 * NULL when out of memory. Owned by the client: cleared and freed when it closes. */
struct gg_objtab *gg_client_objs(gg_client *c);

/* A client's queued output has been written (its stream's on_drain): resume reading if it
 * was held back only by that. */
void gg_client_drained(gg_client *c);

/* "tcp://ip:port" of the peer, or "unix". */
void gg_client_peer(gg_client *c, char *out, size_t n);

/* Close idle and too-slow clients (idle_timeout, message_timeout). */
void gg_clients_sweep(struct gg_server *srv);
/* Close every client (after queued output where possible). */
void gg_clients_close_all(struct gg_server *srv);

#endif

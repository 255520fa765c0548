/* mprpc_int.h -- what the MessagePack-RPC upstream's files share (private to
 * upstreams/mprpc*.c): the connection record and the functions one file calls in the other.
 *
 *   mprpc.c          the pool: connections, endpoints, framing, send and notify
 *   mprpc_objects.c  the object side: references in answers, the client's objects and
 *                    callbacks, releases, the carrier of kept calls */
#ifndef GG_MPRPC_INT_H
#define GG_MPRPC_INT_H

#include "upstreams/mprpc.h"
#include "proxy/server.h"
#include "proxy/promises.h"
#include "proxy/callbacks.h"
#include "core/objects.h"

#include <stddef.h>
#include <stdint.h>

#define GG_UP_IDLE       0 /* handle closed, not trying */
#define GG_UP_CONNECTING 1
#define GG_UP_CONNECTED  2
#define GG_UP_BACKOFF    3 /* waiting to reconnect */
#define GG_UP_CLOSING    4

/* One pooled connection; the pool's gg_endpoint.conns is an array of them. */
typedef struct gg_uconn {
    gg_stream st; /* first member */
    struct gg_endpoint *ep;
    gg_call_list calls; /* in flight here (their carrier) */
    gg_call_list owed;  /* ended unanswered: their ids are reserved until answered or closed */
    int state;
    int index;
    gg_backoff backoff;
    int connect_status; /* why the last connect failed (for on_closed's log), 0: it did not */
    uint64_t connected_at;
    uv_connect_t creq;
    uv_timer_t retry;
    gg_objtab *objs; /* what the upstream exported on this connection; NULL until the first */
    gg_kept_list kept; /* clients' kept calls whose answers it keeps (promise pipelining) */
    gg_cb_port cb;   /* client objects given to it, callbacks it asked for (callbacks.h) */
} gg_uconn;

static inline gg_server *srv_of(gg_uconn *uc)
{
    return gg_server_of(uc->st.loop);
}

/* ---- mprpc.c ---- */

/* gg_upstream_ops.conn_service: the service of uc while it is up, else NULL. */
gg_service *gg_mprpc_conn_service(void *conn);

/* ---- mprpc_objects.c ---- */

/* An answer of a service with objects = true: only one carrying references is copied, with
 * each rewritten to the id this client gets. Ends the call. */
void gg_mprpc_answer_with_objects(gg_uconn *uc, gg_call *call, const char *body, size_t len);
/* A `$` request or notification of the upstream (objects = true): calls on the client objects
 * it was given, releases of them. msg and m are only read during the call. */
void gg_mprpc_object_message(gg_uconn *uc, const char *msg, const gg_msg *m);
/* Write a call whose params carry the client's own functions or objects on uc, with the ids
 * they get there. 0, or a gateway error code (nothing written, nothing given). The caller
 * links the call (link_sent). */
int gg_mprpc_send_with_objects(gg_uconn *uc, gg_call *call, const char *method,
                               uint32_t method_len, const char *body, size_t body_len);
/* gg_upstream_ops entries of the object side. */
void *gg_mprpc_carrier_conn(gg_call *call, gg_kept_list **kept);
void gg_mprpc_send_releases(void *conn);
void gg_mprpc_obj_counts(const gg_service *svc, uint64_t *upstream, uint64_t *client);
gg_cb_port *gg_mprpc_cb_port(void *conn);
void gg_mprpc_cb_counts(const gg_service *svc, uint64_t *held);

#endif

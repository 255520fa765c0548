/* mprpc.h -- services whose upstreams speak MessagePack-RPC: a fixed pool of persistent
 * connections per endpoint, multiplexing many calls on each. A dead connection fails its
 * calls at once and reconnects with exponential backoff (proxy/pool.h). */
#ifndef GG_MPRPC_H
#define GG_MPRPC_H

#include "proxy/pool.h"
#include "proxy/upstream.h"
#include "core/calls.h"
#include "core/stream.h"

struct gg_endpoint;

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
} gg_uconn;

extern const gg_upstream_ops gg_mprpc_ops;

#endif

/* mprpc.h -- services whose upstreams speak MessagePack-RPC: a fixed pool of persistent
 * connections per endpoint, multiplexing many calls on each. A dead connection fails its
 * calls at once and reconnects with exponential backoff (proxy/pool.h). */
#ifndef GG_MPRPC_H
#define GG_MPRPC_H

#include "proxy/pool.h"
#include "proxy/upstream.h"
#include "core/futures.h"
#include "core/stream.h"

struct gg_endpoint;

#define GG_UP_IDLE       0 /* handle closed, not trying */
#define GG_UP_CONNECTING 1
#define GG_UP_CONNECTED  2
#define GG_UP_BACKOFF    3 /* waiting to reconnect */
#define GG_UP_CLOSING    4

/* Public only while dispatch.c unlinks calls from it by hand (until the calls module owns
 * the links). */
typedef struct gg_uconn {
    gg_stream st; /* first member */
    struct gg_endpoint *ep;
    gg_call *calls; /* in flight here, linked by uprev/unext */
    uint32_t inflight;
    gg_call *owed;  /* ended unanswered: their ids are reserved until answered or closed */
    uint32_t nowed;
    int state;
    int index;
    gg_backoff backoff;
    int connect_status; /* why the last connect failed (for on_closed's log), 0: it did not */
    uint64_t connected_at;
    uv_connect_t creq;
    uv_timer_t retry;
} gg_uconn;

extern const gg_upstream_ops gg_mprpc_ops;

/* A call sent on uc ends before its answer came (deadline, client gone): while uc may still
 * answer it, uc holds the record so its id is not reused (futures.h). The record is let go
 * when the answer arrives (dropped) or uc closes. A connection owing more than max_calls / 16
 * answers is closed and reconnected: its upstream has stopped answering. */
void gg_upstream_owe(gg_uconn *uc, gg_call *call);

#endif

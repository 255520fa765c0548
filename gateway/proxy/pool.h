/* pool.h -- what the connection pools of every protocol share: the endpoint record (for
 * policies and /metrics), its up/down logging, and the reconnect backoff. */
#ifndef GG_POOL_H
#define GG_POOL_H

#include "core/addr.h"

#include <stdint.h>

struct gg_service;

/* gg_endpoint.gone: discover = true services (proxy/discover.h) keep numbered slots whose
 * endpoints come and go; a static service's endpoints are always GG_EP_LIVE. */
#define GG_EP_LIVE     0
#define GG_EP_DRAINING 1 /* no longer registered: no new call; closes once its calls are over */
#define GG_EP_FREE     2 /* an empty slot (its number may be given to the next endpoint) */

typedef struct gg_endpoint {
    struct gg_service *svc;
    const gg_addr *addr;
    gg_addr *own_addr; /* a discovered endpoint's address (addr points here), freed with the
                        * slot or the generation; NULL for configured upstreams */
    int gone;          /* GG_EP_*: anything but LIVE is skipped when a call picks an endpoint */
    void *conns; /* the pool's per-endpoint connections, owned by the pool (mprpc: one
                  * malloc'd block that the generation frees with free()); NULL for others */
    int nconns;
    int nconnected;
    uint64_t connect_failures;
    /* Down: a connect failed while no connection was up. Logged once, when it goes down and
     * when it comes back; the failures in between are counted and logged at debug only. */
    int down;
    uint64_t down_since; /* loop time, ms */
    uint64_t down_repeats;
    int tls_warned; /* a failed handshake was logged at warn since the last connection */
} gg_endpoint;

/* A connection of ep failed to connect; the next attempt is in retry_ms. Logs upstream_down
 * when that leaves ep without a connection, else only at debug. */
void gg_endpoint_connect_failed(gg_endpoint *ep, int conn, int status, uint64_t retry_ms);
/* The level to log a failed handshake of ep at: warn for the first since ep last had a
 * connection up, debug for the rest (a pool opens its connections together, and they all fail
 * at once). */
int gg_endpoint_tls_failed_level(gg_endpoint *ep);
/* A connection of ep is up: logs upstream_back, with the failures not logged, if ep was down. */
void gg_endpoint_connected(gg_endpoint *ep, int conn);
/* A connection of ep came up (on 1) or went down (on 0): counts it and tells the policies. */
void gg_endpoint_set_connected(gg_endpoint *ep, int on);

/* Exponential reconnect backoff with jitter, the same for every pool. */
typedef struct gg_backoff {
    uint32_t ms; /* 0: never waited yet */
} gg_backoff;

static inline void gg_backoff_reset(gg_backoff *b)
{
    b->ms = 0;
}
/* The next wait in ms: 100, then doubling up to 5000, each with +-20% of jitter so a pool
 * does not reconnect in lockstep. */
uint64_t gg_backoff_next(gg_backoff *b);

#endif

/* mprpc.h -- services whose upstreams speak MessagePack-RPC: a fixed pool of persistent
 * connections per endpoint, multiplexing many calls on each. A dead connection fails its
 * calls at once and reconnects with exponential backoff (proxy/pool.h). */
#ifndef GG_MPRPC_H
#define GG_MPRPC_H

#include "proxy/upstream.h"

/* Reached only through these ops; the connection record is private to mprpc*.c (mprpc_int.h). */
extern const gg_upstream_ops gg_mprpc_ops;

#endif

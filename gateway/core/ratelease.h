/* ratelease.h -- cluster-wide token buckets: the tokens live in Redis, each gateway takes them
 * in leases (one atomic script, EVALSHA) and spends them locally, so a call never waits for a
 * Redis round trip. The sum admitted by all gateways never exceeds the bucket (burst + rate x
 * elapsed): tokens are only ever granted by the script, and a lease's unspent tokens expire
 * locally (lease_ttl) instead of going back.
 *
 * Bucket key: ghostgate:rl:{NAME} (a hash: tokens, ts in microseconds of Redis's TIME). */
#ifndef GG_RATELEASE_H
#define GG_RATELEASE_H

#include "core/redis.h"

#include <stdint.h>
#include <uv.h>

/* What take() does while Redis is unreachable (ratelimit's on_redis_error). */
#define GG_LEASE_LOCAL  0 /* a local bucket at local_share of the rate (the default) */
#define GG_LEASE_OPEN   1 /* admit everything */
#define GG_LEASE_CLOSED 2 /* refuse everything */

typedef struct gg_lease_opts {
    double rate;        /* tokens per second, cluster-wide */
    double burst;       /* bucket capacity */
    int on_error;       /* GG_LEASE_* */
    double local_share; /* GG_LEASE_LOCAL: fraction of rate and burst this instance admits alone
                         * (e.g. 1/N with N gateways; default 1) */
    uint32_t lease_ttl_ms; /* unspent leased tokens expire after this (default 1000) */
    struct gg_lease_stats *totals; /* counters summed over several buckets (the caller's,
                                    * outliving the bucket), or NULL */
} gg_lease_opts;

typedef struct gg_lease_stats {
    uint64_t refills;      /* lease requests answered */
    uint64_t granted;      /* tokens granted by Redis */
    uint64_t spent;        /* tokens spent locally (calls admitted while Redis was up) */
    uint64_t expired;      /* leased tokens dropped unspent */
    uint64_t redis_errors; /* lease requests failed or refused */
    uint64_t fallback;     /* take() answered by on_redis_error */
} gg_lease_stats;

typedef struct gg_lease gg_lease;

/* A bucket NAME (1..64 of letters, digits, _ . - : #) on the connection in the cell *rp (shared
 * by every bucket of the process). The cell is the caller's and outlives the bucket; the caller
 * may swap the connection in it (a reload to another Redis) or clear it (NULL: no Redis, as
 * if down). Returns NULL with err. */
gg_lease *gg_lease_new(uv_loop_t *loop, gg_redis *const *rp, const char *name,
                       const gg_lease_opts *o, char *err, size_t errlen);

/* Admit one call: 1 yes, 0 no. Never blocks, allocates or waits for Redis: it spends a leased
 * token and, when the lease runs low, asks for the next one in the background. */
int gg_lease_take(gg_lease *l);

const gg_lease_stats *gg_lease_stats_get(const gg_lease *l);

/* Free the bucket; a lease request in flight is answered into nothing. */
void gg_lease_free(gg_lease *l);

/* The script (for docs and specs): KEYS[1] bucket, ARGV rate burst want -> tokens granted. */
extern const char gg_lease_script[];

#endif

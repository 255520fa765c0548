/* cluster.h -- what the gateways of a cluster share through the top-level `redis` option: one
 * Redis connection per process, and the cluster-wide token buckets of ratelimit's
 * scope = "cluster" (core/ratelease.c), reached by the policy through LuaJIT's FFI. */
#ifndef GG_CLUSTER_H
#define GG_CLUSTER_H

#include "core/ratelease.h"
#include "core/redis.h"

struct gg_server;

typedef struct gg_cluster {
    gg_redis *redis; /* the cell every bucket reads (gg_lease_new); NULL without redis */
    char *url;       /* the config's URL it was opened with, to notice a change on reload */
    int workers;     /* cfg->workers: a bucket's local share while Redis is away is 1/workers */
    gg_redis_stats redis_before; /* what connections closed by a reload had counted (/metrics) */
    gg_lease_stats leases;       /* summed over every cluster bucket, ever (/metrics) */
} gg_cluster;

/* Open, keep, swap or close the connection to what cfg->redis says now (at start and after
 * each reload). Buckets keep working across a swap: they read the cell. Returns 0, or -1 when
 * out of memory (logged; the gateway runs on as if Redis were down). */
int gg_cluster_apply(struct gg_server *srv);
/* Close the connection (shutdown): its handles close with the loop's. */
void gg_cluster_stop(struct gg_server *srv);

/* The cluster's counters (Redis round trips and errors, leases) as Prometheus text into out:
 * "" when no redis was ever configured. Returns 0, or -1 when it does not fit in size. */
int gg_cluster_metrics(const struct gg_server *srv, char *out, size_t size);

/* For ratelimit through the FFI (ghost.policy's cdef). A bucket named `service:key`: key is
 * used as it is when it fits a bucket name, else hashed. on_error is "local", "open" or
 * "closed". Returns NULL when out of memory. Owned by the Lua object (ffi.gc) that frees it
 * with gg_cluster_bucket_free, which may run after the server has stopped. */
void *gg_cluster_bucket(void *server, const char *service, const char *key, double rate,
                            double burst, const char *on_error);
int gg_cluster_take(void *b);
void gg_cluster_bucket_free(void *b);

#endif

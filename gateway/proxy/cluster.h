/* cluster.h -- what the gateways of a cluster share through the top-level `redis` option: one
 * Redis connection per process, and the cluster-wide token buckets of ratelimit's
 * scope = "cluster" (core/ratelease.c), reached by the policy through LuaJIT's FFI. */
#ifndef GG_CLUSTER_H
#define GG_CLUSTER_H

#include "core/ratelease.h"
#include "core/redis.h"

struct gg_server;

/* The peers' channels (docs/scale-out.md): a breaker that opened or closed on one gateway, an
 * address throttled for failed authentications. */
#define GG_CLUSTER_BREAKER_CHANNEL "ghostgate:breaker"
#define GG_CLUSTER_AUTH_CHANNEL "ghostgate:auth"

/* What one kind of peer message did here (/metrics). */
typedef struct gg_cluster_msgs {
    uint64_t published; /* messages this process published */
    uint64_t applied;   /* messages of peers applied here */
    uint64_t ignored;   /* messages of peers refused: malformed, or naming what is not here */
    uint64_t lost;      /* messages not published: Redis down (the state stayed local) */
} gg_cluster_msgs;

typedef struct gg_cluster {
    gg_redis *redis; /* the cell every bucket reads (gg_lease_new); NULL without redis */
    gg_redis *sub;   /* subscribed to the peers' channels: pub/sub needs its own connection */
    char sender[20]; /* this process in what it publishes: its own messages come back, skipped */
    gg_cluster_msgs breaker, auth;
    uint64_t auth_counted; /* failed authentications counted in Redis (round trips) */
    char *url;       /* the config's URL it was opened with, to notice a change on reload */
    int workers;     /* cfg->workers: a bucket's local share while Redis is away is 1/workers */
    gg_redis_stats redis_before; /* what connections closed by a reload had counted (/metrics) */
    gg_lease_stats leases;       /* summed over every cluster bucket, ever (/metrics) */
    uint64_t bucket_failed_at;   /* loop time of the last cluster_bucket_failed line */
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
 * "closed". Returns NULL when out of memory (logged as cluster_bucket_failed, at most once a
 * second; the call is refused 429). Owned by the Lua object (ffi.gc) that frees it with
 * gg_cluster_bucket_free, which may run after the server has stopped. */
void *gg_cluster_bucket(void *server, const char *service, const char *key, double rate,
                            double burst, const char *on_error);
int gg_cluster_take(void *b);
void gg_cluster_bucket_free(void *b);

/* Breakers across gateways (cluster_breaker.c). For breaker through the FFI: tell the peers
 * that this process opened (state "open", for cooldown seconds) or closed the breaker of
 * upstream in service. Fire and forget: nothing waits for Redis. Returns 1 when published, 0
 * when there is no redis or it is down (the breaker stays local; counted as lost). */
int gg_cluster_breaker_publish(void *server, const char *service, const char *upstream,
                               const char *state, double cooldown);
/* A message on GG_CLUSTER_BREAKER_CHANNEL: validate it, then hand it to the breakers. */
void gg_cluster_breaker_message(struct gg_server *srv, const char *payload, size_t len);

/* Failed authentications counted across gateways (cluster_auth.c). Count one failure of addr
 * in Redis (window and limit are the authenticator's); when the cluster's count reaches
 * limit, the address is throttled here and on every peer for the rest of the window. Nothing
 * waits for Redis; without it (or while it is down) only the local count holds. */
void gg_cluster_auth_failed(struct gg_server *srv, const char *addr, int limit, double window);
/* A message on GG_CLUSTER_AUTH_CHANNEL. */
void gg_cluster_auth_message(struct gg_server *srv, const char *payload, size_t len);

#endif

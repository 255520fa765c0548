/* discover.h -- services with discover = true take their endpoints from the Redis registry
 * (core/registry.h, docs/scale-out.md) and follow it without a restart or a reload.
 *
 * Per process, on the top-level redis: one connection SUBSCRIBEd to ghostgate:registry (a
 * subscribed connection takes no other command) and one that reads. A service is read with
 * SMEMBERS ghostgate:{S}:eps, then MGET of every member's endpoint key; members whose key is
 * gone are pruned (SREM) so the set does not grow for ever. A service is read again whenever
 * its name is published, every cfg->discover_resync_ms, and after each reconnect (messages
 * published while a subscriber is away are lost). What is read goes to the service's pool
 * through gg_upstream_ops.set_endpoints: new endpoints connect, removed ones drain.
 *
 * Nothing here is on a call's path: a call only sees the pool. While Redis is away the last
 * table read stays in force ("stale": /ready, /routes, the log), and the connections come back
 * with backoff (core/redis.h). The table is kept by service name, so a reload keeps it. */
#ifndef GG_DISCOVER_H
#define GG_DISCOVER_H

#include <stddef.h>
#include <stdint.h>

struct gg_server;

/* Start, keep, swap or stop watching to match srv->cfg and srv->gen (at start and after each
 * reload, once the new generation is current): the known tables are applied to the current
 * services at once and every discover service is read again. Returns 0, or -1 when out of
 * memory (logged; the services keep what they have). */
int gg_discover_apply(struct gg_server *srv);
/* Shutdown: close the Redis connections and timers (their handles close with the loop's). */
void gg_discover_stop(struct gg_server *srv);
/* Free the memory, once the loop has run to its end. */
void gg_discover_free(struct gg_server *srv);

/* Whether the endpoints may not be the registry's: stale (the last state change was a
 * failure to reach it) or not read yet. Then 1 and a sentence for /ready and /routes in out
 * ("registry stale since 2026-01-02T03:04:05Z: why", "registry not read yet"); else 0 and
 * out "". */
int gg_discover_stale(const struct gg_server *srv, char *out, size_t size);
/* Registered endpoints known for a service (-1: the service does not discover). */
int gg_discover_known(const struct gg_server *srv, const char *service);

/* The registry's counters as Prometheus text into out: "" when no service ever discovered.
 * Returns 0, or -1 when it does not fit in size. */
int gg_discover_metrics(const struct gg_server *srv, char *out, size_t size);

#endif

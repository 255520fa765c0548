/* registry.h -- a backend's registration in the Redis registry: one endpoint of one service,
 * kept alive by a heartbeat, removed at once on a clean stop (key layout: docs/scale-out.md).
 *
 * Per heartbeat (every ttl/3), on one connection:
 *   SET ghostgate:{SERVICE}:ep:ADDR INFO PX TTL_MS    the endpoint is alive for TTL
 *   SADD ghostgate:{SERVICE}:eps ADDR                 readers list endpoints here
 *   PUBLISH ghostgate:registry SERVICE                a hint, only when SADD added ADDR
 * and on stop: DEL, SREM, PUBLISH. The {SERVICE} hash tag keeps a service on one slot of a
 * Redis Cluster. */
#ifndef GG_REGISTRY_H
#define GG_REGISTRY_H

#include "core/log.h"
#include "core/redis.h"

#include <uv.h>

#define GG_REGISTRY_PREFIX  "ghostgate:"
#define GG_REGISTRY_CHANNEL "ghostgate:registry"
#define GG_REGISTRY_MIN_TTL_MS 300u      /* heartbeat every 100 ms at the least */
#define GG_REGISTRY_MAX_TTL_MS 86400000u /* a day */

/* A service name the registry accepts: 1..64 of letters, digits, _ . - (no braces: they are
 * the hash tag). An address: 1..200 printable bytes, no spaces. Return 0 or -1 with err. */
int gg_registry_check_service(const char *service, char *err, size_t errlen);
int gg_registry_check_addr(const char *addr, char *err, size_t errlen);

typedef struct gg_registration gg_registration;

/* Register addr for service now and every ttl_ms/3 until stopped, through its own connection
 * to url (reconnecting; a registration lost with a Redis restart comes back with the next
 * heartbeat). info is the value of the endpoint key (free text: who registered). log may be
 * NULL. Returns NULL with err (bad service, address or ttl; out of memory). */
gg_registration *gg_registration_new(uv_loop_t *loop, const gg_redis_url *url, const char *service,
                                     const char *addr, const char *info, uint32_t ttl_ms,
                                     const gg_logger *log, char *err, size_t errlen);

/* Heartbeats that reached Redis (for specs and /metrics). */
uint64_t gg_registration_beats(const gg_registration *g);

/* Deregister (when Redis is up: DEL, SREM, PUBLISH, waiting at most the connection's request
 * timeout), close the connection, then call done(arg) from the loop, never from inside this
 * call. g is freed after done returns. */
void gg_registration_stop(gg_registration *g, void (*done)(void *arg), void *arg);

#endif

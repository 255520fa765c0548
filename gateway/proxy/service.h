/* service.h -- services and the generations of them that reloads make.
 *
 * A service reaches its upstream only through svc->ops (proxy/upstream.h), set once per
 * service from gg_run_opts.upstreams by its protocol. */
#ifndef GG_SERVICE_H
#define GG_SERVICE_H

#include "proxy/config.h"
#include "proxy/pool.h"
#include "proxy/upstream.h"
#include "core/calls.h"

struct gg_server;
struct gg_generation;

typedef struct gg_service {
    struct gg_server *srv;
    struct gg_generation *gen;
    const gg_service_conf *conf;
    const gg_upstream_ops *ops; /* next to conf: both are read on every call */
    const char *name;
    size_t name_len;
    gg_endpoint *eps;
    int neps;
    uint32_t rr; /* round robin over endpoints */
    /* Policies (policy.c): the Lua pipeline, and which phases it has. */
    int pipeline_ref; /* LUA_NOREF (or 0) when the service has no policies */
    char *policy_names; /* "guard,auth,...", for the watchdog's report */
    void *impl; /* the upstream implementation's state (jsonrpc-http pool, Lua adapter) */
    struct gg_service_stats *stats; /* the server's counters for this service name */
    unsigned has_request : 1, has_response : 1, wants_result : 1, keeps_request : 1;
} gg_service;

/* The services of one config. A reload makes a new generation; the old one is retired and
 * freed once its last call has ended and its connections have closed. Endpoints whose
 * service and upstream list did not change move to the new generation with their pool. */
typedef struct gg_generation {
    struct gg_server *srv;
    gg_config *cfg;
    gg_service *services; /* sorted by name */
    int nservices;
    uint32_t calls;    /* calls in flight that started under it */
    int retired;
    int closing;       /* handles still closing after retirement */
    int pipelines_ref; /* the Lua side (ghost.gateway.start result), or LUA_NOREF */
    struct gg_generation *next; /* the server's retired list */
} gg_generation;

/* A generation for cfg with its services (no connection yet). NULL when out of memory. */
gg_generation *gg_generation_new(struct gg_server *srv, gg_config *cfg);
/* Phase LOAD of every service's upstream (adapters load their Lua file), before it takes
 * calls. Returns 0, or -1 with a reason in err. */
int gg_generation_load(gg_generation *gen, char *err, size_t errlen);
/* Start its upstream pools; endpoints unchanged since `old` (may be NULL) are taken over. */
void gg_generation_connect(gg_generation *gen, gg_generation *old);
/* A retired generation is freed when its last call ends (gen->calls reaches 0). */
void gg_generation_retire(gg_generation *gen);
void gg_generation_maybe_free(gg_generation *gen);
/* Close every upstream connection of gen (failing their calls), at shutdown. */
void gg_generation_stop(gg_generation *gen);
/* Free the memory (after the loop has finished, or once retired and closed). */
void gg_generation_free(gg_generation *gen);
/* The service called name[0..len) in the current generation (or in gen), or NULL. */
gg_service *gg_service_find(struct gg_server *srv, const char *name, size_t len);
gg_service *gg_generation_find(gg_generation *gen, const char *name, size_t len);
/* Endpoints that take new calls (not draining, not a free slot). O(endpoints): for error paths
 * and the admin endpoint, never per call. */
int gg_service_live_endpoints(const gg_service *svc);

/* Call sites keep these names (dispatch.c): one indirect call to the service's protocol. */
static inline int gg_upstream_send(gg_service *svc, gg_call *call, int endpoint,
                                   const char *method, uint32_t method_len, const char *params,
                                   size_t params_len)
{
    return svc->ops->send(svc, call, endpoint, method, method_len, params, params_len);
}

static inline int gg_upstream_notify(gg_service *svc, int endpoint, const char *method,
                                     uint32_t method_len, const char *params, size_t params_len)
{
    return svc->ops->notify(svc, endpoint, method, method_len, params, params_len);
}

#endif

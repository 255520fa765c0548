/* upstream.h -- services, their upstream endpoints and the pooled connections to them.
 *
 * Each endpoint keeps a fixed pool of persistent connections, multiplexing many calls on
 * each. A dead connection fails its calls at once and reconnects with exponential backoff. */
#ifndef GG_UPSTREAM_H
#define GG_UPSTREAM_H

#include "core/addr.h"
#include "proxy/config.h"
#include "core/calls.h"
#include "core/stream.h"

struct gg_server;
struct gg_endpoint;
struct gg_generation;

#define GG_UP_IDLE       0 /* handle closed, not trying */
#define GG_UP_CONNECTING 1
#define GG_UP_CONNECTED  2
#define GG_UP_BACKOFF    3 /* waiting to reconnect */
#define GG_UP_CLOSING    4

typedef struct gg_uconn {
    gg_stream st; /* first member */
    struct gg_endpoint *ep;
    gg_call_list calls; /* in flight here (their carrier) */
    gg_call_list owed;  /* ended unanswered: their ids are reserved until answered or closed */
    int state;
    int index;
    uint32_t backoff_ms;
    int connect_status; /* why the last connect failed (for on_closed's log), 0: it did not */
    uint64_t connected_at;
    uv_connect_t creq;
    uv_timer_t retry;
} gg_uconn;

typedef struct gg_endpoint {
    struct gg_service *svc;
    const gg_addr *addr;
    gg_uconn *conns;
    int nconns;
    int nconnected;
    uint64_t connect_failures;
    /* Down: a connect failed while no connection was up. Logged once, when it goes down and
     * when it comes back; the failures in between are counted and logged at debug only. */
    int down;
    uint64_t down_since; /* loop time, ms */
    uint64_t down_repeats;
} gg_endpoint;

typedef struct gg_service {
    struct gg_server *srv;
    struct gg_generation *gen;
    const gg_service_conf *conf;
    const char *name;
    size_t name_len;
    gg_endpoint *eps;
    int neps;
    uint32_t rr; /* round robin over endpoints */
    /* Policies (policy.c): the Lua pipeline, and which phases it has. */
    int pipeline_ref; /* LUA_NOREF (or 0) when the service has no policies */
    char *policy_names; /* "guard,auth,...", for the watchdog's report */
    void *impl; /* jsonrpc-http pool (upstream_http.c) or Lua adapter (adapter.c) */
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
/* Load the Lua adapters of its services (before it takes calls). Returns 0, or -1 with a
 * reason in err. */
int gg_generation_load_adapters(gg_generation *gen, char *err, size_t errlen);
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

/* A connection of ep (both protocols) failed to connect; the next attempt is in retry_ms.
 * Logs upstream_down when that leaves ep without a connection, else only at debug. */
void gg_endpoint_connect_failed(gg_endpoint *ep, int conn, int status, uint64_t retry_ms);
/* A connection of ep is up: logs upstream_back, with the failures not logged, if ep was down. */
void gg_endpoint_connected(gg_endpoint *ep, int conn);

/* Send a call upstream, to endpoint `endpoint` (1-based; 0: the core chooses). method/body are
 * the bytes to put after the upstream msgid. Returns 0, or a gateway error code (nothing was
 * sent, the call is untouched). Sets call->endpoint and call->sent. */
int gg_upstream_send(gg_service *svc, gg_call *call, int endpoint, const char *method,
                     uint32_t method_len, const char *body, size_t body_len);
/* A call sent on the connection whose calls are `carrier` has ended before its answer came
 * (deadline, client gone); the caller held it before gg_call_end. While that connection may
 * still answer it, it keeps the hold so the id is not reused (calls.h), and lets it go when
 * the answer arrives (dropped) or it closes; otherwise the hold is let go now. A connection
 * owing more than max_calls / 16 answers is closed and reconnected: its upstream has stopped
 * answering. */
void gg_upstream_owe(gg_call_list *carrier, gg_call *call);
/* Forward a notification to endpoint `endpoint` (as for gg_upstream_send). Returns 0 or a
 * gateway error code. */
int gg_upstream_notify(gg_service *svc, int endpoint, const char *method, uint32_t method_len,
                       const char *body, size_t body_len);

#endif

/* upstream.h -- how a service reaches its upstream: one implementation per protocol
 * (upstreams/mprpc.c, upstreams/jsonrpc_http.c, upstreams/adapter.c), chosen once per service
 * from upstreams/upstreams.c's table through gg_run_opts.upstreams. Nothing outside those
 * files knows the protocols: proxy/ only calls svc->ops. Header only. */
#ifndef GG_UPSTREAM_H
#define GG_UPSTREAM_H

#include "core/addr.h"
#include "core/calls.h"

#include <stddef.h>
#include <stdint.h>

struct gg_service;
struct gg_kept_list;

#define GG_UPSTREAM_LOAD    0 /* a new generation, before it takes calls: may fail (config refused) */
#define GG_UPSTREAM_CONNECT 1 /* the generation is now current: open the pools */

#define GG_DISCOVER_MAX_ENDPOINTS 256 /* slots of a discover = true service; more are ignored */

typedef struct gg_upstream_info {
    const char *protocol;  /* "msgpack-rpc", "jsonrpc-http", "adapter" (/routes) */
    const char *not_ready; /* NULL when a call could go out now, else why (/ready) */
} gg_upstream_info;

typedef struct gg_upstream_ops {
    const char *name;
    /* Called twice for each service of a new generation: phase LOAD (adapters load their
     * file here; the others return 0), then phase CONNECT once the generation is current.
     * prev is the service of the same name in the generation being replaced (CONNECT only;
     * may be NULL): a pool may take over its unchanged endpoints. Returns 0, or -1 with a
     * reason in err (LOAD: the config is refused; CONNECT: logged as out_of_memory). */
    int (*start)(struct gg_service *svc, struct gg_service *prev, int phase, char *err,
                 size_t errlen);
    /* Send a call upstream, to endpoint `endpoint` (1-based; 0: the implementation chooses).
     * method/params are the bytes to put after the upstream msgid. Returns 0, or a gateway
     * error code (nothing was sent, the call is untouched). Sets call->endpoint and
     * call->sent. The answer comes later through gg_call_answer / gg_call_fail. */
    int (*send)(struct gg_service *svc, gg_call *call, int endpoint, const char *method,
                uint32_t method_len, const char *params, size_t params_len);
    /* Forward a notification (endpoint as for send). Returns 0 or a gateway error code
     * (GG_ERR_NOT_SUPPORTED where the protocol has none). */
    int (*notify)(struct gg_service *svc, int endpoint, const char *method, uint32_t method_len,
                  const char *params, size_t params_len);
    /* Close what the service holds, failing its calls in flight; idempotent. counted: the
     * generation is retired and waits for the close callbacks (gen->closing) before it frees
     * itself. Called again with counted 0 when the generation is freed. */
    void (*release)(struct gg_service *svc, int counted);
    /* A call sent on the connection whose calls are `carrier` has ended before its answer
     * came (deadline, client gone); the caller held it before gg_call_end. While that
     * connection may still answer it, it keeps the hold so the id is not reused (calls.h),
     * and lets it go when the answer arrives (dropped) or it closes; otherwise the hold is
     * let go now. Only for a protocol that carries calls in a gg_call_list (mprpc); NULL
     * otherwise. Not on the answered path: the answer unlinks the carrier first. */
    void (*owe)(gg_call_list *carrier, gg_call *call);
    /* Remote objects (docs/protocol.md#remote-objects); NULL where the protocol has none.
     * conn is the `conn` of an upstream-side gg_objtab this implementation made. The service
     * the connection now serves, or NULL when it is not connected: */
    struct gg_service *(*conn_service)(void *conn);
    /* Send a call ($call, $get) on exactly that connection; same contract as send. */
    int (*send_to)(void *conn, gg_call *call, const char *method, uint32_t method_len,
                   const char *params, size_t params_len);
    /* Send a notification ($finish) on exactly that connection; dropped when it cannot take
     * it now. */
    void (*notify_to)(void *conn, const char *method, uint32_t method_len, const char *params,
                      size_t params_len);
    /* Promise pipelining (proxy/promises.h): the connection carrying `call` (sent by send,
     * not yet answered) and its list of kept answers, or NULL. */
    void *(*carrier_conn)(gg_call *call, struct gg_kept_list **kept);
    /* Send the releases queued on the connection's table as one $release notification (at
     * the end of a loop turn: gg_server's dirty tables). */
    void (*send_releases)(void *conn);
    /* Callbacks (proxy/callbacks.h): the gg_cb_port of an objects table's connection. */
    struct gg_cb_port *(*cb_port)(void *conn);
    /* /metrics: add the client objects the service's connections hold (callbacks). */
    void (*cb_counts)(const struct gg_service *svc, uint64_t *held);
    /* /metrics: add the service's live remote-object references, upstream side (objects its
     * connections exported that the gateway holds) and client side (references clients
     * hold to them). NULL: none. */
    void (*obj_counts)(const struct gg_service *svc, uint64_t *upstream, uint64_t *client);
    /* discover = true (proxy/discover.h): the registry now lists addrs[0..n) for svc. New
     * endpoints get a pool and connect at once; endpoints no longer listed drain: they take
     * no new call, finish their calls in flight and keep the connections that remote-object
     * references point into until those are released, then close. An endpoint keeps its
     * number while it lives; the number of a closed one may be given to a later one. Tells
     * the policies when the list changed. Returns how many endpoints are still draining
     * (call again later, with the same list, to close those that finished). NULL where the
     * protocol cannot discover (the config refuses it). */
    int (*set_endpoints)(struct gg_service *svc, const gg_addr *addrs, int n);
    /* What /routes and /ready say about the service. */
    void (*describe)(const struct gg_service *svc, gg_upstream_info *out);
} gg_upstream_ops;

#endif

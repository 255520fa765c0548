/* upstream_http.h -- services whose upstreams speak JSON-RPC 2.0 over HTTP/1.1. */
#ifndef GG_UPSTREAM_HTTP_H
#define GG_UPSTREAM_HTTP_H

#include "core/calls.h"

#include <stddef.h>
#include <stdint.h>

struct gg_service;

/* Start the connection pool of svc (svc->conf->protocol == GG_PROTO_JSONRPC_HTTP); its state
 * goes in svc->impl. Returns 0 or -1. */
int gg_http_upstream_start(struct gg_service *svc);
/* The generation of svc is going away: close the pool, failing its calls, and free svc->impl
 * once its handles are closed. Nothing may touch svc after this returns. */
void gg_http_upstream_release(struct gg_service *svc);
/* Send a call (see gg_upstream_send): params is the MessagePack array of arguments. The
 * answer comes later through gg_call_answer / gg_call_fail on the call found by its id
 * (gg_call_find: a call that ended meanwhile is gone). Returns 0 or a gateway error code. */
int gg_http_upstream_send(struct gg_service *svc, gg_call *call, int endpoint, const char *method,
                          uint32_t method_len, const char *params, size_t params_len);

#endif

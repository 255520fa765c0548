/* http_rpc.h -- the JSON-RPC 2.0 front door: HTTP connections whose POSTs to `http.path` carry
 * JSON-RPC requests (single or batch), routed like MessagePack-RPC calls with the same policies,
 * answered in JSON. The mapping of errors and values is in docs/http.md. */
#ifndef GG_HTTP_RPC_H
#define GG_HTTP_RPC_H

#include <uv.h>

struct gg_http_front;

/* Accept a connection on a front-door listener: it becomes a client (gg_client_add). */
struct gg_tls_ctx;
/* tls: HTTPS (a tls:// listener), else NULL. */
void gg_http_rpc_accept(struct gg_http_front *f, uv_stream_t *server, int is_pipe, struct gg_tls_ctx *tls);

/* JSON-RPC error code for a gateway error code (docs/http.md has the table). */
int gg_http_rpc_code(int gateway_code);

#endif

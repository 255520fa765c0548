/* jsonrpc_http.h -- services whose upstreams speak JSON-RPC 2.0 over HTTP/1.1: a pool of
 * keep-alive connections per endpoint URL (jsonrpc_http.c), the JSON-RPC mapping in
 * jsonrpc_msg.c. Reached only through its gg_upstream_ops. */
#ifndef GG_JSONRPC_HTTP_H
#define GG_JSONRPC_HTTP_H

#include "proxy/upstream.h"

extern const gg_upstream_ops gg_jsonrpc_http_ops;

#endif

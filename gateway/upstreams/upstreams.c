/* upstreams.c -- the protocol -> implementation table; see upstreams.h. */
#include "upstreams/upstreams.h"
#include "upstreams/adapter.h"
#include "upstreams/jsonrpc_http.h"
#include "upstreams/mprpc.h"

const gg_upstream_ops *const gg_upstream_protocols[GG_PROTO_COUNT] = {
    [GG_PROTO_MSGPACK] = &gg_mprpc_ops,
    [GG_PROTO_JSONRPC_HTTP] = &gg_jsonrpc_http_ops,
    [GG_PROTO_ADAPTER] = &gg_adapter_ops,
};

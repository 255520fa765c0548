/* upstreams.h -- the one place a protocol picks its implementation. */
#ifndef GG_UPSTREAMS_H
#define GG_UPSTREAMS_H

#include "proxy/config.h"
#include "proxy/upstream.h"

/* Indexed by GG_PROTO_*: for gg_run_opts.upstreams (cli/main.c). */
extern const gg_upstream_ops *const gg_upstream_protocols[GG_PROTO_COUNT];

#endif

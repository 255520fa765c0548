/* adapter.h -- services implemented by a Lua file inside the gateway (`adapter = "x.lua"`),
 * reached only through their gg_upstream_ops. */
#ifndef GG_ADAPTER_H
#define GG_ADAPTER_H

#include "proxy/upstream.h"

extern const gg_upstream_ops gg_adapter_ops;

#endif

/* adapter.h -- services implemented by a Lua file inside the gateway (`adapter = "x.lua"`). */
#ifndef GG_ADAPTER_H
#define GG_ADAPTER_H

#include "core/calls.h"

#include <stddef.h>
#include <stdint.h>

struct gg_service;

/* Load svc->conf->adapter into the gateway's Lua state; state in svc->impl. Returns 0, or -1
 * with a reason in err (the config is then refused). */
int gg_adapter_start(struct gg_service *svc, char *err, size_t errlen);
/* The generation of svc is going away (calls still running finish or are dropped). */
void gg_adapter_release(struct gg_service *svc);
/* Run the call (see gg_upstream_send). Returns 0 or a gateway error code. */
int gg_adapter_send(struct gg_service *svc, gg_call *call, const char *method, uint32_t method_len,
                    const char *params, size_t params_len);

#endif

/* upstream_http.c -- JSON-RPC over HTTP upstreams (not implemented yet: every call is
 * answered not_supported). */
#include "upstream_http.h"
#include "errors.h"
#include "upstream.h"

int gg_http_upstream_start(gg_service *svc)
{
    (void)svc;
    return 0;
}

void gg_http_upstream_release(gg_service *svc)
{
    (void)svc;
}

int gg_http_upstream_send(gg_service *svc, gg_call *call, int endpoint, const char *method,
                          uint32_t method_len, const char *params, size_t params_len)
{
    (void)svc, (void)call, (void)endpoint, (void)method, (void)method_len, (void)params,
        (void)params_len;
    return GG_ERR_NOT_SUPPORTED;
}

/* adapter.c -- Lua adapters (not implemented yet: every call is answered not_supported). */
#include "adapter.h"
#include "errors.h"
#include "upstream.h"

int gg_adapter_start(gg_service *svc, char *err, size_t errlen)
{
    (void)svc, (void)err, (void)errlen;
    return 0;
}

void gg_adapter_release(gg_service *svc)
{
    (void)svc;
}

int gg_adapter_send(gg_service *svc, gg_call *call, const char *method, uint32_t method_len,
                    const char *params, size_t params_len)
{
    (void)svc, (void)call, (void)method, (void)method_len, (void)params, (void)params_len;
    return GG_ERR_NOT_SUPPORTED;
}

/* fuzz_callbacks.c -- libFuzzer target for what the gateway decodes of callbacks
 * (proxy/callbacks.c): the interface a client sends with an object it passes, and an
 * upstream's $release of the ids it was given, on any bytes.
 *
 * Properties: the interface check never reads past its input, accepts only arrays of at most
 * 256 strings, and finds each of their strings; a $release changes nothing but the counts of
 * ids the table gave, its sizes match what is in it, and everything is freed at the end
 * (ASan's leak check). */
#include "core/objtable.h"
#include "proxy/callbacks.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    size_t n = gg_cb_iface_size(buf, size);
    if (n > size) abort();
    if (n) {
        uint32_t count = (buf[0] & 0xf0) == 0x90 ? buf[0] & 0x0f : (uint32_t)buf[1] << 8 | buf[2];
        if (count > 256) abort();
        /* its first string is found; a name longer than the whole interface is not */
        if (count && (buf[(buf[0] & 0xf0) == 0x90 ? 1 : 3] & 0xe0) == 0xa0) {
            const uint8_t *s = buf + ((buf[0] & 0xf0) == 0x90 ? 1 : 3);
            if (!gg_cb_iface_has(buf, (const char *)s + 1, s[0] & 0x1f)) abort();
        }
        char big[300] = {0};
        if (n < sizeof big && gg_cb_iface_has(buf, big, (uint32_t)n + 1)) abort();
    }
    free(buf);

    /* The same bytes as $release params on a port that was given a few objects. */
    gg_objtab own, held;
    gg_objtab_init(&own, GG_OBJ_UPSTREAM, 64);
    gg_objtab_init(&held, GG_OBJ_CLIENT, 64);
    gg_cb_port port = {0};
    port.held = &held;
    for (uint64_t id = 1; id <= 4; id++) {
        int err;
        gg_objent *e = gg_objtab_import(&own, id, NULL, &err);
        if (!e || gg_objtab_give(&held, e) <= 0) abort();
    }
    gg_cb_release(&port, (const char *)data, size);
    if (held.len != held.by_id.used || held.len != held.by_src.used || held.len > 4) abort();
    if (own.len != own.by_id.used) abort();
    gg_objtab_free(&held);
    gg_objtab_free(&own);
    return 0;
}

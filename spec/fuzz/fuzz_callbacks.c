/* fuzz_callbacks.c -- libFuzzer target for what the gateway decodes of callbacks
 * (proxy/callbacks.c): the interface a client sends with an object it passes (core/objiface.c,
 * the parser an upstream's objects use too), and an upstream's $release of the ids it was
 * given, on any bytes.
 *
 * Properties: the interface check never reads past its input, accepts only arrays of at most
 * GG_OBJIFACE_MAX strings, agrees with what gg_objiface_new copies, and finds each of their
 * first strings but no name longer than the whole interface; a $release changes nothing but
 * the counts of ids the table gave, its sizes match what is in it, and everything is freed at
 * the end (ASan's leak check). */
#include "core/objiface.h"
#include "core/objtable.h"
#include "proxy/callbacks.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    int valid = gg_objiface_valid(buf, size);
    gg_objiface *f = gg_objiface_new(buf, size);
    if (f && !valid) abort();
    if (valid) {
        uint32_t count = (data[0] & 0xf0) == 0x90 ? data[0] & 0x0f
                                                  : (uint32_t)data[1] << 8 | data[2];
        if (count > GG_OBJIFACE_MAX) abort();
        /* its first string is found; a name longer than the whole interface is not */
        size_t first = (data[0] & 0xf0) == 0x90 ? 1 : 3;
        if (f && count && (data[first] & 0xe0) == 0xa0 &&
            !gg_objiface_has(f, buf + first + 1, data[first] & 0x1f))
            abort();
        static char big[4096];
        if (size < sizeof big && gg_objiface_has(f, big, (uint32_t)size + 1)) abort();
    }
    free(f);
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

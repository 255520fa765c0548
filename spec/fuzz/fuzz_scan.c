/* fuzz_scan.c -- libFuzzer target for the envelope scanner, checked against msgpack-c.
 *
 * Properties: the scanner never reads past what it is given; fed in two pieces it reaches the
 * same verdict as fed whole; when it accepts a message, msgpack-c (an independent decoder)
 * decodes exactly the same number of bytes. msgpack-c is only run on bytes the scanner
 * accepted, because it sizes allocations from claimed counts (msgpack-c #1013). */
#include "core/codec.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* msgpack-c's unpacker nests at most 32 levels (MSGPACK_EMBED_STACK_SIZE). */
    gg_scan_limits lim = {.max_message = 1 << 16, .max_depth = 32};
    /* A copy of exactly `size` bytes, so ASan catches any read past the end. */
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);

    gg_scan_state whole;
    gg_scan_reset(&whole);
    int rc = gg_scan(&whole, buf, size, &lim);

    if (size > 1) {
        size_t cut = data[0] % size;
        gg_scan_state split;
        gg_scan_reset(&split);
        int rc1 = gg_scan(&split, buf, cut, &lim);
        int rc2 = rc1 == GG_SCAN_MORE ? gg_scan(&split, buf, size, &lim) : rc1;
        if (rc2 != rc) abort();
        /* The envelope read in one go (the straight-line path) and piece by piece (the general
         * walk) must agree on every field. */
        const gg_msg *a = &whole.msg, *b = &split.msg;
        if (rc == GG_SCAN_DONE &&
            (a->size != b->size || a->is_array != b->is_array || a->count != b->count ||
             a->type != b->type || a->has_id != b->has_id || a->msgid != b->msgid ||
             a->has_method != b->has_method || a->method_off != b->method_off ||
             a->method_len != b->method_len || a->body_off != b->body_off ||
             a->body_first != b->body_first))
            abort();
    }

    if (rc == GG_SCAN_DONE) {
        if (whole.msg.size == 0 || whole.msg.size > size) abort();
        gg_msg_invalid(&whole.msg);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        msgpack_unpack_return r = msgpack_unpack_next(&u, buf, whole.msg.size, &off);
        if (r != MSGPACK_UNPACK_SUCCESS || off != whole.msg.size) abort();
        msgpack_unpacked_destroy(&u);
    }
    free(buf);
    return 0;
}

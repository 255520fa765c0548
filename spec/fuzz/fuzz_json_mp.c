/* fuzz_json_mp.c -- libFuzzer target for MessagePack -> JSON -> MessagePack (gateway/core/json.c).
 *
 * Network bytes reach gg_json_from_msgpack through `ghostgate call` (the answer printed as
 * JSON) and the JSON front door. Properties, from json.h ("the mapping is exact"):
 *   - gg_json_from_msgpack never reads past len, never allocates from an unchecked count;
 *   - a value it accepts converts back (gg_json_to_msgpack) without error, and the bytes it
 *     writes decode (msgpack-c) to the same value: same types (float32 may come back as
 *     float64 of the same value), same integers, same bytes of str/bin/ext, same map key
 *     order; converting those bytes to JSON and back gives the same bytes again;
 *   - every error leaves a reason in err.
 * The first input byte picks max_depth (0..GG_JSON_DEPTH_MAX+1); the rest is the value. */
#include "core/codec.h"
#include "core/json.h"

#include <stdlib.h>
#include <string.h>

/* Structural equality of two msgpack-c objects as the mapping promises it. */
static int same(const msgpack_object *a, const msgpack_object *b)
{
    int fa = a->type == MSGPACK_OBJECT_FLOAT32 || a->type == MSGPACK_OBJECT_FLOAT64;
    int fb = b->type == MSGPACK_OBJECT_FLOAT32 || b->type == MSGPACK_OBJECT_FLOAT64;
    if (fa || fb) return fa && fb && a->via.f64 == b->via.f64;
    if (a->type != b->type) return 0;
    switch (a->type) {
    case MSGPACK_OBJECT_NIL: return 1;
    case MSGPACK_OBJECT_BOOLEAN: return a->via.boolean == b->via.boolean;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return a->via.u64 == b->via.u64;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return a->via.i64 == b->via.i64;
    case MSGPACK_OBJECT_STR:
        return a->via.str.size == b->via.str.size &&
               (a->via.str.size == 0 || !memcmp(a->via.str.ptr, b->via.str.ptr, a->via.str.size));
    case MSGPACK_OBJECT_BIN:
        return a->via.bin.size == b->via.bin.size &&
               (a->via.bin.size == 0 || !memcmp(a->via.bin.ptr, b->via.bin.ptr, a->via.bin.size));
    case MSGPACK_OBJECT_EXT:
        return a->via.ext.type == b->via.ext.type && a->via.ext.size == b->via.ext.size &&
               (a->via.ext.size == 0 || !memcmp(a->via.ext.ptr, b->via.ext.ptr, a->via.ext.size));
    case MSGPACK_OBJECT_ARRAY:
        if (a->via.array.size != b->via.array.size) return 0;
        for (uint32_t i = 0; i < a->via.array.size; i++)
            if (!same(&a->via.array.ptr[i], &b->via.array.ptr[i])) return 0;
        return 1;
    case MSGPACK_OBJECT_MAP:
        if (a->via.map.size != b->via.map.size) return 0;
        for (uint32_t i = 0; i < a->via.map.size; i++)
            if (!same(&a->via.map.ptr[i].key, &b->via.map.ptr[i].key) ||
                !same(&a->via.map.ptr[i].val, &b->via.map.ptr[i].val))
                return 0;
        return 1;
    default: return 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int depth = data[0] % (GG_JSON_DEPTH_MAX + 2);
    size--;
    /* A copy of exactly `size` bytes, so ASan catches any read past the end. */
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data + 1, size);

    char err[256] = "";
    json_t *j1 = gg_json_from_msgpack(buf, size, depth, err, sizeof err);
    if (!j1) {
        if (!err[0]) abort(); /* an error without a reason */
        free(buf);
        return 0;
    }

    /* Accepted: the bytes are exactly one MessagePack value (the scanner said so). */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    err[0] = 0;
    if (gg_json_to_msgpack(j1, depth, &sb, err, sizeof err) != 0) abort(); /* not exact */

    msgpack_unpacked u1, u2;
    size_t off1 = 0, off2 = 0;
    msgpack_unpacked_init(&u1);
    msgpack_unpacked_init(&u2);
    if (msgpack_unpack_next(&u1, buf, size, &off1) != MSGPACK_UNPACK_SUCCESS || off1 != size) abort();
    if (msgpack_unpack_next(&u2, sb.data, sb.size, &off2) != MSGPACK_UNPACK_SUCCESS || off2 != sb.size)
        abort();
    if (!same(&u1.data, &u2.data)) abort(); /* the value changed on the way */

    /* And those bytes convert again to the very same bytes (json_equal cannot judge: it looks
     * keys up as C strings, and keys may hold U+0000). */
    json_t *j2 = gg_json_from_msgpack(sb.data, sb.size, depth, err, sizeof err);
    if (!j2) abort();
    msgpack_sbuffer sb2;
    msgpack_sbuffer_init(&sb2);
    if (gg_json_to_msgpack(j2, depth, &sb2, err, sizeof err) != 0) abort();
    if (sb2.size != sb.size || memcmp(sb2.data, sb.data, sb.size) != 0) abort();

    msgpack_sbuffer_destroy(&sb2);
    json_decref(j2);
    msgpack_unpacked_destroy(&u1);
    msgpack_unpacked_destroy(&u2);
    msgpack_sbuffer_destroy(&sb);
    json_decref(j1);
    free(buf);
    return 0;
}

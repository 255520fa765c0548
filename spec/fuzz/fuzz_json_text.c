/* fuzz_json_text.c -- libFuzzer target for JSON text -> MessagePack (jansson's json_loadb, as
 * `ghostgate call` parses its arguments, then gg_json_to_msgpack) and back.
 *
 * Properties: a JSON value that converts gives bytes that are exactly one MessagePack value
 * within the depth limit (the bounded scanner agrees); those bytes convert back to JSON, and
 * that JSON converts to the very same bytes (the mapping is a fixed point after one round);
 * the JSON read back equals the input, except that {"$uint": "<n>"} with n <= INT64_MAX comes
 * back as the integer n (a documented normalisation). A refused value leaves a reason in err
 * and the output buffer exactly as it was.
 * The first input byte picks max_depth (0..GG_JSON_DEPTH_MAX); the rest is the text. */
#include "core/codec.h"
#include "core/json.h"

#include <stdlib.h>
#include <string.h>

/* Does v hold a "$uint" tag anywhere? */
static int has_uint_tag(const json_t *v)
{
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (has_uint_tag(json_array_get(v, i))) return 1;
        return 0;
    }
    if (!json_is_object(v)) return 0;
    if (json_object_get(v, "$uint")) return 1;
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)v, k, x)
    {
        if (has_uint_tag(x)) return 1;
    }
    return 0;
}

/* Does v hold an object key with U+0000 in it? */
static int has_nul_key(const json_t *v)
{
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (has_nul_key(json_array_get(v, i))) return 1;
        return 0;
    }
    if (!json_is_object(v)) return 0;
    const char *k;
    size_t klen;
    json_t *x;
    json_object_keylen_foreach((json_t *)v, k, klen, x)
    {
        if (strlen(k) != klen || has_nul_key(x)) return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int depth = data[0] % (GG_JSON_DEPTH_MAX + 1); /* decoding is capped there (json.h) */
    json_error_t je;
    json_t *j = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!j) return 0;

    char err[256] = "";
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_write(&sb, "\xc0", 1); /* something already there: must survive an error */
    if (gg_json_to_msgpack(j, depth, &sb, err, sizeof err) != 0) {
        if (!err[0] || sb.size != 1 || sb.data[0] != (char)0xc0) abort();
        goto done;
    }
    const char *m1 = sb.data + 1;
    size_t n1 = sb.size - 1;

    /* Exactly one value, no deeper than max_depth containers. */
    gg_scan_state st;
    gg_scan_limits lim = {.max_message = n1, .max_depth = depth > 0 ? (uint32_t)depth : 1};
    gg_scan_reset(&st);
    if (gg_scan(&st, m1, n1, &lim) != GG_SCAN_DONE || st.msg.size != n1) abort();

    json_t *j2 = gg_json_from_msgpack(m1, n1, depth, err, sizeof err);
    if (!j2) abort(); /* what we wrote, we must read */
    msgpack_sbuffer sb2;
    msgpack_sbuffer_init(&sb2);
    if (gg_json_to_msgpack(j2, depth, &sb2, err, sizeof err) != 0) abort();
    if (sb2.size != n1 || memcmp(sb2.data, m1, n1) != 0) abort(); /* not a fixed point */
    /* json_equal looks keys up as C strings: only meaningful when no key holds U+0000. */
    if (!json_equal(j, j2) && !has_uint_tag(j) && !has_nul_key(j)) abort();
    msgpack_sbuffer_destroy(&sb2);
    json_decref(j2);
done:
    msgpack_sbuffer_destroy(&sb);
    json_decref(j);
    return 0;
}

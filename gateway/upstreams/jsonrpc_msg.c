/* jsonrpc_msg.c -- the JSON-RPC 2.0 mapping of the jsonrpc-http upstream, with no I/O; see
 * jsonrpc_msg.h. */
#include "upstreams/jsonrpc_msg.h"
#include "core/json.h"

#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#define MAX_SAFE_INT ((uint64_t)1 << 53) /* the largest integer every double holds */

/* JSON can carry it, and a JSON-RPC peer will read it back as it was sent. json.h maps bin,
 * ext and big unsigned integers to tagged objects, which a legacy service would take for
 * data; here they are refused instead. path is where o is ("params[1].photo"). */
static int json_safe(const msgpack_object *o, char *path, size_t plen, size_t cap, char *err,
                     size_t errlen)
{
    switch (o->type) {
    case MSGPACK_OBJECT_BIN:
        snprintf(err, errlen,
                 "%s is binary (MessagePack bin): JSON has no bytes type; send a str "
                 "(e.g. base64) instead",
                 path);
        return -1;
    case MSGPACK_OBJECT_EXT:
        snprintf(err, errlen, "%s is a MessagePack ext value: JSON has no such type", path);
        return -1;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 <= MAX_SAFE_INT) return 0;
        snprintf(err, errlen,
                 "%s is the integer %" PRIu64 ", beyond 2^53: JSON peers read numbers as "
                 "doubles and would change it; send it as a str",
                 path, o->via.u64);
        return -1;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        if (o->via.i64 >= -(int64_t)MAX_SAFE_INT) return 0;
        snprintf(err, errlen,
                 "%s is the integer %" PRId64 ", beyond -2^53: JSON peers read numbers as "
                 "doubles and would change it; send it as a str",
                 path, o->via.i64);
        return -1;
    case MSGPACK_OBJECT_ARRAY:
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            int n = snprintf(path + plen, cap - plen, "[%u]", i);
            size_t sub = n > 0 && (size_t)n < cap - plen ? plen + (size_t)n : plen;
            if (json_safe(&o->via.array.ptr[i], path, sub, cap, err, errlen)) return -1;
            path[plen] = 0;
        }
        return 0;
    case MSGPACK_OBJECT_MAP:
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR) {
                snprintf(err, errlen,
                         "%s is a map with a key that is not a string: JSON object keys are "
                         "strings",
                         path);
                return -1;
            }
            int n = snprintf(path + plen, cap - plen, ".%.*s",
                             (int)(kv->key.via.str.size > 40 ? 40 : kv->key.via.str.size),
                             kv->key.via.str.ptr);
            size_t sub = n > 0 && (size_t)n < cap - plen ? plen + (size_t)n : plen;
            if (json_safe(&kv->val, path, sub, cap, err, errlen)) return -1;
            path[plen] = 0;
        }
        return 0;
    default:
        return 0; /* nil, bool, float, str: json.h has the last word (NaN, invalid UTF-8) */
    }
}

char *gg_jsonrpc_request(uint32_t id, const char *method, uint32_t mlen, const char *params,
                          size_t plen, int max_depth, char *err, size_t errlen)
{
    char *text = NULL;
    json_t *req = NULL, *jparams = NULL, *jmethod = NULL;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    /* The bytes were walked by the gateway's bounded scanner when the request arrived. */
    if (msgpack_unpack_next(&u, params, plen, &off) != MSGPACK_UNPACK_SUCCESS || off != plen ||
        u.data.type != MSGPACK_OBJECT_ARRAY) {
        snprintf(err, errlen, "params cannot be read (nested deeper than %d levels?)",
                 GG_JSON_DEPTH_MAX);
        goto done;
    }
    char path[160] = "params";
    if (json_safe(&u.data, path, strlen(path), sizeof path, err, errlen)) goto done;
    char why[200];
    jparams = gg_json_from_object(&u.data, max_depth, why, sizeof why);
    if (!jparams) {
        snprintf(err, errlen, "params cannot be sent as JSON: %s", why);
        goto done;
    }
    jmethod = json_stringn(method, mlen);
    if (!jmethod) {
        snprintf(err, errlen, "the method name is not valid UTF-8");
        goto done;
    }
    req = json_object();
    if (!req || json_object_set_new(req, "jsonrpc", json_string("2.0")) ||
        json_object_set_new(req, "id", json_integer(id)) ||
        json_object_set(req, "method", jmethod) || json_object_set(req, "params", jparams)) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    text = json_dumps(req, JSON_COMPACT);
    if (!text) snprintf(err, errlen, "out of memory");
done:
    json_decref(req);
    json_decref(jparams);
    json_decref(jmethod);
    msgpack_unpacked_destroy(&u);
    return text;
}

void gg_jsonrpc_excerpt(const char *body, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < cap && n < 80 && body[i]; i++) {
        unsigned char ch = (unsigned char)body[i];
        if (ch == '\r' || ch == '\n') {
            if (n) break;
            continue;
        }
        out[n++] = (char)ch;
    }
    out[n] = 0;
}


/* json.c -- MessagePack <-> JSON mapping on jansson, msgpack-c and OpenSSL base64. See json.h. */
#include "core/json.h"
#include "core/codec.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

_Static_assert(sizeof(json_int_t) == sizeof(int64_t), "jansson must use 64-bit integers");

#define TAG_UINT "$uint"
#define TAG_BIN  "$bin"
#define TAG_EXT  "$ext"
#define EXT_DATA "data"

/* EVP_EncodeBlock/EVP_DecodeBlock take int lengths. */
#define B64_RAW_MAX  ((size_t)INT_MAX / 4 * 3)
#define B64_TEXT_MAX ((size_t)INT_MAX / 4 * 4)

/* One conversion: its limit and where its error goes. */
typedef struct conv {
    int max_depth;
    char *err;
    size_t errlen;
} conv;

__attribute__((format(printf, 2, 3))) static int fail(conv *c, const char *fmt, ...)
{
    if (c->err && c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int fail_oom(conv *c)
{
    return fail(c, "out of memory");
}

static int too_deep(conv *c)
{
    return fail(c, "nesting deeper than %d levels", c->max_depth);
}

static const char *mp_type_name(msgpack_object_type t)
{
    switch (t) {
    case MSGPACK_OBJECT_NIL:
        return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
        return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return "integer";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return "float";
    case MSGPACK_OBJECT_STR:
        return "str";
    case MSGPACK_OBJECT_ARRAY:
        return "array";
    case MSGPACK_OBJECT_MAP:
        return "map";
    case MSGPACK_OBJECT_BIN:
        return "bin";
    case MSGPACK_OBJECT_EXT:
        return "ext";
    }
    return "unknown";
}

static int is_reserved_key(const char *k, size_t n)
{
    return (n == sizeof TAG_UINT - 1 && memcmp(k, TAG_UINT, n) == 0) ||
           (n == sizeof TAG_BIN - 1 && memcmp(k, TAG_BIN, n) == 0) ||
           (n == sizeof TAG_EXT - 1 && memcmp(k, TAG_EXT, n) == 0);
}

/* ---- base64 (OpenSSL) ---- */

/* New JSON string holding base64 of p[0..n); the caller owns it. NULL on error. */
static json_t *b64_encode(conv *c, const char *p, size_t n)
{
    if (n == 0) return json_string("");
    if (n > B64_RAW_MAX) {
        fail(c, "bin/ext payload too large for base64");
        return NULL;
    }
    size_t cap = 4 * ((n + 2) / 3) + 1; /* EVP_EncodeBlock writes a NUL too */
    unsigned char *out = malloc(cap);
    if (!out) {
        fail_oom(c);
        return NULL;
    }
    int w = EVP_EncodeBlock(out, (const unsigned char *)p, (int)n);
    json_t *s = json_stringn_nocheck((const char *)out, (size_t)w);
    free(out);
    if (!s) fail_oom(c);
    return s;
}

/* Decode the base64 JSON string s (what names it in errors). On success *out is a malloc'd
 * buffer the caller frees (never NULL, even for 0 bytes) and *n its length. Only canonical
 * padded base64 is accepted: the bytes must re-encode to exactly the same text. */
static int b64_decode(conv *c, const json_t *s, const char *what, unsigned char **out, size_t *n)
{
    unsigned char *buf = NULL, *chk = NULL;
    int rc = -1;

    *out = NULL;
    *n = 0;
    if (!json_is_string(s)) return fail(c, "%s must be a base64 string", what);
    const char *in = json_string_value(s);
    size_t len = json_string_length(s);
    if (len % 4 != 0 || len > B64_TEXT_MAX) {
        fail(c, "%s is not valid base64 (length %zu)", what, len);
        goto cleanup;
    }
    if (!(buf = malloc(len / 4 * 3 + 1))) {
        fail_oom(c);
        goto cleanup;
    }
    size_t got = 0;
    if (len > 0) {
        /* EVP_DecodeBlock counts the bytes the padding stands for: take them off. */
        int r = EVP_DecodeBlock(buf, (const unsigned char *)in, (int)len);
        size_t pad = (in[len - 1] == '=') + (in[len - 2] == '=');
        if (r < 0 || (size_t)r < pad) {
            fail(c, "%s is not valid base64", what);
            goto cleanup;
        }
        got = (size_t)r - pad;
        /* EVP_DecodeBlock skips surrounding whitespace and is lax about padding and
         * trailing bits; re-encoding rejects every text that is not canonical. */
        if (!(chk = malloc(len + 1))) {
            fail_oom(c);
            goto cleanup;
        }
        int w = EVP_EncodeBlock(chk, buf, (int)got);
        if ((size_t)w != len || memcmp(chk, in, len) != 0) {
            fail(c, "%s is not valid base64", what);
            goto cleanup;
        }
    }
    *out = buf;
    *n = got;
    buf = NULL;
    rc = 0;
cleanup:
    free(buf);
    free(chk);
    return rc;
}

/* ---- MessagePack -> JSON ---- */

/* {"$uint": "<decimal>"} for an unsigned integer jansson cannot hold. Caller owns it. */
static json_t *uint_tag(conv *c, uint64_t u)
{
    char digits[24];
    snprintf(digits, sizeof digits, "%" PRIu64, u);
    json_t *o = json_pack("{s:s}", TAG_UINT, digits);
    if (!o) fail_oom(c);
    return o;
}

static json_t *from_obj(conv *c, const msgpack_object *o, int depth);

static json_t *from_array(conv *c, const msgpack_object_array *a, int depth)
{
    json_t *arr = json_array();
    if (!arr) {
        fail_oom(c);
        return NULL;
    }
    for (uint32_t i = 0; i < a->size; i++) {
        json_t *v = from_obj(c, &a->ptr[i], depth + 1);
        if (!v) goto fail;
        if (json_array_append_new(arr, v) != 0) { /* steals v even when it fails */
            fail_oom(c);
            goto fail;
        }
    }
    return arr;
fail:
    json_decref(arr);
    return NULL;
}

static json_t *from_map(conv *c, const msgpack_object_map *m, int depth)
{
    json_t *obj = json_object();
    if (!obj) {
        fail_oom(c);
        return NULL;
    }
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *key = &m->ptr[i].key;
        if (key->type != MSGPACK_OBJECT_STR) {
            fail(c, "map key must be a string for JSON (got %s)", mp_type_name(key->type));
            goto fail;
        }
        size_t klen = key->via.str.size;
        const char *k = klen ? key->via.str.ptr : ""; /* msgpack-c: NULL when empty */
        if (is_reserved_key(k, klen)) {
            fail(c, "map key \"%.*s\" is reserved for JSON tags", (int)klen, k);
            goto fail;
        }
        if (json_object_getn(obj, k, klen)) {
            fail(c, "duplicate map key \"%.*s\"", (int)klen, k);
            goto fail;
        }
        json_t *v = from_obj(c, &m->ptr[i].val, depth + 1);
        if (!v) goto fail;
        if (json_object_setn_new(obj, k, klen, v) != 0) { /* steals v even when it fails */
            json_t *ks = json_stringn(k, klen);
            if (ks) {
                json_decref(ks);
                fail_oom(c);
            } else {
                fail(c, "map key is not valid UTF-8");
            }
            goto fail;
        }
    }
    return obj;
fail:
    json_decref(obj);
    return NULL;
}

static json_t *from_ext(conv *c, const msgpack_object_ext *e)
{
    json_t *data = b64_encode(c, e->ptr, e->size);
    if (!data) return NULL;
    json_t *o = json_pack("{s:i,s:o}", TAG_EXT, (int)e->type, EXT_DATA, data); /* steals data */
    if (!o) fail_oom(c);
    return o;
}

/* depth: containers enclosing o. Returns a new reference or NULL with c->err set. */
static json_t *from_obj(conv *c, const msgpack_object *o, int depth)
{
    json_t *v = NULL, *data;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > INT64_MAX) return uint_tag(c, o->via.u64);
        v = json_integer((json_int_t)o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        v = json_integer((json_int_t)o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (!isfinite(o->via.f64)) {
            fail(c, "float %g has no JSON representation", o->via.f64);
            return NULL;
        }
        v = json_real(o->via.f64);
        break;
    case MSGPACK_OBJECT_STR:
        /* json_stringn validates UTF-8; msgpack-c leaves ptr NULL for empty strings. */
        v = o->via.str.size ? json_stringn(o->via.str.ptr, o->via.str.size) : json_string("");
        if (!v) {
            fail(c, "str is not valid UTF-8 (send bytes as bin)");
            return NULL;
        }
        return v;
    case MSGPACK_OBJECT_BIN:
        if (!(data = b64_encode(c, o->via.bin.ptr, o->via.bin.size))) return NULL;
        if (!(v = json_pack("{s:o}", TAG_BIN, data))) fail_oom(c); /* steals data */
        return v;
    case MSGPACK_OBJECT_EXT:
        return from_ext(c, &o->via.ext);
    case MSGPACK_OBJECT_ARRAY:
        if (depth >= c->max_depth) {
            too_deep(c);
            return NULL;
        }
        return from_array(c, &o->via.array, depth);
    case MSGPACK_OBJECT_MAP:
        if (depth >= c->max_depth) {
            too_deep(c);
            return NULL;
        }
        return from_map(c, &o->via.map, depth);
    default:
        fail(c, "unknown MessagePack type %d", (int)o->type);
        return NULL;
    }
    if (!v) fail_oom(c);
    return v;
}

json_t *gg_json_from_object(const msgpack_object *o, int max_depth, char *err, size_t errlen)
{
    conv c = {max_depth < 0 ? 0 : max_depth, err, errlen};
    return from_obj(&c, o, 0);
}

json_t *gg_json_from_msgpack(const char *buf, size_t len, int max_depth, char *err, size_t errlen)
{
    conv c = {max_depth < 0 ? 0 : max_depth, err, errlen};
    if (c.max_depth > GG_JSON_DEPTH_MAX) c.max_depth = GG_JSON_DEPTH_MAX;

    if (len == 0) {
        fail(&c, "empty MessagePack input");
        return NULL;
    }
    if (len >= UINT32_MAX) {
        fail(&c, "MessagePack value too large (%zu bytes)", len);
        return NULL;
    }
    /* Bound every claimed length and the depth before msgpack-c allocates from them (the
     * scanner wants max_depth >= 1; from_obj() refuses a container when max_depth is 0). */
    gg_scan_state st;
    gg_scan_limits lim = {.max_message = len,
                          .max_depth = c.max_depth > 0 ? (uint32_t)c.max_depth : 1};
    gg_scan_reset(&st);
    switch (gg_scan(&st, buf, len, &lim)) {
    case GG_SCAN_DONE:
        break;
    case GG_SCAN_MORE:
    case GG_ETOOBIG:
        fail(&c, "truncated MessagePack value");
        return NULL;
    case GG_ETOODEEP:
        too_deep(&c);
        return NULL;
    default:
        fail(&c, "not valid MessagePack");
        return NULL;
    }
    if (st.msg.size != len) {
        fail(&c, "%zu bytes after the MessagePack value", len - st.msg.size);
        return NULL;
    }

    /* msgpack_unpacked owns the zone the object lives in; destroy frees it. */
    msgpack_unpacked u;
    size_t off = 0;
    json_t *v = NULL;
    msgpack_unpacked_init(&u);
    msgpack_unpack_return r = msgpack_unpack_next(&u, buf, len, &off);
    if (r != MSGPACK_UNPACK_SUCCESS || off != len)
        fail(&c, "MessagePack decoding failed (msgpack-c error %d)", (int)r);
    else
        v = from_obj(&c, &u.data, 0);
    msgpack_unpacked_destroy(&u);
    return v;
}

/* ---- JSON -> MessagePack ---- */

/* Packer results are 0 or whatever the write callback returned. */
static int packed(conv *c, int rc)
{
    return rc == 0 ? 0 : fail(c, "writing MessagePack failed (buffer callback error %d)", rc);
}

static int pack_uint_tag(conv *c, msgpack_packer *pk, const json_t *v)
{
    if (!json_is_string(v)) return fail(c, TAG_UINT " must be a decimal string");
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n > 20 || strspn(s, "0123456789") != n)
        return fail(c, TAG_UINT " must be a decimal string of an unsigned 64-bit integer");
    errno = 0;
    unsigned long long u = strtoull(s, NULL, 10);
    if (errno == ERANGE) return fail(c, TAG_UINT " \"%s\" is out of the uint64 range", s);
    return packed(c, msgpack_pack_uint64(pk, (uint64_t)u));
}

static int pack_bin_tag(conv *c, msgpack_packer *pk, const json_t *v)
{
    unsigned char *bytes;
    size_t n;
    if (b64_decode(c, v, TAG_BIN, &bytes, &n) != 0) return -1;
    int rc = packed(c, msgpack_pack_bin_with_body(pk, bytes, n));
    free(bytes);
    return rc;
}

static int pack_ext_tag(conv *c, msgpack_packer *pk, const json_t *obj, const json_t *type)
{
    const json_t *data = json_object_get(obj, EXT_DATA);
    if (!data || json_object_size(obj) != 2)
        return fail(c, TAG_EXT " object must have exactly the keys \"" TAG_EXT "\" and \"" EXT_DATA
                               "\"");
    if (!json_is_integer(type) || json_integer_value(type) < INT8_MIN ||
        json_integer_value(type) > INT8_MAX)
        return fail(c, TAG_EXT " type must be an integer from -128 to 127");
    unsigned char *bytes;
    size_t n;
    if (b64_decode(c, data, TAG_EXT " data", &bytes, &n) != 0) return -1;
    int rc = packed(c, msgpack_pack_ext_with_body(pk, bytes, n, (int8_t)json_integer_value(type)));
    free(bytes);
    return rc;
}

/* An object holding a reserved key is a tag: *is_tag = 1 and it is packed (or refused). */
static int pack_tag(conv *c, msgpack_packer *pk, const json_t *obj, int *is_tag)
{
    const json_t *u = json_object_get(obj, TAG_UINT);
    const json_t *b = json_object_get(obj, TAG_BIN);
    const json_t *e = json_object_get(obj, TAG_EXT);
    *is_tag = u || b || e;
    if (!*is_tag) return 0;
    if (!!u + !!b + !!e > 1)
        return fail(c, "object mixes the tags " TAG_UINT ", " TAG_BIN " and " TAG_EXT);
    if (e) return pack_ext_tag(c, pk, obj, e);
    if (json_object_size(obj) != 1)
        return fail(c, "%s object must have no other keys", u ? TAG_UINT : TAG_BIN);
    return u ? pack_uint_tag(c, pk, u) : pack_bin_tag(c, pk, b);
}

static int pack_value(conv *c, msgpack_packer *pk, const json_t *v, int depth)
{
    switch (json_typeof(v)) {
    case JSON_NULL:
        return packed(c, msgpack_pack_nil(pk));
    case JSON_TRUE:
        return packed(c, msgpack_pack_true(pk));
    case JSON_FALSE:
        return packed(c, msgpack_pack_false(pk));
    case JSON_INTEGER:
        return packed(c, msgpack_pack_int64(pk, json_integer_value(v)));
    case JSON_REAL:
        return packed(c, msgpack_pack_double(pk, json_real_value(v)));
    case JSON_STRING:
        if (json_string_length(v) > UINT32_MAX) return fail(c, "string too long for MessagePack");
        return packed(c,
                      msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v)));
    case JSON_ARRAY: {
        if (depth >= c->max_depth) return too_deep(c);
        size_t n = json_array_size(v);
        if (n > UINT32_MAX) return fail(c, "array too long for MessagePack");
        if (packed(c, msgpack_pack_array(pk, n)) != 0) return -1;
        for (size_t i = 0; i < n; i++)
            if (pack_value(c, pk, json_array_get(v, i), depth + 1) != 0) return -1;
        return 0;
    }
    case JSON_OBJECT: {
        int is_tag;
        int rc = pack_tag(c, pk, v, &is_tag);
        if (is_tag) return rc;
        if (depth >= c->max_depth) return too_deep(c);
        size_t n = json_object_size(v);
        if (n > UINT32_MAX) return fail(c, "object too large for MessagePack");
        if (packed(c, msgpack_pack_map(pk, n)) != 0) return -1;
        /* jansson iterates objects only through non-const pointers; nothing is changed. */
        json_t *obj = (json_t *)v, *val;
        const char *key;
        size_t klen;
        json_object_keylen_foreach(obj, key, klen, val)
        {
            if (packed(c, msgpack_pack_str_with_body(pk, key, klen)) != 0) return -1;
            if (pack_value(c, pk, val, depth + 1) != 0) return -1;
        }
        return 0;
    }
    }
    return fail(c, "unknown JSON type %d", (int)json_typeof(v));
}

int gg_json_pack(msgpack_packer *pk, const json_t *v, int max_depth, char *err, size_t errlen)
{
    conv c = {max_depth < 0 ? 0 : max_depth, err, errlen};
    if (!v) return fail(&c, "no JSON value");
    return pack_value(&c, pk, v, 0);
}

int gg_json_to_msgpack(const json_t *v, int max_depth, msgpack_sbuffer *out, char *err,
                       size_t errlen)
{
    msgpack_packer pk;
    size_t mark = out->size;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    int rc = gg_json_pack(&pk, v, max_depth, err, errlen);
    if (rc != 0) out->size = mark;
    return rc;
}

/* test_json.c -- unit tests of the MessagePack <-> JSON mapping (gateway/core/json.c). */
#include "unit.h"

#include "core/json.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ERRLEN 256

/* A packer writing into its own sbuffer. */
typedef struct mp {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} mp;

static void mp_init(mp *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void mp_free(mp *m)
{
    msgpack_sbuffer_destroy(&m->sb);
}

/* Compact JSON text of the MessagePack bytes, or NULL (reason in err). Caller frees. */
static char *to_text(const char *buf, size_t len, int depth, char *err)
{
    err[0] = 0;
    json_t *v = gg_json_from_msgpack(buf, len, depth, err, ERRLEN);
    if (!v) return NULL;
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(v);
    return s;
}

/* MessagePack bytes of JSON text into sb (initialised by the caller). 0 or -1. */
static int from_text(const char *text, msgpack_sbuffer *sb, int depth, char *err)
{
    json_error_t je;
    err[0] = 0;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!v) {
        snprintf(err, ERRLEN, "json_loads: %s", je.text);
        return -1;
    }
    int rc = gg_json_to_msgpack(v, depth, sb, err, ERRLEN);
    json_decref(v);
    return rc;
}

/* bytes -> JSON must give want; want -> bytes must give the same bytes back. */
static void roundtrip(const char *bytes, size_t len, const char *want)
{
    char err[ERRLEN];
    char *got = to_text(bytes, len, 16, err);
    if (!UNIT_CHECK(got != NULL)) {
        fprintf(stderr, "  for %s: %s\n", want, err);
        return;
    }
    UNIT_EQ_STR(got, want);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (UNIT_CHECK(from_text(got, &sb, 16, err) == 0)) {
        UNIT_EQ_INT(sb.size, len);
        UNIT_CHECK(sb.size == len && memcmp(sb.data, bytes, len) == 0);
    } else {
        fprintf(stderr, "  for %s: %s\n", want, err);
    }
    msgpack_sbuffer_destroy(&sb);
    free(got);
}

/* The MessagePack bytes must be refused with a reason containing `reason`. */
static void refuse_mp(const char *bytes, size_t len, int depth, const char *reason)
{
    char err[ERRLEN];
    char *got = to_text(bytes, len, depth, err);
    UNIT_CHECK(got == NULL);
    if (!UNIT_CHECK(strstr(err, reason) != NULL)) fprintf(stderr, "  got error: %s\n", err);
    free(got);
}

/* The JSON text must be refused by gg_json_to_msgpack with a reason containing `reason`. */
static void refuse_json(const char *text, int depth, const char *reason)
{
    char err[ERRLEN];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    UNIT_CHECK(from_text(text, &sb, depth, err) == -1);
    UNIT_EQ_INT(sb.size, 0);
    if (!UNIT_CHECK(strstr(err, reason) != NULL))
        fprintf(stderr, "  for %s got error: %s\n", text, err);
    msgpack_sbuffer_destroy(&sb);
}

static void rt_int(int64_t v, const char *want)
{
    mp m;
    mp_init(&m);
    msgpack_pack_int64(&m.pk, v);
    roundtrip(m.sb.data, m.sb.size, want);
    mp_free(&m);
}

static void rt_uint(uint64_t v, const char *want)
{
    mp m;
    mp_init(&m);
    msgpack_pack_uint64(&m.pk, v);
    roundtrip(m.sb.data, m.sb.size, want);
    mp_free(&m);
}

static void test_nil_bool(void)
{
    roundtrip("\xc0", 1, "null");
    roundtrip("\xc3", 1, "true");
    roundtrip("\xc2", 1, "false");
}

static void test_integers(void)
{
    rt_int(0, "0");
    rt_int(127, "127");
    rt_int(128, "128");
    rt_int(255, "255");
    rt_int(256, "256");
    rt_int(65536, "65536");
    rt_int(4294967296LL, "4294967296");
    rt_int(-1, "-1");
    rt_int(-32, "-32");
    rt_int(-33, "-33");
    rt_int(-129, "-129");
    rt_int(-2147483649LL, "-2147483649");
    rt_int(INT64_MAX, "9223372036854775807");
    rt_int(INT64_MIN, "-9223372036854775808");
    rt_uint((uint64_t)INT64_MAX + 1, "{\"$uint\":\"9223372036854775808\"}");
    rt_uint(UINT64_MAX, "{\"$uint\":\"18446744073709551615\"}");
    /* Non-canonical encodings decode to the same numbers. */
    char err[ERRLEN];
    char *s = to_text("\xd0\x05", 2, 4, err); /* int8 5 */
    UNIT_EQ_STR(s, "5");
    free(s);
    s = to_text("\xcf\x00\x00\x00\x00\x00\x00\x00\x01", 9, 4, err); /* uint64 1 */
    UNIT_EQ_STR(s, "1");
    free(s);
    /* {"$uint": N} for any N in range, small or not, gives an unsigned integer. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    UNIT_CHECK(from_text("{\"$uint\":\"18446744073709551615\"}", &sb, 4, err) == 0);
    UNIT_CHECK(sb.size == 9 && memcmp(sb.data, "\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9) == 0);
    sb.size = 0;
    UNIT_CHECK(from_text("{\"$uint\":\"7\"}", &sb, 4, err) == 0);
    UNIT_CHECK(sb.size == 1 && sb.data[0] == 7);
    msgpack_sbuffer_destroy(&sb);
}

static void test_big_json_integers(void)
{
    json_error_t je;
    /* jansson refuses integers beyond int64 itself, before the mapping sees them. */
    json_t *v = json_loads("9223372036854775808", JSON_DECODE_ANY, &je);
    UNIT_CHECK(v == NULL);
    UNIT_EQ_INT(json_error_code(&je), json_error_numeric_overflow);
    json_decref(v);
    v = json_loads("[-9223372036854775809]", 0, &je);
    UNIT_CHECK(v == NULL);
    UNIT_EQ_INT(json_error_code(&je), json_error_numeric_overflow);
    json_decref(v);
    refuse_json("{\"$uint\":\"18446744073709551616\"}", 4, "out of the uint64 range");
    refuse_json("{\"$uint\":\"99999999999999999999\"}", 4, "out of the uint64 range");
    refuse_json("{\"$uint\":\"-1\"}", 4, "decimal string");
    refuse_json("{\"$uint\":\" 1\"}", 4, "decimal string");
    refuse_json("{\"$uint\":\"\"}", 4, "decimal string");
    refuse_json("{\"$uint\":\"123456789012345678901\"}", 4, "decimal string");
    refuse_json("{\"$uint\":12}", 4, "decimal string");
    refuse_json("{\"$uint\":\"1\",\"x\":1}", 4, "no other keys");
}

static void test_floats(void)
{
    mp m;
    mp_init(&m);
    msgpack_pack_double(&m.pk, 1.5);
    roundtrip(m.sb.data, m.sb.size, "1.5");
    m.sb.size = 0;
    msgpack_pack_double(&m.pk, -0.25);
    roundtrip(m.sb.data, m.sb.size, "-0.25");
    m.sb.size = 0;
    msgpack_pack_double(&m.pk, 2.0);
    roundtrip(m.sb.data, m.sb.size, "2.0");

    /* 0.1 and 1e300 come back bit for bit whatever text jansson picks. */
    double vals[] = {0.1, 1e300, -4.9e-324, 123456789.123456789};
    char err[ERRLEN];
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        m.sb.size = 0;
        msgpack_pack_double(&m.pk, vals[i]);
        json_t *v = gg_json_from_msgpack(m.sb.data, m.sb.size, 4, err, ERRLEN);
        if (!UNIT_CHECK(json_is_real(v))) continue;
        char *text = json_dumps(v, JSON_ENCODE_ANY);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        UNIT_CHECK(from_text(text, &sb, 4, err) == 0);
        UNIT_CHECK(sb.size == m.sb.size && memcmp(sb.data, m.sb.data, sb.size) == 0);
        msgpack_sbuffer_destroy(&sb);
        free(text);
        json_decref(v);
    }

    /* float32 keeps its value and comes back as float64. */
    m.sb.size = 0;
    msgpack_pack_float(&m.pk, 1.5f);
    UNIT_EQ_INT((unsigned char)m.sb.data[0], 0xca);
    json_t *v = gg_json_from_msgpack(m.sb.data, m.sb.size, 4, err, ERRLEN);
    UNIT_CHECK(json_is_real(v) && json_real_value(v) == 1.5);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    UNIT_CHECK(gg_json_to_msgpack(v, 4, &sb, err, ERRLEN) == 0);
    UNIT_CHECK(sb.size == 9 && (unsigned char)sb.data[0] == 0xcb);
    msgpack_sbuffer_destroy(&sb);
    json_decref(v);

    m.sb.size = 0;
    msgpack_pack_double(&m.pk, NAN);
    refuse_mp(m.sb.data, m.sb.size, 4, "no JSON representation");
    m.sb.size = 0;
    msgpack_pack_float(&m.pk, -INFINITY);
    refuse_mp(m.sb.data, m.sb.size, 4, "no JSON representation");
    mp_free(&m);
}

static void test_strings(void)
{
    roundtrip("\xa0", 1, "\"\"");
    roundtrip("\xa5hello", 6, "\"hello\"");
    roundtrip("\xa6h\xc3\xa9llo", 7, "\"h\xc3\xa9llo\"");
    roundtrip("\xa3"
              "a\0b",
              4, "\"a\\u0000b\"");
    roundtrip("\xa4\xf0\x9f\x98\x80", 5, "\"\xf0\x9f\x98\x80\"");
    /* str8 with 40 bytes */
    char big[2 + 40];
    big[0] = (char)0xd9;
    big[1] = 40;
    memset(big + 2, 'x', 40);
    char want[45] = "\"";
    memset(want + 1, 'x', 40);
    strcpy(want + 41, "\"");
    roundtrip(big, sizeof big, want);
}

static void test_invalid_utf8(void)
{
    refuse_mp("\xa1\xff", 2, 4, "not valid UTF-8");
    refuse_mp("\xa2\xc0\x80", 3, 4, "not valid UTF-8");     /* overlong NUL */
    refuse_mp("\xa3\xed\xa0\x80", 4, 4, "not valid UTF-8"); /* surrogate */
    refuse_mp("\xa2\xe2\x82", 3, 4, "not valid UTF-8");     /* cut sequence */
    refuse_mp("\x92\x01\xa1\x80", 4, 4, "not valid UTF-8"); /* inside an array */
    refuse_mp("\x81\xa1\xfe\x01", 4, 4, "not valid UTF-8"); /* as a map key */
}

static void test_bin(void)
{
    /* RFC 4648 test vectors, so padding of every length is covered. */
    static const struct {
        const char *raw, *b64;
    } v[] = {{"", ""},
             {"f", "Zg=="},
             {"fo", "Zm8="},
             {"foo", "Zm9v"},
             {"foob", "Zm9vYg=="},
             {"fooba", "Zm9vYmE="},
             {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        mp m;
        mp_init(&m);
        msgpack_pack_bin_with_body(&m.pk, v[i].raw, strlen(v[i].raw));
        char want[64];
        snprintf(want, sizeof want, "{\"$bin\":\"%s\"}", v[i].b64);
        roundtrip(m.sb.data, m.sb.size, want);
        mp_free(&m);
    }
    /* Every byte value, bin16. */
    unsigned char all[300];
    for (int i = 0; i < 300; i++) all[i] = (unsigned char)(i * 7);
    mp m;
    mp_init(&m);
    msgpack_pack_bin_with_body(&m.pk, all, sizeof all);
    char err[ERRLEN];
    char *text = to_text(m.sb.data, m.sb.size, 4, err);
    UNIT_CHECK(text != NULL);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    UNIT_CHECK(text && from_text(text, &sb, 4, err) == 0);
    UNIT_CHECK(sb.size == m.sb.size && memcmp(sb.data, m.sb.data, sb.size) == 0);
    msgpack_sbuffer_destroy(&sb);
    free(text);
    mp_free(&m);

    refuse_json("{\"$bin\":5}", 4, "base64 string");
    refuse_json("{\"$bin\":\"Zg=\"}", 4, "not valid base64");
    refuse_json("{\"$bin\":\"Zg\"}", 4, "not valid base64");
    refuse_json("{\"$bin\":\"Zh==\"}", 4, "not valid base64"); /* stray bits */
    refuse_json("{\"$bin\":\"Z===\"}", 4, "not valid base64");
    refuse_json("{\"$bin\":\"====\"}", 4, "not valid base64");
    refuse_json("{\"$bin\":\"Zg==Zg==\"}", 4, "not valid base64");
    refuse_json("{\"$bin\":\"  Zg==  \"}", 4, "not valid base64");
    refuse_json("{\"$bin\":\"Zm9v\\n\"}", 4, "not valid base64");
    refuse_json("{\"$bin\":\"Zm!v\"}", 4, "not valid base64");
    refuse_json("{\"$bin\":\"Zm9\\u0000\"}", 4, "not valid base64");
    refuse_json("{\"$bin\":\"Zg==\",\"x\":1}", 4, "no other keys");
    refuse_json("{\"$bin\":\"Zg==\",\"$uint\":\"1\"}", 4, "mixes the tags");
}

static void test_ext(void)
{
    mp m;
    mp_init(&m);
    msgpack_pack_ext_with_body(&m.pk, "f", 1, 5); /* fixext1 */
    roundtrip(m.sb.data, m.sb.size, "{\"$ext\":5,\"data\":\"Zg==\"}");
    m.sb.size = 0;
    msgpack_pack_ext_with_body(&m.pk, "foo", 3, -1); /* ext8 */
    roundtrip(m.sb.data, m.sb.size, "{\"$ext\":-1,\"data\":\"Zm9v\"}");
    m.sb.size = 0;
    msgpack_pack_ext_with_body(&m.pk, "", 0, 127);
    roundtrip(m.sb.data, m.sb.size, "{\"$ext\":127,\"data\":\"\"}");
    m.sb.size = 0;
    msgpack_pack_ext_with_body(&m.pk, "12345678", 8, -128); /* fixext8 */
    roundtrip(m.sb.data, m.sb.size, "{\"$ext\":-128,\"data\":\"MTIzNDU2Nzg=\"}");
    mp_free(&m);

    refuse_json("{\"$ext\":5}", 4, "exactly the keys");
    refuse_json("{\"$ext\":5,\"data\":\"\",\"x\":1}", 4, "exactly the keys");
    refuse_json("{\"$ext\":5,\"dat\":\"\"}", 4, "exactly the keys");
    refuse_json("{\"$ext\":128,\"data\":\"\"}", 4, "-128 to 127");
    refuse_json("{\"$ext\":-129,\"data\":\"\"}", 4, "-128 to 127");
    refuse_json("{\"$ext\":1.0,\"data\":\"\"}", 4, "-128 to 127");
    refuse_json("{\"$ext\":\"1\",\"data\":\"\"}", 4, "-128 to 127");
    refuse_json("{\"$ext\":1,\"data\":\"Zg=\"}", 4, "not valid base64");
    refuse_json("{\"$ext\":1,\"data\":null}", 4, "base64 string");
}

static void test_containers(void)
{
    roundtrip("\x90", 1, "[]");
    roundtrip("\x80", 1, "{}");
    roundtrip("\x93\x01\xa1x\xc0", 5, "[1,\"x\",null]");
    /* Key order is kept both ways. */
    roundtrip("\x82\xa1z\x01\xa1\x61\x02", 7, "{\"z\":1,\"a\":2}");
    mp m;
    mp_init(&m);
    msgpack_pack_array(&m.pk, 3);
    msgpack_pack_map(&m.pk, 3);
    msgpack_pack_str_with_body(&m.pk, "k", 1);
    msgpack_pack_array(&m.pk, 0);
    msgpack_pack_str_with_body(&m.pk, "", 0);
    msgpack_pack_nil(&m.pk);
    msgpack_pack_str_with_body(&m.pk, "b", 1);
    msgpack_pack_bin_with_body(&m.pk, "\x00\x01", 2);
    msgpack_pack_ext_with_body(&m.pk, "x", 1, 9);
    msgpack_pack_array(&m.pk, 16); /* array16 */
    for (int i = 0; i < 16; i++) msgpack_pack_int(&m.pk, -i);
    roundtrip(m.sb.data, m.sb.size,
              "[{\"k\":[],\"\":null,\"b\":{\"$bin\":\"AAE=\"}},{\"$ext\":9,\"data\":\"eA==\"},"
              "[0,-1,-2,-3,-4,-5,-6,-7,-8,-9,-10,-11,-12,-13,-14,-15]]");
    mp_free(&m);

    /* A key holding U+0000 converts both ways; jansson's parser alone refuses it in text. */
    char err[ERRLEN];
    json_t *v = gg_json_from_msgpack("\x81\xa3"
                                     "a\0b\x01",
                                     6, 4, err, ERRLEN);
    UNIT_CHECK(v && json_object_size(v) == 1 && json_object_getn(v, "a\0b", 3) != NULL);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    UNIT_CHECK(gg_json_to_msgpack(v, 4, &sb, err, ERRLEN) == 0);
    UNIT_CHECK(sb.size == 6 && memcmp(sb.data,
                                      "\x81\xa3"
                                      "a\0b\x01",
                                      6) == 0);
    json_decref(v);
    sb.size = 0;

    /* JSON text -> MessagePack -> the same JSON text. */
    const char *text = "[1,-1,\"x\",null,true,false,{\"k\":[1.5,{}]},{\"$bin\":\"\"}]";
    UNIT_CHECK(from_text(text, &sb, 8, err) == 0);
    char *back = to_text(sb.data, sb.size, 8, err);
    UNIT_EQ_STR(back, text);
    free(back);
    msgpack_sbuffer_destroy(&sb);
}

static void test_map_keys(void)
{
    refuse_mp("\x81\x01\x02", 3, 4, "map key must be a string for JSON");
    refuse_mp("\x81\xc4\x01k\x02", 5, 4, "map key must be a string for JSON (got bin)");
    refuse_mp("\x81\xc0\x02", 3, 4, "map key must be a string for JSON (got nil)");
    refuse_mp("\x91\x81\x91\x01\x02", 5, 4, "map key must be a string for JSON (got array)");
    refuse_mp("\x82\xa1k\x01\xa1k\x02", 7, 4, "duplicate map key \"k\"");
    refuse_mp("\x81\xa4$bin\xa0", 7, 4, "reserved");
    refuse_mp("\x82\xa4$ext\x01\xa4"
              "data\xa0",
              13, 4, "reserved");
    refuse_mp("\x81\xa5$uint\xa1\x31", 9, 4, "reserved");
    /* A key that merely starts with $ is an ordinary key. */
    roundtrip("\x81\xa2$x\x01", 5, "{\"$x\":1}");
    roundtrip("\x81\xa4"
              "data\x01",
              7, "{\"data\":1}");
}

/* n arrays nested in one another around a 1: [[[1]]] for n = 3. */
static void nested(mp *m, int n)
{
    m->sb.size = 0;
    for (int i = 0; i < n; i++) msgpack_pack_array(&m->pk, 1);
    msgpack_pack_int(&m->pk, 1);
}

static void test_depth(void)
{
    mp m;
    mp_init(&m);
    char err[ERRLEN];
    nested(&m, 4);
    char *s = to_text(m.sb.data, m.sb.size, 4, err);
    UNIT_EQ_STR(s, "[[[[1]]]]");
    /* The same limit applies the other way. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    UNIT_CHECK(s && from_text(s, &sb, 4, err) == 0);
    UNIT_CHECK(s && from_text(s, &sb, 3, err) == -1 && strstr(err, "deeper than 3"));
    msgpack_sbuffer_destroy(&sb);
    free(s);
    nested(&m, 5);
    refuse_mp(m.sb.data, m.sb.size, 4, "nesting deeper than 4");
    refuse_json("[[[[{\"a\":1}]]]]", 4, "nesting deeper than 4");
    refuse_json("{\"a\":{\"b\":{\"c\":{\"d\":{}}}}}", 4, "nesting deeper than 4");
    /* Maps count like arrays; tags do not add a level. */
    refuse_mp("\x81\xa1k\x81\xa1k\x90", 7, 2, "nesting deeper than 2");
    s = to_text("\x91\xc4\x01x", 4, 1, err);
    UNIT_EQ_STR(s, "[{\"$bin\":\"eA==\"}]");
    free(s);
    /* Depth 0: scalars only. */
    s = to_text("\x05", 1, 0, err);
    UNIT_EQ_STR(s, "5");
    free(s);
    refuse_mp("\x90", 1, 0, "nesting deeper than 0");
    /* msgpack-c cannot decode deeper than GG_JSON_DEPTH_MAX: the limit is capped there. */
    nested(&m, GG_JSON_DEPTH_MAX);
    s = to_text(m.sb.data, m.sb.size, 1000, err);
    UNIT_CHECK(s != NULL);
    free(s);
    nested(&m, GG_JSON_DEPTH_MAX + 1);
    refuse_mp(m.sb.data, m.sb.size, 1000, "nesting deeper than 32");
    /* Deep input is refused before any decoding (no recursion, no allocation). */
    nested(&m, 100000);
    refuse_mp(m.sb.data, m.sb.size, 8, "nesting deeper than 8");
    mp_free(&m);
}

static void test_malformed(void)
{
    refuse_mp("", 0, 4, "empty");
    refuse_mp("\xc1", 1, 4, "not valid MessagePack");
    refuse_mp("\x92\x01", 2, 4, "truncated");
    refuse_mp("\xa5hi", 3, 4, "truncated");
    refuse_mp("\x01\x02", 2, 4, "1 bytes after");
    /* Claims of huge sizes are refused without allocating them. */
    refuse_mp("\xdd\xff\xff\xff\xff", 5, 4, "truncated");
    refuse_mp("\xdf\xff\xff\xff\xff\x01", 6, 4, "truncated");
    refuse_mp("\xc6\xff\xff\xff\xff", 5, 4, "truncated");
    /* A NULL err is allowed. */
    UNIT_CHECK(gg_json_from_msgpack("\xc1", 1, 4, NULL, 0) == NULL);
}

static void test_rollback(void)
{
    char err[ERRLEN];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_write(&sb, "abc", 3);
    json_error_t je;
    json_t *v = json_loads("[1,2,{\"$bin\":\"!!!!\"}]", 0, &je);
    UNIT_EQ_INT(gg_json_to_msgpack(v, 4, &sb, err, ERRLEN), -1);
    UNIT_EQ_INT(sb.size, 3);
    UNIT_CHECK(memcmp(sb.data, "abc", 3) == 0);
    json_decref(v);
    /* Appends after what is there. */
    v = json_integer(5);
    UNIT_EQ_INT(gg_json_to_msgpack(v, 4, &sb, err, ERRLEN), 0);
    UNIT_CHECK(sb.size == 4 && memcmp(sb.data, "abc\x05", 4) == 0);
    json_decref(v);
    UNIT_EQ_INT(gg_json_to_msgpack(NULL, 4, &sb, NULL, 0), -1);
    msgpack_sbuffer_destroy(&sb);
}

/* A fixed caller buffer behind a packer. */
typedef struct fixed {
    char data[8];
    size_t len;
} fixed;

static int fixed_write(void *data, const char *buf, size_t len)
{
    fixed *f = data;
    if (len > sizeof f->data - f->len) return -1;
    memcpy(f->data + f->len, buf, len);
    f->len += len;
    return 0;
}

static void test_pack_caller_buffer(void)
{
    char err[ERRLEN];
    fixed f = {.len = 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &f, fixed_write);
    json_t *v = json_pack("[i,s]", 1, "ab");
    UNIT_EQ_INT(gg_json_pack(&pk, v, 4, err, ERRLEN), 0);
    UNIT_CHECK(f.len == 5 && memcmp(f.data,
                                    "\x92\x01\xa2"
                                    "ab",
                                    5) == 0);
    json_decref(v);
    v = json_string("too long for eight bytes");
    UNIT_EQ_INT(gg_json_pack(&pk, v, 4, err, ERRLEN), -1);
    UNIT_CHECK(strstr(err, "writing MessagePack failed") != NULL);
    json_decref(v);
}

static void test_from_object(void)
{
    char err[ERRLEN];
    msgpack_object o = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER};
    o.via.u64 = 42;
    json_t *v = gg_json_from_object(&o, 4, err, ERRLEN);
    UNIT_CHECK(json_is_integer(v) && json_integer_value(v) == 42);
    json_decref(v);
    msgpack_object inner = o;
    o.type = MSGPACK_OBJECT_ARRAY;
    o.via.array.size = 1;
    o.via.array.ptr = &inner;
    v = gg_json_from_object(&o, 0, err, ERRLEN);
    UNIT_CHECK(v == NULL && strstr(err, "deeper than 0"));
    v = gg_json_from_object(&o, 1, err, ERRLEN);
    char *s = json_dumps(v, JSON_COMPACT);
    UNIT_EQ_STR(s, "[42]");
    free(s);
    json_decref(v);
}

int main(void)
{
    UNIT_RUN(test_nil_bool);
    UNIT_RUN(test_integers);
    UNIT_RUN(test_big_json_integers);
    UNIT_RUN(test_floats);
    UNIT_RUN(test_strings);
    UNIT_RUN(test_invalid_utf8);
    UNIT_RUN(test_bin);
    UNIT_RUN(test_ext);
    UNIT_RUN(test_containers);
    UNIT_RUN(test_map_keys);
    UNIT_RUN(test_depth);
    UNIT_RUN(test_malformed);
    UNIT_RUN(test_rollback);
    UNIT_RUN(test_pack_caller_buffer);
    UNIT_RUN(test_from_object);
    return unit_summary();
}

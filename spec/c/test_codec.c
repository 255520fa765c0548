/* test_codec.c -- the envelope scanner: framing across reads, limits, hostile counts. */
#include "core/codec.h"
#include "unit.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

static const gg_scan_limits lim = {.max_message = 1 << 20, .max_depth = 32};

/* Pack [type, id, method, params] with msgpack-c (an independent encoder). */
static size_t pack_request(char *out, uint32_t id, const char *method, int nparams)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_uint32(&pk, id);
    msgpack_pack_str_with_body(&pk, method, strlen(method));
    msgpack_pack_array(&pk, (size_t)nparams);
    for (int i = 0; i < nparams; i++) {
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "k", 1);
        msgpack_pack_bin_with_body(&pk, "\x00\x01\x02", 3);
    }
    size_t n = sb.size;
    memcpy(out, sb.data, n);
    msgpack_sbuffer_destroy(&sb);
    return n;
}

static void test_whole_request(void)
{
    char buf[256];
    size_t n = pack_request(buf, 70000, "users.get", 2);
    gg_scan_state st;
    gg_scan_reset(&st);
    UNIT_EQ_INT(gg_scan(&st, buf, n, &lim), GG_SCAN_DONE);
    UNIT_EQ_INT(st.msg.size, n);
    UNIT_EQ_INT(st.msg.type, GG_REQUEST);
    UNIT_EQ_INT(st.msg.msgid, 70000);
    UNIT_CHECK(st.msg.method_len == 9 && memcmp(buf + st.msg.method_off, "users.get", 9) == 0);
    UNIT_EQ_INT((unsigned char)buf[st.msg.body_off], 0x92);
    UNIT_CHECK(gg_msg_invalid(&st.msg) == NULL);
}

/* Every split point of two back-to-back messages frames the same way. */
static void test_split_anywhere(void)
{
    char buf[512];
    size_t a = pack_request(buf, 1, "s.a", 3);
    size_t b = pack_request(buf + a, 2, "s.b", 1);
    for (size_t cut = 1; cut < a; cut++) {
        gg_scan_state st;
        gg_scan_reset(&st);
        int rc = gg_scan(&st, buf, cut, &lim);
        if (!UNIT_EQ_INT(rc, GG_SCAN_MORE)) return;
        UNIT_CHECK(st.need > cut);
        rc = gg_scan(&st, buf, a + b, &lim);
        if (!UNIT_EQ_INT(rc, GG_SCAN_DONE)) return;
        UNIT_EQ_INT(st.msg.size, a);
        UNIT_EQ_INT(st.msg.msgid, 1);
    }
    gg_scan_state st;
    gg_scan_reset(&st);
    UNIT_EQ_INT(gg_scan(&st, buf + a, b, &lim), GG_SCAN_DONE);
    UNIT_EQ_INT(st.msg.msgid, 2);
}

/* msgpack-c issue #1013: a 5-byte frame claiming 4 billion entries must be refused from the
 * claim alone, before anything is sized from it. */
static void test_hostile_counts(void)
{
    const char arr[] = "\xdd\xff\x00\x00\x00", map[] = "\xdf\xff\x00\x00\x00";
    const char str[] = "\xdb\xff\xff\xff\xff";
    gg_scan_state st;
    gg_scan_reset(&st);
    UNIT_EQ_INT(gg_scan(&st, arr, 5, &lim), GG_ETOOBIG);
    gg_scan_reset(&st);
    UNIT_EQ_INT(gg_scan(&st, map, 5, &lim), GG_ETOOBIG);
    gg_scan_reset(&st);
    UNIT_EQ_INT(gg_scan(&st, str, 5, &lim), GG_ETOOBIG);
}

static void test_depth_limit(void)
{
    enum { N = 10000 };
    char *buf = malloc(N);
    memset(buf, 0x91, N);
    gg_scan_state st;
    gg_scan_reset(&st);
    UNIT_EQ_INT(gg_scan(&st, buf, N, &lim), GG_ETOODEEP);
    /* exactly max_depth levels are fine */
    memset(buf, 0x91, 31);
    buf[31] = (char)0x90;
    gg_scan_reset(&st);
    UNIT_EQ_INT(gg_scan(&st, buf, 32, &lim), GG_SCAN_DONE);
    free(buf);
}

static void test_malformed_and_envelopes(void)
{
    gg_scan_state st;
    gg_scan_reset(&st);
    UNIT_EQ_INT(gg_scan(&st, "\xc1", 1, &lim), GG_EMALFORMED);

    /* [0, 7, 42, []] : valid MessagePack, bad method, id recoverable */
    gg_scan_reset(&st);
    UNIT_EQ_INT(gg_scan(&st, "\x94\x00\x07\x2a\x90", 5, &lim), GG_SCAN_DONE);
    UNIT_CHECK(st.msg.has_id && st.msg.msgid == 7);
    UNIT_EQ_STR(gg_msg_invalid(&st.msg), "method must be a string");

    /* [0, 7, "a.b", 5] : params not an array */
    gg_scan_reset(&st);
    UNIT_EQ_INT(gg_scan(&st, "\x94\x00\x07\xa3" "a.b" "\x05", 8, &lim), GG_SCAN_DONE);
    UNIT_EQ_STR(gg_msg_invalid(&st.msg), "params must be an array");

    /* [0, -1, "a.b", []] : negative msgid, not recoverable */
    gg_scan_reset(&st);
    UNIT_EQ_INT(gg_scan(&st, "\x94\x00\xff\xa3" "a.b" "\x90", 8, &lim), GG_SCAN_DONE);
    UNIT_CHECK(!st.msg.has_id);

    /* a bare integer */
    gg_scan_reset(&st);
    UNIT_EQ_INT(gg_scan(&st, "\x05", 1, &lim), GG_SCAN_DONE);
    UNIT_EQ_STR(gg_msg_invalid(&st.msg), "message is not an array");

    /* notification [2, "a.b", [1]] and response [1, 3, nil, 9] */
    gg_scan_reset(&st);
    UNIT_EQ_INT(gg_scan(&st, "\x93\x02\xa3" "a.b" "\x91\x01", 8, &lim), GG_SCAN_DONE);
    UNIT_CHECK(gg_msg_invalid(&st.msg) == NULL);
    UNIT_EQ_INT(st.msg.type, GG_NOTIFY);
    UNIT_EQ_INT(st.msg.body_off, 6);
    gg_scan_reset(&st);
    UNIT_EQ_INT(gg_scan(&st, "\x94\x01\x03\xc0\x09", 5, &lim), GG_SCAN_DONE);
    UNIT_CHECK(gg_msg_invalid(&st.msg) == NULL);
    UNIT_EQ_INT(st.msg.body_off, 3);
}

static void test_size_limit(void)
{
    gg_scan_limits small = {.max_message = 64, .max_depth = 8};
    char buf[256];
    size_t n = pack_request(buf, 1, "s.m", 10); /* > 64 bytes */
    gg_scan_state st;
    gg_scan_reset(&st);
    int rc = GG_SCAN_MORE;
    for (size_t have = 1; have <= n && rc == GG_SCAN_MORE; have++) rc = gg_scan(&st, buf, have, &small);
    UNIT_EQ_INT(rc, GG_ETOOBIG);
    UNIT_CHECK(st.msg.has_id && st.msg.msgid == 1);
}

/* Writers round-trip through the scanner and msgpack-c agrees with them. */
static void test_writers(void)
{
    uint64_t vals[] = {0, 127, 128, 255, 256, 65535, 65536, 4294967295u, 4294967296u};
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        char b[16];
        uint64_t back = 1;
        size_t n = gg_put_uint(b, vals[i]);
        UNIT_EQ_INT(gg_get_uint(b, n, &back), n);
        UNIT_CHECK(back == vals[i]);
    }
    int64_t ints[] = {-1, -32, -33, -128, -129, -32768, -32769, INT32_MIN, (int64_t)INT32_MIN - 1};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        char b[16];
        size_t n = gg_put_int(b, ints[i]);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        UNIT_EQ_INT(msgpack_unpack_next(&u, b, n, &off), MSGPACK_UNPACK_SUCCESS);
        UNIT_CHECK(u.data.type == MSGPACK_OBJECT_NEGATIVE_INTEGER && u.data.via.i64 == ints[i]);
        msgpack_unpacked_destroy(&u);
    }
    char b[64];
    size_t n = gg_put_request_hdr(b, 0xdeadbeef, "echo", 4);
    b[n++] = (char)0x90;
    gg_scan_state st;
    gg_scan_reset(&st);
    UNIT_EQ_INT(gg_scan(&st, b, n, &lim), GG_SCAN_DONE);
    UNIT_CHECK(st.msg.msgid == 0xdeadbeef && gg_msg_invalid(&st.msg) == NULL);
    n = gg_put_response_hdr(b, 300);
    b[n++] = (char)0xc0;
    b[n++] = (char)0xc3;
    gg_scan_reset(&st);
    UNIT_EQ_INT(gg_scan(&st, b, n, &lim), GG_SCAN_DONE);
    UNIT_CHECK(st.msg.type == GG_RESPONSE && st.msg.msgid == 300);
    n = gg_put_bin_hdr(b, 0);
    UNIT_CHECK(n == 2 && (unsigned char)b[0] == 0xc4 && b[1] == 0);
    n = gg_put_str_hdr(b, 40000);
    UNIT_CHECK(n == 3 && (unsigned char)b[0] == 0xda);
}

/* gg_get_ext reads every ext form msgpack-c writes (fixext 1-16, ext 8/16/32), and nothing
 * cut short or that is not an ext. */
static void test_get_ext(void)
{
    static const size_t sizes[] = {1, 2, 4, 8, 16, 0, 3, 255, 256, 65535, 65536};
    char *data = malloc(70000);
    for (size_t i = 0; i < 70000; i++) data[i] = (char)(i * 7);
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_ext_with_body(&pk, data, sizes[i], -5);
        int8_t t = 0;
        const char *d = NULL;
        size_t dl = 0;
        UNIT_EQ_INT(gg_get_ext(sb.data, sb.size, &t, &d, &dl), sb.size);
        UNIT_CHECK(t == -5 && dl == sizes[i] && d + dl == sb.data + sb.size);
        UNIT_CHECK(memcmp(d, data, dl) == 0);
        for (size_t cut = 0; cut < sb.size; cut += cut < 8 ? 1 : sb.size / 3)
            UNIT_EQ_INT(gg_get_ext(sb.data, cut, &t, &d, &dl), 0);
        msgpack_sbuffer_destroy(&sb);
    }
    free(data);
    UNIT_EQ_INT(gg_get_ext("\xc4\x01\x00", 3, &(int8_t){0}, &(const char *){0}, &(size_t){0}), 0);
    UNIT_EQ_INT(gg_get_ext("\x93\x01\x02\x03", 4, &(int8_t){0}, &(const char *){0}, &(size_t){0}), 0);
}

/* Method names are checked where they are parsed: the first dot and the worst flaw. */
static void test_method_check(void)
{
    static const struct {
        const char *name;
        int flaw;
        uint32_t dot;
    } cases[] = {
        {"users.get_profile", GG_NAME_OK, 5}, {"echo", GG_NAME_OK, 4},
        {"a.b.c", GG_NAME_OK, 1},             {"caf\xc3\xa9.x", GG_NAME_OK, 5},
        {"a._b", GG_NAME_PRIVATE, 1},         {"__gc", GG_NAME_PRIVATE, 4},
        {"a..b", GG_NAME_EMPTY, 1},           {"a.", GG_NAME_EMPTY, 1},
        {".a", GG_NAME_EMPTY, 0},             {"a._b.", GG_NAME_EMPTY, 1},
        {"a.b\n", GG_NAME_CONTROL, 1},        {"a.\x7f", GG_NAME_CONTROL, 1},
        {"a.\xc2\x85", GG_NAME_CONTROL, 1},   {"a.\xff", GG_NAME_UTF8, 1},
        {"a.\xc0\xae", GG_NAME_UTF8, 1},      {"a.\xed\xa0\x80", GG_NAME_UTF8, 1},
        {"a.\xf4\x90\x80\x80", GG_NAME_UTF8, 1}, {"a.\xe2\x82", GG_NAME_UTF8, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t dot = 99;
        UNIT_EQ_INT(gg_method_check(cases[i].name, (uint32_t)strlen(cases[i].name), &dot),
                    cases[i].flaw);
        UNIT_EQ_INT(dot, cases[i].dot);
    }
    uint32_t dot;
    UNIT_EQ_INT(gg_method_check("a\0b.c", 5, &dot), GG_NAME_CONTROL); /* NUL */
    /* gg_scan fills them in for a request */
    char buf[256];
    size_t n = pack_request(buf, 1, "svc._x", 0);
    gg_scan_state st;
    gg_scan_reset(&st);
    UNIT_EQ_INT(gg_scan(&st, buf, n, &lim), GG_SCAN_DONE);
    UNIT_EQ_INT(st.msg.method_flaw, GG_NAME_PRIVATE);
    UNIT_EQ_INT(st.msg.method_dot, 3);
}

int main(void)
{
    UNIT_RUN(test_whole_request);
    UNIT_RUN(test_split_anywhere);
    UNIT_RUN(test_hostile_counts);
    UNIT_RUN(test_depth_limit);
    UNIT_RUN(test_malformed_and_envelopes);
    UNIT_RUN(test_size_limit);
    UNIT_RUN(test_writers);
    UNIT_RUN(test_get_ext);
    UNIT_RUN(test_method_check);
    return unit_summary();
}

/* test_buf.c -- the one growable buffer (pooled, or heap when the pool is NULL) and the one
 * HTTP request-head builder on top of it. */
#include "core/buf.h"
#include "http/httpc.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

/* Compare the buffer's bytes with a C string (the buffer holds no NUL of its own). */
static int buf_is(const gg_buf *b, const char *s)
{
    return b->len == strlen(s) && memcmp(b->data, s, b->len) == 0;
}

static void test_heap_buffer_grows_and_frees(void)
{
    gg_buf b = {0};
    UNIT_EQ_INT(gg_buf_reserve(&b, NULL, 10), 0);
    UNIT_EQ_INT(b.cap, GG_BUF_HEAP_MIN);
    char chunk[1000];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 100; i++) UNIT_EQ_INT(gg_buf_append(&b, NULL, chunk, sizeof chunk), 0);
    UNIT_EQ_INT(b.len, 100000);
    UNIT_CHECK(b.cap >= b.len);
    gg_buf_consume(&b, 99990);
    UNIT_EQ_INT(b.len, 10);
    UNIT_CHECK(b.data[0] == 'x');
    /* a size that would wrap around is refused, the buffer unchanged */
    UNIT_EQ_INT(gg_buf_reserve(&b, NULL, (size_t)-1), -1);
    UNIT_EQ_INT(b.len, 10);
    gg_buf_release(&b, NULL);
    UNIT_CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
}

/* printf has no line-length limit: it grows the buffer instead of truncating. */
static void test_printf_grows(void)
{
    gg_buf b = {0};
    UNIT_EQ_INT(gg_buf_puts(&b, NULL, "a="), 0);
    UNIT_EQ_INT(gg_buf_printf(&b, NULL, "%d;", 42), 0);
    UNIT_CHECK(buf_is(&b, "a=42;"));
    char big[5000];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = 0;
    UNIT_EQ_INT(gg_buf_printf(&b, NULL, "[%s]", big), 0);
    UNIT_EQ_INT(b.len, 5 + 2 + 4999);
    UNIT_CHECK(b.data[5] == '[' && b.data[b.len - 1] == ']' && b.data[6] == 'y');
    gg_buf_release(&b, NULL);
}

/* Pooled buffers behave as before: a small one takes a chunk, a big one leaves the pool. */
static void test_pooled_buffer_unchanged(void)
{
    gg_bufpool p;
    UNIT_EQ_INT(gg_bufpool_init(&p, 64, 4), 0);
    gg_buf b = {0};
    UNIT_EQ_INT(gg_buf_append(&b, &p, "hello", 5), 0);
    UNIT_EQ_INT(b.cap, 64);
    UNIT_EQ_INT(gg_buf_printf(&b, &p, " %s", "world"), 0);
    UNIT_CHECK(buf_is(&b, "hello world"));
    char big[200];
    memset(big, 'z', sizeof big);
    UNIT_EQ_INT(gg_buf_append(&b, &p, big, sizeof big), 0);
    UNIT_CHECK(b.cap >= 211 && b.cap != 64);
    UNIT_EQ_INT(p.nfree, 1); /* the chunk went back */
    gg_buf_release(&b, &p);
    gg_bufpool_free(&p);
}

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* Under ASan a chunk waiting in the pool is poisoned: a buffer used after it went back is
 * reported instead of reading or writing whatever the chunk's next owner put there. */
static void test_pool_poisons_spare_chunks(void)
{
    gg_bufpool p;
    UNIT_EQ_INT(gg_bufpool_init(&p, 4096, 4), 0);
    gg_buf b = {0};
    UNIT_EQ_INT(gg_buf_reserve(&b, &p, 10), 0);
    char *chunk = b.data;
    UNIT_CHECK(!__asan_address_is_poisoned(chunk));
    gg_buf_release(&b, &p);
    UNIT_CHECK(__asan_address_is_poisoned(chunk));
    UNIT_CHECK(__asan_address_is_poisoned(chunk + 4095));
    UNIT_EQ_INT(gg_buf_reserve(&b, &p, 4096), 0); /* the same chunk, usable again */
    UNIT_CHECK(b.data == chunk);
    UNIT_CHECK(!__asan_address_is_poisoned(chunk + 4095));
    gg_buf_release(&b, &p);
    gg_bufpool_free(&p);
}
#endif

static void test_head_bytes(void)
{
    gg_buf b = {0};
    UNIT_EQ_INT(gg_http_head_start(&b, "GET", "/a/b", 4, "x=1", 3), 0);
    UNIT_EQ_INT(gg_http_head_add(&b, "X-Trace", 7, "t1", 2), 0);
    UNIT_EQ_INT(gg_http_head_has(b.data, b.len, "x-trace"), 1);
    UNIT_EQ_INT(gg_http_head_has(b.data, b.len, "host"), 0);
    UNIT_EQ_INT(gg_http_head_has(b.data, b.len, "x-tr"), 0); /* a prefix is not the name */
    UNIT_EQ_INT(gg_http_head_end(&b, -1), 0);
    UNIT_CHECK(buf_is(&b, "GET /a/b?x=1 HTTP/1.1\r\nX-Trace: t1\r\n\r\n"));
    gg_buf_release(&b, NULL);

    UNIT_EQ_INT(gg_http_head_start(&b, "POST", NULL, 0, NULL, 0), 0);
    UNIT_EQ_INT(gg_http_head_end(&b, 12), 0);
    UNIT_CHECK(buf_is(&b, "POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n"));
    gg_buf_release(&b, NULL);
}

/* A header that could split the request is refused with -2 and nothing is written. */
static void test_head_refuses_smuggling(void)
{
    gg_buf b = {0};
    UNIT_EQ_INT(gg_http_head_start(&b, "GET", "/", 1, NULL, 0), 0);
    size_t len = b.len;
    UNIT_EQ_INT(gg_http_head_add(&b, "X-A", 3, "v\r\nHost: evil", 13), -2);
    UNIT_EQ_INT(gg_http_head_add(&b, "Bad Name", 8, "v", 1), -2);
    UNIT_EQ_INT(gg_http_head_add(&b, "", 0, "v", 1), -2);
    UNIT_EQ_INT(b.len, len);
    gg_buf_release(&b, NULL);
}

int main(void)
{
    UNIT_RUN(test_heap_buffer_grows_and_frees);
    UNIT_RUN(test_printf_grows);
    UNIT_RUN(test_pooled_buffer_unchanged);
#if defined(__SANITIZE_ADDRESS__)
    UNIT_RUN(test_pool_poisons_spare_chunks);
#endif
    UNIT_RUN(test_head_bytes);
    UNIT_RUN(test_head_refuses_smuggling);
    return unit_summary();
}

/* loop.c -- the per-loop context shared by every connection; see loop.h. */
#include "core/loop.h"
#include "core/stream.h"

#include <stdlib.h>
#include <string.h>

#define READ_BUFFER (256 * 1024)
#define POOL_CHUNK  (64 * 1024)
#define POOL_SPARES 64

/* Output is written at the end of each turn, once per connection however many answers it
 * has. Twice per turn in fact: after the reads (check), and before the loop blocks again
 * (prepare), so that what a timer queued (a deadline's error, a retry) does not wait for the
 * next wake-up. */
static void flush_turn(gg_loop *l)
{
    if (l->before_flush) l->before_flush(l);
    gg_stream_flush_all(l);
}

static void on_check(uv_check_t *h)
{
    flush_turn(h->data);
}

static void on_prepare(uv_prepare_t *h)
{
    flush_turn(h->data);
}

int gg_loop_init(gg_loop *l, uv_loop_t *uv, const gg_loop_limits *lim)
{
    memset(l, 0, sizeof *l);
    l->uv = uv;
    l->log.level = GG_LOG_WARN;
    l->log.fd = 2;
    l->scan_limits.max_message = lim->max_message;
    l->scan_limits.max_depth = lim->max_depth;
    l->rbuf_size = READ_BUFFER;
    l->rbuf = malloc(READ_BUFFER);
    if (!l->rbuf) return -1;
    if (gg_bufpool_init(&l->bufs, POOL_CHUNK, POOL_SPARES)) goto fail_rbuf;
    if (gg_calls_init(&l->calls, lim->max_calls)) goto fail_pool;
    uv_check_init(uv, &l->flusher);
    l->flusher.data = l;
    uv_check_start(&l->flusher, on_check);
    uv_unref((uv_handle_t *)&l->flusher); /* flushing alone does not keep the loop alive */
    uv_prepare_init(uv, &l->flusher2);
    l->flusher2.data = l;
    uv_prepare_start(&l->flusher2, on_prepare);
    uv_unref((uv_handle_t *)&l->flusher2);
    gg_calls_timer_init(&l->calls, uv, NULL, l);
    return 0;
fail_pool:
    gg_bufpool_free(&l->bufs);
fail_rbuf:
    free(l->rbuf);
    l->rbuf = NULL;
    return -1;
}

void gg_loop_close(gg_loop *l)
{
    if (!uv_is_closing((uv_handle_t *)&l->flusher)) uv_close((uv_handle_t *)&l->flusher, NULL);
    if (!uv_is_closing((uv_handle_t *)&l->flusher2)) uv_close((uv_handle_t *)&l->flusher2, NULL);
    gg_calls_close(&l->calls);
}

void gg_loop_free(gg_loop *l)
{
    gg_calls_free(&l->calls);
    gg_bufpool_free(&l->bufs);
    free(l->rbuf);
    l->rbuf = NULL;
}

/* test_loop_stream.c -- gg_stream on a real uv loop: two streams over a socketpair, callbacks
 * counted, asserts after uv_run. Framing byte by byte, many answers flushed in one write, close
 * after flush, an oversize frame, pause/resume, the write-buffer bound, and a stream flushed
 * directly while queued. Core only. */
#include "loop_kit.h"
#include "unit.h"

#include <uv.h>

/* --- Framing: three requests written one byte per loop turn arrive whole, in order ------- */

typedef struct trickle {
    uv_pipe_t w; /* the raw writing end */
    uv_idle_t idle;
    char bytes[256];
    size_t len, off;
    int writes;
    int closed;
} trickle;

static void trickle_closed(uv_handle_t *h)
{
    ((trickle *)h->data)->closed++;
}

/* One byte per turn: the reader's poll sees each byte alone. */
static void trickle_step(uv_idle_t *h)
{
    trickle *t = h->data;
    uv_buf_t b = uv_buf_init(t->bytes + t->off, 1);
    int n = uv_try_write((uv_stream_t *)&t->w, &b, 1);
    if (n == UV_EAGAIN) return;
    if (n != 1) t->off = t->len; /* a write error: stop (the asserts below fail) */
    else t->off++, t->writes++;
    if (t->off < t->len) return;
    uv_close((uv_handle_t *)&t->idle, NULL);
    uv_close((uv_handle_t *)&t->w, trickle_closed); /* the reader sees EOF after the last byte */
}

static void test_framing_byte_by_byte(void)
{
    lk_loop L;
    if (!UNIT_EQ_INT(lk_loop_open(&L, 64 * 1024), 0)) return;
    uv_os_sock_t fds[2];
    UNIT_EQ_INT(uv_socketpair(SOCK_STREAM, 0, fds, UV_NONBLOCK_PIPE, UV_NONBLOCK_PIPE), 0);
    lk_peer r;
    UNIT_EQ_INT(lk_peer_open(&L, &r, fds[0]), 0);
    trickle t = {.len = 0};
    UNIT_EQ_INT(uv_pipe_init(&L.uv, &t.w, 0), 0);
    UNIT_EQ_INT(uv_pipe_open(&t.w, fds[1]), 0);
    t.w.data = &t;
    t.len += lk_put_request(t.bytes + t.len, 1, "a.first");
    t.len += lk_put_request_str(t.bytes + t.len, 2, "a.second", 40);
    t.len += lk_put_request(t.bytes + t.len, 3, "a.third");
    uv_idle_init(&L.uv, &t.idle);
    t.idle.data = &t;
    uv_idle_start(&t.idle, trickle_step);

    UNIT_EQ_INT(uv_run(&L.uv, UV_RUN_DEFAULT), 0);

    UNIT_EQ_INT(t.writes, (int)t.len);
    UNIT_EQ_INT(r.messages, 3);
    UNIT_EQ_INT(r.seen.out_of_order, 0);
    UNIT_CHECK(lk_answers_each(&r.seen, 1, 4, 1));
    UNIT_EQ_INT(r.frame_errors, 0);
    UNIT_EQ_INT(r.eofs, 1);
    UNIT_EQ_INT(r.eof_status, UV_EOF);
    UNIT_EQ_INT(r.messages_at_eof, 3);
    UNIT_EQ_INT(r.closed, 1);
    UNIT_EQ_INT(t.closed, 1);
    UNIT_EQ_INT(lk_loop_end(&L), 0);
}

/* --- 100 answers queued in one turn go out in one flush, all of them ----------------------- */

static void answer_100(lk_peer *p, const char *msg, const gg_msg *m)
{
    for (uint32_t i = 0; i < 100; i++) lk_send_response(&p->s, i, i * 7);
}

typedef struct counted {
    int results_ok; /* responses whose result was msgid * 7 */
} counted;

static void count_100(lk_peer *p, const char *msg, const gg_msg *m)
{
    counted *c = p->test;
    if (m->type == GG_RESPONSE && lk_result_uint(msg, m) == (long long)m->msgid * 7)
        c->results_ok++;
    if (p->messages == 100) gg_stream_close(&p->s);
}

static void test_many_answers_one_turn(void)
{
    lk_loop L;
    if (!UNIT_EQ_INT(lk_loop_open(&L, 64 * 1024), 0)) return;
    lk_peer srv, cli;
    UNIT_EQ_INT(lk_pair(&L, &srv, &cli), 0);
    counted c = {0};
    srv.on_message = answer_100;
    cli.on_message = count_100;
    cli.test = &c;
    UNIT_EQ_INT(lk_send_request(&cli.s, 500, "go"), 0);

    UNIT_EQ_INT(uv_run(&L.uv, UV_RUN_DEFAULT), 0);

    UNIT_EQ_INT(srv.messages, 1);
    UNIT_EQ_INT(cli.messages, 100);
    UNIT_CHECK(lk_answers_each(&cli.seen, 0, 100, 1));
    UNIT_EQ_INT(cli.seen.out_of_order, 0);
    UNIT_EQ_INT(c.results_ok, 100);
    /* One flush for the hundred: the output drained once, not once per answer. */
    UNIT_EQ_INT(srv.drains, 1);
    UNIT_EQ_INT(srv.eofs, 1);
    UNIT_EQ_INT(srv.closed, 1);
    UNIT_EQ_INT(cli.closed, 1);
    UNIT_EQ_INT(lk_loop_end(&L), 0);
}

/* --- close_after_flush: everything queued arrives, then EOF --------------------------------- */

static void answer_then_close(lk_peer *p, const char *msg, const gg_msg *m)
{
    for (uint32_t i = 0; i < 50; i++) lk_send_response(&p->s, i, i);
    gg_stream_close_after_flush(&p->s);
    lk_send_response(&p->s, 60, 0); /* queued after: still before the close */
}

static void test_close_after_flush(void)
{
    lk_loop L;
    if (!UNIT_EQ_INT(lk_loop_open(&L, 64 * 1024), 0)) return;
    lk_peer srv, cli;
    UNIT_EQ_INT(lk_pair(&L, &srv, &cli), 0);
    srv.on_message = answer_then_close;
    UNIT_EQ_INT(lk_send_request(&cli.s, 1, "bye"), 0);
    UNIT_EQ_INT(lk_send_request(&cli.s, 2, "ignored"), 0); /* read after close_after: dropped */

    UNIT_EQ_INT(uv_run(&L.uv, UV_RUN_DEFAULT), 0);

    UNIT_EQ_INT(srv.messages, 1);
    UNIT_EQ_INT(srv.eofs, 0); /* it closed itself */
    UNIT_EQ_INT(cli.messages, 51);
    UNIT_CHECK(lk_answers_each(&cli.seen, 0, 50, 1));
    UNIT_EQ_INT(cli.seen.count[60], 1);
    UNIT_EQ_INT(cli.eofs, 1);
    UNIT_EQ_INT(cli.eof_status, UV_EOF);
    UNIT_EQ_INT(cli.messages_at_eof, 51);
    UNIT_EQ_INT(srv.closed, 1);
    UNIT_EQ_INT(cli.closed, 1);
    UNIT_EQ_INT(lk_loop_end(&L), 0);
}

/* --- An oversize frame: one GG_ETOOBIG, nothing dispatched after it ------------------------ */

static void test_oversize_frame(void)
{
    lk_loop L;
    if (!UNIT_EQ_INT(lk_loop_open(&L, 1024), 0)) return;
    lk_peer srv, cli;
    UNIT_EQ_INT(lk_pair(&L, &srv, &cli), 0);
    /* One write: a request claiming 4 KiB of params against a 1 KiB limit, then a good one. */
    static char b[8192];
    size_t n = lk_put_request_str(b, 9, "big.one", 4096);
    n += lk_put_request(b + n, 10, "after");
    UNIT_EQ_INT(gg_stream_write(&cli.s, b, n), 0);

    UNIT_EQ_INT(uv_run(&L.uv, UV_RUN_DEFAULT), 0);

    UNIT_EQ_INT(srv.frame_errors, 1);
    UNIT_EQ_INT(srv.frame_code, GG_ETOOBIG);
    UNIT_CHECK(srv.frame_msg.has_id); /* enough of the envelope was read to answer it */
    UNIT_EQ_INT(srv.frame_msg.msgid, 9);
    UNIT_EQ_INT(srv.messages, 0);
    UNIT_EQ_INT(cli.eofs, 1);
    UNIT_EQ_INT(srv.closed, 1);
    UNIT_EQ_INT(cli.closed, 1);
    UNIT_EQ_INT(lk_loop_end(&L), 0);
}

/* --- Pause: nothing more is dispatched until resume, then the rest in order ---------------- */

typedef struct pausing {
    uv_timer_t later;
    lk_peer *srv;
    int messages_while_paused; /* messages seen when the resume came */
    int closed;
} pausing;

static void pausing_closed(uv_handle_t *h)
{
    ((pausing *)h->data)->closed++;
}

static void resume_now(uv_timer_t *t)
{
    pausing *ps = t->data;
    ps->messages_while_paused = ps->srv->messages;
    gg_stream_resume(&ps->srv->s);
    uv_close((uv_handle_t *)t, pausing_closed);
}

static void pause_on_first(lk_peer *p, const char *msg, const gg_msg *m)
{
    pausing *ps = p->test;
    lk_send_response(&p->s, m->msgid, (uint64_t)p->messages);
    if (p->messages == 1) {
        gg_stream_pause(&p->s);
        uv_timer_start(&ps->later, resume_now, 0, 0); /* the next turn: an event, not a delay */
    }
    if (p->messages == 5) gg_stream_close_after_flush(&p->s);
}

static void test_pause_resume(void)
{
    lk_loop L;
    if (!UNIT_EQ_INT(lk_loop_open(&L, 64 * 1024), 0)) return;
    lk_peer srv, cli;
    UNIT_EQ_INT(lk_pair(&L, &srv, &cli), 0);
    pausing ps = {.srv = &srv};
    uv_timer_init(&L.uv, &ps.later);
    ps.later.data = &ps;
    srv.on_message = pause_on_first;
    srv.test = &ps;
    /* Five requests in one write: one read holds all of them. */
    for (uint32_t i = 1; i <= 5; i++) lk_send_request(&cli.s, i, "p");

    UNIT_EQ_INT(uv_run(&L.uv, UV_RUN_DEFAULT), 0);

    UNIT_EQ_INT(ps.messages_while_paused, 1);
    UNIT_EQ_INT(srv.messages, 5);
    UNIT_EQ_INT(srv.seen.out_of_order, 0);
    UNIT_CHECK(lk_answers_each(&srv.seen, 1, 6, 1));
    UNIT_EQ_INT(cli.messages, 5);
    UNIT_CHECK(lk_answers_each(&cli.seen, 1, 6, 1));
    UNIT_EQ_INT(cli.eofs, 1);
    UNIT_EQ_INT(srv.closed, 1);
    UNIT_EQ_INT(cli.closed, 1);
    UNIT_EQ_INT(ps.closed, 1);
    UNIT_EQ_INT(lk_loop_end(&L), 0);
}

/* --- The write-buffer bound: past max_out, nothing more is dispatched until the drain ------ */

typedef struct bounded {
    int drains_at[4]; /* srv.drains when message i arrived */
} bounded;

static void flood_on_first(lk_peer *p, const char *msg, const gg_msg *m)
{
    bounded *bd = p->test;
    if (p->messages <= 3) bd->drains_at[p->messages] = p->drains;
    if (p->messages == 1) {
        static char big[8192];
        /* 8 KiB of answers against a 4 KiB bound: reading stops until they are written. */
        for (uint32_t i = 0; i < 4; i++) {
            size_t n = gg_put_response_hdr(big, 100 + i);
            big[n++] = (char)0xc0;
            n += gg_put_str_hdr(big + n, 2000);
            memset(big + n, 'y', 2000);
            gg_stream_write(&p->s, big, n + 2000);
        }
        UNIT_CHECK(p->s.flags & GG_ST_OUT_FULL);
        return;
    }
    lk_send_response(&p->s, m->msgid, 0);
    if (p->messages == 3) gg_stream_close_after_flush(&p->s);
}

static void test_write_buffer_bound(void)
{
    lk_loop L;
    if (!UNIT_EQ_INT(lk_loop_open(&L, 64 * 1024), 0)) return;
    lk_peer srv, cli;
    UNIT_EQ_INT(lk_pair(&L, &srv, &cli), 0);
    bounded bd = {{0}};
    srv.s.max_out = 4096;
    srv.on_message = flood_on_first;
    srv.test = &bd;
    for (uint32_t i = 1; i <= 3; i++) lk_send_request(&cli.s, i, "w");

    UNIT_EQ_INT(uv_run(&L.uv, UV_RUN_DEFAULT), 0);

    UNIT_EQ_INT(srv.messages, 3);
    UNIT_EQ_INT(bd.drains_at[1], 0);
    /* The second request, read in the same buffer as the first, waited for the drain. */
    UNIT_EQ_INT(bd.drains_at[2], 1);
    UNIT_EQ_INT(cli.messages, 6);
    UNIT_CHECK(lk_answers_each(&cli.seen, 100, 104, 1));
    UNIT_CHECK(lk_answers_each(&cli.seen, 2, 4, 1));
    UNIT_EQ_INT(srv.closed, 1);
    UNIT_EQ_INT(cli.closed, 1);
    UNIT_EQ_INT(lk_loop_end(&L), 0);
}

/* --- A stream written out directly while it is queued (what its write callback does) stays
 *     queued once: the streams queued before it are still flushed at the end of the turn ---- */

static void test_direct_flush_while_queued(void)
{
    lk_loop L;
    if (!UNIT_EQ_INT(lk_loop_open(&L, 64 * 1024), 0)) return;
    lk_peer a, b, x, y;
    UNIT_EQ_INT(lk_pair(&L, &a, &b), 0);
    UNIT_EQ_INT(lk_pair(&L, &x, &y), 0);
    UNIT_EQ_INT(lk_send_request(&x.s, 1, "x.first"), 0); /* x queued */
    UNIT_EQ_INT(lk_send_request(&a.s, 2, "a.first"), 0); /* a queued, ahead of x */
    gg_stream_flush(&a.s);                                 /* a's write callback: written now */
    UNIT_EQ_INT(a.s.out.len, 0);
    UNIT_EQ_INT(lk_send_request(&a.s, 3, "a.second"), 0);  /* more for a in the same turn */

    gg_stream_flush_all(&L.lp); /* the end of the turn */

    UNIT_EQ_INT(x.s.out.len, 0); /* x's request went out too */
    UNIT_EQ_INT(a.s.out.len, 0);
    UNIT_CHECK(!(x.s.flags & GG_ST_FLUSH_QUEUED));
    UNIT_CHECK(!(a.s.flags & GG_ST_FLUSH_QUEUED));
    UNIT_CHECK(L.lp.flush_head == NULL);
    /* (a stream left with output it will never write is closed at once: a failure here, not a
     * loop that never ends) */
    for (lk_peer *p = &a; p; p = p == &a ? &x : NULL) {
        if (p->s.out.len)
            gg_stream_close(&p->s);
        else
            gg_stream_close_after_flush(&p->s);
    }

    UNIT_EQ_INT(uv_run(&L.uv, UV_RUN_DEFAULT), 0);

    UNIT_EQ_INT(b.messages, 2);
    UNIT_CHECK(lk_answers_each(&b.seen, 2, 4, 1));
    UNIT_EQ_INT(y.messages, 1);
    UNIT_EQ_INT(y.seen.count[1], 1);
    UNIT_EQ_INT(a.closed + b.closed + x.closed + y.closed, 4);
    UNIT_EQ_INT(lk_loop_end(&L), 0);
}

int main(void)
{
    UNIT_RUN(test_framing_byte_by_byte);
    UNIT_RUN(test_many_answers_one_turn);
    UNIT_RUN(test_close_after_flush);
    UNIT_RUN(test_oversize_frame);
    UNIT_RUN(test_pause_resume);
    UNIT_RUN(test_write_buffer_bound);
    UNIT_RUN(test_direct_flush_while_queued);
    return unit_summary();
}

/* test_loop_stream.c -- gg_stream on a real uv loop: two streams over a socketpair, callbacks
 * counted, asserts after uv_run. Framing byte by byte, many answers flushed in one write, close
 * after flush, an oversize frame, pause/resume, the write-buffer bound, a stream flushed
 * directly while queued, and a handler that makes another stream process its input. Core only. */
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

/* --- Re-entry: a handler that makes another stream process what it has read (resumes it, or
 *     flushes it so that its full output drains and it goes on with its input) leaves each
 *     stream its own scan. A has read two messages in one buffer; in A's handler for the
 *     first, B processes input that ends in half a message. A's second message still arrives
 *     as sent, and B's half message completes when its rest comes. ------------------------- */

/* [0, msgid, method, [param]] */
static size_t put_request_param(char *p, uint32_t msgid, const char *method, const char *param)
{
    size_t n = gg_put_request_hdr(p, msgid, method, (uint32_t)strlen(method));
    n += gg_put_array_hdr(p + n, 1);
    n += gg_put_str_hdr(p + n, (uint32_t)strlen(param));
    memcpy(p + n, param, strlen(param));
    return n + strlen(param);
}

/* One message as it was dispatched: the msgid its envelope gave, and its bytes. */
typedef struct arrived {
    int has_id;
    uint32_t msgid;
    size_t size;
    char bytes[128];
} arrived;

static void arrived_note(arrived *tab, int i, const char *msg, const gg_msg *m)
{
    if (i < 0 || i >= 4) return;
    tab[i].has_id = m->has_id;
    tab[i].msgid = m->msgid;
    tab[i].size = m->size;
    memcpy(tab[i].bytes, msg, m->size < sizeof tab[i].bytes ? m->size : sizeof tab[i].bytes);
}

/* 1 when the message arrived exactly as these bytes, under their msgid. */
static int arrived_is(const arrived *a, uint32_t msgid, const char *bytes, size_t len)
{
    return a->has_id && a->msgid == msgid && a->size == len && memcmp(a->bytes, bytes, len) == 0;
}

/* 1 when want[0..want_len) follows msg[0..size) inside the buffer [base, base + len). */
static int follows_in(const char *msg, size_t size, const char *want, size_t want_len,
                      const char *base, size_t len)
{
    return base && msg >= base && msg + size + want_len <= base + len &&
           memcmp(msg + size, want, want_len) == 0;
}

enum { RE_RESUME, RE_DRAIN };

/* A's messages: 1 holds A (drain test only), 2 makes B process its input, 3 must arrive as
 * sent. B's: 11 holds B, 12 is answered (past max_out in the drain test), 13, then 14 sent in
 * two parts. */
typedef struct reentry {
    lk_peer a, ap, b, bp; /* A and its peer, B and its peer */
    int mode;
    uv_timer_t later;
    int later_closed;
    int held;           /* streams paused on their hold message */
    size_t answer_size; /* B's answer to 12 takes at most this many bytes */
    char a_bytes[256];  /* what A's peer sends, in one write */
    size_t a_len;
    char a3[128]; /* A's message 3 */
    size_t a3_len;
    char b_bytes[512]; /* what B's peer sends first, in one write: 11, 12, 13, half of 14 */
    size_t b_len;
    char b13[128], b14[128];
    size_t b13_len, b14_len, b14_cut;
    size_t b_in_before; /* B's unprocessed input when A's handler runs */
    arrived a_got[4], b_got[4];
    /* Seen in A's handler for 2: without them the test could pass with no re-entry at all. */
    int a3_same_buffer; /* 3 follows 2 in the buffer A is scanning */
    int b_before_ok;    /* B is held, from a message start, with whole messages and half of 14 */
    int b_drained;      /* drain test: the flush wrote B's answer and drained(B) ran */
    int b_after_ok;     /* after the call B has dispatched 13 and keeps half of 14, scan its own */
} reentry;

static void reentry_later_closed(uv_handle_t *h)
{
    ((reentry *)h->data)->later_closed++;
}

/* Drain test. A's handler must find B's answer queued and not yet written, but the loop writes
 * what is queued after the reads of a turn and again before it blocks: so B and A go on from
 * one timer callback (as the gateway resumes several clients in a row), B first (12's answer
 * fills its output), then A. */
static void reentry_go(uv_timer_t *t)
{
    reentry *r = t->data;
    gg_stream_resume(&r->b.s);
    gg_stream_resume(&r->a.s);
    uv_close((uv_handle_t *)t, reentry_later_closed);
}

static void reentry_hold(reentry *r, lk_peer *p)
{
    gg_stream_pause(&p->s);
    if (r->mode == RE_DRAIN && ++r->held == 2) uv_timer_start(&r->later, reentry_go, 0, 0);
}

static void reentry_on_a(lk_peer *p, const char *msg, const gg_msg *m)
{
    reentry *r = p->test;
    gg_stream *b = &r->b.s;
    arrived_note(r->a_got, p->messages - 1, msg, m);
    if (m->msgid == 1) reentry_hold(r, p);
    if (m->msgid != 2) return;
    r->a3_same_buffer =
        follows_in(msg, m->size, r->a3, r->a3_len, p->s.loop->rbuf, p->s.loop->rbuf_size) ||
        follows_in(msg, m->size, r->a3, r->a3_len, p->s.in.data, p->s.in.len);
    if (r->mode == RE_RESUME) {
        /* B paused on 11; its input from 12 on waits in its buffer */
        r->b_before_ok = (b->flags & GG_ST_PAUSED) && !b->scan && b->in.len == r->b_in_before &&
                         r->b.messages == 1;
        gg_stream_resume(b);
    } else {
        /* B's answer to 12 is queued past max_out, not written yet; 13 and half of 14 wait */
        r->b_before_ok = (b->flags & GG_ST_OUT_FULL) && !(b->flags & GG_ST_WRITING) &&
                         gg_stream_pending(b) > b->max_out && !b->scan &&
                         b->in.len == r->b_in_before && r->b.messages == 2;
        gg_stream_flush(b); /* the kernel takes it all: drained(B) goes on with B's input */
        r->b_drained = r->b.drains == 1 && !gg_stream_pending(b);
    }
    r->b_after_ok = r->b.messages == 3 && b->scan && b->in.len == r->b14_cut;
    gg_stream_write(&r->bp.s, r->b14 + r->b14_cut, r->b14_len - r->b14_cut);
}

static void reentry_on_b(lk_peer *p, const char *msg, const gg_msg *m)
{
    reentry *r = p->test;
    arrived_note(r->b_got, p->messages - 1, msg, m);
    if (m->msgid == 11) {
        reentry_hold(r, p);
        if (r->mode == RE_RESUME) { /* A's messages go out now: A reads them with B held */
            gg_stream_write(&r->ap.s, r->a_bytes, r->a_len);
            gg_stream_close_after_flush(&r->ap.s);
        }
    } else if (m->msgid == 12) {
        static char big[8192];
        size_t n = gg_put_response_hdr(big, 12);
        big[n++] = (char)0xc0;
        size_t pay = r->answer_size - n - 5;
        n += gg_put_str_hdr(big + n, (uint32_t)pay);
        memset(big + n, 'y', pay);
        gg_stream_write(&p->s, big, n + pay);
    } else if (m->msgid == 14) {
        gg_stream_close_after_flush(&p->s);
    }
}

static void test_reentry(int mode)
{
    lk_loop L;
    if (!UNIT_EQ_INT(lk_loop_open(&L, 64 * 1024), 0)) return;
    reentry r;
    memset(&r, 0, sizeof r);
    UNIT_EQ_INT(lk_pair(&L, &r.a, &r.ap), 0);
    UNIT_EQ_INT(lk_pair(&L, &r.b, &r.bp), 0);
    r.mode = mode;
    r.a.test = r.b.test = &r;
    r.a.on_message = reentry_on_a;
    r.b.on_message = reentry_on_b;

    if (mode == RE_DRAIN) r.a_len = put_request_param(r.a_bytes, 1, "a.hold", "wait");
    r.a_len += put_request_param(r.a_bytes + r.a_len, 2, "a.first", "sets B going");
    r.a3_len = put_request_param(r.a3, 3, "a.second", "the message after the re-entry");
    memcpy(r.a_bytes + r.a_len, r.a3, r.a3_len);
    r.a_len += r.a3_len;

    r.b_len = put_request_param(r.b_bytes, 11, "b.hold", "wait");
    size_t b12 = r.b_len;
    r.b_len += put_request_param(r.b_bytes + r.b_len, 12, "b.answer", "answer me");
    b12 = r.b_len - b12;
    r.b13_len = put_request_param(r.b13, 13, "b.second", "whole");
    r.b14_len = put_request_param(r.b14, 14, "b.third", "the third message, sent in two parts");
    r.b14_cut = r.b14_len / 2; /* inside the param string: the scan is three levels deep */
    memcpy(r.b_bytes + r.b_len, r.b13, r.b13_len);
    r.b_len += r.b13_len;
    memcpy(r.b_bytes + r.b_len, r.b14, r.b14_cut);
    r.b_len += r.b14_cut;
    r.b_in_before = (mode == RE_RESUME ? b12 : 0) + r.b13_len + r.b14_cut;
    UNIT_EQ_INT(gg_stream_write(&r.bp.s, r.b_bytes, r.b_len), 0);

    if (mode == RE_RESUME) {
        r.answer_size = 64;
    } else {
        r.answer_size = 4096;
        r.b.s.max_out = 1024;
        UNIT_EQ_INT(uv_timer_init(&L.uv, &r.later), 0);
        r.later.data = &r;
        UNIT_EQ_INT(gg_stream_write(&r.ap.s, r.a_bytes, r.a_len), 0);
        gg_stream_close_after_flush(&r.ap.s);
    }

    UNIT_EQ_INT(uv_run(&L.uv, UV_RUN_DEFAULT), 0);

    /* the re-entry happened as described */
    UNIT_CHECK(r.a3_same_buffer);
    UNIT_CHECK(r.b_before_ok);
    UNIT_EQ_INT(r.b_drained, mode == RE_DRAIN);
    UNIT_CHECK(r.b_after_ok);
    /* A's message after it: its own msgid and bytes, nothing else */
    int na = mode == RE_RESUME ? 2 : 3;
    UNIT_EQ_INT(r.a.frame_errors, 0);
    UNIT_EQ_INT(r.a.messages, na);
    UNIT_EQ_INT(r.a_got[na - 1].msgid, 3); /* not B's 14: the envelope of B's half message */
    UNIT_EQ_INT(r.a.seen.count[3], 1);
    UNIT_CHECK(arrived_is(&r.a_got[na - 1], 3, r.a3, r.a3_len));
    UNIT_EQ_INT(r.a.eofs, 1);
    UNIT_EQ_INT(r.a.eof_status, UV_EOF);
    /* B's messages, the one cut in two whole */
    UNIT_EQ_INT(r.b.frame_errors, 0);
    UNIT_EQ_INT(r.b.messages, 4);
    UNIT_CHECK(arrived_is(&r.b_got[2], 13, r.b13, r.b13_len));
    UNIT_CHECK(arrived_is(&r.b_got[3], 14, r.b14, r.b14_len));
    UNIT_EQ_INT(r.bp.messages, 1);
    UNIT_EQ_INT(r.bp.seen.count[12], 1);
    UNIT_EQ_INT(r.bp.eofs, 1);
    UNIT_EQ_INT(r.a.closed + r.ap.closed + r.b.closed + r.bp.closed, 4);
    UNIT_EQ_INT(r.later_closed, mode == RE_DRAIN);
    UNIT_EQ_INT(lk_loop_end(&L), 0);
}

/* A's handler resumes B, paused with input read. */
static void test_reentry_resume(void)
{
    test_reentry(RE_RESUME);
}

/* A's handler flushes B, whose output was full: drained(B) goes on with B's input. */
static void test_reentry_drain(void)
{
    test_reentry(RE_DRAIN);
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
    UNIT_RUN(test_reentry_resume);
    UNIT_RUN(test_reentry_drain);
    return unit_summary();
}

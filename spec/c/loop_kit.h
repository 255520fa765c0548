/* loop_kit.h -- helpers for the loop-level C tests (spec/c/test_loop_*.c), in the style of
 * libuv's own tests: a real uv loop per test, callbacks counted, asserts after uv_run, and
 * uv_loop_close() == 0 at the end (no handle left behind).
 *
 *   lk_loop L; lk_loop_open(&L, 64 * 1024);          a uv loop and a gg_loop on it
 *   lk_peer a, b; lk_pair(&L, &a, &b);               two gg_streams over a uv_socketpair
 *   ... uv_run(&L.uv, UV_RUN_DEFAULT); asserts ...
 *   UNIT_EQ_INT(lk_loop_end(&L), 0);                 closes the gg_loop, runs, uv_loop_close
 *
 * lk_answers counts how many times each msgid was seen, so a test can assert that every call
 * was answered exactly once (and in order, where that is promised). Everything is static inline:
 * each test program includes this header once and links the gateway's objects. */
#ifndef GG_LOOP_KIT_H
#define GG_LOOP_KIT_H

#include "core/codec.h"
#include "core/loop.h"
#include "core/stream.h"

#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#define LK_MAX_IDS 1024

/* How many times each msgid below LK_MAX_IDS was seen, and whether they came in order. */
typedef struct lk_answers {
    uint16_t count[LK_MAX_IDS];
    uint32_t total;
    uint32_t last;
    int out_of_order; /* a msgid arrived lower than the one before it */
    int out_of_range; /* a msgid >= LK_MAX_IDS arrived */
} lk_answers;

static inline void lk_answers_note(lk_answers *a, uint32_t msgid)
{
    if (msgid >= LK_MAX_IDS) {
        a->out_of_range++;
        return;
    }
    if (a->total && msgid < a->last) a->out_of_order++;
    a->count[msgid]++;
    a->last = msgid;
    a->total++;
}

/* 1 when every msgid in [lo, hi) was seen exactly `times` times. */
static inline int lk_answers_each(const lk_answers *a, uint32_t lo, uint32_t hi, unsigned times)
{
    for (uint32_t i = lo; i < hi && i < LK_MAX_IDS; i++)
        if (a->count[i] != times) return 0;
    return 1;
}

/* A uv loop of the test's own, and the gateway's per-loop context on it. */
typedef struct lk_loop {
    uv_loop_t uv;
    gg_loop lp;
} lk_loop;

static inline int lk_loop_open(lk_loop *L, size_t max_message)
{
    if (uv_loop_init(&L->uv)) return -1;
    gg_loop_limits lim = {.max_message = max_message, .max_depth = 32, .max_calls = 4096};
    if (gg_loop_init(&L->lp, &L->uv, &lim)) return -1;
    L->lp.log.level = GG_LOG_ERROR + 1; /* quiet: tests assert, they do not read logs */
    return 0;
}

/* Close the gg_loop's handles, let every close callback run, free, and close the uv loop.
 * Returns uv_loop_close's result: UV_EBUSY when a handle was left open. */
static inline int lk_loop_end(lk_loop *L)
{
    gg_loop_close(&L->lp);
    uv_run(&L->uv, UV_RUN_DEFAULT);
    gg_loop_free(&L->lp);
    return uv_loop_close(&L->uv);
}

/* One end of a connection: a gg_stream with every callback counted. The ops below record
 * what arrived and then call the test's hooks (any may be NULL). */
typedef struct lk_peer lk_peer;
struct lk_peer {
    gg_stream s;
    lk_answers seen;   /* msgids of the messages that arrived */
    int messages;      /* on_message calls */
    int frame_errors;  /* on_frame_error calls */
    int frame_code;    /* the last framing error */
    gg_msg frame_msg;  /* the envelope read before it */
    int eofs;          /* on_eof calls */
    int eof_status;
    int messages_at_eof; /* messages seen when the EOF came */
    int drains;        /* on_drain calls */
    int closed;        /* on_closed calls */
    void (*on_message)(lk_peer *p, const char *msg, const gg_msg *m);
    void (*on_frame_error)(lk_peer *p, int code); /* default: close */
    void (*on_drain)(lk_peer *p);
    void *test; /* the test's own state */
};

static inline void lk_on_message_(gg_stream *s, const char *msg, const gg_msg *m)
{
    lk_peer *p = (lk_peer *)s;
    p->messages++;
    if (m->has_id) lk_answers_note(&p->seen, m->msgid);
    if (p->on_message) p->on_message(p, msg, m);
}

static inline void lk_on_frame_error_(gg_stream *s, int code, const gg_msg *m)
{
    lk_peer *p = (lk_peer *)s;
    p->frame_errors++;
    p->frame_code = code;
    p->frame_msg = *m;
    if (p->on_frame_error)
        p->on_frame_error(p, code);
    else
        gg_stream_close(s);
}

/* The peer closed: record, and close this end too (what every owner in the gateway does). */
static inline void lk_on_eof_(gg_stream *s, int status)
{
    lk_peer *p = (lk_peer *)s;
    p->eofs++;
    p->eof_status = status;
    p->messages_at_eof = p->messages;
    gg_stream_close(s);
}

static inline void lk_on_drain_(gg_stream *s)
{
    lk_peer *p = (lk_peer *)s;
    p->drains++;
    if (p->on_drain) p->on_drain(p);
}

static inline void lk_on_closed_(gg_stream *s)
{
    ((lk_peer *)s)->closed++;
}

static const gg_stream_ops lk_peer_ops = {
    .on_message = lk_on_message_,
    .on_frame_error = lk_on_frame_error_,
    .on_eof = lk_on_eof_,
    .on_drain = lk_on_drain_,
    .on_closed = lk_on_closed_,
};

/* A stream on an open fd (one end of a socketpair), connected and reading. */
static inline int lk_peer_open(lk_loop *L, lk_peer *p, uv_os_sock_t fd)
{
    memset(p, 0, sizeof *p);
    if (uv_pipe_init(&L->uv, &p->s.io.pipe, 0)) return -1;
    gg_stream_init(&p->s, &L->lp, &lk_peer_ops, GG_ST_READY);
    if (uv_pipe_open(&p->s.io.pipe, fd)) return -1;
    return gg_stream_start(&p->s);
}

/* Two peers connected to each other over uv_socketpair. */
static inline int lk_pair(lk_loop *L, lk_peer *a, lk_peer *b)
{
    uv_os_sock_t fds[2];
    if (uv_socketpair(SOCK_STREAM, 0, fds, UV_NONBLOCK_PIPE, UV_NONBLOCK_PIPE)) return -1;
    if (lk_peer_open(L, a, fds[0])) return -1;
    return lk_peer_open(L, b, fds[1]);
}

/* Encoders for the messages tests send. Each writes at p (room for 64 + method or payload
 * bytes) and returns the bytes written. */

/* [0, msgid, method, []] */
static inline size_t lk_put_request(char *p, uint32_t msgid, const char *method)
{
    size_t n = gg_put_request_hdr(p, msgid, method, (uint32_t)strlen(method));
    return n + gg_put_array_hdr(p + n, 0);
}

/* [0, msgid, method, [str of `len` bytes of 'x']] */
static inline size_t lk_put_request_str(char *p, uint32_t msgid, const char *method, uint32_t len)
{
    size_t n = gg_put_request_hdr(p, msgid, method, (uint32_t)strlen(method));
    n += gg_put_array_hdr(p + n, 1);
    n += gg_put_str_hdr(p + n, len);
    memset(p + n, 'x', len);
    return n + len;
}

/* [1, msgid, nil, result] with an unsigned integer result. */
static inline size_t lk_put_response(char *p, uint32_t msgid, uint64_t result)
{
    size_t n = gg_put_response_hdr(p, msgid);
    p[n++] = (char)0xc0;
    return n + gg_put_uint(p + n, result);
}

/* Queue a request / a response on a stream; 0 or -1 when out of memory. */
static inline int lk_send_request(gg_stream *s, uint32_t msgid, const char *method)
{
    char b[64 + GG_METHOD_MAX];
    return gg_stream_write(s, b, lk_put_request(b, msgid, method));
}

static inline int lk_send_response(gg_stream *s, uint32_t msgid, uint64_t result)
{
    char b[64];
    return gg_stream_write(s, b, lk_put_response(b, msgid, result));
}

/* The unsigned integer result of a response [1, id, nil, n]; -1 when it is an error or not an
 * integer. */
static inline long long lk_result_uint(const char *msg, const gg_msg *m)
{
    if (m->body_off >= m->size || (unsigned char)msg[m->body_off] != 0xc0) return -1;
    uint64_t v;
    if (!gg_get_uint(msg + m->body_off + 1, m->size - m->body_off - 1, &v)) return -1;
    return (long long)v;
}

/* The error code of a gateway error answer [1, id, {code = n, type, message}, nil]; 0 when the
 * response carries no error, -1 when the error is not of that shape. */
static inline long long lk_error_code(const char *msg, const gg_msg *m)
{
    const unsigned char *b = (const unsigned char *)msg + m->body_off;
    size_t left = m->size - m->body_off;
    if (!left || b[0] == 0xc0) return 0;
    if ((b[0] & 0xf0) != 0x80 || left < 7 || memcmp(b + 1, "\xa4" "code", 5) != 0) return -1;
    uint64_t v;
    if (!gg_get_uint((const char *)b + 6, left - 6, &v)) return -1;
    return (long long)v;
}

/* A TCP stream for the kit's ops, not yet connected (flags 0: output waits for READY). */
static inline int lk_peer_tcp(lk_loop *L, lk_peer *p)
{
    memset(p, 0, sizeof *p);
    if (uv_tcp_init(&L->uv, &p->s.io.tcp)) return -1;
    gg_stream_init(&p->s, &L->lp, &lk_peer_ops, 0);
    return 0;
}

/* The connection is up: output may go, reading starts. */
static inline int lk_peer_ready(lk_peer *p)
{
    p->s.flags |= GG_ST_READY;
    gg_stream_flush(&p->s);
    return gg_stream_start(&p->s);
}

#endif

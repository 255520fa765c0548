/* fuzz_http.c -- libFuzzer target for the HTTP request reader of the JSON-RPC front door
 * (gateway/http/http.c: gg_http_reader on libhttp-parser), fed in arbitrary splits.
 *
 * The input is read twice: once in one piece, with every request answered at once (the
 * reference), and once in chunks whose sizes come from a seed, the owner answering some
 * requests "later" (GG_HTTP_BUSY, then gg_http_reader_next, as a front-door call that goes
 * upstream does). Properties:
 *   - both readings hand over the same requests in the same order: method, path, the
 *     Content-Type and Authorization values, the body, keep-alive;
 *   - both end the same way: the same error status (431, 413, 411, 400...) or none;
 *   - nothing is read out of bounds, nothing leaks (all buffers go back to the loop's pool);
 *   - every error has a status and a reason.
 * Input: 4 bytes of seed, 1 byte of mode (bits 0-1: max_body 0 / 16 / 1024 / 1 MiB), then
 * the bytes of the connection. */
#include "http/http.h"
#include "core/loop.h"
#include "core/stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct out {
    char *p;
    size_t len, cap;
} out;

static void put(out *o, const void *d, size_t n)
{
    if (o->cap - o->len < n + 8) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap - o->len < n + 8) cap *= 2;
        o->p = realloc(o->p, cap);
        if (!o->p) abort();
        o->cap = cap;
    }
    memcpy(o->p + o->len, d, n);
    o->len += n;
}

static void put_field(out *o, const char *d, size_t n)
{
    uint32_t len = d ? (uint32_t)n : 0xffffffffu;
    put(o, &len, sizeof len);
    if (d && n) put(o, d, n);
}

typedef struct run {
    gg_http_reader r; /* first: the callbacks get &run->r */
    out log;
    int error_status;
    int errors;
    uint32_t busy_bits;
    unsigned nreq;
} run;

static int on_request(gg_http_reader *r, const gg_http_request *req)
{
    run *x = (run *)r;
    int m = req->method;
    put(&x->log, "R", 1);
    put(&x->log, &m, sizeof m);
    put_field(&x->log, req->path, req->path_len);
    put_field(&x->log, req->content_type, req->content_type_len);
    put_field(&x->log, req->authorization, req->authorization_len);
    if (!req->body) abort();
    put_field(&x->log, req->body, req->body_len);
    put(&x->log, req->keep_alive ? "k" : "c", 1);
    int busy = (x->busy_bits >> (x->nreq++ % 32)) & 1;
    return busy ? GG_HTTP_BUSY : GG_HTTP_DONE;
}

static void on_error(gg_http_reader *r, int status, const char *why)
{
    run *x = (run *)r;
    if (status < 400 || status > 599 || !why || !*why) abort();
    x->errors++;
    x->error_status = status;
}

static const gg_http_reader_ops ops = {.on_request = on_request, .on_error = on_error};

static void closed_cb(gg_stream *s)
{
    (void)s;
}
static void noop_msg(gg_stream *s, const char *m, const gg_msg *g)
{
    (void)s, (void)m, (void)g;
}
static void noop_err(gg_stream *s, int c, const gg_msg *g)
{
    (void)s, (void)c, (void)g;
}
static void noop_eof(gg_stream *s, int st)
{
    (void)s, (void)st;
}
static const gg_stream_ops sops = {
    .on_message = noop_msg, .on_frame_error = noop_err, .on_eof = noop_eof, .on_closed = closed_cb};

static uint32_t next_rand(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* Read data through a reader; chunked: split by the seed and answer some requests later. */
static void read_all(run *x, const char *data, size_t len, size_t max_body, uint32_t seed, int chunked)
{
    uv_loop_t uv;
    if (uv_loop_init(&uv)) abort();
    gg_loop lp;
    gg_loop_limits lim = {.max_message = 1 << 20, .max_depth = 32, .max_calls = 16};
    if (gg_loop_init(&lp, &uv, &lim)) abort();
    lp.log.level = -1;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) abort();
    gg_stream st;
    uv_pipe_init(&uv, &st.io.pipe, 0);
    gg_stream_init(&st, &lp, &sops, GG_ST_READY);
    if (uv_pipe_open(&st.io.pipe, sv[0])) abort();

    gg_http_reader_init(&x->r, &st, &ops, max_body);
    x->busy_bits = chunked ? seed : 0;
    uint32_t rs = seed | 1;
    size_t pos = 0;
    while (pos < len && !x->r.stopped) {
        size_t n = len - pos;
        uint32_t v = 0;
        if (chunked) {
            v = next_rand(&rs);
            size_t c = (v & 3) == 0 ? 1 + (v >> 8) % 2048 : 1 + (v >> 8) % 8;
            if (c < n) n = c;
        }
        gg_http_reader_feed(&x->r, data + pos, n);
        pos += n;
        /* Sometimes more bytes arrive before the answer (the stream was resumed meanwhile). */
        if (chunked && (v & 0x10)) continue;
        /* The owner answers what it was busy with; the reader goes on with what it held. */
        for (int guard = 0; gg_http_reader_busy(&x->r); guard++) {
            if (guard > 100000) abort();
            gg_http_reader_next(&x->r);
        }
    }
    for (int guard = 0; gg_http_reader_busy(&x->r); guard++) {
        if (guard > 100000) abort();
        gg_http_reader_next(&x->r);
    }
    gg_http_reader_free(&x->r);
    gg_stream_close(&st);
    gg_loop_close(&lp);
    uv_run(&uv, UV_RUN_DEFAULT);
    if (uv_loop_close(&uv)) abort();
    gg_loop_free(&lp);
    close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    if (size < 5) return 0;
    uint32_t seed = (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 | (uint32_t)in[3] << 24;
    static const size_t bodies[4] = {0, 16, 1024, 1 << 20};
    size_t max_body = bodies[in[4] & 3];
    const char *data = (const char *)in + 5;
    size_t len = size - 5;
    char *copy = malloc(len ? len : 1); /* exactly len bytes: ASan sees any read past them */
    memcpy(copy, data, len);

    run *whole = calloc(1, sizeof *whole), *split = calloc(1, sizeof *split);
    read_all(whole, copy, len, max_body, seed, 0);
    read_all(split, copy, len, max_body, seed, 1);
    if (getenv("FUZZ_HTTP_DEBUG"))
        fprintf(stderr, "len=%zu max_body=%zu whole: %u requests, error %d (%d); split: %u requests, error %d (%d)\n",
                len, max_body, whole->nreq, whole->error_status, whole->errors, split->nreq, split->error_status,
                split->errors);
    if (whole->errors > 1 || split->errors > 1) abort();
    if (whole->error_status != split->error_status) abort();
    if (whole->log.len != split->log.len || (whole->log.len && memcmp(whole->log.p, split->log.p, whole->log.len)))
        abort();
    free(whole->log.p);
    free(split->log.p);
    free(whole);
    free(split);
    free(copy);
    return 0;
}

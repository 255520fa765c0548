/* fuzz_stream.c -- libFuzzer target for a connection's framing (gateway/core/stream.c) fed through a
 * real socket in arbitrary splits, with the owner pausing and resuming it at arbitrary messages.
 *
 * A gg_stream reads one end of a socketpair; the target writes the input to the other end in
 * chunks whose sizes come from a seed in the input, waiting after each chunk until the stream
 * has read it (so every read ends where a chunk ends), then shuts the writing side. The
 * stream's owner echoes every message back (gg_stream_write, batched flush) and may pause
 * after a message and resume one turn later (the bytes behind it wait in the stream's buffer).
 *
 * Properties, against gg_scan run once over the whole input:
 *   - the messages delivered are exactly the whole messages of the input, in order, with the
 *     same sizes and msgids, whatever the splits and pauses;
 *   - when the input holds a framing error (too big, too deep, not MessagePack) it is reported
 *     once, with the same code, after exactly the messages before it, and nothing after it;
 *   - otherwise the stream ends with EOF (a trailing partial message is simply dropped);
 *   - the bytes echoed back are the delivered messages, concatenated;
 *   - nothing leaks (LeakSanitizer) and nothing is read or written out of bounds (ASan).
 *
 * Input: 4 bytes of split seed, 1 byte of mode (bit 0-1: limits, bit 2: pause at messages
 * whose index has bit 0 of (seed >> index) set), then the bytes of the stream. */
#include "core/loop.h"
#include "core/stream.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_MSGS 4096

typedef struct ref_msg {
    size_t off, size;
    uint32_t msgid;
    int has_id;
} ref_msg;

typedef struct harness {
    gg_stream st; /* first: the callbacks get &h->st */
    const char *data;
    ref_msg ref[MAX_MSGS];
    size_t nref;
    int ref_error; /* 0 or the GG_E* code the whole-input scan ended with */
    size_t ref_error_pos; /* where in its message the whole-input scan found the error */
    size_t got;    /* messages delivered */
    int frame_error;
    int frame_errors;
    int eof;
    int closed;
    int paused_by_us;
    uint32_t pause_bits;
    int pause_mode;
    char *echo; /* bytes expected back */
    size_t echo_len;
} harness;

static void on_message(gg_stream *s, const char *msg, const gg_msg *m)
{
    harness *h = (harness *)s;
    if (h->frame_errors || h->eof || h->got >= h->nref) abort(); /* a message that is not there */
    const ref_msg *r = &h->ref[h->got];
    if (m->size != r->size || memcmp(msg, h->data + r->off, r->size) != 0) abort();
    if (m->has_id != r->has_id || (r->has_id && m->msgid != r->msgid)) abort();
    memcpy(h->echo + h->echo_len, msg, m->size);
    h->echo_len += m->size;
    if (gg_stream_write(s, msg, m->size)) abort();
    if (h->pause_mode && ((h->pause_bits >> (h->got % 32)) & 1)) {
        gg_stream_pause(s);
        h->paused_by_us = 1;
    }
    h->got++;
}

static void on_frame_error(gg_stream *s, int code, const gg_msg *m)
{
    harness *h = (harness *)s;
    h->frame_error = code;
    h->frame_errors++;
    gg_stream_close(s);
}

static void on_eof(gg_stream *s, int status)
{
    harness *h = (harness *)s;
    h->eof = 1;
    gg_stream_close(s);
}

static void on_closed(gg_stream *s)
{
    ((harness *)s)->closed = 1;
}

static const gg_stream_ops ops = {
    .on_message = on_message,
    .on_frame_error = on_frame_error,
    .on_eof = on_eof,
    .on_closed = on_closed,
};

static uint32_t next_rand(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* Read whatever the stream echoed so far; append to got. */
static void drain_echo(int fd, char *got, size_t *got_len, size_t cap)
{
    for (;;) {
        if (*got_len >= cap) {
            char junk[256]; /* more than expected: count it so the comparison fails */
            ssize_t n = read(fd, junk, sizeof junk);
            if (n > 0) {
                *got_len += (size_t)n;
                continue;
            }
            return;
        }
        ssize_t n = read(fd, got + *got_len, cap - *got_len);
        if (n > 0) {
            *got_len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        return;
    }
}

static size_t unread(int fd)
{
    int n = 0;
    if (ioctl(fd, FIONREAD, &n) != 0) abort();
    return (size_t)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    if (size < 5) return 0;
    uint32_t seed = (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 | (uint32_t)in[3] << 24;
    int mode = in[4];
    const char *data = (const char *)in + 5;
    size_t len = size - 5;

    static const gg_loop_limits limits[4] = {
        {.max_message = 1 << 16, .max_depth = 32, .max_calls = 16},
        {.max_message = 64, .max_depth = 4, .max_calls = 16},
        {.max_message = 1024, .max_depth = 1, .max_calls = 16},
        {.max_message = 1 << 20, .max_depth = GG_DEPTH_CAP, .max_calls = 16},
    };
    const gg_loop_limits *lim = &limits[mode & 3];

    harness *h = calloc(1, sizeof *h);
    if (!h) abort();
    h->data = data;
    h->pause_mode = (mode >> 2) & 1;
    h->pause_bits = seed;
    h->echo = malloc(len + 1);

    /* The reference: the whole input scanned at once. */
    gg_scan_limits sl = {.max_message = lim->max_message, .max_depth = lim->max_depth};
    gg_scan_state ss;
    size_t off = 0;
    while (off < len && h->nref < MAX_MSGS) {
        gg_scan_reset(&ss);
        int rc = gg_scan(&ss, data + off, len - off, &sl);
        if (rc == GG_SCAN_MORE) break;
        if (rc < 0) {
            h->ref_error = rc;
            h->ref_error_pos = ss.pos;
            break;
        }
        h->ref[h->nref++] = (ref_msg){off, ss.msg.size, ss.msg.msgid, ss.msg.has_id};
        off += ss.msg.size;
    }
    if (h->nref == MAX_MSGS) len = off; /* keep the reference complete */

    uv_loop_t uv;
    if (uv_loop_init(&uv)) abort();
    gg_loop lp;
    if (gg_loop_init(&lp, &uv, lim)) abort();
    lp.log.level = -1; /* silent */

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) abort();
    int fl = fcntl(sv[1], F_GETFL);
    fcntl(sv[1], F_SETFL, fl | O_NONBLOCK);
    uv_pipe_init(&uv, &h->st.io.pipe, 0);
    gg_stream_init(&h->st, &lp, &ops, GG_ST_READY);
    if (uv_pipe_open(&h->st.io.pipe, sv[0])) abort();
    if (gg_stream_start(&h->st)) abort();

    char *echoed = malloc(len + 1);
    size_t echoed_len = 0;
    uint32_t x = seed | 1;
    size_t pos = 0;
    int shut = 0;
    for (int turns = 0; !h->closed; turns++) {
        if (turns > 100000) abort(); /* the stream stopped making progress */
        if (h->paused_by_us && !(h->st.flags & GG_ST_CLOSING)) {
            h->paused_by_us = 0;
            gg_stream_resume(&h->st);
        }
        /* The next chunk once the stream has read everything sent so far. */
        if (!h->paused_by_us && !(h->st.flags & GG_ST_CLOSING) && unread(sv[0]) == 0) {
            if (pos < len) {
                uint32_t r = next_rand(&x);
                size_t n = (r & 3) == 0 ? 1 + (r >> 8) % 4096 : 1 + (r >> 8) % 16;
                if (n > len - pos) n = len - pos;
                ssize_t w = write(sv[1], data + pos, n);
                if (w < 0 && errno != EAGAIN && errno != EINTR) abort();
                if (w > 0) pos += (size_t)w;
            } else if (!shut) {
                shutdown(sv[1], SHUT_WR);
                shut = 1;
            }
        }
        uv_run(&uv, UV_RUN_NOWAIT);
        drain_echo(sv[1], echoed, &echoed_len, len + 1);
    }

    /* Verdict. */
    if (getenv("FUZZ_STREAM_DEBUG"))
        fprintf(stderr, "len=%zu mode=%d nref=%zu ref_error=%d got=%zu frame_errors=%d frame_error=%d eof=%d\n",
                len, mode, h->nref, h->ref_error, h->got, h->frame_errors, h->frame_error, h->eof);
    if (h->ref_error) {
        /* The same error, however the bytes were split (corpus: known-toobig-vs-malformed was
         * once 400 whole and 413 split). */
        if (h->frame_errors != 1 || h->frame_error != h->ref_error || h->got != h->nref) abort();
    } else {
        if (h->frame_errors || !h->eof || h->got != h->nref) abort();
    }
    /* Output queued before the close is dropped (gg_stream_close), so the echo is a prefix;
     * with nothing dropped it is all of it. */
    drain_echo(sv[1], echoed, &echoed_len, len + 1);
    if (echoed_len > h->echo_len || memcmp(echoed, h->echo, echoed_len) != 0) abort();

    gg_loop_close(&lp);
    uv_run(&uv, UV_RUN_DEFAULT);
    if (uv_loop_close(&uv)) abort(); /* a handle left open */
    gg_loop_free(&lp);
    close(sv[1]);
    free(echoed);
    free(h->echo);
    free(h);
    return 0;
}

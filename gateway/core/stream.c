/* stream.c -- framed reads and batched writes for every connection; see stream.h. */
#include "core/stream.h"
#include "core/tls.h"

#include <stdlib.h>
#include <string.h>

#define MIN_READ (64 * 1024)

static void queue_flush(gg_stream *s)
{
    if (s->flags & GG_ST_FLUSH_QUEUED) return;
    s->flags |= GG_ST_FLUSH_QUEUED;
    s->flush_next = s->loop->flush_head;
    s->loop->flush_head = s;
}

void gg_stream_init(gg_stream *s, gg_loop *loop, const gg_stream_ops *ops, unsigned flags)
{
    s->io.handle.data = s;
    s->loop = loop;
    s->ops = ops;
    memset(&s->in, 0, sizeof s->in);
    memset(&s->out, 0, sizeof s->out);
    memset(&s->wout, 0, sizeof s->wout);
    s->scan = NULL;
    s->flush_next = NULL;
    s->partial_since = 0;
    s->write_since = 0;
    s->max_out = 0;
    s->wreq.data = s;
    s->flags = flags;
    s->tls = NULL;
}

/* A connection with an incomplete message reads straight into its own buffer (no copy);
 * everyone else shares the loop's buffer. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    gg_stream *s = h->data;
    gg_loop *lp = s->loop;
    if (s->in.len && !s->ops->on_bytes && !s->tls) {
        /* Read into the room the buffer has; when it runs low, grow by a read's worth (the
         * buffer doubles). Never by what the message claims it still needs: a claim is not
         * bytes, and 2,000 connections claiming 8 MiB each must not reserve 16 GB. */
        if (s->in.cap - s->in.len < 4096) {
            if (gg_buf_reserve(&s->in, &lp->bufs, MIN_READ)) {
                *buf = uv_buf_init(NULL, 0); /* out of memory: libuv reports UV_ENOBUFS */
                return;
            }
        }
        *buf = uv_buf_init(s->in.data + s->in.len, (unsigned)(s->in.cap - s->in.len));
        return;
    }
    *buf = uv_buf_init(lp->rbuf, (unsigned)lp->rbuf_size);
}

/* Walk data[0..len) and dispatch every whole message; keep the rest in s->in. `own` says data
 * is s->in itself. */
static void process(gg_stream *s, char *data, size_t len, int own)
{
    gg_loop *lp = s->loop;
    /* A scan in progress is the stream's own; a fresh one lives on this frame, never in the
     * loop: on_message may run code (a policy's or a script's send that flushes, a resume)
     * that processes another stream's input before this loop goes on. */
    gg_scan_state fresh;
    gg_scan_state *st = s->scan ? s->scan : &fresh;
    size_t off = 0;
    int rc = GG_SCAN_DONE;
    if (!s->scan) gg_scan_reset(st);
    if (s->scan && len < s->scan->need) return; /* still short of what the scan asked for */

    while (off < len && !(s->flags & (GG_ST_PAUSED | GG_ST_CLOSING | GG_ST_OUT_FULL))) {
        rc = gg_scan(st, data + off, len - off, &lp->scan_limits);
        if (rc == GG_SCAN_DONE) {
            gg_msg m = st->msg;
            gg_scan_reset(st);
            s->partial_since = 0;
            s->ops->on_message(s, data + off, &m);
            off += m.size;
            continue;
        }
        if (rc == GG_SCAN_MORE) break;
        uv_read_stop(&s->io.stream);
        s->flags &= ~GG_ST_READING;
        s->ops->on_frame_error(s, rc, &st->msg);
        gg_buf_release(&s->in, &lp->bufs);
        free(s->scan);
        s->scan = NULL;
        return;
    }
    if (s->flags & GG_ST_CLOSING) return;

    size_t rest = len - off;
    if (own) {
        gg_buf_consume(&s->in, off);
    } else if (rest && gg_buf_append(&s->in, &lp->bufs, data + off, rest)) {
        gg_log(&lp->log, GG_LOG_ERROR, "out_of_memory", "what=input bytes=%zu", rest);
        gg_stream_close(s);
        return;
    }
    if (!rest) {
        gg_buf_release(&s->in, &lp->bufs);
        free(s->scan);
        s->scan = NULL;
        return;
    }
    if (rc == GG_SCAN_MORE) {
        if (!s->partial_since) s->partial_since = uv_now(lp->uv);
        if (!s->scan) { /* keep the scan's progress for the next read */
            s->scan = malloc(sizeof *s->scan);
            if (!s->scan) {
                gg_stream_close(s);
                return;
            }
            memcpy(s->scan, st, sizeof *st);
        }
    } else if (s->scan) { /* paused at a message boundary: start afresh on resume */
        free(s->scan);
        s->scan = NULL;
    }
}

void gg_stream_input(gg_stream *s, char *data, size_t len)
{
    if (s->ops->on_bytes) {
        s->ops->on_bytes(s, data, len);
    } else if (!s->in.len) {
        process(s, data, len, 0);
    } else if (gg_buf_append(&s->in, &s->loop->bufs, data, len)) {
        gg_log(&s->loop->log, GG_LOG_ERROR, "out_of_memory", "what=input bytes=%zu", len);
        gg_stream_close(s);
    } else {
        process(s, s->in.data, s->in.len, 1);
    }
}

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    gg_stream *s = h->data;
    if (s->tls) { /* ciphertext: tls.c hands the plaintext to gg_stream_input */
        int rc = nread > 0 ? gg_tls_read(s, buf->base, (size_t)nread) : (int)nread;
        if (nread < 0) gg_tls_eof(s->tls);
        if (rc < 0 && !(s->flags & GG_ST_CLOSING)) {
            uv_read_stop(h);
            s->flags &= ~GG_ST_READING;
            /* The alert tells the peer why: a few bytes, written now if the socket takes them. */
            if (rc == UV_EPROTO && gg_tls_pending(s->tls)) gg_stream_flush(s);
            if (!(s->flags & GG_ST_CLOSING)) s->ops->on_eof(s, rc);
        }
        return;
    }
    if (nread > 0 && s->ops->on_bytes) {
        s->ops->on_bytes(s, buf->base, (size_t)nread);
        return;
    }
    if (nread > 0) {
        if (buf->base == s->loop->rbuf) {
            process(s, buf->base, (size_t)nread, 0);
        } else {
            s->in.len += (size_t)nread;
            process(s, s->in.data, s->in.len, 1);
        }
        return;
    }
    if (nread < 0) {
        uv_read_stop(h);
        s->flags &= ~GG_ST_READING;
        s->ops->on_eof(s, (int)nread);
    }
}

int gg_stream_start(gg_stream *s)
{
    if (s->flags & (GG_ST_READING | GG_ST_CLOSING | GG_ST_PAUSED | GG_ST_OUT_FULL)) return 0;
    int rc = uv_read_start(&s->io.stream, on_alloc, on_read);
    if (rc == 0) s->flags |= GG_ST_READING;
    return rc;
}

void gg_stream_pause(gg_stream *s)
{
    s->flags |= GG_ST_PAUSED;
    if (s->flags & GG_ST_READING) {
        uv_read_stop(&s->io.stream);
        s->flags &= ~GG_ST_READING;
    }
}

void gg_stream_resume(gg_stream *s)
{
    if (!(s->flags & GG_ST_PAUSED) || (s->flags & GG_ST_CLOSING)) return;
    s->flags &= ~GG_ST_PAUSED;
    if (s->flags & GG_ST_OUT_FULL) return; /* goes on when the output drains (drained) */
    if (s->in.len) process(s, s->in.data, s->in.len, 1);
    if (!(s->flags & (GG_ST_PAUSED | GG_ST_CLOSING | GG_ST_CLOSE_AFTER))) gg_stream_start(s);
}

char *gg_stream_reserve(gg_stream *s, size_t n)
{
    if (gg_buf_reserve(&s->out, &s->loop->bufs, n)) return NULL;
    return s->out.data + s->out.len;
}

void gg_stream_commit(gg_stream *s, size_t n)
{
    s->out.len += n;
    if (!s->write_since) s->write_since = uv_now(s->loop->uv);
    if (s->max_out && !(s->flags & GG_ST_OUT_FULL) && gg_stream_pending(s) > s->max_out) {
        s->flags |= GG_ST_OUT_FULL;
        if (s->flags & GG_ST_READING) {
            uv_read_stop(&s->io.stream);
            s->flags &= ~GG_ST_READING;
        }
    }
    queue_flush(s);
}

int gg_stream_write(gg_stream *s, const void *data, size_t n)
{
    char *p = gg_stream_reserve(s, n);
    if (!p) return -1;
    memcpy(p, data, n);
    gg_stream_commit(s, n);
    return 0;
}

size_t gg_stream_pending(const gg_stream *s)
{
    return s->out.len + s->wout.len + (s->tls ? gg_tls_pending(s->tls) : 0);
}

int gg_stream_write_stalled(const gg_stream *s, uint64_t now, uint64_t timeout_ms)
{
    return s->write_since && gg_stream_pending(s) && now - s->write_since > timeout_ms;
}

/* Everything queued is written. A stream that stopped reading for its output goes on here:
 * in its own write callback or in the end-of-turn flush, never inside another connection's
 * callback. */
static void drained(gg_stream *s)
{
    s->write_since = 0;
    if (s->flags & GG_ST_CLOSE_AFTER) {
        gg_stream_close(s);
        return;
    }
    int was_full = (s->flags & GG_ST_OUT_FULL) != 0;
    s->flags &= ~GG_ST_OUT_FULL;
    if (s->ops->on_drain) s->ops->on_drain(s);
    if (!was_full || (s->flags & (GG_ST_PAUSED | GG_ST_CLOSING | GG_ST_CLOSE_AFTER | GG_ST_OUT_FULL)))
        return;
    if (s->in.len && !s->ops->on_bytes) process(s, s->in.data, s->in.len, 1);
    gg_stream_start(s);
}

static void on_write(uv_write_t *req, int status)
{
    gg_stream *s = req->data;
    s->flags &= ~GG_ST_WRITING;
    gg_buf_release(&s->wout, &s->loop->bufs);
    if (s->flags & GG_ST_CLOSING) return;
    if (status < 0) {
        s->ops->on_eof(s, status);
        return;
    }
    s->write_since = uv_now(s->loop->uv); /* the peer took bytes */
    if (s->out.len || (s->tls && gg_tls_pending(s->tls)))
        gg_stream_flush(s);
    else
        drained(s);
}

/* Also called directly (a write callback, a peer that connects) while s may be queued: s then
 * stays queued, its flag set, until gg_stream_flush_all takes it off. Clearing the flag here
 * would let the next commit queue s a second time, and that second link would cut off every
 * stream queued before it: their output would wait for ever. */
void gg_stream_flush(gg_stream *s)
{
    if ((s->flags & (GG_ST_WRITING | GG_ST_CLOSING)) || !(s->flags & GG_ST_READY)) return;
    gg_buf *src = &s->out; /* with TLS: the ciphertext sealed from it */
    if (s->tls && !(src = gg_tls_seal(s))) {
        s->ops->on_eof(s, UV_EPROTO);
        return;
    }
    if (!src->len) return;
    uv_buf_t b = uv_buf_init(src->data, (unsigned)src->len);
    int n = uv_try_write(&s->io.stream, &b, 1);
    if (n == UV_EAGAIN || n == UV_ENOSYS) n = 0;
    if (n < 0) {
        s->ops->on_eof(s, n);
        return;
    }
    if ((size_t)n == src->len) {
        gg_buf_release(src, &s->loop->bufs);
        if (s->out.len) /* TLS seals a chunk at a time */
            queue_flush(s);
        else
            drained(s);
        return;
    }
    /* The kernel took part of it: hand the rest to libuv and collect new output aside. */
    if (n > 0) s->write_since = uv_now(s->loop->uv);
    gg_buf_consume(src, (size_t)n);
    s->wout = *src;
    memset(src, 0, sizeof *src);
    b = uv_buf_init(s->wout.data, (unsigned)s->wout.len);
    int rc = uv_write(&s->wreq, &s->io.stream, &b, 1, on_write);
    if (rc < 0) {
        s->ops->on_eof(s, rc);
        return;
    }
    s->flags |= GG_ST_WRITING;
}

void gg_stream_flush_all(gg_loop *lp)
{
    while (lp->flush_head) {
        gg_stream *s = lp->flush_head;
        lp->flush_head = s->flush_next;
        s->flush_next = NULL;
        s->flags &= ~GG_ST_FLUSH_QUEUED;
        gg_stream_flush(s);
    }
}

static void on_close(uv_handle_t *h)
{
    gg_stream *s = h->data;
    gg_bufpool *p = &s->loop->bufs;
    gg_buf_release(&s->in, p);
    gg_buf_release(&s->out, p);
    gg_buf_release(&s->wout, p);
    free(s->scan);
    s->scan = NULL;
    gg_tls_free(s->tls);
    s->tls = NULL;
    s->ops->on_closed(s);
}

void gg_stream_close(gg_stream *s)
{
    if (s->flags & GG_ST_CLOSING) return;
    s->flags |= GG_ST_CLOSING;
    s->flags &= ~(GG_ST_READING | GG_ST_READY);
    uv_close(&s->io.handle, on_close);
}

void gg_stream_close_after_flush(gg_stream *s)
{
    if (s->flags & GG_ST_CLOSING) return;
    if (s->flags & GG_ST_READING) uv_read_stop(&s->io.stream);
    s->flags &= ~GG_ST_READING;
    s->flags |= GG_ST_CLOSE_AFTER | GG_ST_PAUSED;
    if (s->tls && (s->flags & GG_ST_READY)) gg_tls_shutdown(s);
    if (!gg_stream_pending(s) || !(s->flags & GG_ST_READY))
        gg_stream_close(s);
    else
        queue_flush(s);
}

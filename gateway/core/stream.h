/* stream.h -- one connection's bytes: framed reads, batched writes.
 *
 * Reads land in the loop's shared buffer; a connection keeps bytes of its own only while a
 * message is incomplete (or while it is paused). Writes are queued and flushed once per loop
 * turn (uv_check), so many answers to one peer cost one write(2). */
#ifndef GG_STREAM_H
#define GG_STREAM_H

#include "core/buf.h"
#include "core/codec.h"
#include "core/loop.h"

#include <uv.h>

typedef struct gg_stream gg_stream;

typedef struct gg_stream_ops {
    /* One whole message: msg[0..m->size). Valid only during the call. */
    void (*on_message)(gg_stream *s, const char *msg, const gg_msg *m);
    /* Framing failed (GG_ETOOBIG, GG_ETOODEEP, GG_EMALFORMED); m holds what was read of the
     * envelope. The stream stops reading; the owner answers and closes. */
    void (*on_frame_error)(gg_stream *s, int code, const gg_msg *m);
    /* The peer closed or an I/O error happened (status is a libuv error). */
    void (*on_eof)(gg_stream *s, int status);
    /* Everything queued has been written (used to resume a paused reader). May be NULL. */
    void (*on_drain)(gg_stream *s);
    /* The handle is closed; the owner may free the memory now. */
    void (*on_closed)(gg_stream *s);
    /* Raw streams (HTTP): when set, bytes are handed over as read, with no MessagePack framing
     * (on_message and on_frame_error are not used). data is valid only during the call. */
    void (*on_bytes)(gg_stream *s, const char *data, size_t len);
    /* TLS (tls.c): the handshake is done and the peer verified. May be NULL. */
    void (*on_handshake)(gg_stream *s);
} gg_stream_ops;

#define GG_ST_READING     0x01
#define GG_ST_PAUSED      0x02 /* owner asked not to dispatch more messages */
#define GG_ST_WRITING     0x04
#define GG_ST_FLUSH_QUEUED 0x08
#define GG_ST_CLOSING     0x10
#define GG_ST_CLOSE_AFTER 0x20 /* close once the queued output is written */
#define GG_ST_READY       0x40 /* connected: output may be flushed */
#define GG_ST_OUT_FULL    0x80 /* more than max_out bytes queued: reading waits for the drain */

struct gg_stream {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } io;
    gg_loop *loop;
    const gg_stream_ops *ops;
    gg_buf in;     /* unprocessed input, from the first byte of a message */
    gg_scan_state *scan; /* progress through `in`; allocated only while a message is incomplete */
    gg_buf out;    /* queued output */
    gg_buf wout;   /* output handed to libuv, kept until write_cb */
    uv_write_t wreq;
    gg_stream *flush_next;
    uint64_t partial_since; /* loop time (ms) the incomplete message began; 0 if none */
    uint64_t write_since; /* loop time (ms) of the last write progress while output waits; 0 if none */
    size_t max_out;       /* queued output beyond which reading stops (GG_ST_OUT_FULL); 0: none */
    unsigned flags;
    struct gg_tls *tls; /* TLS on this connection (tls.c), NULL for plaintext; freed on close */
};

/* Set up the fields (the owner has initialised io with uv_tcp_init/uv_pipe_init).
 *
 * Output bound: an owner that answers a peer sets max_out (limits.max_write_buffer). Once more
 * than that is queued, whatever queued it (an upstream's answer, an error, sys.*, an HTTP
 * response), the stream stops reading and stops dispatching what it has read; it goes on once
 * everything queued is written, after on_drain (where an HTTP owner resumes its reader). So a
 * peer that does not read costs at most max_out plus one answer plus one read. Streams to
 * upstreams leave max_out at 0: their answers must be read whatever is queued to them. */
void gg_stream_init(gg_stream *s, gg_loop *loop, const gg_stream_ops *ops, unsigned flags);
int gg_stream_start(gg_stream *s);
/* Stop dispatching messages (and reading) until gg_stream_resume. */
void gg_stream_pause(gg_stream *s);
void gg_stream_resume(gg_stream *s);

/* Bytes read (plaintext, from a TLS layer): frame them, or hand them to on_bytes. */
void gg_stream_input(gg_stream *s, char *data, size_t len);

/* Queue output. reserve returns room for n bytes (NULL when out of memory); commit the bytes
 * actually written there. The flush happens at the end of this loop turn. */
char *gg_stream_reserve(gg_stream *s, size_t n);
void gg_stream_commit(gg_stream *s, size_t n);
int gg_stream_write(gg_stream *s, const void *data, size_t n);
/* Bytes queued or being written. */
size_t gg_stream_pending(const gg_stream *s);
/* 1 when output has waited with no byte written for more than timeout_ms (the peer reads
 * nothing): the owner's sweep closes such a peer. */
int gg_stream_write_stalled(const gg_stream *s, uint64_t now, uint64_t timeout_ms);

/* Write what is queued now (called by the loop's flusher; also when a peer connects). */
void gg_stream_flush(gg_stream *s);
/* Flush every stream that has output queued this turn. */
void gg_stream_flush_all(gg_loop *loop);

/* Close now (queued output is dropped) or after the queued output is written. */
void gg_stream_close(gg_stream *s);
void gg_stream_close_after_flush(gg_stream *s);

#endif

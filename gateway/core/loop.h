/* loop.h -- what every connection on one libuv loop shares: the read buffer, the buffer
 * pool, the scan limits, the calls in flight (with their deadline timer), and the end-of-turn flush.
 *
 * The gateway (server.c) and the Lua client library (lua_ghost.c) each own one; streams,
 * calls and framing are the same code for both. */
#ifndef GG_LOOP_H
#define GG_LOOP_H

#include "core/buf.h"
#include "core/codec.h"
#include "core/calls.h"
#include "core/log.h"

#include <uv.h>

struct gg_stream;
typedef struct gg_loop gg_loop;

struct gg_loop {
    uv_loop_t *uv;
    gg_logger log;
    gg_scan_limits scan_limits;
    char *rbuf;         /* the shared read buffer */
    size_t rbuf_size;
    gg_bufpool bufs;
    gg_calls calls;

    struct gg_stream *flush_head; /* streams with output queued this turn */
    uv_check_t flusher;   /* after the reads of a turn */
    uv_prepare_t flusher2; /* before the loop blocks: what timers and close callbacks queued */
    /* Called at the end of each turn before the flush (may queue more output). */
    void (*before_flush)(gg_loop *l);

    void *data; /* the owner (gg_server, or the Lua client state) */
};

typedef struct gg_loop_limits {
    size_t max_message;
    uint32_t max_depth;
    uint32_t max_calls;
} gg_loop_limits;

/* Set up l on uv; the owner then sets l->calls.on_deadline, called with l (calls.h). Returns 0, or -1 when out of memory (nothing to undo). */
int gg_loop_init(gg_loop *l, uv_loop_t *uv, const gg_loop_limits *lim);
/* Close the loop's own handles (the loop can then run to completion). */
void gg_loop_close(gg_loop *l);
/* Free the memory, after the uv loop has finished. */
void gg_loop_free(gg_loop *l);

#endif

/* server.h -- the loop's context: everything a running gateway owns, and nothing global. */
#ifndef GG_SERVER_H
#define GG_SERVER_H

#include "buf.h"
#include "client.h"
#include "codec.h"
#include "config.h"
#include "futures.h"
#include "listener.h"
#include "log.h"
#include "stream.h"
#include "upstream.h"

#include <uv.h>

typedef struct gg_server {
    uv_loop_t *loop;
    gg_config *cfg;
    gg_logger log;

    gg_scan_limits scan_limits;
    gg_scan_state scan; /* scan state for data read into rbuf (one read at a time) */
    char *rbuf;    /* the shared read buffer */
    size_t rbuf_size;
    gg_bufpool bufs;

    gg_calls calls;
    uv_timer_t deadline_timer;
    uint64_t deadline_due; /* when deadline_timer fires; 0 when stopped */

    gg_stream *flush_head; /* streams with output queued this turn */
    gg_client *resume;     /* clients to resume reading at the end of this turn */
    uv_check_t flusher;

    gg_listener *listeners;
    int nlisteners;
    gg_service *services; /* sorted by name */
    int nservices;

    gg_client *clients; /* most recently active last */
    gg_client *clients_tail;
    uint32_t nclients;
    uv_timer_t sweeper;

    uv_signal_t sigterm, sigint, sighup;
    int draining;
    uv_timer_t drain_timer;
    int open_handles; /* closed handles not yet called back, for a clean exit */
} gg_server;

/* Run a gateway on cfg until it is told to stop. Takes ownership of cfg. Returns the exit
 * status for the process. */
int gg_server_run(gg_config *cfg);

/* Arm the deadline timer for the earliest call (after a call was added). */
void gg_server_arm_deadline(gg_server *srv, uint64_t deadline);
/* Resume reading from c at the end of this loop turn (never from inside a callback). */
void gg_server_defer_resume(gg_server *srv, gg_client *c);
void gg_server_forget_resume(gg_server *srv, gg_client *c);
/* During a drain: stop once no call is in flight. */
void gg_server_check_drained(gg_server *srv);

#endif

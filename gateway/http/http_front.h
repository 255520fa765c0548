/* http_front.h -- the HTTP listeners: the JSON-RPC front door (config `http`, http_rpc.c) and the
 * admin endpoint (config `admin`: /metrics, /health, /ready, /routes, http_admin.c).
 *
 * Front-door connections are clients like the MessagePack ones (gg_client_add): they count
 * against limits.max_clients, are swept for idleness and slow requests, and are closed with the
 * clients at shutdown. Admin connections are kept apart, bounded by GG_ADMIN_MAX_CONNS, so that
 * the admin endpoint answers while the RPC side is at its connection cap or draining. */
#ifndef GG_HTTP_FRONT_H
#define GG_HTTP_FRONT_H

#include "proxy/server.h"

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct gg_server;
struct gg_http_rpc_conn;
struct gg_http_admin_conn;

#define GG_ADMIN_MAX_CONNS 64

typedef struct gg_http_listener {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } io;
    struct gg_http_front *front;
    int admin; /* 1: the admin endpoint; 0: the JSON-RPC front door */
    int is_pipe;
    int tls; /* tls://: HTTPS with the config's tls table */
    int open;
    int blocked; /* tls: at max_handshakes; a connection waits in the backlog (http_front.c) */
    char bound[160];       /* the real address, with the port the kernel gave */
    char unlink_path[108]; /* unix: the socket file we made, removed when closing */
} gg_http_listener;

/* HTTP responses by status, for /metrics. */
#define GG_HTTP_STATUS_SLOTS 16

/* Everything the HTTP side owns. It frees itself once gg_http_front_close has been called and
 * the last of its handles and connections has closed (refs). */
typedef struct gg_http_front {
    struct gg_server *srv;
    gg_http_listener *listeners;
    int nlisteners;
    int refs;   /* open handles and live connections */
    int closed; /* gg_http_front_close was called */
    /* http.path and http.max_body as started: used when a reload drops the `http` section (the
     * listeners stay until a restart). Owned. */
    char *path;
    size_t max_body;

    /* JSON-RPC: connections whose request was answered from inside another connection's
     * callback go on with their pipelined bytes from here, once per loop turn. */
    uv_idle_t kick;
    int kick_open;
    struct gg_http_rpc_conn *kicks;
    msgpack_sbuffer params; /* scratch: one call's params, read by dispatch during the call */

    /* Admin connections, oldest first; swept by `sweep`. */
    struct gg_http_admin_conn *admins, *admins_tail;
    int nadmins;
    uv_timer_t sweep;
    int sweep_open;

    uint64_t responses[2][GG_HTTP_STATUS_SLOTS]; /* [admin][status slot]: gg_http_count */
} gg_http_front;

/* Listen on the configured addresses (nothing when none). Returns 0, or -1 with a reason. */
int gg_http_front_start(struct gg_server *srv, char *err, size_t errlen);
/* Stop accepting front-door connections (drain). The admin endpoint keeps answering (/health
 * and /ready say 503) until gg_http_front_close. Connections close with the clients. */
void gg_http_front_stop(struct gg_server *srv);
/* Close everything HTTP (shutdown): listeners, admin connections. */
void gg_http_front_close(struct gg_server *srv);

/* The above, for gg_run_opts.front (proxy/ reaches the HTTP side only through it). */
extern const gg_front_ops gg_http_front_ops;

/* Bookkeeping for the modules that share the front. */
void gg_http_front_ref(gg_http_front *f);
void gg_http_front_unref(gg_http_front *f);
/* The JSON-RPC path and body limit of the current config (reloads change them). */
const char *gg_http_front_path(const gg_http_front *f);
size_t gg_http_front_max_body(const gg_http_front *f);
/* Count an HTTP response of this status (for /metrics); admin: 1 for the admin endpoint. */
void gg_http_count(gg_http_front *f, int admin, int status);
/* The statuses counted, in slot order (0 ends the list). */
extern const int gg_http_counted_status[GG_HTTP_STATUS_SLOTS];

#endif

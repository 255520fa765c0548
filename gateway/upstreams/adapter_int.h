/* adapter_int.h -- what the adapter's files share (private to upstreams/adapter*.c): the task,
 * connection and adapter records, and the functions one file calls in another.
 *
 *   adapter.c       the service: send, start, release (the file's top comment says how it works)
 *   adapter_task.c  the coroutine driver: tasks, their outcomes, the resume loop
 *   adapter_call.c  upstream.call: the task as a client of the gateway
 *   adapter_http.c  http.request: connections per host:port, the request head, timeouts
 *   adapter_lib.c   the Lua helpers an adapter file sees */
#ifndef GG_ADAPTER_INT_H
#define GG_ADAPTER_INT_H

#include "upstreams/adapter.h"
#include "proxy/dispatch.h"
#include "core/errors.h"
#include "http/httpc.h"
#include "core/json.h"
#include "core/tls.h"
#include "lua/lua_bridge.h"
#include "lua/lua_consts.h"
#include "lua/lua_msgpack.h"
#include "proxy/server.h"

#include <arpa/inet.h>
#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* The protocol of lua/ghost/adapter.lua: GG_AD_* in lua/lua_consts.h. */

#define W_NONE 0
#define W_CALL 1
#define W_HTTP 2

/* Adapters calling adapters run inline up to this depth; deeper starts wait for a loop turn
 * (a recursive adapter must not grow the C stack without bound). */
#define MAX_SYNC_DEPTH  8
#define MAX_IDLE_CONNS  16
#define IDLE_CONN_MS    30000
#define MAX_FULL_METHOD 255

typedef struct gg_adapter gg_adapter;
typedef struct ad_conn ad_conn;
typedef struct ad_gai ad_gai;

typedef struct ad_task {
    gg_client client; /* first member: the proto callbacks get the task */
    gg_adapter *ad;
    struct ad_task *prev, *next; /* ad->tasks */
    struct ad_task *ready_next;  /* ad->ready */
    lua_State *co;
    int co_ref;
    uint32_t call_id; /* the adapter call it runs; it may end first (deadline) */
    uint8_t attempt;
    uint64_t deadline;
    int op, waiting, queued, sync, done;
    int running;     /* inside task_run: release leaves it to task_run to free */
    int orphan;      /* its adapter was released while it ran */
    int first_nargs; /* start deferred: the values are on co already */
    char method[64]; /* for logs */
    /* the outcome of the operation, kept until the resume */
    int res_kind, res_code, res_status;
    double res_retry;
    const char *res_type;
    char *res_msg;
    char *res_data; /* call: the [error, result] bytes; http: the body */
    size_t res_len;
    char *res_hdrs; /* http: "name\0value\0" pairs */
    size_t res_hdrs_len;
    uint32_t res_nhdrs;
    /* http.request */
    ad_conn *conn;
    ad_gai *gai;
    char *req; /* the request bytes, kept for one retry */
    size_t req_len;
    char key[280]; /* host:port */
    char host[256];
    unsigned port;
    struct sockaddr_storage sa;
    int is_head, idempotent, retried;
    int https;
    uint64_t http_ms; /* its timeout */
    uv_timer_t timer;
    int timer_init;
} ad_task;

/* An http.request connection; idle ones wait in ad->idle for the next request to the same
 * host:port. */
struct ad_conn {
    gg_httpc hc; /* first member */
    gg_adapter *ad;
    ad_task *task; /* the request in flight; NULL when idle or abandoned */
    ad_conn *next; /* ad->idle */
    int idle;
    int connect_status;
    uint64_t idle_since;
    char key[280];
};

/* A name lookup; it outlives a task that gives up on it (uv_cancel still calls back). */
struct ad_gai {
    uv_getaddrinfo_t req;
    gg_adapter *ad;
    ad_task *task; /* NULL once abandoned */
};

struct gg_adapter {
    gg_server *srv;
    lua_State *L; /* its own state (docs/trust.md): the file, its tasks' coroutines */
    gg_service *svc; /* NULL once released */
    char name[64];
    char file[512];
    gg_addr pseudo; /* the one endpoint policies see: "adapter:<file>" */
    struct gg_tls_ctx *https; /* http.request to https:// URLs: one reference (config.h) */
    int mod_ref, run_ref;
    ad_task *tasks;
    ad_task *ready, *ready_tail;
    uv_idle_t idle; /* resumes ready tasks, once per loop turn */
    int idle_init;
    ad_conn *idle_conns;
    int nidle;
    int depth;
    int pending; /* tasks, connections, lookups and handles not yet gone */
    int released;
};

static inline const gg_limits *gg_ad_limits(gg_adapter *ad)
{
    return &ad->srv->cfg->limits;
}

/* adapter.c: free the adapter once it is released and nothing it counts is left. */
void gg_ad_maybe_free(gg_adapter *ad);

/* adapter_task.c */
void gg_ad_res_clear(ad_task *t);
__attribute__((format(printf, 5, 6))) void gg_ad_res_error(ad_task *t, int kind, int code,
                                                            const char *type, const char *fmt, ...);
/* The operation ended: resume now if the driver is still starting it, else next turn. */
void gg_ad_op_done(ad_task *t);
void gg_ad_task_detach(ad_task *t);
void gg_ad_task_free(ad_task *t);
ad_task *gg_ad_task_new(gg_adapter *ad, gg_call *call, const char *method, uint32_t mlen);
/* Resume t with nargs values on its stack until it waits or ends. */
void gg_ad_task_run(ad_task *t, int nargs);

/* adapter_call.c */
extern const gg_client_proto gg_ad_task_proto;
extern const gg_stream_ops gg_ad_no_stream_ops;
int gg_ad_past_deadline(ad_task *t);
int gg_ad_push_results(ad_task *t);
int gg_ad_start_call(ad_task *t);
int gg_ad_l_take(lua_State *L);

/* adapter_http.c */
void gg_ad_conn_abandon(ad_conn *c);
void gg_ad_drop_http(ad_task *t);
int gg_ad_start_http(ad_task *t);

/* adapter_lib.c: the helpers table given to ghost.adapter.load (each gets the adapter as its
 * upvalue). */
extern const luaL_Reg gg_ad_helpers[];

#endif

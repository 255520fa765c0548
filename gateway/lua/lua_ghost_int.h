/* lua_ghost_int.h -- what the files of ghost.core share (lua_ghost.c: the module and its
 * context; lua_ghost_events.c: the event queue and core.run; lua_ghost_conn.c: calls and
 * connections; lua_ghost_send.c: writing messages; lua_ghost_listen.c: listeners). Private:
 * no file outside ghost.core includes it. In core.so these names are hidden. */
#ifndef GG_LUA_GHOST_INT_H
#define GG_LUA_GHOST_INT_H

#include "lua/lua_ghost.h"
#include "core/calls.h"
#include "core/codec.h"
#include "core/loop.h"
#include "core/stream.h"

#include <lauxlib.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#define CTX_KEY   "ghost.core.ctx"
#define CONN_MT   "ghost.core.conn"
#define LISTEN_MT "ghost.core.listener"

/* Limits of one Lua state's loop. Reading: what a peer may send us. Writing: what we send is
 * checked against the connection's max_message/max_depth (defaults: the gateway's). */
#define READ_MAX_MESSAGE ((size_t)64 << 20)
#define READ_MAX_DEPTH   64
/* Default decoding budget of one params array or response (gg_lua_within), per connection
 * (max_values): a peer's 64 MiB of empty arrays would otherwise become some 5 GB of Lua
 * tables. Checked when a message arrives, so what is queued always decodes within it. */
#define READ_MAX_VALUES  1000000
#define MAX_CALLS        65536
#define SEND_MAX_MESSAGE ((size_t)8 << 20)
#define SEND_MAX_DEPTH   32

enum { EV_RESPONSE = 1, EV_FAIL, EV_WAKE, EV_CONNECT, EV_REQUEST, EV_NOTIFY, EV_CLOSED, EV_SIGNAL };
#define EV_STRIDE 7

enum { FT_DEADLINE, FT_CONNECT, FT_LOST, FT_CLOSED, FT_BAD_RESPONSE };

enum { ST_CONNECTING, ST_OPEN, ST_CLOSED };

struct conn;
struct listener;

typedef struct ctx {
    uv_loop_t uv;
    gg_loop lp;
    lua_State *L; /* the thread inside core.run, while uv_run runs */
    gg_buf ev;    /* events queued by callbacks, handed to Lua by core.run */
    size_t ev_off;
    int last_n; /* events delivered by the previous core.run (their slots are cleared) */
    int running, closing;
    struct conn *conns;
    struct listener *listeners;
    uint32_t serials; /* the last connection serial given */
    uv_signal_t sig[2];
    int sig_on;
    uv_timer_t hs_sweep; /* tls:// listeners: closes peers whose handshake outlived its timeout */
} ctx;

/* One queued event; `len` payload bytes follow, padded to 8. */
typedef struct ev_rec {
    uint8_t kind, ftype;
    uint16_t pad;
    int ref;       /* waiter (owned); peer (EV_REQUEST/NOTIFY: borrowed, EV_CLOSED: owned) */
    int ref2;      /* owner of a peer (same ownership as ref) */
    uint32_t id;   /* call id, msgid or signal number */
    uint32_t mlen; /* EV_REQUEST/NOTIFY: the method's bytes start the payload */
    uint32_t len;
    uint32_t origin; /* serial of the connection the payload came from (remote objects) */
    uint32_t pad2;
} ev_rec;

#define ALIGN8(n) (((n) + 7) & ~(size_t)7)

/* The userdata of a connection: it outlives the connection (state and reason stay readable). */
typedef struct conn_box {
    struct conn *c;
    int state;
    char reason[200];
} conn_box;

typedef struct conn {
    gg_stream st; /* first member */
    ctx *x;
    conn_box *box; /* NULL once the userdata is gone */
    struct conn *prev, *next;
    gg_call_list calls; /* requests in flight here (their carrier); calls.n counts them */
    gg_call *connect_call; /* the waiter of core.connect, until connected */
    uv_connect_t creq;
    int state;
    int is_peer;
    int ref, owner_ref; /* peer: its userdata and its server's Lua object, held while open;
                           client: the same once conn:serve() was called (remote objects) */
    uint32_t serial;    /* unique in this Lua state: names the connection to the codec */
    size_t max_message;
    int max_depth;
    size_t max_values; /* decoding budget of what arrives (params, responses) */
    char addr[160];
} conn;

typedef struct listener_box {
    struct listener *l;
} listener_box;

typedef struct listener {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } io;
    ctx *x;
    listener_box *box;
    struct listener *prev, *next;
    int owner_ref;
    int is_unix;
    size_t max_message;
    size_t max_values;
    struct gg_tls_ctx *tls; /* tls:// listeners: one reference */
    char path[108];
    char addr[160];
} listener;

/* lua_ghost_listen.c: the handshake sweep's callback (ctx.hs_sweep, once a second). */
void gg_ghost_hs_sweep(uv_timer_t *t);

extern const char *const gg_ghost_fail_types[];  /* by FT_* */
extern const char *const gg_ghost_state_names[]; /* by ST_* */

/* lua_ghost.c */
ctx *gg_ghost_ctx_get(lua_State *L);

/* lua_ghost_events.c */
void gg_ghost_queue_event(ctx *x, const ev_rec *r, const void *a, size_t alen, const void *b,
                          size_t blen);
void gg_ghost_queue_fail(ctx *x, gg_call *call, int ft, const char *msg);
int gg_ghost_l_run(lua_State *L);

/* lua_ghost_conn.c */
void gg_ghost_lcall_end(ctx *x, gg_call *call);
void gg_ghost_set_state(conn *c, int state, const char *reason);
void gg_ghost_conn_close(conn *c, int ft, const char *why);
void gg_ghost_on_deadline(void *lp, gg_call *call);
uint32_t gg_ghost_array_count(const char *p, size_t len);
extern const gg_stream_ops gg_ghost_conn_ops;
conn *gg_ghost_conn_new(ctx *x);
conn_box *gg_ghost_new_box(lua_State *L, conn *c);
int gg_ghost_l_connect(lua_State *L);

/* lua_ghost_send.c */
int gg_ghost_fail3(lua_State *L, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int gg_ghost_l_conn_request(lua_State *L);
int gg_ghost_l_conn_notify(lua_State *L);
int gg_ghost_l_conn_reply(lua_State *L);
int gg_ghost_l_conn_state(lua_State *L);
int gg_ghost_l_conn_close(lua_State *L);
int gg_ghost_l_conn_inflight(lua_State *L);
int gg_ghost_l_conn_address(lua_State *L);
int gg_ghost_l_conn_serve(lua_State *L);
int gg_ghost_l_conn_serial(lua_State *L);
int gg_ghost_l_conn_gc(lua_State *L);
int gg_ghost_l_conn_tostring(lua_State *L);

/* lua_ghost_listen.c */
void gg_ghost_listener_close(listener *l);
int gg_ghost_l_listen(lua_State *L);
int gg_ghost_l_listener_close(lua_State *L);
int gg_ghost_l_listener_address(lua_State *L);
int gg_ghost_l_listener_gc(lua_State *L);
int gg_ghost_l_close_peers(lua_State *L);
int gg_ghost_l_peers(lua_State *L);

#endif

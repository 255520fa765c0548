/* upstream.c -- ghost-upstream: the MessagePack-RPC upstream used by tests, the demo and the
 * benchmark (echo, add, sleep, hang, fail, notify, stats, last_notification, drop,
 * `counter`, which hands out a remote object, and `callback`, which calls back a function the
 * caller passed: docs/protocol.md#remote-objects).
 *
 * Hot path (echo): reads land in one loop-wide buffer, messages are framed with gg_scan,
 * answers are appended to the connection's output buffer and every connection with output
 * gets one write per loop turn (uv_check). Only a partial message at the end of a read is
 * copied, into a per-connection leftover buffer that later reads fill directly. */
#include "../gateway/core/codec.h"
#include "../gateway/core/objects.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#define UP_DEFAULT_ADDR  "tcp://127.0.0.1:7421"
#define UP_MAX_MESSAGE   (64u << 20)  /* bytes of one message, either direction */
#define UP_READ_SIZE     (256 * 1024) /* the loop-wide read buffer */
#define UP_LEFTOVER_MIN  (64 * 1024)  /* first size of a leftover buffer */
#define UP_KEEP_MAX      (1u << 20)   /* buffers larger than this are freed once empty */
#define UP_OUT_HIGH      (16u << 20)  /* stop reading a peer that does not read its answers */
#define UP_MAX_LISTENERS 16
#define UP_MAX_OBJECTS   (1u << 20) /* live counters per connection */
#define UP_MAX_CALLBACKS (1u << 20) /* callbacks in flight per connection */

typedef struct up_buf {
    char *base; /* owned by the struct holding it; NULL until first needed */
    size_t len;
    size_t cap;
} up_buf;

typedef struct up_sleep up_sleep;

/* A counter object handed out on one connection: its id there is its index + 1. A free entry
 * (count 0) links to the next free one, so ids are reused only after their release. */
typedef struct up_obj {
    uint32_t count; /* times sent minus times released; 0: free */
    uint32_t next_free;
    int64_t value;
} up_obj;

/* A `callback` call waiting for its function's answer: the $call it sent has the msgid
 * index + 1 of the connection's table (this side's own msgid space). A free entry links to
 * the next free one. */
typedef struct up_cb {
    uint32_t busy;
    uint32_t msgid; /* the original call's; while free: index + 1 of the next free entry */
    uint64_t fn;    /* the function's id on this connection (one reference, released after) */
} up_cb;

/* A release owed to the peer: count references to its object id. */
typedef struct up_rel {
    uint64_t id;
    uint32_t count;
} up_rel;

typedef struct up_conn {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } h;
    /* The struct is freed when refs drops to 0. References: the handle (until its close
     * callback), each pending sleep timer (until the timer's close callback), a pending
     * uv_write (until write_cb), membership of the dirty list (until the check callback). */
    int refs;
    unsigned closing : 1;
    unsigned writing : 1; /* wout is handed to uv_write */
    unsigned paused : 1;  /* reading stopped because output piles up */
    unsigned dirty : 1;   /* on up_dirty, out has bytes to flush */
    struct up_conn *next_dirty;
    struct up_conn *prev, *next; /* open connections, for shutdown */
    up_sleep *sleeps;            /* pending sleep calls, doubly linked */
    up_obj *objs;                /* counters handed out on this connection; owned */
    uint32_t nobjs, capobjs;     /* entries used (live or free), allocated */
    uint32_t free_obj;           /* index + 1 of the first free entry, 0: none */
    uint32_t live_objs;          /* entries in use: counted in up_st.objects */
    up_cb *cbs;                  /* callbacks in flight; owned */
    uint32_t ncbs, capcbs;       /* entries used (busy or free), allocated */
    uint32_t free_cb;            /* index + 1 of the first free entry, 0: none */
    up_rel *rels;                /* releases owed to the peer, one per id; owned */
    uint32_t nrels, caprels;     /* sent as one $release before this turn's write */
    up_buf in;                   /* bytes of an incomplete message (starting at its first byte) */
    up_buf out;                  /* answers of this loop turn */
    up_buf wout;                 /* bytes under uv_write; alive until write_cb */
    uv_write_t wreq;
    gg_scan_state scan; /* state of the message at in.base, valid while in.len > 0 */
} up_conn;

struct up_sleep {
    uv_timer_t timer;
    up_conn *conn; /* holds a reference */
    up_sleep *prev, *next;
    uint32_t msgid;
    size_t len;
    char value[]; /* raw MessagePack bytes of x */
};

typedef struct up_listener {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } h;
    int is_unix;
    char path[108]; /* unix socket path, unlinked at exit */
} up_listener;

typedef struct up_stats {
    uint64_t calls;
    uint64_t notifications;
    uint64_t connections;
    uint64_t accepted;
    uint64_t objects; /* counters live on all connections */
} up_stats;

static uv_loop_t *up_loop;
static uv_check_t up_check;
static uv_signal_t up_sigterm, up_sigint;
static up_listener up_listeners[UP_MAX_LISTENERS];
static int up_nlisteners;
/* Loop-wide read buffer. libuv calls read_cb right after each alloc_cb, one stream at a time,
 * so one buffer serves every connection that has no incomplete message pending. */
static char *up_readbuf;
static up_conn *up_dirty; /* connections with output to flush this turn */
static up_conn *up_conns; /* all open connections */
static up_stats up_st;
static up_buf up_last_method; /* raw str of the last notification's method */
static up_buf up_last_params; /* raw params of the last notification */
static int up_has_last;
static const gg_scan_limits up_limits = {UP_MAX_MESSAGE, GG_DEPTH_CAP};

static void up_close(up_conn *c);

/* ---- buffers ---------------------------------------------------------------------------- */

/* Make room for n more bytes; returns where they go, or NULL when out of memory. */
static char *up_buf_reserve(up_buf *b, size_t n)
{
    if (b->cap - b->len >= n) return b->base + b->len;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n) cap *= 2;
    char *p = realloc(b->base, cap);
    if (!p) return NULL;
    b->base = p;
    b->cap = cap;
    return p + b->len;
}

static void up_buf_free(up_buf *b)
{
    free(b->base);
    b->base = NULL;
    b->len = b->cap = 0;
}

static int up_buf_set(up_buf *b, const char *p, size_t n)
{
    b->len = 0;
    char *d = up_buf_reserve(b, n);
    if (!d) return -1;
    memcpy(d, p, n);
    b->len = n;
    return 0;
}

/* ---- connection lifetime ---------------------------------------------------------------- */

static void up_unref(up_conn *c)
{
    if (--c->refs > 0) return;
    up_buf_free(&c->in);
    up_buf_free(&c->out);
    up_buf_free(&c->wout);
    free(c->objs);
    free(c->cbs);
    free(c->rels);
    free(c);
}

static void up_conn_close_cb(uv_handle_t *h)
{
    up_unref(h->data);
}

static void up_sleep_close_cb(uv_handle_t *h)
{
    up_sleep *s = h->data;
    up_conn *c = s->conn;
    free(s);
    up_unref(c);
}

static void up_sleep_unlink(up_sleep *s)
{
    up_conn *c = s->conn;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->sleeps = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

/* Close at once: pending sleeps are cancelled, queued output is dropped. Idempotent. */
static void up_close(up_conn *c)
{
    if (c->closing) return;
    c->closing = 1;
    if (c->prev)
        c->prev->next = c->next;
    else
        up_conns = c->next;
    if (c->next) c->next->prev = c->prev;
    up_st.connections--;
    up_st.objects -= c->live_objs; /* the peer's references died with the connection */
    c->live_objs = 0;
    while (c->sleeps) {
        up_sleep *s = c->sleeps;
        up_sleep_unlink(s);
        uv_timer_stop(&s->timer);
        uv_close((uv_handle_t *)&s->timer, up_sleep_close_cb);
    }
    uv_close(&c->h.handle, up_conn_close_cb);
}

/* ---- output ----------------------------------------------------------------------------- */

static void up_mark_dirty(up_conn *c)
{
    if (c->dirty) return;
    c->dirty = 1;
    c->refs++;
    c->next_dirty = up_dirty;
    up_dirty = c;
}

/* Room for n bytes at the end of c->out; NULL closes the connection (out of memory). */
static char *up_out(up_conn *c, size_t n)
{
    char *p = up_buf_reserve(&c->out, n);
    if (!p) {
        fprintf(stderr, "ghost-upstream: out of memory for %zu bytes of output\n", n);
        up_close(c);
        return NULL;
    }
    up_mark_dirty(c);
    return p;
}

static void up_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void up_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void up_flush(up_conn *c);

static void up_write_cb(uv_write_t *req, int status)
{
    up_conn *c = req->data;
    c->writing = 0;
    c->wout.len = 0;
    if (c->wout.cap > UP_KEEP_MAX) up_buf_free(&c->wout);
    if (status < 0) {
        up_close(c);
    } else if (!c->closing) {
        if (c->out.len) up_flush(c);
        if (c->paused && !c->writing && !c->closing) {
            c->paused = 0;
            if (uv_read_start(&c->h.stream, up_alloc_cb, up_read_cb)) up_close(c);
        }
    }
    up_unref(c);
}

/* One write for everything this turn produced: try_write, then uv_write for the rest. */
static void up_flush(up_conn *c)
{
    if (c->closing || c->writing || c->out.len == 0) return;
    uv_buf_t b = uv_buf_init(c->out.base, (unsigned)c->out.len);
    int n = uv_try_write(&c->h.stream, &b, 1);
    if (n == UV_EAGAIN) n = 0;
    if (n < 0) {
        up_close(c);
        return;
    }
    if ((size_t)n == c->out.len) {
        c->out.len = 0;
        if (c->out.cap > UP_KEEP_MAX) up_buf_free(&c->out);
        return;
    }
    /* The rest goes to uv_write, which needs the bytes until write_cb: move them to wout
     * (by swapping buffers) so later answers can keep accumulating in out. */
    up_buf t = c->wout;
    c->wout = c->out;
    c->out = t;
    c->out.len = 0;
    b = uv_buf_init(c->wout.base + n, (unsigned)(c->wout.len - (size_t)n));
    c->wreq.data = c;
    if (uv_write(&c->wreq, &c->h.stream, &b, 1, up_write_cb)) {
        up_close(c);
        return;
    }
    c->writing = 1;
    c->refs++;
}

static void up_release_flush(up_conn *c);

static void up_check_cb(uv_check_t *h)
{
    while (up_dirty) {
        up_conn *c = up_dirty;
        up_dirty = c->next_dirty;
        c->dirty = 0;
        if (c->nrels && !c->closing) up_release_flush(c);
        up_flush(c);
        if (!c->closing && c->writing && !c->paused && c->out.len > UP_OUT_HIGH) {
            c->paused = 1;
            uv_read_stop(&c->h.stream);
        }
        up_unref(c);
    }
}

/* ---- answers ---------------------------------------------------------------------------- */

static void up_result(up_conn *c, uint32_t msgid, const char *v, size_t n)
{
    char *p = up_out(c, GG_RESPONSE_HDR_MAX + 1 + n);
    if (!p) return;
    size_t k = gg_put_response_hdr(p, msgid);
    p[k++] = (char)0xc0; /* error: nil */
    memcpy(p + k, v, n);
    c->out.len += k + n;
}

static size_t up_put_cstr(char *p, const char *s)
{
    size_t n = strlen(s);
    size_t k = gg_put_str_hdr(p, (uint32_t)n);
    memcpy(p + k, s, n);
    return k + n;
}

/* error = {code = code, type = type, message = msg}, msg given as raw MessagePack. */
static void up_error_raw(up_conn *c, uint32_t msgid, int64_t code, const char *type,
                         const char *msg, size_t msglen)
{
    char *p = up_out(c, GG_RESPONSE_HDR_MAX + 64 + strlen(type) + msglen);
    if (!p) return;
    size_t k = gg_put_response_hdr(p, msgid);
    k += gg_put_map_hdr(p + k, 3);
    k += up_put_cstr(p + k, "code");
    k += gg_put_int(p + k, code);
    k += up_put_cstr(p + k, "type");
    k += up_put_cstr(p + k, type);
    k += up_put_cstr(p + k, "message");
    memcpy(p + k, msg, msglen);
    k += msglen;
    p[k++] = (char)0xc0; /* result: nil */
    c->out.len += k;
}

static void up_error(up_conn *c, uint32_t msgid, int64_t code, const char *type, const char *msg)
{
    char tmp[512];
    size_t n = strlen(msg);
    if (n > sizeof tmp - 5) n = sizeof tmp - 5;
    size_t k = gg_put_str_hdr(tmp, (uint32_t)n);
    memcpy(tmp + k, msg, n);
    up_error_raw(c, msgid, code, type, tmp, k + n);
}

/* ---- params ----------------------------------------------------------------------------- */

#define UP_MAX_ARGS 2

typedef struct up_args {
    uint32_t n; /* elements in params (may exceed UP_MAX_ARGS) */
    const char *p[UP_MAX_ARGS];
    size_t len[UP_MAX_ARGS];
} up_args;

/* Split the params array (already walked by gg_scan, so well-formed and complete) into
 * its first UP_MAX_ARGS elements. The last element runs to the end of params and needs no
 * walk, which keeps echo(x) free of a second scan. */
static int up_split(const char *params, size_t len, up_args *a)
{
    const uint8_t *u = (const uint8_t *)params;
    size_t h;
    if (len >= 1 && u[0] >= 0x90 && u[0] <= 0x9f) {
        a->n = u[0] & 0x0f;
        h = 1;
    } else if (len >= 3 && u[0] == 0xdc) {
        a->n = (uint32_t)u[1] << 8 | u[2];
        h = 3;
    } else if (len >= 5 && u[0] == 0xdd) {
        a->n = (uint32_t)u[1] << 24 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 8 | u[4];
        h = 5;
    } else {
        return -1;
    }
    size_t off = h;
    for (uint32_t i = 0; i < a->n && i < UP_MAX_ARGS; i++) {
        a->p[i] = params + off;
        if (i + 1 == a->n) {
            a->len[i] = len - off;
            break;
        }
        gg_scan_state st;
        gg_scan_reset(&st);
        if (gg_scan(&st, params + off, len - off, &up_limits) != GG_SCAN_DONE) return -1;
        a->len[i] = st.msg.size;
        off += st.msg.size;
    }
    return 0;
}

/* Any MessagePack integer that fits int64. Returns 0 on success. */
static int up_get_int(const char *s, size_t len, int64_t *out)
{
    const uint8_t *p = (const uint8_t *)s;
    uint64_t u;
    if (len >= 1 && p[0] >= 0xe0) {
        *out = (int8_t)p[0];
        return 0;
    }
    if (gg_get_uint(s, len, &u)) {
        if (u > INT64_MAX) return -1;
        *out = (int64_t)u;
        return 0;
    }
    if (len < 2) return -1;
    switch (p[0]) {
    case 0xd0:
        *out = (int8_t)p[1];
        return 0;
    case 0xd1:
        if (len < 3) return -1;
        *out = (int16_t)(p[1] << 8 | p[2]);
        return 0;
    case 0xd2:
        if (len < 5) return -1;
        *out = (int32_t)((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4]);
        return 0;
    case 0xd3:
        if (len < 9) return -1;
        u = 0;
        for (int i = 1; i <= 8; i++) u = u << 8 | p[i];
        *out = (int64_t)u;
        return 0;
    }
    return -1;
}

/* ---- methods ---------------------------------------------------------------------------- */

static void up_sleep_cb(uv_timer_t *t)
{
    up_sleep *s = t->data;
    up_conn *c = s->conn;
    up_sleep_unlink(s);
    up_result(c, s->msgid, s->value, s->len);
    uv_close((uv_handle_t *)&s->timer, up_sleep_close_cb);
}

static void up_sleep_start(up_conn *c, uint32_t msgid, const up_args *a)
{
    int64_t ms;
    if (a->n < 1 || up_get_int(a->p[0], a->len[0], &ms) || ms < 0) {
        up_error(c, msgid, 400, "bad_request", "sleep expects (ms, x) with ms >= 0");
        return;
    }
    static const char nil = (char)0xc0;
    const char *v = a->n >= 2 ? a->p[1] : &nil;
    size_t n = a->n >= 2 ? a->len[1] : 1;
    up_sleep *s = malloc(sizeof *s + n);
    if (!s) {
        up_error(c, msgid, 500, "internal", "out of memory");
        return;
    }
    s->conn = c;
    s->msgid = msgid;
    s->len = n;
    memcpy(s->value, v, n);
    uv_timer_init(up_loop, &s->timer);
    s->timer.data = s;
    s->prev = NULL;
    s->next = c->sleeps;
    if (c->sleeps) c->sleeps->prev = s;
    c->sleeps = s;
    c->refs++;
    uv_timer_start(&s->timer, up_sleep_cb, (uint64_t)ms, 0);
}

static void up_add(up_conn *c, uint32_t msgid, const up_args *a)
{
    int64_t x, y, r;
    if (a->n != 2 || up_get_int(a->p[0], a->len[0], &x) || up_get_int(a->p[1], a->len[1], &y)) {
        up_error(c, msgid, 400, "bad_request", "add expects two integers");
        return;
    }
    if (__builtin_add_overflow(x, y, &r)) {
        up_error(c, msgid, 400, "bad_request", "integer overflow");
        return;
    }
    char tmp[9];
    up_result(c, msgid, tmp, gg_put_int(tmp, r));
}

static void up_notify(up_conn *c, uint32_t msgid, const up_args *a)
{
    uint32_t mlen;
    size_t h = a->n >= 1 ? gg_get_str(a->p[0], a->len[0], &mlen) : 0;
    if (!h || (uint8_t)a->p[0][0] == 0xc7) {
        up_error(c, msgid, 400, "bad_request", "notify expects (method, value)");
        return;
    }
    static const char nil = (char)0xc0;
    const char *v = a->n >= 2 ? a->p[1] : &nil;
    size_t vlen = a->n >= 2 ? a->len[1] : 1;
    char *p = up_out(c, 2 + a->len[0] + 1 + vlen);
    if (!p) return;
    size_t k = 0;
    p[k++] = (char)0x93;
    p[k++] = GG_NOTIFY;
    memcpy(p + k, a->p[0], a->len[0]);
    k += a->len[0];
    p[k++] = (char)0x91;
    memcpy(p + k, v, vlen);
    c->out.len += k + vlen;
    static const char t = (char)0xc3;
    up_result(c, msgid, &t, 1);
}

static void up_stats_reply(up_conn *c, uint32_t msgid)
{
    char tmp[160];
    size_t k = gg_put_map_hdr(tmp, 5);
    k += up_put_cstr(tmp + k, "calls");
    k += gg_put_uint(tmp + k, up_st.calls);
    k += up_put_cstr(tmp + k, "notifications");
    k += gg_put_uint(tmp + k, up_st.notifications);
    k += up_put_cstr(tmp + k, "connections");
    k += gg_put_uint(tmp + k, up_st.connections);
    k += up_put_cstr(tmp + k, "accepted");
    k += gg_put_uint(tmp + k, up_st.accepted);
    k += up_put_cstr(tmp + k, "objects");
    k += gg_put_uint(tmp + k, up_st.objects);
    up_result(c, msgid, tmp, k);
}

static void up_last_notification(up_conn *c, uint32_t msgid)
{
    static const char nil = (char)0xc0;
    if (!up_has_last) {
        up_result(c, msgid, &nil, 1);
        return;
    }
    char *p = up_out(c, GG_RESPONSE_HDR_MAX + 2 + up_last_method.len + up_last_params.len);
    if (!p) return;
    size_t k = gg_put_response_hdr(p, msgid);
    p[k++] = (char)0xc0;
    p[k++] = (char)0x92;
    memcpy(p + k, up_last_method.base, up_last_method.len);
    k += up_last_method.len;
    memcpy(p + k, up_last_params.base, up_last_params.len);
    k += up_last_params.len;
    c->out.len += k;
}

/* Answer the queued output that can go out right now, then close. */
static void up_drop(up_conn *c)
{
    if (!c->writing && c->out.len) {
        uv_buf_t b = uv_buf_init(c->out.base, (unsigned)c->out.len);
        (void)uv_try_write(&c->h.stream, &b, 1);
    }
    up_close(c);
}

#define UP_IS(name) (mlen == sizeof(name) - 1 && memcmp(method, name, sizeof(name) - 1) == 0)

/* ---- remote objects: counters ----------------------------------------------------------- */

/* The interface every counter is sent with: ["echo", "get", "inc"]. */
static const char up_counter_iface[] = "\x93\xa4"
                                       "echo"
                                       "\xa3"
                                       "get"
                                       "\xa3"
                                       "inc";

/* counter(): a new counter at 0, answered as OBJECT [id, interface] (sent once: count 1). */
static void up_counter_new(up_conn *c, uint32_t msgid)
{
    uint32_t i;
    if (c->free_obj) {
        i = c->free_obj - 1;
        c->free_obj = c->objs[i].next_free;
    } else {
        if (c->nobjs == UP_MAX_OBJECTS) {
            up_error(c, msgid, 503, "overloaded", "too many objects on this connection");
            return;
        }
        if (c->nobjs == c->capobjs) {
            uint32_t cap = c->capobjs ? c->capobjs * 2 : 64;
            up_obj *o = realloc(c->objs, cap * sizeof *o);
            if (!o) {
                up_error(c, msgid, 500, "internal", "out of memory");
                return;
            }
            c->objs = o;
            c->capobjs = cap;
        }
        i = c->nobjs++;
    }
    c->objs[i] = (up_obj){1, 0, 0};
    c->live_objs++;
    up_st.objects++;
    char v[48];
    size_t k = 3;
    v[k++] = (char)0x92;
    k += gg_put_uint(v + k, (uint64_t)i + 1);
    memcpy(v + k, up_counter_iface, sizeof up_counter_iface - 1);
    k += sizeof up_counter_iface - 1;
    v[0] = (char)0xc7; /* ext 8 */
    v[1] = (char)(k - 3);
    v[2] = GG_OBJ_EXT_OBJECT;
    up_result(c, msgid, v, k);
}

/* Whether p[0..len) is exactly one ext value of type `type`; its payload in *data, *dlen. */
static int up_ext(const char *p, size_t len, int8_t type, const char **data, size_t *dlen)
{
    int8_t t;
    size_t n = gg_get_ext(p, len, &t, data, dlen);
    return n && n == len && t == type;
}

/* The live counter named by the YOURS ext at p (its id in *id), or NULL; *is_ref says
 * whether p was a YOURS ext at all. */
static up_obj *up_counter_find(up_conn *c, const char *p, size_t len, uint64_t *id, int *is_ref)
{
    const char *d;
    size_t dl;
    *is_ref = 0;
    if (!up_ext(p, len, GG_OBJ_EXT_YOURS, &d, &dl) || gg_get_uint(d, dl, id) != dl) return NULL;
    *is_ref = 1;
    if (*id == 0 || *id > c->nobjs || c->objs[*id - 1].count == 0) return NULL;
    return &c->objs[*id - 1];
}

/* $call [<YOURS id>, method, args] on a counter: echo(x) answers x, inc() adds one and
 * answers the new value, get() answers it. */
static void up_call_object(up_conn *c, uint32_t msgid, const char *params, size_t plen,
                           const up_args *a)
{
    uint64_t id;
    int is_ref;
    uint32_t nl;
    size_t nh = a->n == 3 ? gg_get_str(a->p[1], a->len[1], &nl) : 0;
    up_args b;
    const char *args = nh ? a->p[1] + a->len[1] : NULL;
    if (!nh || up_split(args, (size_t)(params + plen - args), &b)) {
        up_error(c, msgid, 400, "bad_request", "$call params are [target, method, args]");
        return;
    }
    up_obj *o = up_counter_find(c, a->p[0], a->len[0], &id, &is_ref);
    if (!o) {
        char text[64];
        if (!is_ref) {
            up_error(c, msgid, 400, "bad_request", "the target of $call is not a reference");
            return;
        }
        snprintf(text, sizeof text, "no object %" PRIu64 " on this connection", id);
        up_error(c, msgid, 410, "object_gone", text);
        return;
    }
    const char *method = a->p[1] + nh;
    uint32_t mlen = nl;
    static const char nil = (char)0xc0;
    char tmp[9];
    if (UP_IS("echo")) {
        if (b.n == 0)
            up_result(c, msgid, &nil, 1);
        else
            up_result(c, msgid, b.p[0], b.len[0]);
    } else if (UP_IS("inc")) {
        o->value++;
        up_result(c, msgid, tmp, gg_put_int(tmp, o->value));
    } else if (UP_IS("get")) {
        up_result(c, msgid, tmp, gg_put_int(tmp, o->value));
    } else {
        char text[GG_METHOD_MAX + 32];
        snprintf(text, sizeof text, "no such method '%.*s'", (int)mlen, method);
        up_error(c, msgid, 404, "no_such_method", text);
    }
}

/* $release [[[id, count], ...]]: the peer dropped count references to id; at 0 the counter
 * is freed and its id may be given again. Unknown ids and over-releases change nothing (a
 * notification cannot be answered, and must not free what is still in use). */
static void up_release(up_conn *c, const char *params, size_t plen)
{
    const uint8_t *p = (const uint8_t *)params, *end = p + plen;
    uint32_t pairs;
    if (plen < 2 || p[0] != 0x91) return;
    p++;
    if ((p[0] & 0xf0) == 0x90) {
        pairs = p[0] & 0x0f;
        p += 1;
    } else if (p[0] == 0xdc && end - p >= 3) {
        pairs = (uint32_t)p[1] << 8 | p[2];
        p += 3;
    } else {
        return;
    }
    for (uint32_t i = 0; i < pairs && p < end && p[0] == 0x92; i++) {
        uint64_t id, n;
        size_t a = gg_get_uint((const char *)p + 1, (size_t)(end - p - 1), &id);
        size_t b = a ? gg_get_uint((const char *)p + 1 + a, (size_t)(end - p - 1) - a, &n) : 0;
        if (!b) return;
        p += 1 + a + b;
        if (id == 0 || id > c->nobjs || c->objs[id - 1].count < n || n == 0) continue;
        up_obj *o = &c->objs[id - 1];
        o->count -= (uint32_t)n;
        if (o->count) continue;
        o->next_free = c->free_obj;
        c->free_obj = (uint32_t)id;
        c->live_objs--;
        up_st.objects--;
    }
}

/* ---- callbacks: functions the caller passed --------------------------------------------- */

/* The id of the function in the OBJECT ext at p[0..len) ([id, interface]), or -1 when p is not
 * one. The interface is not checked here: the function's owner (or the gateway) answers a
 * method it lacks with 404, and that error becomes the answer of the call. */
static int up_fn_id(const char *p, size_t len, uint64_t *id)
{
    const char *d;
    size_t dl;
    if (!up_ext(p, len, GG_OBJ_EXT_OBJECT, &d, &dl) || dl < 3 || (uint8_t)d[0] != 0x92) return -1;
    size_t il = gg_get_uint(d + 1, dl - 1, id);
    if (!il || il + 1 >= dl) return -1; /* an interface must follow the id */
    return 0;
}

/* Owe the peer one reference to its object id: released with the others of this loop turn,
 * one $release [[[id, count], ...]] per connection (as the gateway and the Lua library
 * batch theirs). O(ids owed) per call: a connection carries few distinct functions. */
static void up_release_later(up_conn *c, uint64_t id)
{
    for (uint32_t i = 0; i < c->nrels; i++) {
        if (c->rels[i].id == id) {
            c->rels[i].count++;
            return;
        }
    }
    if (c->nrels == c->caprels) {
        uint32_t cap = c->caprels ? c->caprels * 2 : 16;
        up_rel *r = realloc(c->rels, cap * sizeof *r);
        if (!r) {
            /* Not released: the peer keeps the function until this connection closes. */
            fprintf(stderr, "ghost-upstream: out of memory for a release\n");
            return;
        }
        c->rels = r;
        c->caprels = cap;
    }
    c->rels[c->nrels++] = (up_rel){id, 1};
    up_mark_dirty(c);
}

/* Append the $release notification of every reference owed, before the turn's write. */
static void up_release_flush(up_conn *c)
{
    uint32_t n = c->nrels;
    char *p = up_out(c, 24 + (size_t)n * 15); /* a pair: 0x92, id, count */
    if (!p) return;
    size_t k = 0;
    p[k++] = (char)0x93;
    p[k++] = GG_NOTIFY;
    k += up_put_cstr(p + k, "$release");
    p[k++] = (char)0x91;
    k += gg_put_array_hdr(p + k, n);
    for (uint32_t i = 0; i < n; i++) {
        p[k++] = (char)0x92;
        k += gg_put_uint(p + k, c->rels[i].id);
        k += gg_put_uint(p + k, c->rels[i].count);
    }
    c->out.len += k;
    c->nrels = 0;
}

/* callback(fn, x): calls fn(x) back on this connection as a request of this side's own,
 * [0, n, "$call", [<YOURS fn>, "", [x]]], and answers the call with fn's answer (its result,
 * or its error as it came). The reference to fn is released once the answer is back. */
static void up_callback(up_conn *c, uint32_t msgid, const up_args *a)
{
    uint64_t fn;
    if (a->n < 1 || up_fn_id(a->p[0], a->len[0], &fn)) {
        up_error(c, msgid, 400, "bad_request", "callback expects (function, x)");
        return;
    }
    if (a->n != 2) {
        up_error(c, msgid, 400, "bad_request", "callback expects (function, x)");
        up_release_later(c, fn); /* it was given all the same */
        return;
    }
    uint32_t i;
    if (c->free_cb) {
        i = c->free_cb - 1;
        c->free_cb = c->cbs[i].msgid;
    } else {
        if (c->ncbs == UP_MAX_CALLBACKS) {
            up_error(c, msgid, 503, "overloaded", "too many callbacks in flight on this connection");
            up_release_later(c, fn);
            return;
        }
        if (c->ncbs == c->capcbs) {
            uint32_t cap = c->capcbs ? c->capcbs * 2 : 64;
            up_cb *cb = realloc(c->cbs, cap * sizeof *cb);
            if (!cb) {
                up_error(c, msgid, 500, "internal", "out of memory");
                up_release_later(c, fn);
                return;
            }
            c->cbs = cb;
            c->capcbs = cap;
        }
        i = c->ncbs++;
    }
    c->cbs[i] = (up_cb){1, msgid, fn};
    char *p = up_out(c, 16 + 5 + 12 + 2 + a->len[1]);
    if (!p) return;
    size_t k = gg_put_request_hdr(p, i + 1, "$call", 5);
    p[k++] = (char)0x93;
    char id[9];
    size_t il = gg_put_uint(id, fn);
    p[k++] = (char)0xc7; /* ext 8: YOURS fn */
    p[k++] = (char)il;
    p[k++] = GG_OBJ_EXT_YOURS;
    memcpy(p + k, id, il);
    k += il;
    p[k++] = (char)0xa0; /* "": a function's one method */
    p[k++] = (char)0x91;
    memcpy(p + k, a->p[1], a->len[1]);
    c->out.len += k + a->len[1];
}

/* An answer to one of this side's $call requests: answer the callback call that sent it.
 * Answers matching no callback in flight are ignored (nothing to tie them to). */
static void up_callback_answer(up_conn *c, const char *msg, const gg_msg *m)
{
    uint32_t i = m->msgid - 1;
    if (m->msgid == 0 || i >= c->ncbs || !c->cbs[i].busy) return;
    up_cb cb = c->cbs[i];
    c->cbs[i].busy = 0;
    c->cbs[i].msgid = c->free_cb;
    c->free_cb = i + 1;
    const char *e = msg + m->body_off;
    size_t rest = m->size - m->body_off;
    char *p = up_out(c, GG_RESPONSE_HDR_MAX + rest);
    if (p) {
        size_t k = gg_put_response_hdr(p, cb.msgid);
        memcpy(p + k, e, rest); /* error, then result, as the function's owner sent them */
        c->out.len += k + rest;
    }
    up_release_later(c, cb.fn);
}

static void up_request(up_conn *c, const char *msg, const gg_msg *m)
{
    const char *method = msg + m->method_off;
    uint32_t mlen = m->method_len;
    const char *params = msg + m->body_off;
    size_t plen = m->size - m->body_off;
    uint32_t id = m->msgid;
    up_args a;
    up_st.calls++;
    if (up_split(params, plen, &a)) {
        up_close(c); /* cannot happen after a successful scan; refuse to guess */
        return;
    }
    if (UP_IS("echo")) {
        static const char nil = (char)0xc0;
        if (a.n == 0)
            up_result(c, id, &nil, 1);
        else
            up_result(c, id, a.p[0], a.len[0]);
    } else if (UP_IS("add")) {
        up_add(c, id, &a);
    } else if (UP_IS("sleep")) {
        up_sleep_start(c, id, &a);
    } else if (UP_IS("hang")) {
        /* never answered */
    } else if (UP_IS("fail")) {
        static const char empty = (char)0xa0;
        if (a.n == 0)
            up_error_raw(c, id, 1, "app_error", &empty, 1);
        else
            up_error_raw(c, id, 1, "app_error", a.p[0], a.len[0]);
    } else if (UP_IS("notify")) {
        up_notify(c, id, &a);
    } else if (UP_IS("stats")) {
        up_stats_reply(c, id);
    } else if (UP_IS("last_notification")) {
        up_last_notification(c, id);
    } else if (UP_IS("drop")) {
        up_drop(c);
    } else if (UP_IS("counter")) {
        up_counter_new(c, id);
    } else if (UP_IS("callback")) {
        up_callback(c, id, &a);
    } else if (UP_IS("$call")) {
        up_call_object(c, id, params, plen, &a);
    } else {
        char text[GG_METHOD_MAX + 32];
        snprintf(text, sizeof text, "no such method '%.*s'", (int)mlen, method);
        up_error(c, id, 404, "no_such_method", text);
    }
}

static void up_notification(const char *msg, const gg_msg *m)
{
    up_st.notifications++;
    char hdr[5];
    size_t h = gg_put_str_hdr(hdr, m->method_len);
    up_last_method.len = 0;
    char *p = up_buf_reserve(&up_last_method, h + m->method_len);
    if (!p || up_buf_set(&up_last_params, msg + m->body_off, m->size - m->body_off)) {
        up_has_last = 0;
        return;
    }
    memcpy(p, hdr, h);
    memcpy(p + h, msg + m->method_off, m->method_len);
    up_last_method.len = h + m->method_len;
    up_has_last = 1;
}

/* One whole message at msg. */
static void up_message(up_conn *c, const char *msg, const gg_msg *m)
{
    const char *why = gg_msg_invalid(m);
    if (why) {
        if (m->type == GG_REQUEST && m->has_id)
            up_error(c, m->msgid, 400, "bad_request", why);
        else
            up_close(c);
        return;
    }
    if (m->type == GG_REQUEST)
        up_request(c, msg, m);
    else if (m->type == GG_NOTIFY) {
        up_notification(msg, m);
        if (m->method_len == 8 && memcmp(msg + m->method_off, "$release", 8) == 0)
            up_release(c, msg + m->body_off, m->size - m->body_off);
    } else if (m->type == GG_RESPONSE) {
        up_callback_answer(c, msg, m); /* answers to the only requests this side sends */
    }
}

/* ---- input ------------------------------------------------------------------------------ */

/* Frame and handle the messages in buf[0..len); c->scan holds the state of the message at
 * buf[0] (reset unless resuming). Returns the bytes consumed; the rest is an incomplete
 * message whose scan state is left in c->scan. Closes c on framing errors. */
static size_t up_process(up_conn *c, const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len && !c->closing) {
        if (c->scan.need > len - off) break; /* known to be incomplete */
        int r = gg_scan(&c->scan, buf + off, len - off, &up_limits);
        if (r == GG_SCAN_MORE) break;
        if (r < 0) {
            fprintf(stderr, "ghost-upstream: closing connection: %s\n",
                    r == GG_ETOOBIG    ? "message too large"
                    : r == GG_ETOODEEP ? "message too deep"
                                       : "malformed MessagePack");
            up_close(c);
            return len;
        }
        gg_msg m = c->scan.msg;
        gg_scan_reset(&c->scan);
        up_message(c, buf + off, &m);
        off += m.size;
    }
    return off;
}

static void up_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    up_conn *c = h->data;
    if (c->in.len == 0) {
        *buf = uv_buf_init(up_readbuf, UP_READ_SIZE);
        return;
    }
    /* A message is incomplete: read straight behind it, at least up to its known end. */
    size_t want = UP_LEFTOVER_MIN;
    if (c->scan.need > c->in.len && c->scan.need - c->in.len > want)
        want = c->scan.need - c->in.len;
    char *p = up_buf_reserve(&c->in, want);
    if (!p) {
        *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
        return;
    }
    *buf = uv_buf_init(p, (unsigned)(c->in.cap - c->in.len));
}

static void up_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    up_conn *c = s->data;
    int shared = buf->base == up_readbuf;
    if (nread < 0) {
        up_close(c);
        return;
    }
    if (nread == 0) return;
    if (shared) {
        size_t used = up_process(c, buf->base, (size_t)nread);
        size_t rest = (size_t)nread - used;
        if (rest && !c->closing && up_buf_set(&c->in, buf->base + used, rest)) up_close(c);
        return;
    }
    c->in.len += (size_t)nread;
    size_t used = up_process(c, c->in.base, c->in.len);
    if (c->closing) return;
    c->in.len -= used;
    if (c->in.len)
        memmove(c->in.base, c->in.base + used, c->in.len);
    else if (c->in.cap > UP_KEEP_MAX)
        up_buf_free(&c->in);
}

/* ---- listeners -------------------------------------------------------------------------- */

static void up_on_connection(uv_stream_t *server, int status)
{
    up_listener *l = server->data;
    if (status < 0) {
        fprintf(stderr, "ghost-upstream: accept: %s\n", uv_strerror(status));
        return;
    }
    up_conn *c = calloc(1, sizeof *c);
    if (!c) return;
    c->refs = 1;
    if (l->is_unix)
        uv_pipe_init(up_loop, &c->h.pipe, 0);
    else
        uv_tcp_init(up_loop, &c->h.tcp);
    c->h.handle.data = c;
    gg_scan_reset(&c->scan);
    c->closing = 1; /* until it is on the list, so a failed accept does not unlink it */
    if (uv_accept(server, &c->h.stream)) {
        uv_close(&c->h.handle, up_conn_close_cb);
        return;
    }
    c->closing = 0;
    if (!l->is_unix) uv_tcp_nodelay(&c->h.tcp, 1);
    c->next = up_conns;
    if (up_conns) up_conns->prev = c;
    up_conns = c;
    up_st.connections++;
    up_st.accepted++;
    if (uv_read_start(&c->h.stream, up_alloc_cb, up_read_cb)) up_close(c);
}

/* tcp://HOST:PORT, HOST:PORT ([v6]:PORT) or unix:/path. Returns 0 or a libuv error. */
static int up_parse_addr(const char *spec, int *is_unix, struct sockaddr_storage *ss, char *path,
                         size_t pathlen)
{
    if (strncmp(spec, "unix:", 5) == 0) {
        *is_unix = 1;
        if (strlen(spec + 5) == 0 || strlen(spec + 5) >= pathlen) return UV_EINVAL;
        strcpy(path, spec + 5);
        return 0;
    }
    *is_unix = 0;
    if (strncmp(spec, "tcp://", 6) == 0) spec += 6;
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || (size_t)(colon - spec) >= sizeof host) return UV_EINVAL;
    const char *h = spec;
    size_t hl = (size_t)(colon - spec);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    memcpy(host, h, hl);
    host[hl] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535) return UV_EINVAL;
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0) return 0;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0) return 0;
    /* A name: resolve it once, synchronously (no callback), at start-up only. */
    uv_getaddrinfo_t req;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int r = uv_getaddrinfo(up_loop, &req, NULL, host, NULL, &hints);
    if (r) return r;
    memcpy(ss, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
    ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port); /* same offset in v6 */
    uv_freeaddrinfo(req.addrinfo);
    return 0;
}

static int up_listen(const char *spec, char *ready, size_t readylen)
{
    if (up_nlisteners == UP_MAX_LISTENERS) return UV_EINVAL;
    up_listener *l = &up_listeners[up_nlisteners];
    struct sockaddr_storage ss;
    int r = up_parse_addr(spec, &l->is_unix, &ss, l->path, sizeof l->path);
    if (r) return r;
    size_t at = strlen(ready);
    const char *sep = at ? "," : "";
    if (l->is_unix) {
        uv_pipe_init(up_loop, &l->h.pipe, 0);
        up_nlisteners++;
        unlink(l->path); /* a stale socket from a previous run would make bind fail */
        if ((r = uv_pipe_bind(&l->h.pipe, l->path))) return r;
        snprintf(ready + at, readylen - at, "%sunix:%s", sep, l->path);
    } else {
        uv_tcp_init(up_loop, &l->h.tcp);
        up_nlisteners++;
        if ((r = uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&ss, 0))) return r;
        int n = sizeof ss;
        if ((r = uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&ss, &n))) return r;
        char ip[64];
        int port;
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
            snprintf(ready + at, readylen - at, "%stcp://[%s]:%d", sep, ip, port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
            snprintf(ready + at, readylen - at, "%stcp://%s:%d", sep, ip, port);
        }
    }
    l->h.handle.data = l;
    return uv_listen(&l->h.stream, 4096, up_on_connection);
}

/* ---- main ------------------------------------------------------------------------------- */

static void up_walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Close everything so the loop ends and memory checkers see a clean exit. */
static void up_on_signal(uv_signal_t *sig, int signum)
{
    while (up_conns) up_close(up_conns);
    up_check_cb(&up_check); /* releases the dirty list's references */
    for (int i = 0; i < up_nlisteners; i++) {
        uv_close(&up_listeners[i].h.handle, NULL);
        if (up_listeners[i].is_unix) unlink(up_listeners[i].path);
    }
    uv_close((uv_handle_t *)&up_check, NULL);
    uv_close((uv_handle_t *)&up_sigterm, NULL);
    uv_close((uv_handle_t *)&up_sigint, NULL);
}

static void up_usage(void)
{
    fprintf(stderr, "usage: ghost-upstream [-l tcp://HOST:PORT | HOST:PORT | unix:/path]...\n"
                    "  default " UP_DEFAULT_ADDR "; prints 'ready ADDR[,ADDR]' when listening\n");
}

int main(int argc, char **argv)
{
    const char *addrs[UP_MAX_LISTENERS];
    int naddrs = 0, rc = 1;
    static char ready[UP_MAX_LISTENERS * 160];

    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-l") || !strcmp(argv[i], "--listen")) && i + 1 < argc) {
            if (naddrs == UP_MAX_LISTENERS) goto usage;
            addrs[naddrs++] = argv[++i];
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            up_usage();
            return 0;
        } else {
            goto usage;
        }
    }
    if (naddrs == 0) addrs[naddrs++] = UP_DEFAULT_ADDR;

    signal(SIGPIPE, SIG_IGN);
    up_loop = uv_default_loop();
    up_readbuf = malloc(UP_READ_SIZE);
    if (!up_readbuf) goto cleanup;
    for (int i = 0; i < naddrs; i++) {
        int r = up_listen(addrs[i], ready, sizeof ready);
        if (r) {
            fprintf(stderr, "ghost-upstream: cannot listen on %s: %s\n", addrs[i], uv_strerror(r));
            goto cleanup;
        }
    }
    uv_check_init(up_loop, &up_check);
    uv_check_start(&up_check, up_check_cb);
    uv_signal_init(up_loop, &up_sigterm);
    uv_signal_start(&up_sigterm, up_on_signal, SIGTERM);
    uv_signal_init(up_loop, &up_sigint);
    uv_signal_start(&up_sigint, up_on_signal, SIGINT);

    printf("ready %s\n", ready);
    fflush(stdout);
    uv_run(up_loop, UV_RUN_DEFAULT);
    rc = 0;

cleanup:
    /* On the error path some handles are open: close them and let the loop finish. */
    uv_walk(up_loop, up_walk_close, NULL);
    uv_run(up_loop, UV_RUN_DEFAULT);
    uv_loop_close(up_loop);
    for (int i = 0; i < up_nlisteners; i++)
        if (up_listeners[i].is_unix && rc) unlink(up_listeners[i].path);
    free(up_readbuf);
    up_buf_free(&up_last_method);
    up_buf_free(&up_last_params);
    return rc;

usage:
    up_usage();
    return 2;
}

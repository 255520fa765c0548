/* redis.c -- one Redis connection on a libuv loop (see redis.h).
 *
 * Why our own adapter and not hiredis's adapters/libuv.h (0.14, Debian 12): that adapter ignores
 * a poll callback with an error status, and libuv reports a refused or reset socket exactly that
 * way (and stops the poll), so a connect to a dead Redis never completes nor fails. hiredis 0.14
 * has no timeouts and resolves names with a blocking getaddrinfo: we resolve with
 * uv_getaddrinfo, time the connect and the oldest pending command with a uv timer, and drop
 * and reopen the connection when either runs late.
 *
 * hiredis lifetime rules this file relies on (async.c, 0.14):
 * - a failed connect calls onConnect(REDIS_ERR), then hiredis frees the context itself;
 * - every free (ours or hiredis's) calls the pending callbacks with a NULL reply, then
 *   ev.cleanup: ev_cleanup is the one place where "the context is gone" is handled;
 * - redisAsyncFree from inside a reply callback is deferred until it returns; from inside
 *   onConnect it is not (hiredis #835), so on_connect never frees. */
#include "core/redis.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ST_WAIT, ST_RESOLVE, ST_CONNECT, ST_HANDSHAKE, ST_UP, ST_CLOSED };

typedef struct req {
    struct req *prev, *next;
    gg_redis *r;
    gg_redis_cb cb;
    void *arg;
    uint64_t deadline; /* uv_now ms */
} req;

typedef struct sub {
    struct sub *next;
    gg_redis *r;
    gg_redis_cb cb;
    void *arg;
    char channel[];
} sub;

/* The event adapter of one hiredis context. Allocated per context because the poll handle
 * closes asynchronously while the next context may already be connecting; freed in its close
 * callback. */
typedef struct ev {
    uv_poll_t poll;
    gg_redis *r;
    redisAsyncContext *ac; /* NULL once hiredis has cleaned up */
    int events;
} ev;

struct gg_redis {
    uv_loop_t *loop;
    gg_redis_url url;
    gg_redis_opts o;
    char name[32];
    redisAsyncContext *ac;
    int state;
    int down_reported; /* the current outage was reported */
    uv_timer_t timer;  /* backoff wait, connect timeout or the oldest command's deadline */
    uv_getaddrinfo_t gai;
    int gai_busy; /* gai is in use until its callback, even after a timeout gave up on it */
    uint32_t seed; /* backoff jitter (xorshift), different in each process */
    int refs; /* the timer + a resolve in progress: freed when 0 */
    uint32_t backoff_ms;
    req *head, *tail;
    sub *subs;
    char why[160];
    gg_redis_stats stats;
};

/* --- URLs -------------------------------------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Copy [s, s+n) into out, %-decoded. Returns 0, or -1 when it does not fit or is malformed. */
static int pct_copy(char *out, size_t outlen, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n) return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            c = hi * 16 + lo;
            i += 2;
        }
        if (c == 0 || o + 1 >= outlen) return -1;
        out[o++] = (char)c;
    }
    out[o] = 0;
    return 0;
}

static int parse_db(const char *s, size_t n, int *db)
{
    if (n == 0 || n > 5) return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    *db = v;
    return 0;
}

#define URL_FAIL(...)                                                                              \
    do {                                                                                          \
        snprintf(err, errlen, __VA_ARGS__);                                                       \
        return -1;                                                                                \
    } while (0)

static int parse_unix(const char *s, gg_redis_url *u, char *err, size_t errlen)
{
    const char *q = strchr(s, '?');
    size_t n = q ? (size_t)(q - s) : strlen(s);
    if (n == 0) URL_FAIL("redis: unix: needs a socket path");
    if (pct_copy(u->path, sizeof u->path, s, n) < 0) URL_FAIL("redis: unix socket path too long");
    while (q && *q) {
        const char *k = q + 1, *amp = strchr(k, '&'), *eq = strchr(k, '=');
        size_t kn = amp ? (size_t)(amp - k) : strlen(k);
        if (!eq || eq > k + kn) URL_FAIL("redis: expected key=value after '?' in a unix: URL");
        const char *v = eq + 1;
        size_t vn = (size_t)(k + kn - v);
        if (eq - k == 2 && !strncmp(k, "db", 2)) {
            if (parse_db(v, vn, &u->db) < 0) URL_FAIL("redis: db must be a number 0..99999");
        } else if (eq - k == 8 && !strncmp(k, "password", 8)) {
            if (pct_copy(u->password, sizeof u->password, v, vn) < 0)
                URL_FAIL("redis: malformed or too long password");
        } else if (eq - k == 4 && !strncmp(k, "user", 4)) {
            if (pct_copy(u->user, sizeof u->user, v, vn) < 0)
                URL_FAIL("redis: malformed or too long user");
        } else {
            URL_FAIL("redis: unknown unix: URL option (db, password, user)");
        }
        q = amp;
    }
    return 0;
}

int gg_redis_url_parse(const char *s, gg_redis_url *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof *u);
    u->port = 6379;
    if (!strncmp(s, "unix://", 7)) return parse_unix(s + 7, u, err, errlen);
    if (!strncmp(s, "unix:", 5)) return parse_unix(s + 5, u, err, errlen);
    if (strncmp(s, "redis://", 8))
        URL_FAIL("redis: expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or unix:PATH");
    const char *p = s + 8, *end = p + strcspn(p, "/");
    const char *at = NULL;
    for (const char *c = p; c < end; c++)
        if (*c == '@') at = c; /* the last '@': a password may contain one %-encoded or not */
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) URL_FAIL("redis: expected USER:PASSWORD@ or :PASSWORD@ before the host");
        if (pct_copy(u->user, sizeof u->user, p, (size_t)(colon - p)) < 0)
            URL_FAIL("redis: malformed or too long user");
        if (pct_copy(u->password, sizeof u->password, colon + 1, (size_t)(at - colon - 1)) < 0)
            URL_FAIL("redis: malformed or too long password");
        p = at + 1;
    }
    const char *hend, *port = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb) URL_FAIL("redis: missing ']' after an IPv6 host");
        if ((size_t)(rb - p - 1) >= sizeof u->host) URL_FAIL("redis: host too long");
        memcpy(u->host, p + 1, (size_t)(rb - p - 1));
        hend = rb + 1;
        if (hend < end && *hend != ':') URL_FAIL("redis: expected ':PORT' after ']'");
        if (hend < end) port = hend + 1;
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        hend = colon ? colon : end;
        if ((size_t)(hend - p) >= sizeof u->host) URL_FAIL("redis: host too long");
        memcpy(u->host, p, (size_t)(hend - p));
        if (colon) port = colon + 1;
    }
    if (!u->host[0]) URL_FAIL("redis: missing host");
    if (port) {
        int v = 0;
        if (port == end) URL_FAIL("redis: missing port after ':'");
        for (const char *c = port; c < end; c++) {
            if (!isdigit((unsigned char)*c) || (v = v * 10 + (*c - '0')) > 65535)
                URL_FAIL("redis: port must be 1..65535");
        }
        if (v == 0) URL_FAIL("redis: port must be 1..65535");
        u->port = v;
    }
    if (*end == '/' && end[1]) {
        if (parse_db(end + 1, strlen(end + 1), &u->db) < 0)
            URL_FAIL("redis: db must be a number 0..99999 after '/'");
    }
    return 0;
}

void gg_redis_url_describe(const gg_redis_url *u, char *out, size_t outlen)
{
    if (u->path[0])
        snprintf(out, outlen, "unix:%s%s%.0d", u->path, u->db ? "?db=" : "", u->db);
    else if (strchr(u->host, ':'))
        snprintf(out, outlen, "redis://[%s]:%d%s%.0d", u->host, u->port, u->db ? "/" : "", u->db);
    else
        snprintf(out, outlen, "redis://%s:%d%s%.0d", u->host, u->port, u->db ? "/" : "", u->db);
}

/* --- State ------------------------------------------------------------------------------- */

/* Text from the network or the OS, made safe inside a log line's "...". */
static void set_why(gg_redis *r, const char *a, const char *b)
{
    snprintf(r->why, sizeof r->why, "%s%s%s", a, b ? ": " : "", b ? b : "");
    for (char *c = r->why; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == '"' || *c == '\\' || (unsigned char)*c >= 0x7f) *c = '?';
}

static void start_connect(gg_redis *r);

static void unref(gg_redis *r)
{
    if (--r->refs == 0) {
        for (sub *s = r->subs, *n; s; s = n) {
            n = s->next;
            free(s);
        }
        free(r);
    }
}

static void timer_close_cb(uv_handle_t *h)
{
    unref(h->data);
}

static void timer_cb(uv_timer_t *t);

static void arm(gg_redis *r, uint64_t ms)
{
    uv_timer_start(&r->timer, timer_cb, ms, 0);
}

/* Drop the context (not from inside on_connect or on_disconnect): pending commands fail and
 * ev_cleanup takes it from there. */
static void drop(gg_redis *r)
{
    if (r->ac) redisAsyncFree(r->ac);
}

static void report_down(gg_redis *r)
{
    if (r->down_reported) return;
    r->down_reported = 1;
    if (r->o.log) {
        char url[400];
        gg_redis_url_describe(&r->url, url, sizeof url);
        gg_log(r->o.log, GG_LOG_WARN, "redis_down", "name=%s url=\"%s\" why=\"%s\"", r->name, url,
               r->why);
    }
    if (r->o.on_state) r->o.on_state(r, 0, r->why, r->o.arg);
}

/* The context is gone (or never came): wait, then try again. */
static void schedule_retry(gg_redis *r)
{
    if (r->state == ST_CLOSED) return;
    r->state = ST_WAIT;
    report_down(r);
    if (r->state == ST_CLOSED) return; /* the state callback closed it */
    uint32_t d = r->backoff_ms;
    /* Jitter in [d/2, d]: gateways that lost the same Redis do not come back in lockstep. */
    r->seed ^= r->seed << 13;
    r->seed ^= r->seed >> 17;
    r->seed ^= r->seed << 5;
    uint32_t wait = d / 2 + r->seed % (d / 2 + 1);
    r->backoff_ms = d * 2 > r->o.backoff_max_ms ? r->o.backoff_max_ms : d * 2;
    arm(r, wait);
}

static void timer_cb(uv_timer_t *t)
{
    gg_redis *r = t->data;
    switch (r->state) {
    case ST_WAIT:
        start_connect(r);
        break;
    case ST_RESOLVE: /* the resolver is late: its callback sees the state and gives up */
        set_why(r, "connect timeout", "resolving the host");
        uv_cancel((uv_req_t *)&r->gai);
        schedule_retry(r);
        break;
    case ST_CONNECT:
    case ST_HANDSHAKE:
        set_why(r, "connect timeout", NULL);
        drop(r);
        break;
    case ST_UP:
        if (!r->head) break;
        if (uv_now(r->loop) >= r->head->deadline) {
            set_why(r, "request timeout", NULL);
            drop(r);
        } else {
            arm(r, r->head->deadline - uv_now(r->loop));
        }
        break;
    }
}

/* --- The event adapter ------------------------------------------------------------------- */

static void ev_close_cb(uv_handle_t *h)
{
    free(h->data);
}

static void ev_poll_cb(uv_poll_t *h, int status, int events)
{
    ev *e = h->data;
    /* An error status (refused, reset) comes with no events and a stopped poll: do what we were
     * waiting for, so that hiredis finds the error itself and cleans up. */
    int what = status < 0 ? e->events : events;
    if (e->ac && (what & UV_READABLE)) redisAsyncHandleRead(e->ac);
    if (e->ac && (what & UV_WRITABLE)) redisAsyncHandleWrite(e->ac);
    if (status < 0 && e->ac) { /* hiredis saw nothing wrong, but the poll is dead */
        set_why(e->r, "socket error", uv_strerror(status));
        redisAsyncFree(e->ac);
    }
}

static void ev_update(ev *e, int events)
{
    if (events == e->events || !e->ac) return;
    e->events = events;
    if (events)
        uv_poll_start(&e->poll, events, ev_poll_cb);
    else
        uv_poll_stop(&e->poll);
}

static void ev_add_read(void *p)
{
    ev *e = p;
    ev_update(e, e->events | UV_READABLE);
}
static void ev_del_read(void *p)
{
    ev *e = p;
    ev_update(e, e->events & ~UV_READABLE);
}
static void ev_add_write(void *p)
{
    ev *e = p;
    ev_update(e, e->events | UV_WRITABLE);
}
static void ev_del_write(void *p)
{
    ev *e = p;
    ev_update(e, e->events & ~UV_WRITABLE);
}

/* hiredis is freeing the context: every pending callback has run. */
static void ev_cleanup(void *p)
{
    ev *e = p;
    gg_redis *r = e->r;
    e->ac = NULL;
    uv_close((uv_handle_t *)&e->poll, ev_close_cb);
    r->ac = NULL;
    if (r->state == ST_UP) r->down_reported = 0; /* a new outage */
    if (r->state != ST_CLOSED) {
        if (!r->why[0]) set_why(r, "connection lost", NULL);
        schedule_retry(r);
    }
}

/* --- Connecting -------------------------------------------------------------------------- */

static void hs_cb(redisAsyncContext *ac, void *reply, void *priv);

static void on_connect(const redisAsyncContext *cac, int status)
{
    gg_redis *r = cac->data;
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    if (status != REDIS_OK) { /* hiredis frees ac next; ev_cleanup schedules the retry */
        set_why(r, "connect failed", ac->errstr);
        return;
    }
    /* A peer that vanishes (power, network) is noticed by TCP keepalive; not on a unix socket,
     * where setting it fails and would mark the context as failed. */
    if (!r->url.path[0]) redisEnableKeepAlive(&ac->c);
    r->state = ST_HANDSHAKE;
    if (r->url.password[0]) {
        const char *argv[3] = {"AUTH", r->url.user, r->url.password};
        if (r->url.user[0])
            redisAsyncCommandArgv(ac, hs_cb, r, 3, argv, NULL);
        else
            redisAsyncCommandArgv(ac, hs_cb, r, 2, (const char *[]){"AUTH", r->url.password},
                                  NULL);
    }
    if (r->url.db > 0) {
        char db[12];
        snprintf(db, sizeof db, "%d", r->url.db);
        redisAsyncCommandArgv(ac, hs_cb, r, 2, (const char *[]){"SELECT", db}, NULL);
    }
    /* Up means answering: the PING's reply ends the handshake. */
    redisAsyncCommandArgv(ac, hs_cb, NULL, 1, (const char *[]){"PING"}, NULL);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    gg_redis *r = ac->data;
    if (status != REDIS_OK && !r->why[0]) set_why(r, "connection lost", ac->errstr);
}

static void sub_cb(redisAsyncContext *ac, void *reply, void *priv);

static void send_subscribe(gg_redis *r, sub *s)
{
    redisAsyncCommandArgv(r->ac, sub_cb, s, 2, (const char *[]){"SUBSCRIBE", s->channel}, NULL);
}

/* AUTH and SELECT (priv r) and the final PING (priv NULL). */
static void hs_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    gg_redis *r = ac->data;
    if (!rep || r->state != ST_HANDSHAKE) return;
    if (rep->type == REDIS_REPLY_ERROR) {
        set_why(r, "handshake failed", rep->str);
        drop(r); /* deferred by hiredis: we are in its callback */
        return;
    }
    if (priv) return;
    r->state = ST_UP;
    r->why[0] = 0;
    r->down_reported = 0;
    r->backoff_ms = r->o.backoff_min_ms;
    r->stats.connects++;
    uv_timer_stop(&r->timer);
    for (sub *s = r->subs; s; s = s->next) send_subscribe(r, s);
    if (r->o.log) {
        char url[400];
        gg_redis_url_describe(&r->url, url, sizeof url);
        gg_log(r->o.log, GG_LOG_INFO, "redis_up", "name=%s url=\"%s\"", r->name, url);
    }
    if (r->o.on_state) r->o.on_state(r, 1, "", r->o.arg);
}

static void connect_to(gg_redis *r, const char *ip)
{
    redisAsyncContext *ac =
        r->url.path[0] ? redisAsyncConnectUnix(r->url.path) : redisAsyncConnect(ip, r->url.port);
    if (!ac) {
        set_why(r, "connect failed", "out of memory");
        goto fail;
    }
    if (ac->err) {
        set_why(r, "connect failed", ac->errstr);
        goto fail_ac;
    }
    ev *e = calloc(1, sizeof *e);
    if (!e) {
        set_why(r, "connect failed", "out of memory");
        goto fail_ac;
    }
    if (uv_poll_init_socket(r->loop, &e->poll, ac->c.fd) < 0) {
        set_why(r, "connect failed", "cannot poll the socket");
        free(e);
        goto fail_ac;
    }
    e->poll.data = e;
    e->r = r;
    e->ac = ac;
    ac->data = r;
    ac->ev.data = e;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    r->state = ST_CONNECT;
    arm(r, r->o.connect_timeout_ms);
    if (ac->c.flags & REDIS_CONNECTED) /* a unix socket connects at once: no onConnect */
        on_connect(ac, REDIS_OK);
    else
        ev_add_write(e); /* writable = connected (or failed): hiredis then calls on_connect */
    return;
fail_ac:
    redisAsyncFree(ac); /* no adapter attached yet: nothing of ours runs */
fail:
    schedule_retry(r);
}

static void gai_cb(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    gg_redis *r = g->data;
    int mine = r->state == ST_RESOLVE;
    if (mine && status == 0 && res) {
        char ip[INET6_ADDRSTRLEN] = "";
        if (res->ai_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, ip, sizeof ip);
        else
            inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, ip, sizeof ip);
        connect_to(r, ip);
    } else if (mine) {
        set_why(r, "cannot resolve host", uv_strerror(status));
        schedule_retry(r);
    }
    if (res) uv_freeaddrinfo(res);
    r->gai_busy = 0;
    unref(r);
}

static void start_connect(gg_redis *r)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (r->url.path[0] || inet_pton(AF_INET, r->url.host, buf) == 1 ||
        inet_pton(AF_INET6, r->url.host, buf) == 1) {
        connect_to(r, r->url.host);
        return;
    }
    if (r->gai_busy) { /* the last lookup is still stuck in the thread pool */
        set_why(r, "cannot resolve host", "resolver busy");
        schedule_retry(r);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    r->gai.data = r;
    if (uv_getaddrinfo(r->loop, &r->gai, gai_cb, r->url.host, NULL, &hints) < 0) {
        set_why(r, "cannot resolve host", r->url.host);
        schedule_retry(r);
        return;
    }
    r->refs++;
    r->gai_busy = 1;
    r->state = ST_RESOLVE;
    arm(r, r->o.connect_timeout_ms);
}

/* --- Public ------------------------------------------------------------------------------ */

gg_redis *gg_redis_new(uv_loop_t *loop, const gg_redis_url *url, const gg_redis_opts *o)
{
    gg_redis *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->loop = loop;
    r->url = *url;
    r->o = *o;
    snprintf(r->name, sizeof r->name, "%s", o->name ? o->name : "redis");
    r->o.name = r->name;
    if (!r->o.connect_timeout_ms) r->o.connect_timeout_ms = 1000;
    if (!r->o.request_timeout_ms) r->o.request_timeout_ms = 1000;
    if (!r->o.backoff_min_ms) r->o.backoff_min_ms = 100;
    if (r->o.backoff_max_ms < r->o.backoff_min_ms)
        r->o.backoff_max_ms = r->o.backoff_min_ms > 5000 ? r->o.backoff_min_ms : 5000;
    r->backoff_ms = r->o.backoff_min_ms;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    r->refs = 1;
    r->seed = (uint32_t)(uv_hrtime() ^ ((uint64_t)uv_os_getpid() << 16)) | 1;
    start_connect(r);
    return r;
}

static void req_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    req *q = priv;
    gg_redis *r = q->r;
    redisReply *rep = reply;
    if (q->prev)
        q->prev->next = q->next;
    else
        r->head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        r->tail = q->prev;
    const char *err = NULL;
    if (!rep) {
        err = r->state == ST_CLOSED ? "closed" : r->why[0] ? r->why : "connection lost";
        r->stats.errors++;
    } else {
        r->stats.replies++;
        if (rep->type == REDIS_REPLY_ERROR) {
            err = rep->str;
            r->stats.errors++;
        }
    }
    gg_redis_cb cb = q->cb;
    void *arg = q->arg;
    free(q);
    cb(r, rep, err, arg);
}

int gg_redis_command(gg_redis *r, gg_redis_cb cb, void *arg, int argc, const char **argv,
                     const size_t *argvlen)
{
    if (r->state != ST_UP || !r->ac) return GG_REDIS_EDOWN;
    req *q = calloc(1, sizeof *q);
    if (!q) return GG_REDIS_ENOMEM;
    q->r = r;
    q->cb = cb;
    q->arg = arg;
    q->deadline = uv_now(r->loop) + r->o.request_timeout_ms;
    if (redisAsyncCommandArgv(r->ac, req_cb, q, argc, argv, argvlen) != REDIS_OK) {
        free(q);
        return GG_REDIS_EDOWN; /* hiredis is disconnecting or freeing this context */
    }
    q->prev = r->tail;
    if (r->tail)
        r->tail->next = q;
    else
        r->head = q;
    r->tail = q;
    r->stats.commands++;
    if (!uv_is_active((uv_handle_t *)&r->timer)) arm(r, r->o.request_timeout_ms);
    return 0;
}

static void sub_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    sub *s = priv;
    redisReply *rep = reply;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3) return;
    if (rep->element[0]->type != REDIS_REPLY_STRING || strcmp(rep->element[0]->str, "message"))
        return;
    s->cb(s->r, rep, NULL, s->arg);
}

int gg_redis_subscribe(gg_redis *r, const char *channel, gg_redis_cb cb, void *arg)
{
    size_t n = strlen(channel);
    sub *s = calloc(1, sizeof *s + n + 1);
    if (!s) return GG_REDIS_ENOMEM;
    memcpy(s->channel, channel, n + 1);
    s->r = r;
    s->cb = cb;
    s->arg = arg;
    s->next = r->subs;
    r->subs = s;
    if (r->state == ST_UP && r->ac) send_subscribe(r, s);
    return 0;
}

int gg_redis_is_up(const gg_redis *r)
{
    return r->state == ST_UP;
}

const gg_redis_stats *gg_redis_stats_get(const gg_redis *r)
{
    return &r->stats;
}

const char *gg_redis_why(const gg_redis *r)
{
    return r->state == ST_UP ? "" : r->why;
}

void gg_redis_close(gg_redis *r)
{
    if (r->state == ST_CLOSED) return;
    int resolving = r->state == ST_RESOLVE;
    r->state = ST_CLOSED;
    if (resolving) uv_cancel((uv_req_t *)&r->gai);
    if (r->ac) redisAsyncFree(r->ac); /* pending callbacks get "closed"; deferred in a callback */
    uv_close((uv_handle_t *)&r->timer, timer_close_cb);
}

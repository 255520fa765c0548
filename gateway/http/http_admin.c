/* http_admin.c -- the admin endpoint: /metrics, /health, /ready, /routes; see http_admin.h.
 * Nothing here is a hot path: answers are built whole, then written. */
#include "http/http_admin.h"
#include "http/http.h"
#include "http/http_front.h"
#include "proxy/discover.h"
#include "proxy/server.h"
#include "core/tls.h"

#include <jansson.h>
#include <lauxlib.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADMIN_MAX_BODY 4096 /* requests here have no use for a body; a small one is ignored */

typedef struct gg_http_admin_conn {
    gg_stream st; /* first member */
    gg_http_reader rd;
    gg_http_front *front;
    struct gg_http_admin_conn *prev, *next; /* front->admins, oldest first */
    uint64_t last_active;
} gg_http_admin_conn;

static gg_http_admin_conn *conn_of_reader(gg_http_reader *r)
{
    return (gg_http_admin_conn *)(void *)((char *)r - offsetof(gg_http_admin_conn, rd));
}

/* Write an answer; a HEAD request gets the head alone. */
static void answer(gg_http_admin_conn *a, int head_only, int status, const char *ctype,
                   const char *body, size_t len, int keep_alive, const char *extra)
{
    gg_http_count(a->front, 1, status);
    if (!head_only) {
        gg_http_respond(&a->st, status, ctype, body, len, keep_alive, extra);
        return;
    }
    size_t head;
    if (gg_http_begin(&a->st, status, ctype, len, keep_alive, extra, &head))
        gg_stream_commit(&a->st, head);
}

static void answer_json(gg_http_admin_conn *a, int head_only, int status, json_t *v, int keep_alive)
{
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!s) {
        answer(a, head_only, 500, "text/plain; charset=utf-8", "out of memory\n", 14, keep_alive,
               NULL);
        return;
    }
    size_t n = strlen(s);
    s[n] = '\n'; /* for people reading it with curl; the NUL is not written */
    answer(a, head_only, status, "application/json", s, n + 1, keep_alive, NULL);
    free(s);
}

/* ---- /metrics -------------------------------------------------------------------------------- */

__attribute__((format(printf, 4, 5))) static int appendf(gg_buf *b, gg_bufpool *pool, int *failed,
                                                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (gg_buf_vprintf(b, pool, fmt, ap)) *failed = 1;
    va_end(ap);
    return 0;
}

/* What the HTTP side adds to gg_metrics_render. */
static void render_http(gg_http_front *f, gg_buf *b, gg_bufpool *pool, int *failed)
{
    static const char *const kind[2] = {"jsonrpc", "admin"};
    appendf(b, pool, failed, "%s",
            "# HELP ghostgate_http_responses_total HTTP responses, by listener and status.\n"
            "# TYPE ghostgate_http_responses_total counter\n");
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < GG_HTTP_STATUS_SLOTS; i++) {
            if (!f->responses[k][i]) continue;
            if (gg_http_counted_status[i])
                appendf(b, pool, failed,
                        "ghostgate_http_responses_total{listener=\"%s\",status=\"%d\"} %llu\n",
                        kind[k], gg_http_counted_status[i], (unsigned long long)f->responses[k][i]);
            else
                appendf(b, pool, failed,
                        "ghostgate_http_responses_total{listener=\"%s\",status=\"other\"} %llu\n",
                        kind[k], (unsigned long long)f->responses[k][i]);
        }
    }
    appendf(b, pool, failed,
            "# HELP ghostgate_admin_connections Open admin connections (not client connections).\n"
            "# TYPE ghostgate_admin_connections gauge\nghostgate_admin_connections %d\n",
            f->nadmins);
}

static void get_metrics(gg_http_admin_conn *a, int head_only, int keep_alive)
{
    gg_server *srv = a->front->srv;
    gg_bufpool *pool = &srv->lp.bufs;
    gg_buf b = {0};
    int failed = gg_metrics_render(srv, &b, pool) != 0;
    render_http(a->front, &b, pool, &failed);
    if (failed)
        answer(a, head_only, 500, "text/plain; charset=utf-8", "out of memory\n", 14, keep_alive,
               NULL);
    else
        answer(a, head_only, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len,
               keep_alive, NULL);
    gg_buf_release(&b, pool);
}

/* ---- /ready, /routes ------------------------------------------------------------------------- */

/* A service is ready when a call to it could go out now: its upstream says so (a MessagePack
 * service needs one connected endpoint; an adapter runs in the gateway; a jsonrpc-http service
 * connects per call, so it counts as ready too). */
static const char *not_ready_reason(const gg_service *svc)
{
    gg_upstream_info info;
    svc->ops->describe(svc, &info);
    return info.not_ready;
}

static const char *protocol_name(const gg_service *svc)
{
    gg_upstream_info info;
    svc->ops->describe(svc, &info);
    return info.protocol;
}

static void get_ready(gg_http_admin_conn *a, int head_only, int keep_alive)
{
    gg_server *srv = a->front->srv;
    gg_generation *gen = srv->gen;
    json_t *list = json_array();
    for (int i = 0; list && i < gen->nservices; i++) {
        gg_service *svc = &gen->services[i];
        const char *why = not_ready_reason(svc);
        if (!why) continue;
        json_t *ups = json_array();
        for (int e = 0; ups && e < svc->conf->nupstreams; e++)
            json_array_append_new(ups, json_string(svc->conf->upstreams[e].text));
        for (int e = 0; ups && svc->conf->discover && e < svc->neps; e++)
            if (svc->eps[e].gone == GG_EP_LIVE)
                json_array_append_new(ups, json_string(svc->eps[e].addr->text));
        json_array_append_new(list, json_pack("{s:s, s:s, s:o*}", "service", svc->name, "reason",
                                              why, "upstreams", ups));
    }
    int ready = list && json_array_size(list) == 0 && !srv->draining;
    json_t *v = json_pack("{s:b, s:b, s:o*}", "ready", ready, "draining", srv->draining != 0,
                          "not_ready", list);
    char stale[256];
    /* The last known endpoints still serve: ready, with a note (not ready only for a service
     * that has none, listed above). */
    if (v && gg_discover_stale(srv, stale, sizeof stale))
        json_object_set_new(v, "notes", json_pack("[s]", stale));
    answer_json(a, head_only, ready ? 200 : 503, v, keep_alive);
}

/* Breaker states from the policies: {service: {address: "closed"|"open"|"half_open"}}, or
 * NULL when no service has a breaker. */
static void add_breaker(void *data, const char *service, const char *upstream, int state)
{
    static const char *const names[] = {"closed", "open", "half_open"};
    json_t *out = data;
    json_t *per = json_object_get(out, service);
    if (!per) json_object_set_new(out, service, per = json_object());
    if (per) json_object_set_new(per, upstream, json_string(names[state]));
}

static json_t *breaker_states(gg_server *srv)
{
    json_t *out = json_object();
    if (!out) return NULL;
    gg_policy_breakers(srv, srv->gen, add_breaker, out);
    if (json_object_size(out) == 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* "guard,auth,breaker" -> ["guard", "auth", "breaker"] */
static json_t *policy_list(const char *names)
{
    json_t *list = json_array();
    for (const char *p = names; list && p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n) json_array_append_new(list, json_stringn(p, n));
        p = end ? end + 1 : p + n;
    }
    return list;
}

static json_t *route_of(gg_service *svc, json_t *breakers)
{
    const gg_service_conf *sc = svc->conf;
    json_t *per = breakers ? json_object_get(breakers, svc->name) : NULL;
    json_t *ups = json_array();
    /* discover = true: the endpoints now in the pool, draining ones included */
    int n = sc->discover ? svc->neps : sc->nupstreams;
    for (int e = 0; ups && e < n; e++) {
        if (sc->discover && svc->eps[e].gone == GG_EP_FREE) continue;
        const char *addr = sc->discover ? svc->eps[e].addr->text : sc->upstreams[e].text;
        json_t *u = json_pack("{s:s}", "address", addr);
        if (!u) continue;
        if (sc->discover && svc->eps[e].gone == GG_EP_DRAINING)
            json_object_set_new(u, "draining", json_true());
        if (e < svc->neps) { /* a pooled endpoint: its connections */
            gg_endpoint *ep = &svc->eps[e];
            json_object_set_new(u, "connected", json_integer(ep->nconnected));
            json_object_set_new(u, "pool", json_integer(ep->nconns));
            json_object_set_new(u, "connect_failures",
                                json_integer((json_int_t)ep->connect_failures));
        }
        json_t *b = per ? json_object_get(per, addr) : NULL;
        if (b) json_object_set(u, "breaker", b);
        json_array_append_new(ups, u);
    }
    json_t *r = json_pack("{s:s, s:s, s:f, s:b, s:i, s:o*, s:o*}", "name", svc->name, "protocol",
                          protocol_name(svc), "deadline", (double)sc->deadline_ms / 1000.0,
                          "keep_prefix", sc->keep_prefix, "connections", sc->connections,
                          "policies", policy_list(svc->policy_names), "upstreams", ups);
    if (r && sc->adapter) json_object_set_new(r, "adapter", json_string(sc->adapter));
    if (r && sc->discover) {
        char stale[256];
        json_object_set_new(r, "discover", json_true());
        json_object_set_new(r, "registry", json_string(gg_discover_stale(svc->srv, stale, sizeof stale)
                                                           ? stale
                                                           : "fresh"));
    }
    if (r && svc->stats) json_object_set_new(r, "inflight", json_integer(svc->stats->inflight));
    return r;
}

static void get_routes(gg_http_admin_conn *a, int head_only, int keep_alive)
{
    gg_server *srv = a->front->srv;
    gg_generation *gen = srv->gen;
    json_t *breakers = breaker_states(srv);
    json_t *list = json_array();
    for (int i = 0; list && i < gen->nservices; i++)
        json_array_append_new(list, route_of(&gen->services[i], breakers));
    json_decref(breakers);
    json_t *v = json_pack(
        "{s:s, s:I, s:b, s:o*}", "config", srv->cfg->source ? srv->cfg->source : "", "reloads",
        (json_int_t)srv->reloads, "draining", srv->draining != 0, "services", list);
    answer_json(a, head_only, 200, v, keep_alive);
}

/* ---- requests -------------------------------------------------------------------------------- */

static int path_is(const gg_http_request *req, const char *p)
{
    size_t n = strlen(p);
    return req->path_len == n && memcmp(req->path, p, n) == 0;
}

static int on_request(gg_http_reader *r, const gg_http_request *req)
{
    gg_http_admin_conn *a = conn_of_reader(r);
    gg_server *srv = a->front->srv;
    int keep_alive = req->keep_alive && !a->front->closed;
    int head_only = req->method == HTTP_HEAD;
    const char *text = "text/plain; charset=utf-8";
    a->last_active = uv_now(srv->lp.uv);
    if (req->method != HTTP_GET && !head_only) {
        static const char msg[] = "method not allowed: the admin endpoint answers GET\n";
        answer(a, 0, 405, text, msg, sizeof msg - 1, keep_alive, "Allow: GET, HEAD\r\n");
    } else if (path_is(req, "/metrics")) {
        get_metrics(a, head_only, keep_alive);
    } else if (path_is(req, "/health")) {
        if (srv->draining)
            answer(a, head_only, 503, text, "draining\n", 9, keep_alive, NULL);
        else
            answer(a, head_only, 200, text, "ok\n", 3, keep_alive, NULL);
    } else if (path_is(req, "/ready")) {
        get_ready(a, head_only, keep_alive);
    } else if (path_is(req, "/routes")) {
        get_routes(a, head_only, keep_alive);
    } else {
        static const char msg[] =
            "not found: the admin endpoint has /metrics /health /ready /routes\n";
        answer(a, head_only, 404, text, msg, sizeof msg - 1, keep_alive, NULL);
    }
    if (keep_alive) return GG_HTTP_DONE;
    gg_stream_close_after_flush(&a->st);
    return GG_HTTP_STOP;
}

static void on_http_error(gg_http_reader *r, int status, const char *why)
{
    gg_http_admin_conn *a = conn_of_reader(r);
    char text[200];
    int n = snprintf(text, sizeof text, "%s\n", why);
    answer(a, 0, status, "text/plain; charset=utf-8", text, (size_t)n, 0, NULL);
    gg_stream_close_after_flush(&a->st);
}

static const gg_http_reader_ops reader_ops = {
    .on_request = on_request,
    .on_error = on_http_error,
};

/* ---- connections ------------------------------------------------------------------------------
 */

static void on_bytes(gg_stream *s, const char *data, size_t len)
{
    gg_http_admin_conn *a = (gg_http_admin_conn *)s;
    a->last_active = uv_now(s->loop->uv);
    gg_http_reader_feed(&a->rd, data, len);
}

static void on_eof(gg_stream *s, int status)
{
    if (status == UV_EOF)
        gg_stream_close_after_flush(s); /* answers already queued still go out */
    else
        gg_stream_close(s);
}

/* Requests pipelined behind answers the peer had not read go on now (http.h). */
static void on_drain(gg_stream *s)
{
    gg_http_admin_conn *a = (gg_http_admin_conn *)s;
    if (gg_http_reader_drained(&a->rd)) gg_stream_resume(s);
}

static void on_closed(gg_stream *s)
{
    gg_http_admin_conn *a = (gg_http_admin_conn *)s;
    gg_http_front *f = a->front;
    if (a->prev)
        a->prev->next = a->next;
    else
        f->admins = a->next;
    if (a->next)
        a->next->prev = a->prev;
    else
        f->admins_tail = a->prev;
    f->nadmins--;
    gg_http_reader_free(&a->rd);
    free(a);
    gg_http_front_unref(f);
}

static const gg_stream_ops admin_ops = {
    .on_eof = on_eof,
    .on_drain = on_drain,
    .on_closed = on_closed,
    .on_bytes = on_bytes,
};

/* At the cap, the oldest connection not in the middle of a request makes room. */
static int make_room(gg_http_front *f)
{
    int live = 0;
    for (gg_http_admin_conn *a = f->admins; a; a = a->next)
        if (!(a->st.flags & GG_ST_CLOSING)) live++;
    if (live < GG_ADMIN_MAX_CONNS) return 0;
    for (gg_http_admin_conn *a = f->admins; a; a = a->next) {
        if (!(a->st.flags & GG_ST_CLOSING) && !a->st.partial_since) {
            gg_stream_close(&a->st);
            return 0;
        }
    }
    return -1;
}

void gg_http_admin_accept(gg_http_front *f, uv_stream_t *server, int is_pipe, struct gg_tls_ctx *tls)
{
    gg_server *srv = f->srv;
    gg_http_admin_conn *a = calloc(1, sizeof *a);
    if (!a) {
        gg_log(&srv->lp.log, GG_LOG_ERROR, "out_of_memory", "what=admin connection");
        return;
    }
    if (is_pipe)
        uv_pipe_init(srv->lp.uv, &a->st.io.pipe, 0);
    else
        uv_tcp_init(srv->lp.uv, &a->st.io.tcp);
    gg_stream_init(&a->st, &srv->lp, &admin_ops, GG_ST_READY);
    a->st.max_out = srv->cfg->limits.max_write_buffer;
    gg_http_reader_init(&a->rd, &a->st, &reader_ops, ADMIN_MAX_BODY);
    a->front = f;
    a->last_active = uv_now(srv->lp.uv);
    gg_http_front_ref(f);
    int full = make_room(f);
    a->prev = f->admins_tail;
    if (a->prev)
        a->prev->next = a;
    else
        f->admins = a;
    f->admins_tail = a;
    f->nadmins++;
    if (uv_accept(server, &a->st.io.stream)) {
        gg_stream_close(&a->st);
        return;
    }
    if (full) {
        gg_log(&srv->lp.log, GG_LOG_WARN, "admin_refused", "limit=%d", GG_ADMIN_MAX_CONNS);
        gg_stream_close(&a->st);
        return;
    }
    if (!is_pipe) uv_tcp_nodelay(&a->st.io.tcp, 1);
    if (tls && gg_tls_attach(&a->st, tls, NULL) == 0) gg_tls_http(a->st.tls);
    if ((tls && !a->st.tls) || gg_stream_start(&a->st)) gg_stream_close(&a->st);
}

void gg_http_admin_sweep(uv_timer_t *t)
{
    gg_http_front *f = t->data;
    const gg_limits *l = &f->srv->cfg->limits;
    uint64_t now = uv_now(t->loop);
    for (gg_http_admin_conn *a = f->admins; a; a = a->next) {
        if (a->st.flags & GG_ST_CLOSING) continue;
        if (gg_stream_write_stalled(&a->st, now, l->write_timeout_ms)) {
            gg_log(&f->srv->lp.log, GG_LOG_INFO, "admin_closed", "reason=write_timeout");
            gg_stream_close(&a->st);
        } else if ((a->st.partial_since && now - a->st.partial_since > l->message_timeout_ms) ||
                   (!a->st.partial_since && !gg_stream_pending(&a->st) &&
                    now - a->last_active > l->idle_timeout_ms)) {
            gg_stream_close(&a->st);
        }
    }
}

void gg_http_admin_close_all(gg_http_front *f)
{
    for (gg_http_admin_conn *a = f->admins; a; a = a->next) gg_stream_close_after_flush(&a->st);
}

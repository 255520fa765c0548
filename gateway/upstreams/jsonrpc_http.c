/* jsonrpc_http.c -- services whose upstreams speak JSON-RPC 2.0 over HTTP/1.1.
 *
 * Each endpoint URL gets a pool of svc->conf->connections keep-alive connections (httpc.c).
 * A connection carries one request at a time; calls that find every connection busy wait in
 * the endpoint's queue, bounded by limits.max_inflight_per_client entries and
 * limits.max_write_buffer bytes (beyond: 503 overloaded). A call becomes
 *
 *   POST <path> HTTP/1.1  {"jsonrpc":"2.0","id":<call id>,"method":<method>,"params":[...]}
 *
 * with params converted by json.h, plus three refusals of our own: bin, ext and integers
 * beyond 2^53 have no JSON form a JSON-RPC peer reads back unchanged (most parse numbers as
 * doubles), so such a call is answered 400 bad_request and nothing is sent.
 *
 * The answer: a JSON-RPC result becomes [nil, result]; a JSON-RPC error object is passed
 * through as the upstream's error (converted to MessagePack as it is), also when it comes
 * with a non-200 status (some servers send errors as HTTP 500). Anything else -- another
 * HTTP status, a body that is not JSON or not a JSON-RPC response to this call, the
 * connection dying -- is 502 upstream_unavailable with what happened, which breakers count.
 * The call's deadline applies: the core answers 504, and the connection, whose response may
 * still be coming, is closed and replaced.
 *
 * Ownership: svc->impl is a gg_http_up. Release fails what is still in flight, closes every
 * handle and forgets svc; the struct is freed when the last handle has closed. */
#include "upstreams/jsonrpc_http.h"
#include "upstreams/jsonrpc_msg.h"
#include "proxy/dispatch.h"
#include "core/errors.h"
#include "core/buf.h"
#include "http/httpc.h"
#include "core/json.h"
#include "core/tls.h"
#include "proxy/server.h"

#include <inttypes.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>


struct hu_ep;
struct gg_http_up;

typedef struct hu_conn {
    gg_httpc hc; /* first member */
    struct hu_ep *ep;
    uv_timer_t timer; /* the call's deadline while busy; the reconnect delay while closed */
    int index;
    int connected; /* counted in ep->gep->nconnected */
    int quick;     /* closed on purpose: reconnect at once */
    int has_call;
    uint32_t call_id;
    uint8_t attempt;
    gg_backoff backoff;
    int connect_status; /* why the last connect failed (for on_closed's log), 0: it did not */
    uint64_t connected_at;
} hu_conn;

/* A call waiting for a free connection, with its whole HTTP request. */
typedef struct hu_wait {
    struct hu_wait *next;
    uint32_t call_id;
    uint8_t attempt;
    size_t len;
    char bytes[];
} hu_wait;

typedef struct hu_ep {
    struct gg_http_up *up;
    gg_endpoint *gep; /* svc->eps[i]: what policies and metrics see */
    const gg_addr *addr;
    hu_conn *conns;
    int nconns;
    char *head; /* "POST /path HTTP/1.1\r\nHost: ...\r\n" + fixed and configured headers */
    size_t head_len;
    hu_wait *qhead, *qtail;
    uint32_t qlen;
    size_t qbytes;
} hu_ep;

typedef struct gg_http_up {
    gg_server *srv;
    gg_service *svc; /* NULL once released */
    hu_ep *eps;
    int neps;
    uint32_t rr;
    int handles; /* open handles: freed at 0 once released */
    int released;
    char name[64]; /* the service's, for messages: answering a call may release svc */
} gg_http_up;

static void conn_connect(hu_conn *c);

static const char *url_of(const hu_conn *c)
{
    return c->ep->addr->text;
}

static void maybe_free(gg_http_up *up)
{
    if (!up->released || up->handles) return;
    for (int e = 0; e < up->neps; e++) {
        hu_ep *ep = &up->eps[e];
        while (ep->qhead) {
            hu_wait *w = ep->qhead;
            ep->qhead = w->next;
            free(w);
        }
        free(ep->head);
        free(ep->conns);
    }
    free(up->eps);
    free(up);
}

static void handle_closed(uv_handle_t *h)
{
    gg_http_up *up = h->data;
    up->handles--;
    maybe_free(up);
}

static gg_call *live_call(gg_http_up *up, uint32_t id, uint8_t attempt)
{
    gg_call *call = gg_call_find(&up->srv->lp.calls, id);
    /* A call that ended (deadline) is gone; one that is being retried is another attempt. */
    if (!call || call->svc != up->svc || call->attempt != attempt) return NULL;
    return call;
}

static void set_connected(hu_conn *c, int on)
{
    gg_http_up *up = c->ep->up;
    if (c->connected == on) return;
    c->connected = on;
    if (up->released) return;
    gg_endpoint_set_connected(c->ep->gep, on);
}

/* --- the request ---------------------------------------------------------------------------- */

/* The whole HTTP request (head and body) in one malloc'd buffer (free()). */
static char *request_bytes(hu_ep *ep, const char *body, size_t *len)
{
    size_t blen = strlen(body);
    gg_buf b = {0};
    if (gg_buf_reserve(&b, NULL, ep->head_len + 48 + blen) ||
        gg_buf_append(&b, NULL, ep->head, ep->head_len) ||
        gg_http_head_end(&b, (long long)blen) || gg_buf_append(&b, NULL, body, blen)) {
        gg_buf_release(&b, NULL);
        return NULL;
    }
    *len = b.len;
    return b.data;
}

/* --- answers -------------------------------------------------------------------------------- */

/* The caller learns that the service's upstream failed and an id; the detail (the URL, the
 * status, the body's first words) is for the log only: it names internals. */
static void fail_call(hu_conn *c, gg_call *call, int code, const char *what)
{
    gg_http_up *up = c->ep->up;
    unsigned id = gg_policy_error_id(&up->srv->pol);
    gg_log(&up->srv->lp.log, GG_LOG_WARN, "upstream_http_error",
           "id=%08x service=%s upstream=%s reason=\"%s\"", id, up->name, url_of(c), what);
    gg_call_fail(up->srv, call, code,
                 "the upstream of service '%s' failed (error id %08x; see the gateway's log)",
                 up->name, id);
}

/* Pass a JSON value on as MessagePack: [error, nil] or [nil, result]. */
static void answer_json(hu_conn *c, gg_call *call, const json_t *v, int is_error)
{
    gg_http_up *up = c->ep->up;
    char err[200];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int rc = 0;
    if (!is_error) rc = msgpack_sbuffer_write(&sb, "\xc0", 1);
    if (rc == 0)
        rc = gg_json_to_msgpack(v, (int)up->svc->gen->cfg->limits.max_depth, &sb, err, sizeof err);
    else
        snprintf(err, sizeof err, "out of memory");
    if (rc == 0 && is_error) rc = msgpack_sbuffer_write(&sb, "\xc0", 1);
    if (rc) {
        char what[300];
        snprintf(what, sizeof what, "its %s cannot be converted to MessagePack: %s",
                 is_error ? "error" : "result", err);
        fail_call(c, call, GG_ERR_UPSTREAM_UNAVAILABLE, what);
    } else {
        gg_call_answer(up->srv, call, sb.data, sb.size);
    }
    msgpack_sbuffer_destroy(&sb);
}

static void handle_response(hu_conn *c, gg_call *call, const gg_httpc_resp *r)
{
    char what[400], snip[96];
    json_error_t je;
    json_t *root = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    json_t *id = json_is_object(root) ? json_object_get(root, "id") : NULL;
    json_t *error = json_is_object(root) ? json_object_get(root, "error") : NULL;
    json_t *result = json_is_object(root) ? json_object_get(root, "result") : NULL;
    int has_error = error && !json_is_null(error);
    /* id null: the server could not read the request (JSON-RPC parse error); with one request
     * per connection the error is still this call's. */
    int id_ok = id && ((json_is_integer(id) && json_integer_value(id) == (json_int_t)call->id) ||
                       (json_is_null(id) && has_error));
    if (r->status != 200 && !(id_ok && has_error)) {
        gg_jsonrpc_excerpt(r->body, r->body_len, snip, sizeof snip);
        snprintf(what, sizeof what, "HTTP %d%s%s", r->status, snip[0] ? ": " : "", snip);
        fail_call(c, call, GG_ERR_UPSTREAM_UNAVAILABLE, what);
    } else if (!root) {
        gg_jsonrpc_excerpt(r->body, r->body_len, snip, sizeof snip);
        snprintf(what, sizeof what, "invalid JSON in the response: %s at line %d column %d%s%s%s",
                 je.text, je.line, je.column, snip[0] ? " (body: '" : "", snip,
                 snip[0] ? "')" : "");
        fail_call(c, call, GG_ERR_UPSTREAM_UNAVAILABLE, what);
    } else if (!json_is_object(root)) {
        fail_call(c, call, GG_ERR_UPSTREAM_UNAVAILABLE,
                  "the response is not a JSON-RPC response object");
    } else if (!id_ok) {
        char *got = id ? json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
        snprintf(what, sizeof what, "the response's id %.40s does not match the request's %u",
                 got ? got : "(none)", call->id);
        free(got);
        fail_call(c, call, GG_ERR_UPSTREAM_UNAVAILABLE, what);
    } else if (has_error) {
        answer_json(c, call, error, 1);
    } else if (result) {
        answer_json(c, call, result, 0);
    } else {
        fail_call(c, call, GG_ERR_UPSTREAM_UNAVAILABLE,
                  "the response has neither result nor error");
    }
    json_decref(root);
}

/* --- connections ---------------------------------------------------------------------------- */

static void on_deadline(uv_timer_t *t)
{
    hu_conn *c = t->data;
    gg_http_up *up = c->ep->up;
    gg_server *srv = up->srv;
    if (!c->has_call) return;
    c->has_call = 0;
    gg_log(&srv->lp.log, GG_LOG_INFO, "upstream_http_timeout",
           "service=%s upstream=%s conn=%d reason=\"deadline passed with the request in flight\"",
           up->name, url_of(c), c->index);
    /* Its response may still come: the connection cannot carry another request. */
    c->quick = 1;
    gg_httpc_close(&c->hc);
    /* The core's deadline timer has answered it already, unless both fired in this turn. */
    gg_call *call = live_call(up, c->call_id, c->attempt);
    if (call)
        gg_call_fail(srv, call, GG_ERR_DEADLINE_EXCEEDED,
                     "no answer from the upstream of service '%s' within the deadline", up->name);
    /* Answers written in a timer callback would otherwise wait for the loop's next wake-up. */
    gg_stream_flush_all(&srv->lp);
}

/* Send the next waiting call on a ready connection. */
/* The oldest waiting call of ep (ep->qhead must be set); the caller frees it. */
static hu_wait *queue_pop(hu_ep *ep)
{
    hu_wait *w = ep->qhead;
    ep->qhead = w->next;
    if (!ep->qhead) ep->qtail = NULL;
    ep->qlen--;
    ep->qbytes -= w->len;
    return w;
}

static void pump(hu_conn *c)
{
    hu_ep *ep = c->ep;
    gg_http_up *up = ep->up;
    while (c->hc.state == GG_HTTPC_READY && ep->qhead) {
        hu_wait *w = queue_pop(ep);
        gg_call *call = live_call(up, w->call_id, w->attempt);
        if (call && gg_httpc_send(&c->hc, w->bytes, w->len, NULL, 0, 0,
                                  up->svc->gen->cfg->limits.max_message_size) == 0) {
            c->has_call = 1;
            c->call_id = call->id;
            c->attempt = call->attempt;
            call->sent = 1;
            uint64_t now = uv_now(up->srv->lp.uv);
            uv_timer_start(&c->timer, on_deadline,
                           call->deadline > now ? call->deadline - now + 1 : 1, 0);
        } else if (call) {
            gg_call_fail(up->srv, call, GG_ERR_OVERLOADED,
                         "out of memory sending to the upstream of service '%s'", up->name);
        }
        free(w);
    }
}

/* Fail every waiting call of ep: nothing there will take them before their deadline. */
static void fail_queue(hu_ep *ep, const char *why)
{
    gg_http_up *up = ep->up;
    while (ep->qhead) {
        hu_wait *w = queue_pop(ep);
        gg_call *call = live_call(up, w->call_id, w->attempt);
        free(w);
        if (call)
            gg_call_fail(up->srv, call, GG_ERR_UPSTREAM_UNAVAILABLE,
                         "an upstream of service '%s' %s", up->name, why);
    }
}

/* Could a waiting call be sent on ep before long: a connection is up or coming up, or is
 * closing to be replaced at once (its request timed out, or a connection that served was
 * closed by the server: see on_closed). */
static int ep_alive(const hu_ep *ep)
{
    for (int i = 0; i < ep->nconns; i++) {
        const hu_conn *c = &ep->conns[i];
        int s = c->hc.state;
        if (s == GG_HTTPC_READY || s == GG_HTTPC_BUSY || s == GG_HTTPC_CONNECTING) return 1;
        if (s == GG_HTTPC_CLOSING && (c->quick || c->hc.responses > 0)) return 1;
    }
    return 0;
}

/* The handshake of c failed: the call that would have gone on it learns why (each connection
 * that fails costs one waiting call, as when the call was sent before the handshake). */
static void fail_waiting(hu_conn *c, const char *tls_why)
{
    hu_ep *ep = c->ep;
    while (ep->qhead) {
        hu_wait *w = queue_pop(ep);
        gg_call *call = live_call(ep->up, w->call_id, w->attempt);
        free(w);
        if (call) {
            char what[300];
            snprintf(what, sizeof what, "TLS failed: %s", tls_why);
            fail_call(c, call, GG_ERR_UPSTREAM_UNAVAILABLE, what);
            return;
        }
    }
}

static void on_connect(gg_httpc *hc, int status)
{
    hu_conn *c = (hu_conn *)hc;
    gg_http_up *up = c->ep->up;
    gg_server *srv = up->srv;
    if (c->hc.tls) uv_timer_stop(&c->timer); /* the handshake timeout */
    if (status < 0) {
        const char *tls_why = c->hc.st.tls ? gg_tls_error(c->hc.st.tls) : "";
        if (*tls_why) { /* a failed handshake: said once per outage, like a refused connect */
            gg_log(&srv->lp.log, gg_endpoint_tls_failed_level(c->ep->gep), "upstream_tls_failed",
                   "service=%s upstream=%s reason=\"%s\"", up->name, url_of(c), tls_why);
            fail_waiting(c, tls_why);
        }
        c->connect_status = status;
        return; /* on_closed follows, and logs it with the delay it chose */
    }
    c->connected_at = uv_now(srv->lp.uv);
    set_connected(c, 1);
    gg_endpoint_connected(c->ep->gep, c->index);
    pump(c);
}

static void on_response(gg_httpc *hc, const gg_httpc_resp *r, const char *err)
{
    hu_conn *c = (hu_conn *)hc;
    gg_http_up *up = c->ep->up;
    if (!c->has_call) return;
    c->has_call = 0;
    uv_timer_stop(&c->timer);
    gg_call *call = live_call(up, c->call_id, c->attempt);
    if (!call) {
        gg_log(&up->srv->lp.log, GG_LOG_DEBUG, "late_response", "upstream=%s id=%u", url_of(c),
               c->call_id);
    } else if (err) {
        fail_call(c, call, GG_ERR_UPSTREAM_UNAVAILABLE, err);
    } else {
        handle_response(c, call, r);
    }
    if (!up->released) pump(c);
}

static void on_retry(uv_timer_t *t)
{
    conn_connect(t->data);
}

static void on_closed(gg_httpc *hc)
{
    hu_conn *c = (hu_conn *)hc;
    hu_ep *ep = c->ep;
    gg_http_up *up = ep->up;
    up->handles--;
    set_connected(c, 0);
    if (up->released) {
        maybe_free(up);
        return;
    }
    gg_server *srv = up->srv;
    if (c->has_call) { /* closed by us with a call in flight (cannot happen today: kept safe) */
        c->has_call = 0;
        gg_call *call = live_call(up, c->call_id, c->attempt);
        if (call) fail_call(c, call, GG_ERR_UPSTREAM_UNAVAILABLE, "the connection was closed");
    }
    /* A connection that served, or that we closed on purpose, is replaced at once; one that
     * never got going waits longer each time. */
    uint64_t now = uv_now(srv->lp.uv);
    uint64_t wait;
    if (c->quick || c->hc.responses > 0 || (c->connected_at && now - c->connected_at > 1000)) {
        gg_backoff_reset(&c->backoff);
        wait = 0;
    } else {
        wait = gg_backoff_next(&c->backoff);
    }
    if (c->connect_status) gg_endpoint_connect_failed(ep->gep, c->index, c->connect_status, wait);
    c->connect_status = 0;
    c->quick = 0;
    c->connected_at = 0;
    if (wait == 0) {
        /* Connecting at once (the handle is closed: it can be set up again here) keeps the
         * endpoint alive for the calls arriving meanwhile: they wait instead of failing. */
        conn_connect(c);
        return;
    }
    if (!ep_alive(ep)) fail_queue(ep, "is unreachable");
    if (up->released) return; /* answering a call may have released the pool */
    uv_timer_start(&c->timer, on_retry, wait, 0);
}

static const gg_httpc_ops conn_ops = {
    .on_connect = on_connect,
    .on_response = on_response,
    .on_closed = on_closed,
};

/* https: the upstream took the TCP connection but did not finish the handshake in time (a
 * server that is not speaking TLS, or hung): give up on this try, as if it had refused. */
static void on_handshake_timeout(uv_timer_t *t)
{
    hu_conn *c = t->data;
    if (c->hc.state != GG_HTTPC_CONNECTING) return;
    gg_log(&c->ep->up->srv->lp.log, gg_endpoint_tls_failed_level(c->ep->gep),
           "upstream_tls_failed", "service=%s upstream=%s reason=\"handshake timed out\"",
           c->ep->up->name, url_of(c));
    c->connect_status = UV_ETIMEDOUT;
    gg_httpc_close(&c->hc);
}

static void conn_connect(hu_conn *c)
{
    gg_http_up *up = c->ep->up;
    if (up->released) return;
    up->handles++; /* the TCP handle, until on_closed */
    c->hc.tls = c->ep->addr->tls ? up->svc->conf->tls : NULL; /* https:// */
    c->hc.tls_name = c->ep->addr->tls_name;
    c->hc.tls_peer = c->ep->addr->text;
    /* the timer is idle while connecting: it bounds the handshake */
    if (gg_httpc_connect(&c->hc, (const struct sockaddr *)&c->ep->addr->sa) == 0 && c->hc.tls)
        uv_timer_start(&c->timer, on_handshake_timeout, gg_tls_ctx_handshake_timeout(c->hc.tls), 0);
}

/* --- the service ------------------------------------------------------------------------------ */

/* Append to *buf (malloc'd, *len bytes). Returns 0 or -1. */
/* The configured headers of svc ("Name: value\r\n" each, sorted by name) from the config's Lua
 * table. ghost.config has checked them; a header that could split the request is dropped. */
static int configured_headers(gg_service *svc, gg_buf *out)
{
    lua_State *L = svc->srv->L;
    int top = lua_gettop(L);
    int rc = 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, svc->gen->cfg->table_ref);
    lua_getfield(L, -1, "services");
    lua_getfield(L, -1, svc->name);
    lua_getfield(L, -1, "headers");
    if (lua_istable(L, -1)) {
        int t = lua_gettop(L);
        /* sort the names: the same config always sends the same bytes */
        lua_newtable(L);
        int names = lua_gettop(L), n = 0;
        for (lua_pushnil(L); lua_next(L, t); lua_pop(L, 1)) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) continue;
            lua_pushvalue(L, -2);
            lua_rawseti(L, names, ++n);
        }
        lua_getglobal(L, "table");
        lua_getfield(L, -1, "sort");
        lua_pushvalue(L, names);
        lua_pcall(L, 1, 0, 0);
        lua_pop(L, 1);
        for (int i = 1; i <= n && rc == 0; i++) {
            size_t kn, vn;
            lua_rawgeti(L, names, i);
            lua_pushvalue(L, -1);
            lua_rawget(L, t); /* name, value */
            const char *k = lua_tolstring(L, -2, &kn);
            const char *v = lua_tolstring(L, -1, &vn);
            int hr = gg_http_head_add(out, k, kn, v, vn);
            if (hr == -2)
                gg_log(&svc->srv->lp.log, GG_LOG_ERROR, "header_dropped",
                       "service=%s header=\"%.60s\"", svc->name, k);
            else if (hr)
                rc = -1;
            lua_pop(L, 2);
        }
    }
    lua_settop(L, top);
    return rc;
}

/* Per endpoint: the request line, the default headers the configured ones do not replace,
 * then the configured ones. Content-Length and the body are added per request. */
static int build_heads(gg_http_up *up)
{
    gg_service *svc = up->svc;
    gg_buf extra = {0};
    if (configured_headers(svc, &extra)) goto oom;
    for (int e = 0; e < up->neps; e++) {
        hu_ep *ep = &up->eps[e];
        gg_buf h = {0};
        const char *path = ep->addr->http_path;
        if (gg_http_head_start(&h, "POST", path, strlen(path), NULL, 0)) goto oom_h;
        /* The configured headers may replace these (a virtual host, another media type). */
        static const struct {
            const char *name, *value;
        } defaults[] = {{"Host", NULL},
                        {"Content-Type", "application/json"},
                        {"Accept", "application/json"},
                        {"User-Agent", "ghostgate"}};
        for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
            if (extra.len && gg_http_head_has(extra.data, extra.len, defaults[i].name)) continue;
            const char *v = defaults[i].value ? defaults[i].value : ep->addr->http_host;
            if (gg_http_head_add(&h, defaults[i].name, strlen(defaults[i].name), v, strlen(v)))
                goto oom_h;
        }
        if (extra.len && gg_buf_append(&h, NULL, extra.data, extra.len)) goto oom_h;
        ep->head = h.data;
        ep->head_len = h.len;
        continue;
    oom_h:
        gg_buf_release(&h, NULL);
        goto oom;
    }
    gg_buf_release(&extra, NULL);
    return 0;
oom:
    gg_buf_release(&extra, NULL);
    return -1;
}

static int http_upstream_start(gg_service *svc)
{
    const gg_service_conf *sc = svc->conf;
    gg_server *srv = svc->srv;
    gg_http_up *up = calloc(1, sizeof *up);
    if (!up) return -1;
    up->srv = srv;
    up->svc = svc;
    snprintf(up->name, sizeof up->name, "%s", svc->name);
    up->eps = calloc((size_t)(sc->nupstreams ? sc->nupstreams : 1), sizeof(hu_ep));
    gg_endpoint *geps = calloc((size_t)(sc->nupstreams ? sc->nupstreams : 1), sizeof(gg_endpoint));
    if (!up->eps || !geps) goto oom;
    up->neps = sc->nupstreams;
    for (int e = 0; e < up->neps; e++) {
        hu_ep *ep = &up->eps[e];
        ep->up = up;
        ep->addr = &sc->upstreams[e];
        ep->gep = &geps[e];
        ep->conns = calloc((size_t)sc->connections, sizeof(hu_conn));
        if (!ep->conns) goto oom;
        ep->nconns = sc->connections;
        geps[e].svc = svc;
        geps[e].addr = ep->addr;
        geps[e].nconns = sc->connections; /* for /metrics; no gg_uconn behind it (conns NULL) */
    }
    if (build_heads(up)) goto oom;
    /* From here on nothing fails: the endpoints become the service's, the connections start. */
    svc->eps = geps;
    svc->neps = up->neps;
    svc->impl = up;
    for (int e = 0; e < up->neps; e++) {
        hu_ep *ep = &up->eps[e];
        for (int k = 0; k < ep->nconns; k++) {
            hu_conn *c = &ep->conns[k];
            c->ep = ep;
            c->index = k;
            gg_httpc_init(&c->hc, &srv->lp, &conn_ops, c);
            uv_timer_init(srv->lp.uv, &c->timer);
            c->timer.data = c;
            up->handles++;
            conn_connect(c);
        }
    }
    return 0;
oom:
    free(geps);
    up->released = 1;
    maybe_free(up);
    return -1;
}

static void http_upstream_release(gg_service *svc)
{
    gg_http_up *up = svc->impl;
    if (!up) return;
    /* Failing a call below may end the last call of a draining gateway, whose shutdown closes
     * every generation: svc must not lead here twice. */
    svc->impl = NULL;
    for (int e = 0; e < up->neps; e++) {
        hu_ep *ep = &up->eps[e];
        for (int k = 0; k < ep->nconns; k++) {
            hu_conn *c = &ep->conns[k];
            if (!c->has_call) continue;
            c->has_call = 0;
            gg_call *call = live_call(up, c->call_id, c->attempt);
            if (call)
                gg_call_fail(up->srv, call, GG_ERR_UPSTREAM_UNAVAILABLE,
                             "an upstream of service '%s' is being closed", svc->name);
        }
        fail_queue(ep, "is being closed");
    }
    /* From here svc may be freed at any time: nothing below or in a callback touches it. */
    for (int e = 0; e < up->neps; e++) svc->eps[e].nconns = 0;
    up->released = 1;
    up->svc = NULL;
    for (int e = 0; e < up->neps; e++) {
        hu_ep *ep = &up->eps[e];
        ep->gep = NULL;
        for (int k = 0; k < ep->nconns; k++) {
            hu_conn *c = &ep->conns[k];
            if (!uv_is_closing((uv_handle_t *)&c->timer)) {
                c->timer.data = up;
                uv_close((uv_handle_t *)&c->timer, handle_closed);
            }
            gg_httpc_close(&c->hc);
        }
    }
    maybe_free(up);
}

/* The endpoint for a call: the one asked for, else round robin preferring one with a free
 * connection, else the alive one with the shortest queue. NULL when none is alive. */
static hu_ep *pick(gg_http_up *up, int endpoint, hu_conn **ready)
{
    *ready = NULL;
    if (endpoint > 0 && endpoint <= up->neps) {
        hu_ep *ep = &up->eps[endpoint - 1];
        for (int i = 0; i < ep->nconns; i++)
            if (ep->conns[i].hc.state == GG_HTTPC_READY) *ready = &ep->conns[i];
        return *ready || ep_alive(ep) ? ep : NULL;
    }
    hu_ep *best = NULL;
    for (int k = 0; k < up->neps; k++) {
        hu_ep *ep = &up->eps[(up->rr + (uint32_t)k) % (uint32_t)up->neps];
        for (int i = 0; i < ep->nconns; i++) {
            if (ep->conns[i].hc.state == GG_HTTPC_READY) {
                *ready = &ep->conns[i];
                up->rr++;
                return ep;
            }
        }
        if (ep_alive(ep) && (!best || ep->qlen < best->qlen)) best = ep;
    }
    up->rr++;
    return best;
}

static int http_upstream_send(gg_service *svc, gg_call *call, int endpoint, const char *method,
                              uint32_t method_len, const char *params, size_t params_len)
{
    gg_http_up *up = svc->impl;
    if (!up) return GG_ERR_UPSTREAM_UNAVAILABLE;
    gg_server *srv = up->srv;
    const gg_limits *lim = &svc->gen->cfg->limits;
    hu_conn *ready;
    hu_ep *ep = pick(up, endpoint, &ready);
    if (!ep) return GG_ERR_UPSTREAM_UNAVAILABLE;
    char err[300];
    char *body = gg_jsonrpc_request(call->id, method, method_len, params, params_len, (int)lim->max_depth,
                              err, sizeof err);
    if (!body) {
        /* The caller's mistake, not the upstream's: answered here (dispatch would call any
         * code but 502 "overloaded"), and nothing is sent. */
        gg_log(&srv->lp.log, GG_LOG_INFO, "bad_request", "service=%s reason=\"%s\"", svc->name,
               err);
        gg_call_fail(srv, call, GG_ERR_BAD_REQUEST, "service '%s' speaks JSON-RPC: %s", svc->name,
                     err);
        return 0;
    }
    size_t len;
    char *req = request_bytes(ep, body, &len);
    free(body);
    if (!req) return GG_ERR_OVERLOADED;
    call->endpoint = (uint16_t)(ep - up->eps + 1);
    if (ready) {
        int rc = gg_httpc_send(&ready->hc, req, len, NULL, 0, 0, lim->max_message_size);
        free(req);
        if (rc) return GG_ERR_OVERLOADED;
        ready->has_call = 1;
        ready->call_id = call->id;
        ready->attempt = call->attempt;
        call->sent = 1;
        uint64_t now = uv_now(srv->lp.uv);
        uv_timer_start(&ready->timer, on_deadline,
                       call->deadline > now ? call->deadline - now + 1 : 1, 0);
        return 0;
    }
    /* Every connection is busy or still connecting: wait, within bounds. */
    if (ep->qlen >= lim->max_inflight_per_client || ep->qbytes + len > lim->max_write_buffer) {
        /* entries of calls that already ended count for nothing */
        hu_wait **pp = &ep->qhead;
        ep->qtail = NULL;
        while (*pp) {
            hu_wait *w = *pp;
            if (!live_call(up, w->call_id, w->attempt)) {
                *pp = w->next;
                ep->qlen--;
                ep->qbytes -= w->len;
                free(w);
            } else {
                ep->qtail = w;
                pp = &w->next;
            }
        }
        if (ep->qlen >= lim->max_inflight_per_client || ep->qbytes + len > lim->max_write_buffer) {
            free(req);
            gg_log(&srv->lp.log, GG_LOG_WARN, "overloaded", "service=%s upstream=%s queued=%u",
                   svc->name, ep->addr->text, ep->qlen);
            return GG_ERR_OVERLOADED;
        }
    }
    hu_wait *w = malloc(sizeof *w + len);
    if (!w) {
        free(req);
        return GG_ERR_OVERLOADED;
    }
    w->next = NULL;
    w->call_id = call->id;
    w->attempt = call->attempt;
    w->len = len;
    memcpy(w->bytes, req, len);
    free(req);
    if (ep->qtail)
        ep->qtail->next = w;
    else
        ep->qhead = w;
    ep->qtail = w;
    ep->qlen++;
    ep->qbytes += len;
    call->sent = 0;
    return 0;
}

/* --- gg_upstream_ops ---------------------------------------------------------------------- */

static int jsonrpc_start(gg_service *svc, gg_service *prev, int phase, char *err, size_t errlen)
{
    if (phase != GG_UPSTREAM_CONNECT) return 0;
    if (!http_upstream_start(svc)) return 0;
    snprintf(err, errlen, "http pool");
    return -1;
}

static void jsonrpc_release(gg_service *svc, int counted)
{
    http_upstream_release(svc); /* frees itself once its handles closed: nothing to count */
}

static int jsonrpc_notify(gg_service *svc, int endpoint, const char *method, uint32_t method_len,
                          const char *params, size_t params_len)
{
    return GG_ERR_NOT_SUPPORTED;
}

static void jsonrpc_describe(const gg_service *svc, gg_upstream_info *out)
{
    out->protocol = "jsonrpc-http";
    out->not_ready = NULL;
}

const gg_upstream_ops gg_jsonrpc_http_ops = {
    .name = "jsonrpc-http",
    .start = jsonrpc_start,
    .send = http_upstream_send,
    .notify = jsonrpc_notify,
    .release = jsonrpc_release,
    .describe = jsonrpc_describe,
};

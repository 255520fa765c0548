/* upstream.c -- services, endpoints and pooled upstream connections; see upstream.h. */
#include "upstream.h"
#include "tls.h"
#include "dispatch.h"
#include "errors.h"
#include "adapter.h"
#include "server.h"
#include "upstream_http.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS   5000
/* A connection is preferred while it carries fewer calls than this, so that light load is
 * batched onto one socket (one write per turn) and heavy load spreads over the pool. */
#define FILL_FIRST 256

static void uconn_connect(gg_uconn *uc);

static gg_server *srv_of(gg_uconn *uc)
{
    return gg_server_of(uc->st.loop);
}

static void fail_calls(gg_uconn *uc, const char *why)
{
    gg_server *srv = srv_of(uc);
    while (uc->calls)
        gg_call_fail(srv, uc->calls, GG_ERR_UPSTREAM_UNAVAILABLE, "upstream %s of service '%s' %s",
                     uc->ep->addr->text, uc->ep->svc->name, why);
}

static void on_message(gg_stream *s, const char *msg, const gg_msg *m)
{
    gg_uconn *uc = (gg_uconn *)s;
    gg_server *srv = srv_of(uc);
    const char *bad = gg_msg_invalid(m);
    if (bad) {
        gg_log(&srv->lp.log, GG_LOG_WARN, "upstream_bad_message", "upstream=%s reason=\"%s\"",
               uc->ep->addr->text, bad);
        return;
    }
    if (m->type == GG_RESPONSE) {
        gg_call *call = gg_call_find(&srv->lp.calls, m->msgid);
        if (!call || call->up != uc) {
            /* Its call already ended (deadline) or was never ours: drop it. */
            gg_log(&srv->lp.log, GG_LOG_DEBUG, "late_response", "upstream=%s msgid=%u",
                   uc->ep->addr->text, m->msgid);
            return;
        }
        gg_call_answer(srv, call, msg + m->body_off, m->size - m->body_off);
        return;
    }
    if (m->type == GG_NOTIFY) {
        /* No client subscribes to upstream notifications yet: they are logged, never lost
         * silently (docs/protocol.md). */
        gg_log(&srv->lp.log, GG_LOG_INFO, "upstream_notification",
               "service=%s upstream=%s method=\"%.*s\" bytes=%zu", uc->ep->svc->name,
               uc->ep->addr->text, (int)m->method_len, msg + m->method_off, m->size);
        return;
    }
    gg_log(&srv->lp.log, GG_LOG_WARN, "upstream_request_refused",
           "service=%s upstream=%s method=\"%.*s\"", uc->ep->svc->name, uc->ep->addr->text,
           (int)m->method_len, msg + m->method_off);
    gg_reply_error(s, m->msgid, GG_ERR_NOT_SUPPORTED,
                   "the gateway does not accept requests from upstreams");
}

void gg_endpoint_connect_failed(gg_endpoint *ep, int conn, int status, uint64_t retry_ms)
{
    gg_server *srv = ep->svc->srv;
    gg_logger *lg = &srv->lp.log;
    ep->connect_failures++;
    gg_log(lg, GG_LOG_DEBUG, "upstream_connect_failed",
           "service=%s upstream=%s conn=%d reason=\"%s\" retry_ms=%llu", ep->svc->name,
           ep->addr->text, conn, uv_strerror(status), (unsigned long long)retry_ms);
    if (ep->down) {
        ep->down_repeats++;
        return;
    }
    if (ep->nconnected > 0) return; /* the pool still serves: not a state change */
    ep->down = 1;
    ep->down_since = uv_now(srv->lp.uv);
    ep->down_repeats = 0;
    gg_log(lg, GG_LOG_WARN, "upstream_down",
           "service=%s upstream=%s reason=\"%s\" retry_ms=%llu", ep->svc->name, ep->addr->text,
           uv_strerror(status), (unsigned long long)retry_ms);
}

void gg_endpoint_connected(gg_endpoint *ep, int conn)
{
    gg_server *srv = ep->svc->srv;
    gg_log(&srv->lp.log, GG_LOG_INFO, "upstream_connected", "service=%s upstream=%s conn=%d",
           ep->svc->name, ep->addr->text, conn);
    if (!ep->down) return;
    ep->down = 0;
    gg_log_notice(&srv->lp.log, "upstream_back",
                  "service=%s upstream=%s down_ms=%llu suppressed=%llu", ep->svc->name,
                  ep->addr->text, (unsigned long long)(uv_now(srv->lp.uv) - ep->down_since),
                  (unsigned long long)ep->down_repeats);
}

static void on_eof(gg_stream *s, int status)
{
    gg_uconn *uc = (gg_uconn *)s;
    gg_server *srv = srv_of(uc);
    /* A connection closed with nothing in flight lost nothing: the reconnect says the rest. */
    int level = srv->draining || !uc->inflight ? GG_LOG_INFO : GG_LOG_WARN;
    const char *tls_why = s->tls ? gg_tls_error(s->tls) : "";
    if (*tls_why && uc->state == GG_UP_CONNECTING) { /* a failed handshake: said once per outage */
        gg_log(&srv->lp.log, uc->ep->down ? GG_LOG_DEBUG : GG_LOG_WARN, "upstream_tls_failed",
               "service=%s upstream=%s reason=\"%s\"", uc->ep->svc->name, uc->ep->addr->text, tls_why);
        uc->connect_status = UV_EPROTO;
    } else {
        gg_log(&srv->lp.log, level, "upstream_lost",
               "service=%s upstream=%s reason=\"%s\" inflight=%u", uc->ep->svc->name,
               uc->ep->addr->text, *tls_why ? tls_why : status == UV_EOF ? "closed by peer" : uv_strerror(status),
               uc->inflight);
    }
    fail_calls(uc, "closed the connection");
    gg_stream_close(s);
}

static void on_frame_error(gg_stream *s, int code, const gg_msg *m)
{
    gg_uconn *uc = (gg_uconn *)s;
    gg_log(&srv_of(uc)->lp.log, GG_LOG_ERROR, "upstream_protocol_error",
           "service=%s upstream=%s code=%d", uc->ep->svc->name, uc->ep->addr->text, code);
    fail_calls(uc, "sent malformed data");
    gg_stream_close(s);
}

static void on_retry(uv_timer_t *t)
{
    uconn_connect(t->data);
}

static void on_closed(gg_stream *s)
{
    gg_uconn *uc = (gg_uconn *)s;
    gg_server *srv = srv_of(uc);
    if (uc->state == GG_UP_CONNECTED) {
        uc->ep->nconnected--;
        gg_policy_endpoint_changed(srv, uc->ep);
    }
    fail_calls(uc, "closed the connection");
    if (uc->state == GG_UP_CLOSING || srv->draining) {
        uc->state = GG_UP_IDLE;
        gg_generation *gen = uc->ep->svc->gen;
        if (gen->retired == 2) {
            gen->closing--;
            gg_generation_maybe_free(gen);
        }
        return;
    }
    /* Reset the backoff after a connection that lived, double it after one that did not. */
    uint64_t now = uv_now(srv->lp.uv);
    if (uc->connected_at && now - uc->connected_at > 1000)
        uc->backoff_ms = BACKOFF_FIRST_MS;
    else if (!uc->backoff_ms)
        uc->backoff_ms = BACKOFF_FIRST_MS;
    else if ((uc->backoff_ms *= 2) > BACKOFF_MAX_MS)
        uc->backoff_ms = BACKOFF_MAX_MS;
    uc->connected_at = 0;
    /* Jitter of +-20% so a pool does not reconnect in lockstep. */
    uint64_t wait = uc->backoff_ms * (80 + (uint64_t)(rand() % 41)) / 100;
    if (uc->connect_status) gg_endpoint_connect_failed(uc->ep, uc->index, uc->connect_status, wait);
    uc->connect_status = 0;
    uc->state = GG_UP_BACKOFF;
    uv_timer_start(&uc->retry, on_retry, wait, 0);
}

static void connected(gg_uconn *uc);

/* tls:// upstreams are connected once the handshake is done (certificate and name checked). */
static void on_handshake(gg_stream *s)
{
    connected((gg_uconn *)s);
}

static const gg_stream_ops uconn_ops = {
    .on_message = on_message,
    .on_frame_error = on_frame_error,
    .on_eof = on_eof,
    .on_drain = NULL,
    .on_closed = on_closed,
    .on_handshake = on_handshake,
};

static void on_connect(uv_connect_t *req, int status)
{
    gg_uconn *uc = req->data;
    if (status == UV_ECANCELED) return; /* closing */
    if (status < 0) {
        uc->connect_status = status; /* logged by on_closed, which knows the delay */
        fail_calls(uc, "refused the connection");
        gg_stream_close(&uc->st);
        return;
    }
    if (!uc->st.tls) {
        connected(uc);
        return;
    }
    uc->st.flags |= GG_ST_READY; /* the handshake goes out; calls wait for its end (tls.c) */
    if (gg_stream_start(&uc->st)) {
        on_eof(&uc->st, UV_EIO);
        return;
    }
    gg_stream_flush(&uc->st);
}

static void connected(gg_uconn *uc)
{
    gg_server *srv = srv_of(uc);
    uc->state = GG_UP_CONNECTED;
    uc->connected_at = uv_now(srv->lp.uv);
    uc->ep->nconnected++;
    uc->st.flags |= GG_ST_READY;
    gg_policy_endpoint_changed(srv, uc->ep);
    gg_endpoint_connected(uc->ep, uc->index);
    if (!uc->st.tls && gg_stream_start(&uc->st)) {
        on_eof(&uc->st, UV_EIO);
        return;
    }
    /* Calls queued while connecting are written now: from here they may reach the upstream
     * (a retry policy must not assume they did not). */
    for (gg_call *call = uc->calls; call; call = call->unext) call->sent = 1;
    gg_stream_flush(&uc->st);
}

static void uconn_connect(gg_uconn *uc)
{
    gg_server *srv = srv_of(uc);
    const gg_addr *a = uc->ep->addr;
    gg_stream_init(&uc->st, &srv->lp, &uconn_ops, 0);
    uc->creq.data = uc;
    uc->state = GG_UP_CONNECTING;
    if (a->kind == GG_ADDR_UNIX) {
        uv_pipe_init(srv->lp.uv, &uc->st.io.pipe, 0);
        uc->st.io.handle.data = &uc->st;
        uv_pipe_connect(&uc->creq, &uc->st.io.pipe, a->path, on_connect);
        return;
    }
    uv_tcp_init(srv->lp.uv, &uc->st.io.tcp);
    uc->st.io.handle.data = &uc->st;
    uv_tcp_nodelay(&uc->st.io.tcp, 1);
    int rc = a->tls && gg_tls_attach(&uc->st, uc->ep->svc->conf->tls, a->tls_name) ? UV_ENOMEM : 0;
    if (rc == 0)
        rc = uv_tcp_connect(&uc->creq, &uc->st.io.tcp, (const struct sockaddr *)&a->sa, on_connect);
    if (rc < 0) {
        uc->connect_status = rc;
        gg_stream_close(&uc->st);
    }
}

static int cmp_name(const void *key, const void *elem)
{
    const gg_service *k = key, *s = elem;
    size_t n = k->name_len < s->name_len ? k->name_len : s->name_len;
    int c = memcmp(k->name, s->name, n);
    if (c) return c;
    return k->name_len < s->name_len ? -1 : k->name_len > s->name_len;
}

gg_service *gg_generation_find(gg_generation *gen, const char *name, size_t len)
{
    gg_service key = {.name = name, .name_len = len};
    return bsearch(&key, gen->services, (size_t)gen->nservices, sizeof key, cmp_name);
}

gg_service *gg_service_find(gg_server *srv, const char *name, size_t len)
{
    return gg_generation_find(srv->gen, name, len);
}

gg_generation *gg_generation_new(gg_server *srv, gg_config *cfg)
{
    gg_generation *gen = calloc(1, sizeof *gen);
    if (!gen) return NULL;
    gen->srv = srv;
    gen->cfg = cfg;
    gen->pipelines_ref = LUA_NOREF;
    gen->services = calloc((size_t)(cfg->nservices ? cfg->nservices : 1), sizeof(gg_service));
    if (!gen->services) goto fail;
    for (int i = 0; i < cfg->nservices; i++) {
        const gg_service_conf *sc = &cfg->services[i];
        gg_service *svc = &gen->services[gen->nservices++];
        svc->srv = srv;
        svc->gen = gen;
        svc->conf = sc;
        svc->name = sc->name;
        svc->name_len = strlen(sc->name);
        svc->pipeline_ref = LUA_NOREF;
        svc->stats = gg_metrics_service(&srv->met, svc->name);
        if (!svc->stats) goto fail;
    }
    return gen;
fail:
    gg_generation_free(gen);
    return NULL;
}

/* Same upstream list, same pool size: the pools can move as they are. */
static int same_endpoints(const gg_service_conf *a, const gg_service_conf *b)
{
    if (a->nupstreams != b->nupstreams || a->connections != b->connections) return 0;
    for (int i = 0; i < a->nupstreams; i++)
        if (strcmp(a->upstreams[i].text, b->upstreams[i].text)) return 0;
    return 1;
}

static int new_endpoints(gg_service *svc)
{
    const gg_service_conf *sc = svc->conf;
    gg_server *srv = svc->srv;
    svc->eps = calloc((size_t)sc->nupstreams, sizeof(gg_endpoint));
    if (!svc->eps) return -1;
    for (int e = 0; e < sc->nupstreams; e++) {
        gg_endpoint *ep = &svc->eps[svc->neps++];
        ep->svc = svc;
        ep->addr = &sc->upstreams[e];
        ep->conns = calloc((size_t)sc->connections, sizeof(gg_uconn));
        if (!ep->conns) return -1;
        for (int k = 0; k < sc->connections; k++) {
            gg_uconn *uc = &ep->conns[ep->nconns++];
            uc->ep = ep;
            uc->index = k;
            uc->st.loop = &srv->lp;
            uv_timer_init(srv->lp.uv, &uc->retry);
            uc->retry.data = uc;
            uconn_connect(uc);
        }
    }
    return 0;
}

void gg_generation_connect(gg_generation *gen, gg_generation *old)
{
    for (int i = 0; i < gen->nservices; i++) {
        gg_service *svc = &gen->services[i];
        if (svc->conf->protocol == GG_PROTO_JSONRPC_HTTP) {
            if (gg_http_upstream_start(svc))
                gg_log(&gen->srv->lp.log, GG_LOG_ERROR, "out_of_memory", "what=http pool service=%s",
                       svc->name);
            continue;
        }
        if (svc->conf->protocol == GG_PROTO_ADAPTER) continue; /* started with its policies */
        gg_service *prev = old ? gg_generation_find(old, svc->name, svc->name_len) : NULL;
        if (prev && prev->eps && same_endpoints(prev->conf, svc->conf)) {
            svc->eps = prev->eps;
            svc->neps = prev->neps;
            prev->eps = NULL;
            prev->neps = 0;
            for (int e = 0; e < svc->neps; e++) {
                svc->eps[e].svc = svc;
                svc->eps[e].addr = &svc->conf->upstreams[e];
            }
            continue;
        }
        if (new_endpoints(svc))
            gg_log(&gen->srv->lp.log, GG_LOG_ERROR, "out_of_memory", "what=endpoints service=%s",
                   svc->name);
    }
}

static void retired_closed(uv_handle_t *h)
{
    gg_uconn *uc = h->data;
    gg_generation *gen = uc->ep->svc->gen;
    gen->closing--;
    gg_generation_maybe_free(gen);
}

/* Close every connection and timer of gen. `counted`: the generation is retired and waits
 * for the close callbacks before it frees itself. */
static void close_all(gg_generation *gen, int counted)
{
    for (int i = 0; i < gen->nservices; i++) {
        gg_service *svc = &gen->services[i];
        if (svc->impl && svc->conf->protocol == GG_PROTO_JSONRPC_HTTP) gg_http_upstream_release(svc);
        if (svc->impl && svc->conf->protocol == GG_PROTO_ADAPTER) gg_adapter_release(svc);
        svc->impl = NULL;
        for (int e = 0; e < svc->neps; e++) {
            gg_endpoint *ep = &svc->eps[e];
            for (int k = 0; k < ep->nconns; k++) {
                gg_uconn *uc = &ep->conns[k];
                int was = uc->state;
                uc->state = GG_UP_CLOSING;
                if (was == GG_UP_CONNECTED) ep->nconnected--;
                if (was == GG_UP_CONNECTING || was == GG_UP_CONNECTED) {
                    fail_calls(uc, "is being closed");
                    if (counted) gen->closing++;
                    gg_stream_close(&uc->st);
                } else {
                    uc->state = GG_UP_IDLE;
                }
                if (!uv_is_closing((uv_handle_t *)&uc->retry)) {
                    if (counted) gen->closing++;
                    uv_close((uv_handle_t *)&uc->retry, counted ? retired_closed : NULL);
                }
            }
        }
    }
}

void gg_generation_stop(gg_generation *gen)
{
    close_all(gen, 0);
}

void gg_generation_retire(gg_generation *gen)
{
    gen->retired = 1;
    gg_generation_maybe_free(gen);
}

void gg_generation_maybe_free(gg_generation *gen)
{
    if (!gen->retired || gen->calls) return;
    if (gen->retired == 1) { /* last call gone: close what did not move to the new generation */
        gen->retired = 2;
        gen->closing++; /* held while closing, so a synchronous callback cannot free it early */
        close_all(gen, 1);
        gen->closing--;
    }
    if (gen->closing) return;
    gg_server_generation_freed(gen->srv, gen);
    gg_generation_free(gen);
}

int gg_generation_load_adapters(gg_generation *gen, char *err, size_t errlen)
{
    for (int i = 0; i < gen->nservices; i++) {
        gg_service *svc = &gen->services[i];
        if (svc->conf->protocol == GG_PROTO_ADAPTER && gg_adapter_start(svc, err, errlen)) return -1;
    }
    return 0;
}

void gg_generation_free(gg_generation *gen)
{
    if (!gen) return;
    for (int i = 0; i < gen->nservices; i++) {
        gg_service *svc = &gen->services[i];
        if (svc->impl && svc->conf->protocol == GG_PROTO_JSONRPC_HTTP) gg_http_upstream_release(svc);
        if (svc->impl && svc->conf->protocol == GG_PROTO_ADAPTER) gg_adapter_release(svc);
        for (int e = 0; e < svc->neps; e++) free(svc->eps[e].conns);
        free(svc->eps);
        free(svc->policy_names);
    }
    gg_policy_generation_free(gen->srv, gen);
    free(gen->services);
    gg_config_free(gen->cfg);
    free(gen);
}

/* The best connection of one endpoint: a connected one (fill-first, then least loaded), else
 * one still connecting (the call waits in its output), else NULL. */
static gg_uconn *pick_in(gg_endpoint *ep, int *connected)
{
    gg_uconn *best = NULL, *waiting = NULL;
    if (ep->nconnected) {
        for (int i = 0; i < ep->nconns; i++) {
            gg_uconn *uc = &ep->conns[i];
            if (uc->state != GG_UP_CONNECTED) continue;
            if (uc->inflight < FILL_FIRST) {
                best = uc;
                break;
            }
            if (!best || uc->inflight < best->inflight) best = uc;
        }
    }
    if (best) {
        *connected = 1;
        return best;
    }
    for (int i = 0; i < ep->nconns && !waiting; i++)
        if (ep->conns[i].state == GG_UP_CONNECTING) waiting = &ep->conns[i];
    *connected = 0;
    return waiting;
}

/* Round robin over the endpoints, preferring connected ones. */
static gg_uconn *pick(gg_service *svc, int endpoint, int *connected)
{
    if (endpoint > 0 && endpoint <= svc->neps) return pick_in(&svc->eps[endpoint - 1], connected);
    gg_uconn *waiting = NULL;
    for (int k = 0; k < svc->neps; k++) {
        gg_endpoint *ep = &svc->eps[(svc->rr + (uint32_t)k) % (uint32_t)svc->neps];
        gg_uconn *uc = pick_in(ep, connected);
        if (uc && *connected) {
            if (svc->neps > 1) svc->rr++;
            return uc;
        }
        if (!waiting) waiting = uc;
    }
    *connected = 0;
    return waiting;
}

int gg_upstream_send(gg_service *svc, gg_call *call, int endpoint, const char *method,
                     uint32_t method_len, const char *body, size_t body_len)
{
    if (svc->conf->protocol == GG_PROTO_JSONRPC_HTTP)
        return gg_http_upstream_send(svc, call, endpoint, method, method_len, body, body_len);
    if (svc->conf->protocol == GG_PROTO_ADAPTER)
        return gg_adapter_send(svc, call, method, method_len, body, body_len);
    int connected;
    gg_uconn *uc = pick(svc, endpoint, &connected);
    if (!uc) return GG_ERR_UPSTREAM_UNAVAILABLE;
    gg_server *srv = svc->srv;
    if (gg_stream_pending(&uc->st) + body_len > srv->cfg->limits.max_write_buffer)
        return GG_ERR_OVERLOADED;
    char *p = gg_stream_reserve(&uc->st, 16 + method_len + body_len);
    if (!p) return GG_ERR_OVERLOADED;
    size_t n = gg_put_request_hdr(p, call->id, method, method_len);
    memcpy(p + n, body, body_len);
    gg_stream_commit(&uc->st, n + body_len);
    call->up = uc;
    call->endpoint = (uint16_t)(uc->ep - svc->eps + 1);
    call->sent = (uint8_t)connected;
    call->uprev = NULL;
    call->unext = uc->calls;
    if (uc->calls) uc->calls->uprev = call;
    uc->calls = call;
    uc->inflight++;
    return 0;
}

int gg_upstream_notify(gg_service *svc, int endpoint, const char *method, uint32_t method_len,
                       const char *body, size_t body_len)
{
    if (svc->conf->protocol != GG_PROTO_MSGPACK) return GG_ERR_NOT_SUPPORTED;
    int connected;
    gg_uconn *uc = pick(svc, endpoint, &connected);
    if (!uc) return GG_ERR_UPSTREAM_UNAVAILABLE;
    if (gg_stream_pending(&uc->st) + body_len > svc->srv->cfg->limits.max_write_buffer)
        return GG_ERR_OVERLOADED;
    char *p = gg_stream_reserve(&uc->st, 8 + method_len + body_len);
    if (!p) return GG_ERR_OVERLOADED;
    size_t n = 0;
    p[n++] = (char)0x93;
    p[n++] = GG_NOTIFY;
    n += gg_put_str_hdr(p + n, method_len);
    memcpy(p + n, method, method_len);
    n += method_len;
    memcpy(p + n, body, body_len);
    gg_stream_commit(&uc->st, n + body_len);
    return 0;
}

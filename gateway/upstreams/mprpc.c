/* mprpc.c -- the MessagePack-RPC upstream: pooled, multiplexed connections; see mprpc.h (the
 * object side of a connection is in mprpc_objects.c). */
#include "upstreams/mprpc_int.h"
#include "proxy/dispatch.h"
#include "core/errors.h"
#include "core/tls.h"
#include "proxy/client.h"
#include "core/buf.h"
#include "core/objtable.h"

#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

/* A connection is preferred while it carries fewer calls than this, so that light load is
 * batched onto one socket (one write per turn) and heavy load spreads over the pool. */
#define FILL_FIRST 256

static void uconn_connect(gg_uconn *uc);

static void fail_calls(gg_uconn *uc, const char *why)
{
    gg_server *srv = srv_of(uc);
    while (uc->calls.head)
        gg_call_fail(srv, uc->calls.head, GG_ERR_UPSTREAM_UNAVAILABLE, "upstream %s of service '%s' %s",
                     uc->ep->addr->text, uc->ep->svc->name, why);
}

/* Owed records: see gg_upstream_ops.owe. */
static void drop_owed(gg_uconn *uc, gg_call *call)
{
    gg_call_unlink_carrier(call);
    gg_call_unhold(&srv_of(uc)->lp.calls, call);
}

static void release_owed(gg_uconn *uc)
{
    while (uc->owed.head) drop_owed(uc, uc->owed.head);
}

static void on_recycle(uv_timer_t *t)
{
    gg_uconn *uc = t->data;
    if (uc->state != GG_UP_CONNECTED || (uc->st.flags & GG_ST_CLOSING)) return;
    gg_log(&srv_of(uc)->lp.log, GG_LOG_WARN, "upstream_recycled",
           "service=%s upstream=%s reason=\"answers owed\" owed=%u", uc->ep->svc->name,
           uc->ep->addr->text, uc->owed.n);
    fail_calls(uc, "stopped answering");
    gg_stream_close(&uc->st);
}

/* gg_upstream_ops.owe */
static void mprpc_owe(gg_call_list *carrier, gg_call *call)
{
    gg_uconn *uc = (gg_uconn *)((char *)carrier - offsetof(gg_uconn, calls));
    gg_server *srv = srv_of(uc);
    /* Only a connection still reading can deliver the answer. */
    if (uc->state != GG_UP_CONNECTED || !(uc->st.flags & GG_ST_READING)) {
        gg_call_unhold(&srv->lp.calls, call);
        return;
    }
    gg_call_link_carrier(&uc->owed, call);
    uint32_t cap = srv->lp.calls.max / 16 < 16 ? 16 : srv->lp.calls.max / 16;
    if (uc->owed.n > cap && !uv_is_active((uv_handle_t *)&uc->retry))
        uv_timer_start(&uc->retry, on_recycle, 0, 0); /* not from inside the call's end */
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
        if (!call || call->carrier != &uc->calls) {
            /* Its call already ended (deadline) or was never ours: drop it. An ended call's
             * id was reserved for this answer: now it may be reused. */
            gg_call *owed = call ? NULL : gg_call_find_owed(&srv->lp.calls, m->msgid);
            if (owed && owed->carrier == &uc->owed) drop_owed(uc, owed);
            gg_log(&srv->lp.log, GG_LOG_DEBUG, "late_response", "upstream=%s msgid=%u",
                   uc->ep->addr->text, m->msgid);
            return;
        }
        if (uc->ep->svc->conf->objects) {
            gg_mprpc_answer_with_objects(uc, call, msg + m->body_off, m->size - m->body_off);
            return;
        }
        gg_call_answer(srv, call, msg + m->body_off, m->size - m->body_off);
        return;
    }
    const char *method = msg + m->method_off;
    if (uc->ep->svc->conf->objects && m->method_len && method[0] == '$') {
        gg_mprpc_object_message(uc, msg, m);
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

static void on_eof(gg_stream *s, int status)
{
    gg_uconn *uc = (gg_uconn *)s;
    gg_server *srv = srv_of(uc);
    /* A connection closed with nothing in flight lost nothing: the reconnect says the rest. */
    int level = srv->draining || !uc->calls.n ? GG_LOG_INFO : GG_LOG_WARN;
    const char *tls_why = s->tls ? gg_tls_error(s->tls) : "";
    if (*tls_why && uc->state == GG_UP_CONNECTING) { /* a failed handshake: said once per outage */
        gg_log(&srv->lp.log, gg_endpoint_tls_failed_level(uc->ep), "upstream_tls_failed",
               "service=%s upstream=%s reason=\"%s\"", uc->ep->svc->name, uc->ep->addr->text, tls_why);
        uc->connect_status = UV_EPROTO;
    } else {
        gg_log(&srv->lp.log, level, "upstream_lost",
               "service=%s upstream=%s reason=\"%s\" inflight=%u", uc->ep->svc->name,
               uc->ep->addr->text, *tls_why ? tls_why : status == UV_EOF ? "closed by peer" : uv_strerror(status),
               uc->calls.n);
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
    if (uc->state == GG_UP_CONNECTED) gg_endpoint_set_connected(uc->ep, 0);
    fail_calls(uc, "closed the connection");
    release_owed(uc); /* no answer can come any more */
    gg_kept_conn_closed(&uc->kept); /* nor any kept one */
    gg_cb_port_closed(srv, &uc->cb);
    if (uc->objs) { /* every reference into it answers 410 from now on */
        gg_server_obj_forget(uc->objs);
        gg_objtab_free(uc->objs);
        free(uc->objs);
        uc->objs = NULL;
    }
    if (uc->state == GG_UP_CLOSING || srv->draining || uc->ep->gone) { /* gone: drained */
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
    if (uc->connected_at && now - uc->connected_at > 1000) gg_backoff_reset(&uc->backoff);
    uc->connected_at = 0;
    uint64_t wait = gg_backoff_next(&uc->backoff);
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

/* The upstream took the TCP connection but did not finish the handshake in time (a server
 * that is not speaking TLS, or hung): give up on this try, as if it had been refused. */
static void on_handshake_timeout(uv_timer_t *t)
{
    gg_uconn *uc = t->data;
    if (uc->state != GG_UP_CONNECTING || !uc->st.tls || (uc->st.flags & GG_ST_CLOSING)) return;
    gg_log(&srv_of(uc)->lp.log, gg_endpoint_tls_failed_level(uc->ep), "upstream_tls_failed",
           "service=%s upstream=%s reason=\"handshake timed out\"", uc->ep->svc->name, uc->ep->addr->text);
    uc->connect_status = UV_ETIMEDOUT;
    fail_calls(uc, "did not finish the TLS handshake");
    gg_stream_close(&uc->st);
}

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
    /* the retry timer is idle while connecting: it bounds the handshake */
    uv_timer_start(&uc->retry, on_handshake_timeout,
                   gg_tls_ctx_handshake_timeout(uc->ep->svc->conf->tls), 0);
    gg_stream_flush(&uc->st);
}

static void connected(gg_uconn *uc)
{
    gg_server *srv = srv_of(uc);
    if (uc->st.tls) uv_timer_stop(&uc->retry); /* the handshake timeout */
    uc->state = GG_UP_CONNECTED;
    uc->connected_at = uv_now(srv->lp.uv);
    uc->st.flags |= GG_ST_READY;
    gg_endpoint_set_connected(uc->ep, 1);
    gg_endpoint_connected(uc->ep, uc->index);
    if (uc->st.tls)
        gg_log(&srv->lp.log, GG_LOG_DEBUG, "upstream_tls_session", "service=%s upstream=%s conn=%d session=%s",
               uc->ep->svc->name, uc->ep->addr->text, uc->index, gg_tls_resumed(uc->st.tls) ? "resumed" : "new");
    if (!uc->st.tls && gg_stream_start(&uc->st)) {
        on_eof(&uc->st, UV_EIO);
        return;
    }
    /* Calls queued while connecting are written now: from here they may reach the upstream
     * (a retry policy must not assume they did not). */
    for (gg_call *call = uc->calls.head; call; call = call->unext) call->sent = 1;
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
    /* tls://: a reconnect resumes the pool's last session with this endpoint (no certificate
     * exchange, one round trip less) */
    int rc = a->tls && (gg_tls_attach(&uc->st, uc->ep->svc->conf->tls, a->tls_name) ||
                        gg_tls_resume(&uc->st, a->text))
                 ? UV_ENOMEM
                 : 0;
    if (rc == 0)
        rc = uv_tcp_connect(&uc->creq, &uc->st.io.tcp, (const struct sockaddr *)&a->sa, on_connect);
    if (rc < 0) {
        uc->connect_status = rc;
        gg_stream_close(&uc->st);
    }
}

/* Same upstream list, same pool size: the pools can move as they are. */
static int same_endpoints(const gg_service_conf *a, const gg_service_conf *b)
{
    if (a->nupstreams != b->nupstreams || a->connections != b->connections) return 0;
    for (int i = 0; i < a->nupstreams; i++)
        if (strcmp(a->upstreams[i].text, b->upstreams[i].text) ||
            strcmp(a->upstreams[i].http_path, b->upstreams[i].http_path)) /* text hides a query */
            return 0;
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
        gg_uconn *conns = calloc((size_t)sc->connections, sizeof(gg_uconn));
        if (!conns) return -1;
        ep->conns = conns;
        for (int k = 0; k < sc->connections; k++) {
            gg_uconn *uc = &conns[ep->nconns++];
            uc->ep = ep;
            uc->index = k;
            uc->st.loop = &srv->lp;
            uc->cb.st = &uc->st;
            uc->cb.up_objs = &uc->objs;
            uv_timer_init(srv->lp.uv, &uc->retry);
            uc->retry.data = uc;
            uconn_connect(uc);
        }
    }
    return 0;
}

/* ---- discovered endpoints (discover = true) ------------------------------------------- */

static const gg_addr no_addr; /* a free slot's: shown nowhere (GG_EP_FREE is skipped) */

/* A discover service's slots: taken over with their pools from prev (a reload keeps the
 * discovered table and its connections), else GG_DISCOVER_MAX_ENDPOINTS free ones. Slots are
 * never reallocated: connections point at their endpoint. */
static int discover_start(gg_service *svc, gg_service *prev, char *err, size_t errlen)
{
    if (prev && prev->eps && prev->conf->discover &&
        prev->conf->connections == svc->conf->connections) {
        svc->eps = prev->eps;
        svc->neps = prev->neps;
        prev->eps = NULL;
        prev->neps = 0;
        for (int e = 0; e < svc->neps; e++) svc->eps[e].svc = svc;
        return 0;
    }
    svc->eps = calloc(GG_DISCOVER_MAX_ENDPOINTS, sizeof(gg_endpoint));
    if (!svc->eps) {
        snprintf(err, errlen, "endpoints");
        return -1;
    }
    return 0;
}

/* Live references into uc's connection (objects its upstream exported that clients hold). */
static int uconn_refs(const gg_uconn *uc)
{
    uint64_t up = 0, cl = 0;
    if (uc->objs) gg_objtab_counts(uc->objs, &up, &cl);
    return up > 0;
}

/* Close what of a draining endpoint has nothing left to do. Returns 1 while some connection
 * still carries calls or references, or is closing. */
static int drain_endpoint(gg_endpoint *ep)
{
    int busy = 0;
    gg_uconn *conns = ep->conns;
    for (int k = 0; k < ep->nconns; k++) {
        gg_uconn *uc = &conns[k];
        switch (uc->state) {
        case GG_UP_CONNECTING:
        case GG_UP_CONNECTED:
            if (uc->calls.n || uconn_refs(uc)) {
                busy = 1;
                break;
            }
            if (uc->state == GG_UP_CONNECTED) gg_endpoint_set_connected(ep, 0);
            uc->state = GG_UP_CLOSING;
            uv_timer_stop(&uc->retry); /* a TLS handshake's timeout */
            gg_stream_close(&uc->st);
            busy = 1;
            break;
        case GG_UP_BACKOFF:
            uv_timer_stop(&uc->retry);
            uc->state = GG_UP_IDLE;
            break;
        case GG_UP_CLOSING:
            busy = 1;
            break;
        default:
            break;
        }
    }
    return busy;
}

/* (Re)open every idle connection of a live endpoint (a new one, or one registered again
 * while it drained). Returns 1 when some connection is still closing (try again later). */
static int open_endpoint(gg_endpoint *ep)
{
    int later = 0;
    if (ep->svc->srv->draining) return 0; /* the gateway is stopping: nothing new opens */
    gg_uconn *conns = ep->conns;
    for (int k = 0; k < ep->nconns; k++) {
        gg_uconn *uc = &conns[k];
        if (uc->state == GG_UP_CLOSING) later = 1;
        if (uc->state != GG_UP_IDLE) continue;
        gg_backoff_reset(&uc->backoff);
        uc->connect_status = 0;
        uc->connected_at = 0;
        uconn_connect(uc);
    }
    return later;
}

/* Put a newly registered address into a free slot (allocating its pool the first time).
 * Returns its number (1-based), or -1 when every slot is taken or out of memory. */
static int add_endpoint(gg_service *svc, const gg_addr *a)
{
    gg_server *srv = svc->srv;
    gg_endpoint *ep = NULL;
    for (int e = 0; e < svc->neps && !ep; e++)
        if (svc->eps[e].gone == GG_EP_FREE) ep = &svc->eps[e];
    if (!ep && svc->neps < GG_DISCOVER_MAX_ENDPOINTS) {
        ep = &svc->eps[svc->neps];
        ep->gone = GG_EP_FREE;
        ep->addr = &no_addr;
        ep->svc = svc;
        svc->neps++;
    }
    if (!ep) return -1;
    gg_addr *own = malloc(sizeof *own);
    if (!own) return -1;
    if (!ep->conns) {
        int n = svc->conf->connections;
        gg_uconn *conns = calloc((size_t)n, sizeof(gg_uconn));
        if (!conns) {
            free(own);
            return -1;
        }
        ep->conns = conns;
        ep->nconns = n;
        for (int k = 0; k < n; k++) {
            conns[k].ep = ep;
            conns[k].index = k;
            conns[k].st.loop = &srv->lp;
            uv_timer_init(srv->lp.uv, &conns[k].retry);
            conns[k].retry.data = &conns[k];
        }
    }
    *own = *a;
    ep->own_addr = own;
    ep->addr = own;
    ep->gone = GG_EP_LIVE;
    ep->nconnected = 0;
    ep->connect_failures = 0;
    ep->down = 0;
    ep->down_repeats = 0;
    ep->tls_warned = 0;
    open_endpoint(ep);
    return (int)(ep - svc->eps) + 1;
}

static int listed(const gg_addr *addrs, int n, const char *text)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(addrs[i].text, text)) return 1;
    return 0;
}

/* gg_upstream_ops.set_endpoints */
static int mprpc_set_endpoints(gg_service *svc, const gg_addr *addrs, int n)
{
    gg_server *srv = svc->srv;
    int changed = 0, pending = 0;
    for (int e = 0; e < svc->neps; e++) {
        gg_endpoint *ep = &svc->eps[e];
        if (ep->gone == GG_EP_FREE) continue;
        int in = listed(addrs, n, ep->addr->text);
        if (ep->gone == GG_EP_LIVE && !in) {
            ep->gone = GG_EP_DRAINING;
            changed = 1;
            uint32_t inflight = 0;
            for (int k = 0; k < ep->nconns; k++) inflight += ((gg_uconn *)ep->conns)[k].calls.n;
            gg_log(&srv->lp.log, GG_LOG_INFO, "endpoint_removed", "service=%s upstream=%s inflight=%u",
                   svc->name, ep->addr->text, inflight);
        } else if (ep->gone == GG_EP_DRAINING && in) {
            ep->gone = GG_EP_LIVE; /* registered again before it had closed */
            changed = 1;
            gg_log(&srv->lp.log, GG_LOG_INFO, "endpoint_added", "service=%s upstream=%s slot=%d",
                   svc->name, ep->addr->text, e + 1);
        }
        if (ep->gone == GG_EP_LIVE) {
            pending += open_endpoint(ep);
        } else if (drain_endpoint(ep)) {
            pending++;
        } else {
            gg_log(&srv->lp.log, GG_LOG_INFO, "endpoint_drained", "service=%s upstream=%s slot=%d",
                   svc->name, ep->addr->text, e + 1);
            ep->gone = GG_EP_FREE;
            ep->addr = &no_addr;
            free(ep->own_addr);
            ep->own_addr = NULL;
            changed = 1;
        }
    }
    for (int i = 0; i < n; i++) {
        int known = 0;
        for (int e = 0; e < svc->neps && !known; e++)
            known = svc->eps[e].gone != GG_EP_FREE && !strcmp(svc->eps[e].addr->text, addrs[i].text);
        if (known) continue;
        int slot = add_endpoint(svc, &addrs[i]);
        if (slot < 0) {
            gg_log(&srv->lp.log, GG_LOG_WARN, "endpoint_refused",
                   "service=%s upstream=%s reason=\"%s\"", svc->name, addrs[i].text,
                   svc->neps >= GG_DISCOVER_MAX_ENDPOINTS ? "every endpoint slot is taken"
                                                          : "out of memory");
            continue;
        }
        changed = 1;
        gg_log(&srv->lp.log, GG_LOG_INFO, "endpoint_added", "service=%s upstream=%s slot=%d",
               svc->name, addrs[i].text, slot);
    }
    if (changed) gg_policy_endpoints_listed(srv, svc);
    return pending;
}

/* gg_upstream_ops.start: CONNECT opens the pools, or takes over those of prev when its
 * endpoints did not change. */
static int mprpc_start(gg_service *svc, gg_service *prev, int phase, char *err, size_t errlen)
{
    if (phase != GG_UPSTREAM_CONNECT) return 0;
    if (svc->conf->discover) return discover_start(svc, prev, err, errlen);
    if (prev && prev->eps && !prev->conf->discover && same_endpoints(prev->conf, svc->conf)) {
        svc->eps = prev->eps;
        svc->neps = prev->neps;
        prev->eps = NULL;
        prev->neps = 0;
        for (int e = 0; e < svc->neps; e++) {
            svc->eps[e].svc = svc;
            svc->eps[e].addr = &svc->conf->upstreams[e];
        }
        return 0;
    }
    if (new_endpoints(svc)) {
        snprintf(err, errlen, "endpoints");
        return -1;
    }
    return 0;
}

static void retired_closed(uv_handle_t *h)
{
    gg_uconn *uc = h->data;
    gg_generation *gen = uc->ep->svc->gen;
    gen->closing--;
    gg_generation_maybe_free(gen);
}

/* gg_upstream_ops.release: close every connection and timer of svc. `counted`: the
 * generation is retired and waits for the close callbacks before it frees itself. The
 * memory of the endpoints is freed with the generation. */
static void mprpc_release(gg_service *svc, int counted)
{
    gg_generation *gen = svc->gen;
    for (int e = 0; e < svc->neps; e++) {
        gg_endpoint *ep = &svc->eps[e];
        gg_uconn *conns = ep->conns;
        for (int k = 0; k < ep->nconns; k++) {
            gg_uconn *uc = &conns[k];
            int was = uc->state;
            uc->state = GG_UP_CLOSING;
            if (was == GG_UP_CONNECTED) ep->nconnected--;
            if (was == GG_UP_CONNECTING || was == GG_UP_CONNECTED) {
                fail_calls(uc, "is being closed");
                if (counted) gen->closing++;
                gg_stream_close(&uc->st);
            } else if (was == GG_UP_CLOSING && ep->gone) {
                /* a drained endpoint's connection, closing: on_closed counts it down */
                if (counted) gen->closing++;
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

/* The best connection of one endpoint: a connected one (fill-first, then least loaded), else
 * one still connecting (the call waits in its output), else NULL. */
static gg_uconn *pick_in(gg_endpoint *ep, int *connected)
{
    gg_uconn *best = NULL, *waiting = NULL;
    gg_uconn *conns = ep->conns;
    if (ep->nconnected) {
        for (int i = 0; i < ep->nconns; i++) {
            gg_uconn *uc = &conns[i];
            if (uc->state != GG_UP_CONNECTED) continue;
            if (uc->calls.n < FILL_FIRST) {
                best = uc;
                break;
            }
            if (!best || uc->calls.n < best->calls.n) best = uc;
        }
    }
    if (best) {
        *connected = 1;
        return best;
    }
    for (int i = 0; i < ep->nconns && !waiting; i++)
        if (conns[i].state == GG_UP_CONNECTING) waiting = &conns[i];
    *connected = 0;
    return waiting;
}

/* Round robin over the endpoints, preferring connected ones. */
static gg_uconn *pick(gg_service *svc, int endpoint, int *connected)
{
    /* an endpoint a policy chose that has since left the registry: the core chooses */
    if (endpoint > 0 && endpoint <= svc->neps && !svc->eps[endpoint - 1].gone)
        return pick_in(&svc->eps[endpoint - 1], connected);
    gg_uconn *waiting = NULL;
    for (int k = 0; k < svc->neps; k++) {
        gg_endpoint *ep = &svc->eps[(svc->rr + (uint32_t)k) % (uint32_t)svc->neps];
        if (ep->gone) continue;
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

/* A call on its way out on uc: where it went, whether the connection was up (a call sent on
 * a connection still connecting may be retried elsewhere), and the link that fails it when
 * the connection dies. */
static void link_sent(gg_service *svc, gg_uconn *uc, gg_call *call, int sent)
{
    call->endpoint = (uint16_t)(uc->ep - svc->eps + 1);
    call->sent = (uint8_t)sent;
    gg_call_link_carrier(&uc->calls, call);
}

/* [0, call->id, method, body] on uc, within the write-buffer bound, then linked (link_sent).
 * The one request writer of send and send_to. */
static int write_request(gg_service *svc, gg_uconn *uc, gg_call *call, const char *method,
                         uint32_t method_len, const char *body, size_t body_len, int sent)
{
    if (gg_stream_pending(&uc->st) + body_len > svc->srv->cfg->limits.max_write_buffer)
        return GG_ERR_OVERLOADED;
    char *p = gg_stream_reserve(&uc->st, 16 + method_len + body_len);
    if (!p) return GG_ERR_OVERLOADED;
    size_t n = gg_put_request_hdr(p, call->id, method, method_len);
    memcpy(p + n, body, body_len);
    gg_stream_commit(&uc->st, n + body_len);
    link_sent(svc, uc, call, sent);
    return 0;
}

/* [2, method, params] on uc; params is the encoded params array. Returns -1 when the stream
 * cannot take it (out of memory). The bound, where there is one, is the caller's. */
static int write_notify(gg_uconn *uc, const char *method, uint32_t method_len,
                        const char *params, size_t params_len)
{
    char *p = gg_stream_reserve(&uc->st, 8 + method_len + params_len);
    if (!p) return -1;
    size_t n = gg_put_notify_hdr(p, method, method_len);
    memcpy(p + n, params, params_len);
    gg_stream_commit(&uc->st, n + params_len);
    return 0;
}

/* gg_upstream_ops.send */
static int mprpc_send(gg_service *svc, gg_call *call, int endpoint, const char *method,
                      uint32_t method_len, const char *body, size_t body_len)
{
    int connected;
    gg_uconn *uc = pick(svc, endpoint, &connected);
    if (!uc) return GG_ERR_UPSTREAM_UNAVAILABLE;
    if (call->client_objs) {
        int rc = gg_mprpc_send_with_objects(uc, call, method, method_len, body, body_len);
        if (rc) return rc;
        link_sent(svc, uc, call, connected);
        return 0;
    }
    return write_request(svc, uc, call, method, method_len, body, body_len, connected);
}

/* gg_upstream_ops.notify */
static int mprpc_notify(gg_service *svc, int endpoint, const char *method, uint32_t method_len,
                        const char *body, size_t body_len)
{
    int connected;
    gg_uconn *uc = pick(svc, endpoint, &connected);
    if (!uc) return GG_ERR_UPSTREAM_UNAVAILABLE;
    if (gg_stream_pending(&uc->st) + body_len > svc->srv->cfg->limits.max_write_buffer)
        return GG_ERR_OVERLOADED;
    return write_notify(uc, method, method_len, body, body_len) ? GG_ERR_OVERLOADED : 0;
}

/* gg_upstream_ops.conn_service */
gg_service *gg_mprpc_conn_service(void *conn)
{
    gg_uconn *uc = conn;
    return uc->state == GG_UP_CONNECTED && !(uc->st.flags & GG_ST_CLOSING) ? uc->ep->svc : NULL;
}

/* gg_upstream_ops.send_to */
static int mprpc_send_to(void *conn, gg_call *call, const char *method, uint32_t method_len,
                         const char *body, size_t body_len)
{
    gg_uconn *uc = conn;
    gg_service *svc = gg_mprpc_conn_service(uc);
    if (!svc) return GG_ERR_UPSTREAM_UNAVAILABLE;
    return write_request(svc, uc, call, method, method_len, body, body_len, 1);
}

/* gg_upstream_ops.notify_to: nothing is queued on a connection that is not up, or when the
 * stream cannot take it. */
static void mprpc_notify_to(void *conn, const char *method, uint32_t method_len,
                            const char *params, size_t params_len)
{
    gg_uconn *uc = conn;
    if (!gg_mprpc_conn_service(uc)) return;
    (void)write_notify(uc, method, method_len, params, params_len);
}

/* gg_upstream_ops.describe: not ready while no endpoint has a connection up. */
static void mprpc_describe(const gg_service *svc, gg_upstream_info *out)
{
    out->protocol = "msgpack-rpc";
    out->not_ready = NULL;
    if (svc->conf->discover && !gg_service_live_endpoints(svc)) {
        out->not_ready = "no endpoint registered";
        return;
    }
    if (svc->neps == 0) {
        out->not_ready = "no upstream endpoint";
        return;
    }
    for (int e = 0; e < svc->neps; e++)
        if (!svc->eps[e].gone && svc->eps[e].nconnected > 0) return;
    out->not_ready = "no upstream endpoint is connected";
}

const gg_upstream_ops gg_mprpc_ops = {
    .name = "msgpack-rpc",
    .start = mprpc_start,
    .send = mprpc_send,
    .notify = mprpc_notify,
    .release = mprpc_release,
    .owe = mprpc_owe,
    .conn_service = gg_mprpc_conn_service,
    .send_to = mprpc_send_to,
    .notify_to = mprpc_notify_to,
    .carrier_conn = gg_mprpc_carrier_conn,
    .send_releases = gg_mprpc_send_releases,
    .obj_counts = gg_mprpc_obj_counts,
    .set_endpoints = mprpc_set_endpoints,
    .cb_port = gg_mprpc_cb_port,
    .cb_counts = gg_mprpc_cb_counts,
    .describe = mprpc_describe,
};

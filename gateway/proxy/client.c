/* client.c -- client connections: route each request to its service, answer every call once. */
#include "proxy/client.h"
#include "proxy/callbacks.h"
#include "proxy/dispatch.h"
#include "core/errors.h"
#include "proxy/server.h"
#include "proxy/sys.h"
#include "core/tls.h"
#include "core/objtable.h"
#include "proxy/promises.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gg_client_peer(gg_client *c, char *out, size_t n)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (c->st.io.handle.type == UV_TCP &&
        uv_tcp_getpeername(&c->st.io.tcp, (struct sockaddr *)&ss, &len) == 0)
        gg_addr_format_sa((struct sockaddr *)&ss, out, n);
    else
        snprintf(out, n, "unix");
}

/* Reading resumes when the client is back under its limits; resuming is deferred to the end of
 * the loop turn so that no client is re-entered from inside another connection's callback. */
static int over_limits(gg_client *c)
{
    const gg_limits *l = &gg_server_of(c->st.loop)->cfg->limits;
    return c->calls.n >= l->max_inflight_per_client || gg_stream_pending(&c->st) > l->max_write_buffer;
}

static void maybe_resume(gg_client *c)
{
    if (c->held && !over_limits(c) && !(c->st.flags & GG_ST_CLOSING)) {
        c->held = 0;
        gg_server_defer_resume(gg_server_of(c->st.loop), c);
    }
}

void gg_client_drained(gg_client *c)
{
    maybe_resume(c);
}

static void mp_answer(gg_client *c, uint32_t id, const char *body, size_t len)
{
    char *p = gg_stream_reserve(&c->st, GG_RESPONSE_HDR_MAX + len);
    if (!p) return;
    size_t n = gg_put_response_hdr(p, id);
    memcpy(p + n, body, len);
    gg_stream_commit(&c->st, n + len);
}

static void mp_result(gg_client *c, uint32_t id, const char *result, size_t len)
{
    char *p = gg_stream_reserve(&c->st, GG_RESPONSE_HDR_MAX + 1 + len);
    if (!p) return;
    size_t n = gg_put_response_hdr(p, id);
    p[n++] = (char)0xc0;
    memcpy(p + n, result, len);
    gg_stream_commit(&c->st, n + len);
}

static void mp_error(gg_client *c, uint32_t id, int code, double retry_after, const char *message)
{
    gg_reply_error_full(&c->st, id, code, retry_after, message);
}

const gg_client_proto gg_msgpack_proto = {
    .name = "msgpack-rpc",
    .answer = mp_answer,
    .result = mp_result,
    .error = mp_error,
};

static void client_unlinked(gg_call_list *l)
{
    maybe_resume((gg_client *)((char *)l - offsetof(gg_client, calls)));
}

void gg_client_link_call(gg_client *c, gg_call *call)
{
    c->calls.on_unlink = client_unlinked; /* a store, so no constructor has to remember it */
    gg_call_link_owner(&c->calls, call);
    if (over_limits(c)) {
        c->held = 1;
        gg_stream_pause(&c->st);
    }
}

/* The gateway's own methods: ghost.auth(token), ghost.ping(). */
static void handle_ghost(gg_client *c, const char *msg, const gg_msg *m, const char *name, uint32_t len)
{
    gg_server *srv = gg_server_of(c->st.loop);
    if (len == 4 && memcmp(name, "auth", 4) == 0) {
        gg_policy_auth(srv, c, m->msgid, msg + m->body_off, m->size - m->body_off);
        return;
    }
    if (len == 4 && memcmp(name, "ping", 4) == 0) {
        char *p = gg_stream_reserve(&c->st, GG_RESPONSE_HDR_MAX + 6);
        if (!p) return;
        size_t n = gg_put_response_hdr(p, m->msgid);
        memcpy(p + n, "\xc0\xa4pong", 6);
        gg_stream_commit(&c->st, n + 6);
        return;
    }
    gg_reply_error(&c->st, m->msgid, GG_ERR_NO_SUCH_SERVICE, "no such gateway method 'ghost.%.*s'",
                   (int)(len > 64 ? 64 : len), name);
}

static void handle_request(gg_client *c, const char *msg, const gg_msg *m)
{
    gg_server *srv = gg_server_of(c->st.loop);
    const char *method = msg + m->method_off;
    uint32_t mlen = m->method_len;
    if (srv->draining) {
        gg_reply_error(&c->st, m->msgid, GG_ERR_SHUTTING_DOWN, "the gateway is shutting down");
        return;
    }
    if (mlen && method[0] == '$') { /* a call on a remote object: $call, $get */
        gg_dispatch_object(srv, c, m->msgid, method, mlen, msg + m->body_off,
                           m->size - m->body_off);
        return;
    }
    const char *dot = m->method_dot < mlen ? method + m->method_dot : NULL;
    uint32_t svc_len = dot ? m->method_dot : (mlen > 64 ? 64 : mlen);
    if (m->method_flaw) {
        int code = gg_method_refused(dot ? gg_service_find(srv, method, svc_len) : NULL,
                                     m->method_flaw);
        if (code) {
            const char *why = gg_method_flaw_reason(m->method_flaw);
            char peer[64];
            gg_client_peer(c, peer, sizeof peer);
            gg_log(&srv->lp.log, GG_LOG_INFO, "method_refused",
                   "peer=%s msgid=%u method=\"%.*s\" reason=\"%s\"", peer, m->msgid,
                   (int)(mlen > 64 ? 64 : mlen), method, why);
            gg_reply_error(&c->st, m->msgid, code, "%s", why);
            return;
        }
    }
    if (dot && svc_len == 5 && memcmp(method, "ghost", 5) == 0) {
        handle_ghost(c, msg, m, dot + 1, (uint32_t)(method + mlen - dot - 1));
        return;
    }
    if (mlen > 4 && memcmp(method, "sys.", 4) == 0) { gg_sys_request(srv, c, msg, m); return; }
    gg_service *svc = dot ? gg_service_find(srv, method, svc_len) : NULL;
    if (!svc) {
        gg_log(&srv->lp.log, GG_LOG_DEBUG, "no_such_service", "method=\"%.*s\"",
               (int)(mlen > 64 ? 64 : mlen), method);
        gg_reply_error(&c->st, m->msgid, GG_ERR_NO_SUCH_SERVICE, "no such service '%.*s'",
                       (int)svc_len, method);
        return;
    }
    if (dot + 1 == method + mlen) {
        gg_reply_error(&c->st, m->msgid, GG_ERR_BAD_REQUEST, "method name is empty");
        return;
    }
    gg_method name = {method, mlen, m->method_dot};
    gg_dispatch_request(srv, c, svc, m->msgid, &name, msg + m->body_off, m->size - m->body_off);
}

/* A notification meets the same policies as a call (gg_dispatch_notify); it has no answer, so
 * one that is refused or cannot be delivered is only counted and logged. */
static void handle_notify(gg_client *c, const char *msg, const gg_msg *m)
{
    gg_server *srv = gg_server_of(c->st.loop);
    const char *method = msg + m->method_off;
    uint32_t mlen = m->method_len;
    if (mlen && method[0] == '$') { /* $release, $finish of remote objects */
        gg_dispatch_object_notify(srv, c, method, mlen, msg + m->body_off, m->size - m->body_off);
        return;
    }
    gg_method name = {method, mlen, m->method_dot};
    gg_service *svc = name.dot < mlen ? gg_service_find(srv, method, name.dot) : NULL;
    int rc = gg_method_refused(svc, m->method_flaw);
    if (rc) {
        gg_dispatch_notify_dropped(srv, svc, method, mlen, rc,
                                   gg_method_flaw_reason(m->method_flaw));
        return;
    }
    if (!svc) {
        gg_dispatch_notify_dropped(srv, NULL, method, mlen, GG_ERR_NO_SUCH_SERVICE,
                                   "no such service");
        return;
    }
    gg_dispatch_notify(srv, c, svc, &name, msg + m->body_off, m->size - m->body_off);
}

static void on_message(gg_stream *s, const char *msg, const gg_msg *m)
{
    gg_client *c = (gg_client *)s;
    gg_server *srv = gg_server_of(s->loop);
    c->last_active = uv_now(srv->lp.uv);
    const char *bad = gg_msg_invalid(m);
    if (bad) {
        char peer[64];
        gg_client_peer(c, peer, sizeof peer);
        if (m->type == GG_REQUEST && m->has_id) {
            gg_log(&srv->lp.log, GG_LOG_INFO, "bad_request", "peer=%s msgid=%u reason=\"%s\"", peer,
                   m->msgid, bad);
            gg_reply_error(s, m->msgid, GG_ERR_BAD_REQUEST, "%s", bad);
            return;
        }
        gg_log(&srv->lp.log, GG_LOG_WARN, "client_closed", "peer=%s reason=\"%s\"", peer, bad);
        gg_stream_close_after_flush(s);
        return;
    }
    switch (m->type) {
    case GG_REQUEST: handle_request(c, msg, m); break;
    case GG_NOTIFY: handle_notify(c, msg, m); break;
    default: /* an answer to a callback (the gateway's own request), or a stray one */
        gg_cb_response(srv, c, m->msgid, msg + m->body_off, m->size - m->body_off);
        break;
    }
}

static void on_frame_error(gg_stream *s, int code, const gg_msg *m)
{
    gg_client *c = (gg_client *)s;
    gg_server *srv = gg_server_of(s->loop);
    const gg_limits *l = &srv->cfg->limits;
    char peer[64];
    gg_client_peer(c, peer, sizeof peer);
    int ecode = code == GG_ETOOBIG ? GG_ERR_TOO_LARGE : GG_ERR_BAD_REQUEST;
    const char *why = code == GG_ETOOBIG    ? "message exceeds max_message_size"
                      : code == GG_ETOODEEP ? "message nesting exceeds max_depth"
                                            : "malformed MessagePack";
    gg_log(&srv->lp.log, GG_LOG_WARN, "client_closed", "peer=%s reason=\"%s\"", peer, why);
    if (m->type == GG_REQUEST && m->has_id) {
        if (code == GG_ETOOBIG)
            gg_reply_error(s, m->msgid, ecode, "%s (%zu bytes)", why, l->max_message_size);
        else if (code == GG_ETOODEEP)
            gg_reply_error(s, m->msgid, ecode, "%s (%u)", why, l->max_depth);
        else
            gg_reply_error(s, m->msgid, ecode, "%s", why);
    }
    /* The stream's framing is lost: nothing after this message can be trusted. */
    gg_stream_close_after_flush(s);
}

static void on_eof(gg_stream *s, int status)
{
    gg_server *srv = gg_server_of(s->loop);
    if (status != UV_EOF) {
        char peer[64];
        gg_client_peer((gg_client *)s, peer, sizeof peer);
        gg_log(&srv->lp.log, GG_LOG_INFO, "client_error", "peer=%s reason=\"%s\"", peer,
               uv_strerror(status));
    }
    gg_stream_close(s);
}

static void on_drain(gg_stream *s)
{
    maybe_resume((gg_client *)s);
}

struct gg_objtab *gg_client_objs(gg_client *c)
{
    if (c->objs) return c->objs;
    gg_objtab *t = malloc(sizeof *t);
    if (!t) return NULL;
    if (gg_objtab_init(t, GG_OBJ_CLIENT,
                       gg_server_of(c->st.loop)->cfg->limits.max_refs_per_client)) {
        free(t);
        return NULL;
    }
    c->objs = t;
    t->shares_limit = c->own; /* its exports count against the same limit */
    if (c->own) c->own->shares_limit = t;
    return t;
}

static void on_closed(gg_stream *s)
{
    gg_client *c = (gg_client *)s;
    gg_server *srv = gg_server_of(s->loop);
    gg_cb_client_closed(srv, c); /* before its table of held objects goes */
    if (c->objs) { /* what it held is released upstream at the end of this turn */
        gg_objtab_free(c->objs);
        free(c->objs);
    }
    gg_kept_tab_free(c->kept, &srv->lp.calls); /* the upstreams are told $finish */
    /* Calls still upstream stay registered (their answers must be absorbed) but have no one
     * to answer: they end silently at their response or deadline. */
    gg_client_remove(srv, c);
    free(c);
}

static const gg_stream_ops client_ops = {
    .on_message = on_message,
    .on_frame_error = on_frame_error,
    .on_eof = on_eof,
    .on_drain = on_drain,
    .on_closed = on_closed,
};

void gg_client_add(gg_server *srv, gg_client *c)
{
    c->last_active = uv_now(srv->lp.uv);
    c->prev = srv->clients_tail;
    c->next = NULL;
    if (c->prev)
        c->prev->next = c;
    else
        srv->clients = c;
    srv->clients_tail = c;
    srv->nclients++;
}

void gg_client_remove(gg_server *srv, gg_client *c)
{
    gg_call_list_orphan_owner(&c->calls);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        srv->clients_tail = c->prev;
    srv->nclients--;
    gg_server_forget_resume(srv, c);
    gg_policy_client_closed(srv, c);
}

void gg_client_accept(gg_server *srv, uv_stream_t *server, int is_pipe, struct gg_tls_ctx *tls)
{
    gg_client *c = calloc(1, sizeof *c);
    if (!c) {
        gg_log(&srv->lp.log, GG_LOG_ERROR, "out_of_memory", "what=client");
        return;
    }
    if (is_pipe)
        uv_pipe_init(srv->lp.uv, &c->st.io.pipe, 0);
    else
        uv_tcp_init(srv->lp.uv, &c->st.io.tcp);
    gg_stream_init(&c->st, &srv->lp, &client_ops, GG_ST_READY);
    c->st.max_out = srv->cfg->limits.max_write_buffer; /* every answer counts, not only calls */
    c->proto = &gg_msgpack_proto;
    gg_client_add(srv, c);
    if (uv_accept(server, &c->st.io.stream)) {
        gg_stream_close(&c->st);
        return;
    }
    if (srv->nclients > srv->cfg->limits.max_clients || srv->draining) {
        gg_log(&srv->lp.log, GG_LOG_WARN, "client_refused", "reason=%s limit=%u",
               srv->draining ? "shutting_down" : "max_clients", srv->cfg->limits.max_clients);
        gg_stream_close(&c->st);
        return;
    }
    if (!is_pipe) uv_tcp_nodelay(&c->st.io.tcp, 1);
    if ((tls && gg_tls_attach(&c->st, tls, NULL)) || gg_stream_start(&c->st)) gg_stream_close(&c->st);
}

void gg_clients_sweep(gg_server *srv)
{
    const gg_limits *l = &srv->cfg->limits;
    uint64_t now = uv_now(srv->lp.uv);
    for (gg_client *c = srv->clients; c; c = c->next) {
        if (c->st.flags & GG_ST_CLOSING) continue;
        const char *why = NULL;
        if (c->st.partial_since && now - c->st.partial_since > l->message_timeout_ms)
            why = "message_timeout";
        else if (c->st.tls && gg_tls_handshake_expired(c->st.tls, now))
            why = "tls_handshake_timeout";
        else if (!c->calls.n && !gg_stream_pending(&c->st) && now - c->last_active > l->idle_timeout_ms)
            why = "idle_timeout";
        else if (gg_stream_write_stalled(&c->st, now, l->write_timeout_ms))
            why = "write_timeout"; /* its answers are dropped: it was not reading them */
        if (!why) continue;
        char peer[64];
        gg_client_peer(c, peer, sizeof peer);
        gg_log(&srv->lp.log, GG_LOG_INFO, "client_closed", "peer=%s reason=%s", peer, why);
        gg_stream_close(&c->st);
    }
}

void gg_clients_close_all(gg_server *srv)
{
    for (gg_client *c = srv->clients; c; c = c->next) gg_stream_close_after_flush(&c->st);
}

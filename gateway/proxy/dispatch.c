/* dispatch.c -- a call's life: request phase, upstream, response phase, exactly one answer.
 *
 * Every call ends through call_end(): the gateway's bookkeeping (metrics, the generation's
 * count, the retry copy, an id owed to the connection that carried it), then the calls
 * module's gg_call_end, which unlinks it from its client, its upstream connection and the
 * deadline heap. A policy's verdict is applied in one place (apply_verdict). A call is answered by exactly one of: the upstream's
 * response (gg_call_answer), a gateway error (gg_call_fail, the deadline), or a policy
 * (reject, respond). A retry keeps the call alive with no upstream connection while its
 * timer runs. */
#include "proxy/dispatch.h"
#include "core/errors.h"
#include "proxy/server.h"
#include "core/buf.h"
#include "core/objects.h"
#include "core/objtable.h"
#include "core/objiface.h"
#include "proxy/promises.h"
#include "proxy/callbacks.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A copy of the request, kept for services whose policies may retry it. */
typedef struct gg_retry {
    uv_timer_t timer;
    gg_call *call;      /* NULL once the call has ended: the timer only frees itself */
    int timer_started;
    uint32_t method_len; /* "svc.method" */
    uint32_t dot;        /* offset of the '.' */
    size_t params_len;
    char bytes[];        /* method, then params */
} gg_retry;

static void attempt(gg_server *srv, gg_call *call, const gg_method *m, const char *params,
                    size_t plen);

static void retry_closed(uv_handle_t *h)
{
    free(h->data);
}

static void retry_release(gg_retry *r)
{
    r->call = NULL;
    if (r->timer_started)
        uv_close((uv_handle_t *)&r->timer, retry_closed);
    else
        free(r);
}

/* Unlink the call from everything and give it back. Exactly one path reaches here per call:
 * the gateway's bookkeeping, then the calls module's one gg_call_end. */
static void call_end(gg_server *srv, gg_call *call)
{
    /* Sent and unanswered (the answer path unlinked it first): its connection keeps the id. */
    gg_call_list *owed_to = call->sent ? call->carrier : NULL;
    if (owed_to) gg_call_hold(call);
    if (call->retry) retry_release(call->retry);
    gg_metrics_record(call->mstats, call->outcome, uv_hrtime() - call->t0);
    call->svc->stats->inflight--;
    gg_generation *gen = call->svc->gen;
    const gg_upstream_ops *ops = call->svc->ops; /* only a pool that carries calls sets carrier */
    gg_call_end(&srv->lp.calls, call);
    if (owed_to) ops->owe(owed_to, call);
    if (--gen->calls == 0 && gen->retired) gg_generation_maybe_free(gen);
    if (srv->draining) gg_server_check_drained(srv);
}

void gg_dispatch_on_deadline(void *lp, gg_call *call)
{
    gg_server *srv = gg_server_of(lp);
    if (call->callback) {
        gg_cb_on_deadline(srv, call);
        return;
    }
    gg_log(&srv->lp.log, GG_LOG_INFO, "deadline_exceeded", "service=%s msgid=%u",
           call->svc->name, call->client_id);
    gg_call_fail(srv, call, GG_ERR_DEADLINE_EXCEEDED, "deadline of %.3f s exceeded",
                 (double)call->svc->conf->deadline_ms / 1000.0);
}

static gg_client *live_client(gg_call *call)
{
    gg_client *c = gg_call_client(call);
    return c && !(c->st.flags & GG_ST_CLOSING) ? c : NULL;
}

static void answer_result(gg_server *srv, gg_call *call, const char *result, size_t len)
{
    call->outcome = 0;
    gg_client *c = live_client(call);
    if (!c) return;
    c->proto->result(c, call->client_id, result, len);
    c->last_active = uv_now(srv->lp.uv);
}

static void answer_error(gg_call *call, int code, double retry_after, const char *msg)
{
    call->outcome = (int16_t)code;
    gg_client *c = live_client(call);
    if (c) c->proto->error(c, call->client_id, code, retry_after, msg);
}

static void on_retry(uv_timer_t *t)
{
    gg_retry *r = t->data;
    gg_call *call = r->call;
    if (!call) return;
    gg_server *srv = call->svc->srv;
    if (!call->owner) { /* nobody left to answer */
        call_end(srv, call);
        return;
    }
    gg_method m = {r->bytes, r->method_len, r->dot};
    attempt(srv, call, &m, r->bytes + r->method_len, r->params_len);
}

/* A policy asked to send the call again after `delay` seconds. Returns 0 when scheduled. */
static int schedule_retry(gg_server *srv, gg_call *call, double delay)
{
    gg_retry *r = call->retry;
    uint64_t now = uv_now(srv->lp.uv);
    uint64_t wait = delay > 0 ? (uint64_t)(delay * 1000.0) : 0;
    if (!r || !call->owner || now + wait >= call->deadline || call->attempt >= 255) return -1;
    gg_call_unlink_carrier(call);
    call->attempt++;
    call->endpoint = 0; /* a deadline during the wait is nobody's endpoint's failure */
    call->sent = 0;
    if (!r->timer_started) {
        uv_timer_init(srv->lp.uv, &r->timer);
        r->timer.data = r;
        r->timer_started = 1;
    }
    uv_timer_start(&r->timer, on_retry, wait, 0);
    gg_log(&srv->lp.log, GG_LOG_INFO, "retry", "service=%s attempt=%u delay_ms=%llu",
           call->svc->name, call->attempt, (unsigned long long)wait);
    return 0;
}

#define PHASE_REQUEST  0
#define PHASE_RESPONSE 1

/* Apply a policy's verdict. Returns 1 when the call was answered (and ended) or rescheduled,
 * 0 when the caller goes on: REQUEST phase CONTINUE (*endpoint set, deadline override applied
 * on attempt 1); RESPONSE phase with no verdict, or a RETRY that cannot be scheduled (the
 * upstream's answer or the gateway error stands). REQUEST: anything but CONTINUE and RESPOND
 * answers code + retry_after. RESPONSE: ERROR answers code with no retry_after; REJECT is no
 * verdict there. */
static int apply_verdict(gg_server *srv, gg_call *call, const gg_verdict *v, int phase,
                         int *endpoint)
{
    switch (v->verdict) {
    case GG_V_CONTINUE:
        if (phase == PHASE_REQUEST) {
            *endpoint = v->endpoint;
            if (call->attempt == 1 && v->deadline > 0 &&
                (uint64_t)(v->deadline * 1000.0) != call->svc->conf->deadline_ms)
                gg_call_set_deadline(&srv->lp.calls, call,
                                     uv_now(srv->lp.uv) + (uint64_t)(v->deadline * 1000.0));
        }
        return 0;
    case GG_V_RESPOND:
    case GG_V_RESPOND_RAW:
        answer_result(srv, call, v->result, v->result_len);
        break;
    case GG_V_ERROR: /* as for an upstream's answer: the policy's error wins */
        answer_error(call, v->code, phase == PHASE_REQUEST ? v->retry_after : -1, v->message);
        break;
    case GG_V_RETRY:
        if (phase == PHASE_RESPONSE) return schedule_retry(srv, call, v->delay) == 0;
        answer_error(call, v->code, v->retry_after, v->message);
        break;
    default: /* REJECT */
        if (phase == PHASE_RESPONSE) return 0;
        answer_error(call, v->code, v->retry_after, v->message);
        break;
    }
    call_end(srv, call);
    return 1;
}

/* Bytes of the MessagePack object at p (already framed by the upstream's scan), or 0. */
static size_t object_size(const char *p, size_t len)
{
    gg_scan_state st;
    gg_scan_limits lim = {.max_message = len, .max_depth = GG_DEPTH_CAP};
    gg_scan_reset(&st);
    return gg_scan(&st, p, len, &lim) == GG_SCAN_DONE ? st.msg.size : 0;
}

/* An upstream's error map with a "traceback" key (ghost.serve backends, adapters), for a
 * service without error_details: the same answer without that key, in a malloc'd copy the
 * caller frees. NULL when there is nothing to take out (or no memory: then it goes as it
 * is). Only error answers pay for this walk over the map's keys. */
static char *without_traceback(const char *body, size_t len, size_t *out_len)
{
    const uint8_t *b = (const uint8_t *)body;
    uint32_t n;
    size_t h;
    if (len && (b[0] & 0xf0) == 0x80) n = b[0] & 0x0f, h = 1;
    else if (len >= 3 && b[0] == 0xde) n = (uint32_t)b[1] << 8 | b[2], h = 3;
    else if (len >= 5 && b[0] == 0xdf)
        n = (uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 | b[4], h = 5;
    else return NULL;
    size_t pos = h, at = 0, cut = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t kl = object_size(body + pos, len - pos);
        size_t vl = kl ? object_size(body + pos + kl, len - pos - kl) : 0;
        if (!vl) return NULL;
        uint32_t sl;
        size_t sh = gg_get_str(body + pos, kl, &sl);
        if (!cut && sh && sh + sl == kl && sl == 9 && memcmp(body + pos + sh, "traceback", 9) == 0)
            at = pos, cut = kl + vl;
        pos += kl + vl;
    }
    if (!cut) return NULL;
    char *out = malloc(len);
    if (!out) return NULL;
    size_t o = gg_put_map_hdr(out, n - 1);
    memcpy(out + o, body + h, at - h);
    o += at - h;
    memcpy(out + o, body + at + cut, len - at - cut); /* the other keys, then the result */
    *out_len = o + len - at - cut;
    return out;
}

void gg_call_answer(gg_server *srv, gg_call *call, const char *body, size_t body_len)
{
    gg_service *svc = call->svc;
    gg_call_unlink_carrier(call); /* answered: its connection owes it nothing more */
    if (svc->has_response) {
        /* body is [error, result]: nil error means success */
        int ok = body_len && (unsigned char)body[0] == 0xc0;
        gg_verdict v;
        gg_policy_response(srv, call, ok ? 0 : 1, 0, ok ? body + 1 : NULL, ok ? body_len - 1 : 0, &v);
        if (apply_verdict(srv, call, &v, PHASE_RESPONSE, NULL)) return;
    }
    call->outcome = body_len && (unsigned char)body[0] == 0xc0 ? 0 : 1;
    gg_client *c = live_client(call);
    char *stripped = NULL;
    if (c && call->outcome && !svc->conf->error_details &&
        (stripped = without_traceback(body, body_len, &body_len)))
        body = stripped;
    if (c) {
        c->proto->answer(c, call->client_id, body, body_len);
        c->last_active = uv_now(srv->lp.uv);
    }
    free(stripped);
    call_end(srv, call);
}

void gg_call_fail(gg_server *srv, gg_call *call, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (call->callback) { /* a request of the gateway's own to a client */
        gg_cb_fail(srv, call, code, msg);
        return;
    }
    if (call->svc->has_response && code != GG_ERR_SHUTTING_DOWN) {
        gg_verdict v;
        gg_policy_response(srv, call, 2, code, NULL, 0, &v);
        if (apply_verdict(srv, call, &v, PHASE_RESPONSE, NULL)) return;
    }
    answer_error(call, code, -1, msg);
    call_end(srv, call);
}

/* One attempt: the request phase, then upstream. */
static void attempt(gg_server *srv, gg_call *call, const gg_method *m, const char *params,
                    size_t plen)
{
    gg_service *svc = call->svc;
    const char *method = m->name;
    uint32_t mlen = m->len;
    const char *rest = gg_method_rest(m);
    uint32_t rest_len = gg_method_rest_len(m);
    int endpoint = 0;
    if (svc->has_request) {
        gg_verdict v;
        gg_policy_request(srv, gg_call_client(call), svc, call, rest, rest_len, params, plen, &v);
        /* Only a name the policies let through gets a row of its own in /metrics: refused
         * names are anyone's to choose. A retry keeps the row of its first attempt. */
        if (call->attempt == 1)
            call->mstats = v.verdict == GG_V_CONTINUE
                               ? gg_metrics_method(svc->stats, rest, rest_len)
                               : gg_metrics_method_find(svc->stats, rest, rest_len);
        if (apply_verdict(srv, call, &v, PHASE_REQUEST, &endpoint)) return;
    } else if (call->attempt == 1) { /* no policies: every call passes them */
        call->mstats = gg_metrics_method(svc->stats, rest, rest_len);
    }
    if (svc->keeps_request && !call->retry && !call->client_objs) {
        gg_retry *r = calloc(1, sizeof *r + mlen + plen);
        if (r) {
            r->call = call;
            r->method_len = mlen;
            r->dot = m->dot;
            r->params_len = plen;
            memcpy(r->bytes, method, mlen);
            memcpy(r->bytes + mlen, params, plen);
            call->retry = r;
        }
    }
    if (svc->has_response) call->start_ns = uv_hrtime();
    const char *fwd = svc->conf->keep_prefix ? method : rest;
    uint32_t fwd_len = svc->conf->keep_prefix ? mlen : rest_len;
    int rc = gg_upstream_send(svc, call, endpoint, fwd, fwd_len, params, plen);
    if (rc == 0) return;
    call->sent = 0;
    call->endpoint = (uint16_t)(endpoint > 0 ? endpoint : 0);
    if (rc == GG_ERR_UPSTREAM_UNAVAILABLE && svc->conf->discover && !gg_service_live_endpoints(svc))
        gg_call_fail(srv, call, rc, "no endpoint registered for service '%s'", svc->name);
    else if (rc == GG_ERR_UPSTREAM_UNAVAILABLE)
        gg_call_fail(srv, call, rc, "no upstream of service '%s' is reachable", svc->name);
    else if (rc == GG_ERR_BAD_REQUEST) /* only the rewrite of a client's objects says so */
        gg_call_fail(srv, call, rc, "malformed object reference in the params");
    else
        gg_call_fail(srv, call, rc, "upstream of service '%s' is overloaded", svc->name);
}

int gg_method_refused(const gg_service *svc, int flaw)
{
    if (flaw == GG_NAME_OK || (svc && svc->conf->any_method_name)) return 0;
    return flaw == GG_NAME_PRIVATE ? GG_ERR_FORBIDDEN : GG_ERR_BAD_REQUEST;
}

/* The client passes n objects of its own: refused when they may not fit under
 * limits.max_refs_per_client with what it holds already (each counted as new: the check is
 * made before the upstream connection that records them is chosen). */
static int own_objects_fit(gg_server *srv, gg_client *c, uint32_t n)
{
    uint64_t held = (c->objs ? c->objs->len : 0) + (c->own ? c->own->len : 0);
    return held + n <= srv->cfg->limits.max_refs_per_client;
}

/* For a service with objects = true: a reference in a plain call's params would reach the
 * upstream as its own id on whichever pooled connection the call takes, so one client could
 * name what another holds: refused. The client's own functions and objects (OBJECT) are
 * routed: *own is set, and the upstream connection that takes the call rewrites them
 * (callbacks.c); a notification has no connection of its own to give them to (own NULL). */
static const char *refs_refused(gg_server *srv, const gg_service *svc, const char *params,
                                size_t params_len, uint8_t *own)
{
    gg_obj_seen seen;
    if (!svc->conf->objects) return NULL;
    if (!gg_obj_scan(params, params_len, &srv->obj_ext, &seen) && !seen.bad) return NULL;
    if (own && !seen.yours && !seen.promises && !seen.bad) {
        *own = (uint8_t)(seen.objects > 255 ? 255 : seen.objects);
        return NULL;
    }
    if (!own && !seen.yours && !seen.promises && !seen.bad)
        return "functions and objects cannot be passed in a notification through the gateway";
    return "object references in a call's params are not supported through the gateway (only "
           "in $call arguments, to the object's own upstream)";
}

void gg_dispatch_request(gg_server *srv, gg_client *c, gg_service *svc, uint32_t id,
                         const gg_method *m, const char *params, size_t params_len)
{
    uint8_t own = 0;
    const char *refused = refs_refused(srv, svc, params, params_len, &own);
    if (refused) {
        c->proto->error(c, id, GG_ERR_NOT_SUPPORTED, -1, refused);
        return;
    }
    if (own && !own_objects_fit(srv, c, own)) {
        c->proto->error(c, id, GG_ERR_OVERLOADED, -1,
                        "the connection holds limits.max_refs_per_client references already");
        return;
    }
    gg_call *call = gg_call_new(&srv->lp.calls);
    if (!call) {
        gg_log(&srv->lp.log, GG_LOG_WARN, "overloaded", "reason=max_calls limit=%u",
               srv->cfg->limits.max_calls);
        gg_metrics_record(
            gg_metrics_method_find(svc->stats, gg_method_rest(m), gg_method_rest_len(m)),
            GG_ERR_OVERLOADED, 0);
        c->proto->error(c, id, GG_ERR_OVERLOADED, -1, "too many calls in flight");
        return;
    }
    call->client_id = id;
    call->svc = svc;
    call->attempt = 1;
    call->client_objs = own;
    if (c->cbs.n) call->depth = gg_cb_depth(c); /* made from inside a callback, maybe */
    call->t0 = uv_hrtime();
    call->mstats = &svc->stats->other; /* its own row once it has passed the policies */
    svc->stats->inflight++;
    svc->gen->calls++;
    gg_client_link_call(c, call);
    gg_call_set_deadline(&srv->lp.calls, call, uv_now(srv->lp.uv) + svc->conf->deadline_ms);
    attempt(srv, call, m, params, params_len);
}

/* ---- remote objects ------------------------------------------------------------------------ */

/* The ext value at p[0..n): its type, payload and total length, or 0 when p is not one. */
static size_t get_ext(const char *p, size_t n, int8_t *type, const char **payload, size_t *plen)
{
    const uint8_t *u = (const uint8_t *)p;
    size_t h, len;
    if (n < 2) return 0;
    if (u[0] >= 0xd4 && u[0] <= 0xd8) {
        len = (size_t)1 << (u[0] - 0xd4), h = 1;
    } else if (u[0] == 0xc7 && n >= 3) {
        len = u[1], h = 2;
    } else if (u[0] == 0xc8 && n >= 4) {
        len = (size_t)u[1] << 8 | u[2], h = 3;
    } else if (u[0] == 0xc9 && n >= 6) {
        len = (size_t)u[1] << 24 | (size_t)u[2] << 16 | (size_t)u[3] << 8 | u[4], h = 5;
    } else {
        return 0;
    }
    if (n < h + 1 + len) return 0;
    *type = (int8_t)u[h];
    *payload = p + h + 1;
    *plen = len;
    return h + 1 + len;
}

/* What a client's params are rewritten against: its table, and the upstream table every
 * reference in them must belong to. */
typedef struct obj_in {
    gg_objtab *cl;
    gg_objtab *up;
    const gg_obj_ext *ext;
    const char *why; /* set when the rewrite refuses */
    int code;
    gg_cb_out cb; /* the client's own objects, given to the upstream connection (callbacks.c) */
} obj_in;

/* gg_obj_map_fn for a client's params: YOURS C -> YOURS U of the same upstream connection;
 * the client's own OBJECT -> an id of that connection (callbacks.c). */
static int map_client_ref(void *ud, int kind, const char *payload, size_t plen, gg_buf *out)
{
    obj_in *in = ud;
    uint64_t cid;
    int err;
    if (kind == 0 && in->cb.port) {
        int rc = gg_cb_map_object(&in->cb, payload, plen, out);
        if (rc == -3) in->code = in->cb.code, in->why = in->cb.why;
        return rc;
    }
    if (kind != 1) {
        in->code = GG_ERR_NOT_SUPPORTED;
        in->why = kind == 0 ? "passing functions or objects through the gateway is not supported"
                            : "promise pipelining through the gateway is not supported";
        return -3;
    }
    gg_objent *u;
    if (gg_obj_get_uint((const uint8_t *)payload, plen, &cid) != plen ||
        !(u = gg_objtab_resolve(in->cl, cid, &err))) {
        in->code = GG_ERR_OBJECT_GONE;
        in->why = "a reference in the arguments is not held by this connection";
        return -3;
    }
    if (u->tab != in->up) {
        in->code = GG_ERR_BAD_REQUEST;
        in->why = "a reference in the arguments belongs to another upstream connection";
        return -3;
    }
    uint8_t b[9];
    return gg_obj_put_ext(out, in->ext->yours, b, gg_obj_put_uint(b, u->id));
}

static void dispatch_pipelined(gg_server *srv, gg_client *c, uint32_t id, int is_get,
                               const char *params, size_t params_len);
static void on_conn_send(gg_server *srv, gg_client *c, uint32_t id, int is_get, uint32_t n,
                         gg_service *svc, void *conn, const gg_upstream_ops *ops,
                         const char *name, uint32_t name_len, const char *params,
                         size_t params_len);
static int keep_flag(uint32_t n, const char *rest, size_t rest_len);
static gg_call *object_call(gg_server *srv, gg_client *c, gg_service *svc, uint32_t id);

/* A method or key that is empty or starts with '_' is its owner's own: client c's $call/$get
 * (msgid id) gets 403 and nothing is sent. Returns 1 when it answered. */
static int refused_private(gg_client *c, uint32_t id, int is_get, const char *name,
                           uint32_t name_len)
{
    if (name_len != 0 && name[0] != '_') return 0;
    gg_reply_error(&c->st, id, GG_ERR_FORBIDDEN, "%s '%.*s' is private",
                   is_get ? "attribute" : "method", (int)(name_len > 64 ? 64 : name_len), name);
    return 1;
}

void gg_dispatch_object(gg_server *srv, gg_client *c, uint32_t id, const char *method,
                        uint32_t method_len, const char *params, size_t params_len)
{
    const uint8_t *p = (const uint8_t *)params;
    int is_get = method_len == 4 && memcmp(method, "$get", 4) == 0;
    if (!is_get && !(method_len == 5 && memcmp(method, "$call", 5) == 0)) {
        gg_reply_error(&c->st, id, GG_ERR_NO_SUCH_SERVICE, "no such method '%.*s'",
                       (int)(method_len > 16 ? 16 : method_len), method);
        return;
    }
    /* [target, name, ...]: a fixarray of 2 to 4 (the codec framed it already). */
    uint32_t n = params_len ? ((p[0] & 0xf0) == 0x90 ? p[0] & 0x0f : 0) : 0;
    int8_t type;
    const char *payload;
    size_t plen, tl = n >= 2 ? get_ext(params + 1, params_len - 1, &type, &payload, &plen) : 0;
    uint32_t name_len = 0;
    size_t nh = tl ? gg_get_str(params + 1 + tl, params_len - 1 - tl, &name_len) : 0;
    const gg_obj_ext *ext = &srv->obj_ext;
    uint64_t cid;
    if (n >= 2 && n <= 4 && (p[1] == 0xc0 || (tl && type == ext->promise))) {
        dispatch_pipelined(srv, c, id, is_get, params, params_len); /* a plain method, a promise */
        return;
    }
    if (!tl || !nh || n > 4 || type != ext->yours ||
        gg_obj_get_uint((const uint8_t *)payload, plen, &cid) != plen) {
        gg_reply_error(&c->st, id, GG_ERR_BAD_REQUEST,
                       "%s params are [target, %s, ...] with a reference the gateway gave",
                       is_get ? "$get" : "$call", is_get ? "key" : "method");
        return;
    }
    const char *name = params + 1 + tl + nh;
    int err = GG_OBJ_EUNKNOWN;
    gg_objent *u = c->objs ? gg_objtab_resolve(c->objs, cid, &err) : NULL;
    const gg_upstream_ops *ops = u && u->tab ? u->tab->ops : NULL;
    gg_service *svc = ops ? ops->conn_service(u->tab->conn) : NULL;
    if (!svc) {
        gg_reply_error(&c->st, id, GG_ERR_OBJECT_GONE,
                       !u && err == GG_OBJ_EUNKNOWN ? "no object %llu on this connection"
                                              : "object %llu is gone: its upstream connection closed",
                       (unsigned long long)cid);
        return;
    }
    if (refused_private(c, id, is_get, name, name_len)) return;
    if (!is_get && !gg_objiface_has(u->iface, name, name_len)) { /* as the owner recorded it */
        char msg[100];
        snprintf(msg, sizeof msg, "the object has no method '%.*s'",
                 (int)(name_len > 64 ? 64 : name_len), name);
        gg_reply_error_typed(&c->st, id, GG_ERR_NO_SUCH_SERVICE, "no_such_method", -1, msg);
        return;
    }
    if (!is_get && keep_flag(n, name + name_len, params_len - (size_t)(name + name_len - params))) {
        /* kept for pipelining: recorded, on the object's own connection */
        on_conn_send(srv, c, id, 0, n, svc, u->tab->conn, ops, name, name_len, params, params_len);
        return;
    }
    gg_call *call = object_call(srv, c, svc, id);
    if (!call) return;
    if (c->cbs.n) call->depth = gg_cb_depth(c); /* made from inside a callback, maybe */
    /* The service's request policies (guard, auth, ratelimit) see the object's method name.
     * No retry copy is kept: a retry would pick any endpoint, and the object lives on one. */
    if (svc->has_request) {
        gg_verdict v;
        gg_policy_request_object(srv, c, svc, call, name, name_len, params, params_len, &v);
        call->mstats = v.verdict == GG_V_CONTINUE ? gg_metrics_method(svc->stats, name, name_len)
                                                  : gg_metrics_method_find(svc->stats, name, name_len);
        int endpoint;
        if (apply_verdict(srv, call, &v, PHASE_REQUEST, &endpoint)) return;
    } else {
        call->mstats = gg_metrics_method(svc->stats, name, name_len);
    }
    /* Every reference in the params is rewritten to the upstream's own id. */
    gg_buf out = {0}, given = {0};
    obj_in in = {c->objs, u->tab, ext, NULL, 0, {srv, c, NULL, 0, NULL, &given}};
    if (ops->cb_port) in.cb.port = ops->cb_port(u->tab->conn);
    int rc = gg_obj_rewrite(params, params_len, ext, map_client_ref, &in, &out);
    if (rc == 0) rc = ops->send_to(u->tab->conn, call, method, method_len, out.data, out.len);
    else if (in.why) rc = in.code;
    else rc = rc == GG_OBJ_RW_NOMEM ? GG_ERR_OVERLOADED : GG_ERR_BAD_REQUEST;
    if (rc && in.cb.port) gg_cb_undo(&in.cb); /* not sent: the client's objects go back */
    else gg_cb_done(&in.cb);
    gg_buf_release(&out, NULL);
    if (rc == 0) return;
    call->sent = 0;
    if (in.why)
        gg_call_fail(srv, call, rc, "%s", in.why);
    else if (rc == GG_ERR_BAD_REQUEST)
        gg_call_fail(srv, call, rc, "malformed object reference in the params");
    else if (rc == GG_ERR_UPSTREAM_UNAVAILABLE)
        gg_call_fail(srv, call, GG_ERR_OBJECT_GONE, "object %llu is gone: its upstream connection closed",
                     (unsigned long long)cid);
    else
        gg_call_fail(srv, call, rc, "upstream of service '%s' is overloaded", svc->name);
}

/* An array header at p[0..n): its element count and length, or 0 when p is not one. */
static size_t get_array(const uint8_t *p, size_t n, uint32_t *count)
{
    if (n >= 1 && (p[0] & 0xf0) == 0x90) {
        *count = p[0] & 0x0f;
        return 1;
    }
    if (n >= 3 && p[0] == 0xdc) {
        *count = (uint32_t)p[1] << 8 | p[2];
        return 3;
    }
    if (n >= 5 && p[0] == 0xdd) {
        *count = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
        return 5;
    }
    return 0;
}

/* ---- promise pipelining (proxy/promises.h) ------------------------------------------------- */

/* The client's kept calls, made on first use; NULL when out of memory. */
static gg_kept_tab *client_kept(gg_server *srv, gg_client *c)
{
    if (!c->kept) c->kept = gg_kept_tab_new(srv->cfg->limits.max_kept_per_client);
    return c->kept;
}

/* A call of client c on an object or a promise of service svc, answered to its msgid id:
 * linked and timed like any call; its metrics row is chosen once the policies have passed it.
 * NULL: answered already (too many calls in flight). */
static gg_call *object_call(gg_server *srv, gg_client *c, gg_service *svc, uint32_t id)
{
    gg_call *call = gg_call_new(&srv->lp.calls);
    if (!call) {
        c->proto->error(c, id, GG_ERR_OVERLOADED, -1, "too many calls in flight");
        return NULL;
    }
    call->client_id = id;
    call->svc = svc;
    call->attempt = 1;
    call->t0 = uv_hrtime();
    call->mstats = &svc->stats->other;
    svc->stats->inflight++;
    svc->gen->calls++;
    gg_client_link_call(c, call);
    gg_call_set_deadline(&srv->lp.calls, call, uv_now(srv->lp.uv) + svc->conf->deadline_ms);
    return call;
}

/* keep: the call gets a record before anything can answer it, so that what answers it at the
 * gateway is what calls on its promise get too. Returns 0, or -1 when it was answered (the
 * client's limit). *k is NULL without keep. */
static int keep_call(gg_server *srv, gg_client *c, gg_call *call, int keep, gg_kept **k)
{
    *k = NULL;
    if (!keep) return 0;
    gg_kept_tab *t = client_kept(srv, c);
    int err = GG_KEPT_ENOMEM;
    if (t) *k = gg_kept_add(t, call->client_id, call, &srv->lp.calls, &err);
    if (*k) return 0;
    gg_log(&srv->lp.log, GG_LOG_WARN, "overloaded", "reason=max_kept_per_client limit=%u",
           srv->cfg->limits.max_kept_per_client);
    gg_call_fail(srv, call, GG_ERR_OVERLOADED, "%s",
                 err == GG_KEPT_ELIMIT ? "the connection keeps limits.max_kept_per_client "
                                         "answers already ($finish some)"
                                       : "out of memory for kept answers");
    return -1;
}

/* The request policies, with `name` as the method name. Returns 1 when they answered (the
 * kept record, if any, remembers their error), 0 to go on (*endpoint set). */
static int pipelined_policies(gg_server *srv, gg_client *c, gg_call *call, gg_kept *k,
                              int object, const char *name, uint32_t name_len,
                              const char *params, size_t params_len, int *endpoint)
{
    gg_service *svc = call->svc;
    *endpoint = 0;
    if (!svc->has_request) {
        call->mstats = gg_metrics_method(svc->stats, name, name_len);
        return 0;
    }
    gg_verdict v;
    if (object)
        gg_policy_request_object(srv, c, svc, call, name, name_len, params, params_len, &v);
    else
        gg_policy_request(srv, c, svc, call, name, name_len, params, params_len, &v);
    call->mstats = v.verdict == GG_V_CONTINUE ? gg_metrics_method(svc->stats, name, name_len)
                                              : gg_metrics_method_find(svc->stats, name, name_len);
    if (k && v.verdict != GG_V_CONTINUE) {
        if (v.verdict == GG_V_RESPOND || v.verdict == GG_V_RESPOND_RAW)
            gg_kept_refused(k, GG_ERR_BAD_REQUEST,
                            "the promised call was answered by a policy: it has no object");
        else
            gg_kept_refused(k, v.code, v.message);
    }
    return apply_verdict(srv, call, &v, PHASE_REQUEST, endpoint);
}

/* Sending failed with gateway error rc (and, for a rewrite, why): the call fails with it, and
 * so do calls on its promise. */
static void pipelined_failed(gg_server *srv, gg_call *call, gg_kept *k, int rc, const char *why)
{
    char msg[256];
    call->sent = 0;
    if (why)
        snprintf(msg, sizeof msg, "%s", why);
    else if (rc == GG_ERR_UPSTREAM_UNAVAILABLE)
        snprintf(msg, sizeof msg, "no upstream of service '%s' is reachable", call->svc->name);
    else
        snprintf(msg, sizeof msg, "upstream of service '%s' is overloaded", call->svc->name);
    if (k) gg_kept_refused(k, rc, msg);
    gg_call_fail(srv, call, rc, "%s", msg);
}

/* What a pipelined call's params are rewritten against: the client's tables and the upstream
 * connection the promised call went to. */
typedef struct pipe_in {
    gg_objtab *cl;
    gg_kept_tab *kept;
    void *conn;
    const gg_obj_ext *ext;
    const char *why;
    int code;
} pipe_in;

/* gg_obj_map_fn for a pipelined call: PROMISE [client msgid, path] -> PROMISE [the gateway's
 * msgid upstream, path]; YOURS C -> YOURS U. Both must live on the promised call's
 * connection: the upstream resolves them there. */
static int map_pipelined(void *ud, int kind, const char *payload, size_t plen, gg_buf *out)
{
    pipe_in *in = ud;
    const uint8_t *p = (const uint8_t *)payload;
    uint8_t b[12];
    uint64_t v;
    int err;
    if (kind == 0) {
        in->code = GG_ERR_NOT_SUPPORTED;
        in->why = "passing functions or objects through the gateway is not supported";
        return -3;
    }
    if (kind == 1) {
        gg_objent *u;
        if (gg_obj_get_uint(p, plen, &v) != plen || !in->cl ||
            !(u = gg_objtab_resolve(in->cl, v, &err))) {
            in->code = GG_ERR_OBJECT_GONE;
            in->why = "a reference in the arguments is not held by this connection";
            return -3;
        }
        if (!u->tab || u->tab->conn != in->conn) {
            in->code = GG_ERR_BAD_REQUEST;
            in->why = "a reference in the arguments belongs to another upstream connection";
            return -3;
        }
        return gg_obj_put_ext(out, in->ext->yours, b, gg_obj_put_uint(b, u->id));
    }
    uint32_t msgid;
    size_t il = gg_kept_parse_promise(payload, plen, &msgid);
    gg_kept *k = il ? gg_kept_find(in->kept, msgid) : NULL;
    if (!k || k->conn != in->conn) {
        in->code = !il ? GG_ERR_BAD_REQUEST : GG_ERR_OBJECT_GONE;
        in->why = !il ? "malformed promise" : "a promise in the arguments names no call kept on "
                                              "the same upstream connection";
        return -3;
    }
    b[0] = p[0];
    size_t n = 1 + gg_obj_put_uint(b + 1, k->call->id);
    if (gg_obj_put_ext_hdr(out, in->ext->promise, n + plen - il) ||
        gg_buf_append(out, NULL, b, n) ||
        (plen > il && gg_buf_append(out, NULL, payload + il, plen - il)))
        return GG_OBJ_RW_NOMEM;
    return 0;
}

/* The element after the name of [target, name, args, keep]: is `keep` true? */
static int keep_flag(uint32_t n, const char *rest, size_t rest_len)
{
    if (n != 4) return 0;
    size_t al = object_size(rest, rest_len);
    return al && al < rest_len && (uint8_t)rest[al] == 0xc3;
}

/* $call [nil, "svc.method", args, keep]: a plain method of a service, as a call that later
 * calls can pipeline on when keep is true. It goes to the upstream as $call [nil, method,
 * args, keep] (method as a plain call would name it), chosen like a plain call. */
static void dispatch_plain_kept(gg_server *srv, gg_client *c, uint32_t id, uint32_t n,
                                const char *params, size_t params_len)
{
    uint32_t name_len = 0;
    size_t nh = gg_get_str(params + 2, params_len - 2, &name_len);
    const char *name = params + 2 + nh;
    const char *rest = name + name_len; /* args, keep */
    size_t rest_len = nh ? params_len - (size_t)(rest - params) : 0;
    int keep = nh && keep_flag(n, rest, rest_len);
    uint32_t dot = 0;
    int flaw = nh ? gg_method_check(name, name_len, &dot) : GG_NAME_EMPTY;
    gg_service *svc = nh && dot < name_len ? gg_service_find(srv, name, dot) : NULL;
    int code = 0;
    char why[256];
    gg_obj_seen seen;
    if (!nh || n < 3) {
        code = GG_ERR_BAD_REQUEST;
        snprintf(why, sizeof why, "$call params are [nil, \"service.method\", args, keep] for a "
                                  "plain method");
    } else if ((code = gg_method_refused(svc, flaw))) {
        snprintf(why, sizeof why, "%s", gg_method_flaw_reason(flaw));
    } else if (!svc) {
        code = GG_ERR_NO_SUCH_SERVICE;
        snprintf(why, sizeof why, "no such service '%.*s'", (int)(dot > 64 ? 64 : dot), name);
    } else if (dot + 1 >= name_len) {
        code = GG_ERR_BAD_REQUEST;
        snprintf(why, sizeof why, "method name is empty");
    } else if (!svc->conf->objects || !svc->ops->carrier_conn) {
        code = GG_ERR_NOT_SUPPORTED;
        snprintf(why, sizeof why,
                 svc->conf->objects ? "service '%s' cannot pipeline: its upstream protocol has "
                                      "no remote objects"
                                    : "service '%s' does not route remote objects (objects = "
                                      "false): no $call or promise pipelining",
                 svc->name);
    } else if (gg_obj_scan(rest, rest_len, &srv->obj_ext, &seen) || seen.bad) {
        code = GG_ERR_NOT_SUPPORTED;
        snprintf(why, sizeof why, "object references and functions in a call's params are not "
                                  "supported through the gateway (only in $call arguments, to the "
                                  "object's own upstream)");
    }
    if (code) { /* calls already sent on its promise get the same answer */
        gg_kept *k = NULL;
        int err;
        if (keep && client_kept(srv, c) && (k = gg_kept_add(c->kept, id, NULL, &srv->lp.calls, &err)))
            gg_kept_refused(k, code, why);
        gg_reply_error(&c->st, id, code, "%s", why);
        return;
    }
    gg_call *call = object_call(srv, c, svc, id);
    gg_kept *k;
    if (!call || keep_call(srv, c, call, keep, &k)) return;
    int endpoint;
    const char *short_name = name + dot + 1;
    uint32_t short_len = name_len - dot - 1;
    if (pipelined_policies(srv, c, call, k, 0, short_name, short_len, rest, rest_len, &endpoint))
        return;
    const char *fwd = svc->conf->keep_prefix ? name : short_name;
    uint32_t fwd_len = svc->conf->keep_prefix ? name_len : short_len;
    gg_buf body = {0};
    char hdr[8];
    hdr[0] = params[0];
    hdr[1] = (char)0xc0;
    size_t hl = 2 + gg_put_str_hdr(hdr + 2, fwd_len);
    int rc = gg_buf_append(&body, NULL, hdr, hl) || gg_buf_append(&body, NULL, fwd, fwd_len) ||
                     gg_buf_append(&body, NULL, rest, rest_len)
                 ? GG_ERR_OVERLOADED
                 : gg_upstream_send(svc, call, endpoint, "$call", 5, body.data, body.len);
    gg_buf_release(&body, NULL);
    if (rc) {
        pipelined_failed(srv, call, k, rc, NULL);
        return;
    }
    gg_kept_list *list;
    void *conn = k ? svc->ops->carrier_conn(call, &list) : NULL;
    if (conn) gg_kept_attach(k, conn, svc->ops, list);
}

/* $call/$get [PROMISE [msgid, path], name, ...]: a call on the result of the client's kept
 * call msgid, sent to the upstream connection that has (or will have) that result. */
static void dispatch_on_promise(gg_server *srv, gg_client *c, uint32_t id, int is_get, uint32_t n,
                                const char *params, size_t params_len)
{
    int8_t type;
    const char *payload;
    size_t plen, tl = get_ext(params + 1, params_len - 1, &type, &payload, &plen);
    uint32_t pid;
    size_t il = gg_kept_parse_promise(payload, plen, &pid);
    uint32_t name_len = 0;
    size_t nh = gg_get_str(params + 1 + tl, params_len - 1 - tl, &name_len);
    const char *what = is_get ? "$get" : "$call";
    if (!il || !nh) {
        gg_reply_error(&c->st, id, GG_ERR_BAD_REQUEST,
                       "%s params are [promise, %s, ...] with a promise [msgid, path]", what,
                       is_get ? "key" : "method");
        return;
    }
    const char *name = params + 1 + tl + nh;
    gg_kept *pk = gg_kept_find(c->kept, pid);
    if (!pk) {
        gg_reply_error(&c->st, id, GG_ERR_OBJECT_GONE,
                       "no call %u kept for pipelining on this connection", (unsigned)pid);
        return;
    }
    if (pk->code) { /* the promised call failed at the gateway: so does this one */
        gg_reply_error(&c->st, id, pk->code, "%s", pk->why ? pk->why : "the promised call failed");
        return;
    }
    gg_service *svc = pk->conn ? pk->ops->conn_service(pk->conn) : NULL;
    if (!svc) {
        gg_reply_error(&c->st, id, GG_ERR_OBJECT_GONE,
                       "call %u is gone: its upstream connection closed", (unsigned)pid);
        return;
    }
    if (refused_private(c, id, is_get, name, name_len)) return;
    on_conn_send(srv, c, id, is_get, n, svc, pk->conn, pk->ops, name, name_len, params,
                 params_len);
}

/* A $call or $get of client c (msgid id) whose target lives on the upstream connection conn
 * of service svc: `keep` makes it a call later calls may pipeline on. name: the method or key
 * (checked already). */
static void on_conn_send(gg_server *srv, gg_client *c, uint32_t id, int is_get, uint32_t n,
                         gg_service *svc, void *conn, const gg_upstream_ops *ops,
                         const char *name, uint32_t name_len, const char *params,
                         size_t params_len)
{
    const char *what = is_get ? "$get" : "$call";
    const char *rest = name + name_len;
    size_t rest_len = params_len - (size_t)(rest - params);
    gg_call *call = object_call(srv, c, svc, id);
    gg_kept *k;
    if (!call || keep_call(srv, c, call, !is_get && keep_flag(n, rest, rest_len), &k)) return;
    int endpoint;
    if (pipelined_policies(srv, c, call, k, 1, name, name_len, params, params_len, &endpoint))
        return;
    gg_buf out = {0};
    pipe_in in = {c->objs, c->kept, conn, &srv->obj_ext, NULL, 0};
    int rc = gg_obj_rewrite(params, params_len, &srv->obj_ext, map_pipelined, &in, &out);
    if (rc == 0) rc = ops->send_to(conn, call, what, (uint32_t)strlen(what), out.data, out.len);
    else if (in.why) rc = in.code;
    else rc = rc == GG_OBJ_RW_NOMEM ? GG_ERR_OVERLOADED : GG_ERR_BAD_REQUEST;
    gg_buf_release(&out, NULL);
    if (rc == GG_ERR_UPSTREAM_UNAVAILABLE)
        in.why = "the promised call's upstream connection closed", rc = GG_ERR_OBJECT_GONE;
    else if (rc == GG_ERR_BAD_REQUEST && !in.why)
        in.why = "malformed object reference in the params";
    if (rc) {
        pipelined_failed(srv, call, k, rc, in.why);
        return;
    }
    gg_kept_list *list;
    if (k && ops->carrier_conn(call, &list)) gg_kept_attach(k, conn, ops, list);
}

static void dispatch_pipelined(gg_server *srv, gg_client *c, uint32_t id, int is_get,
                               const char *params, size_t params_len)
{
    uint32_t n = (uint8_t)params[0] & 0x0f;
    if ((uint8_t)params[1] == 0xc0) {
        if (is_get) {
            gg_reply_error(&c->st, id, GG_ERR_BAD_REQUEST,
                           "$get params are [target, key] with a reference or a promise");
            return;
        }
        dispatch_plain_kept(srv, c, id, n, params, params_len);
        return;
    }
    dispatch_on_promise(srv, c, id, is_get, n, params, params_len);
}

/* $finish [msgid, ...]: the client no longer pipelines on these calls. A msgid it did not
 * keep changes nothing and is counted. */
static void finish_kept(gg_server *srv, gg_client *c, const char *params, size_t params_len)
{
    const uint8_t *p = (const uint8_t *)params, *end = p + params_len;
    uint32_t n, bad = 0;
    size_t k = get_array(p, params_len, &n);
    if (!k) {
        gg_dispatch_notify_dropped(srv, NULL, "$finish", 7, GG_ERR_BAD_REQUEST,
                                   "$finish params are [msgid, ...]");
        return;
    }
    p += k;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t v;
        size_t l = gg_obj_get_uint(p, (size_t)(end - p), &v);
        if (!l) {
            bad++;
            break;
        }
        p += l;
        if (v > UINT32_MAX || gg_kept_finish(c->kept, (uint32_t)v, &srv->lp.calls)) bad++;
    }
    if (bad)
        gg_dispatch_notify_dropped(srv, NULL, "$finish", 7, GG_ERR_OBJECT_GONE,
                                   "finishes of calls this connection did not keep");
}

void gg_dispatch_object_notify(gg_server *srv, gg_client *c, const char *method,
                               uint32_t method_len, const char *params, size_t params_len)
{
    if (method_len == 7 && memcmp(method, "$finish", 7) == 0) {
        finish_kept(srv, c, params, params_len);
        return;
    }
    if (!(method_len == 8 && memcmp(method, "$release", 8) == 0)) {
        gg_dispatch_notify_dropped(srv, NULL, method, method_len, GG_ERR_NO_SUCH_SERVICE,
                                   "no such method");
        return;
    }
    const uint8_t *p = (const uint8_t *)params, *end = p + params_len;
    uint32_t one, pairs;
    size_t k = get_array(p, params_len, &one);
    size_t k2 = k && one == 1 ? get_array(p + k, params_len - k, &pairs) : 0;
    if (!k2) {
        gg_dispatch_notify_dropped(srv, NULL, method, method_len, GG_ERR_BAD_REQUEST,
                                   "$release params are [[[id, count], ...]]");
        return;
    }
    p += k + k2;
    uint32_t bad = 0;
    for (uint32_t i = 0; i < pairs; i++) {
        uint32_t two;
        uint64_t id, n;
        size_t a = get_array(p, (size_t)(end - p), &two), b = 0, d = 0;
        if (a && two == 2) b = gg_obj_get_uint(p + a, (size_t)(end - p) - a, &id);
        if (b) d = gg_obj_get_uint(p + a + b, (size_t)(end - p) - a - b, &n);
        if (!d) {
            bad++;
            break; /* the rest cannot be found */
        }
        p += a + b + d;
        /* Unknown ids and over-releases change nothing: a forged release cannot free what
         * another client holds (ids resolve only in this client's table). */
        if (!c->objs || n > UINT32_MAX || gg_objtab_release(c->objs, id, (uint32_t)n)) bad++;
    }
    if (bad)
        gg_dispatch_notify_dropped(srv, NULL, method, method_len, GG_ERR_OBJECT_GONE,
                                   "releases of references this connection does not hold");
}

/* ---- notifications ----------------------------------------------------------------------- */

#define NOTIFY_LOG_PER_SEC 10 /* notification_dropped lines per second, at most */

void gg_dispatch_notify_dropped(gg_server *srv, gg_service *svc, const char *method,
                                uint32_t method_len, int code, const char *why)
{
    gg_metrics *met = &srv->met;
    gg_metrics_notification(met, svc ? svc->stats : NULL, code);
    if (GG_LOG_WARN > srv->lp.log.level) return;
    /* A refusal is silent to the sender, so anyone can make them: the log gets a bounded
     * number of lines per second, and the next line written says how many were left out. */
    uint64_t second = uv_now(srv->lp.uv) / 1000;
    if (second != met->notify_log_second) {
        met->notify_log_second = second;
        met->notify_log_lines = 0;
    }
    if (met->notify_log_lines >= NOTIFY_LOG_PER_SEC) {
        met->notify_log_suppressed++;
        return;
    }
    met->notify_log_lines++;
    char more[40] = "";
    if (met->notify_log_suppressed)
        snprintf(more, sizeof more, " suppressed=%llu",
                 (unsigned long long)met->notify_log_suppressed);
    met->notify_log_suppressed = 0;
    const char *reason = code == GG_MET_ANSWERED ? "answered" : gg_error_type(code);
    /* The logger escapes the sender's bytes (log.c): nothing here can end the line. */
    gg_log(&srv->lp.log, GG_LOG_WARN, "notification_dropped",
           "service=%s method=\"%.*s\" reason=%s why=\"%.200s\"%s", svc ? svc->name : "-",
           (int)(method_len > 64 ? 64 : method_len), method, reason, why ? why : "", more);
}

void gg_dispatch_notify(gg_server *srv, gg_client *c, gg_service *svc, const gg_method *m,
                        const char *params, size_t params_len)
{
    const char *method = m->name;
    uint32_t method_len = m->len;
    const char *rest = gg_method_rest(m);
    uint32_t rest_len = gg_method_rest_len(m);
    int endpoint = 0;
    const char *refused = refs_refused(srv, svc, params, params_len, NULL);
    if (refused) {
        gg_dispatch_notify_dropped(srv, svc, method, method_len, GG_ERR_NOT_SUPPORTED, refused);
        return;
    }
    if (svc->has_request) {
        gg_verdict v;
        gg_policy_request(srv, c, svc, NULL, rest, rest_len, params, params_len, &v);
        if (v.verdict == GG_V_RESPOND || v.verdict == GG_V_RESPOND_RAW) {
            gg_dispatch_notify_dropped(srv, svc, method, method_len, GG_MET_ANSWERED,
                                       "a policy answered it");
            return;
        }
        if (v.verdict != GG_V_CONTINUE) {
            gg_dispatch_notify_dropped(srv, svc, method, method_len, v.code, v.message);
            return;
        }
        endpoint = v.endpoint;
    }
    const char *fwd = svc->conf->keep_prefix ? method : rest;
    uint32_t fwd_len = svc->conf->keep_prefix ? method_len : rest_len;
    int rc = gg_upstream_notify(svc, endpoint, fwd, fwd_len, params, params_len);
    if (rc) {
        gg_dispatch_notify_dropped(srv, svc, method, method_len, rc,
                                   rc == GG_ERR_NOT_SUPPORTED
                                       ? "this service's protocol has no notifications"
                                       : "the upstream cannot take it now");
        return;
    }
    gg_metrics_notification(&srv->met, svc->stats, 0);
}

/* dispatch.c -- a call's life: request phase, upstream, response phase, exactly one answer.
 *
 * Every call ends through call_end(): the gateway's bookkeeping (metrics, the generation's
 * count, the retry copy, an id owed to the connection that carried it), then the calls
 * module's gg_call_end, which unlinks it from its client, its upstream connection and the
 * deadline heap. A policy's verdict is applied in one place (gg_dispatch_apply_verdict). A
 * call is answered by exactly one of: the upstream's response (gg_call_answer), a gateway
 * error (gg_call_fail, the deadline), or a policy (reject, respond). A retry keeps the call
 * alive with no upstream connection while its timer runs. Calls on remote objects and promise
 * pipelining are in dispatch_objects.c. */
#include "proxy/dispatch_int.h"
#include "core/errors.h"
#include "proxy/server.h"
#include "core/buf.h"
#include "core/objects.h"
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

/* Apply a policy's verdict. Returns 1 when the call was answered (and ended) or rescheduled,
 * 0 when the caller goes on: REQUEST phase CONTINUE (*endpoint set, deadline override applied
 * on attempt 1); RESPONSE phase with no verdict, or a RETRY that cannot be scheduled (the
 * upstream's answer or the gateway error stands). REQUEST: anything but CONTINUE and RESPOND
 * answers code + retry_after. RESPONSE: ERROR answers code with no retry_after; REJECT is no
 * verdict there. */
int gg_dispatch_apply_verdict(gg_server *srv, gg_call *call, const gg_verdict *v, int phase,
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
size_t gg_dispatch_object_size(const char *p, size_t len)
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
        size_t kl = gg_dispatch_object_size(body + pos, len - pos);
        size_t vl = kl ? gg_dispatch_object_size(body + pos + kl, len - pos - kl) : 0;
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
        if (gg_dispatch_apply_verdict(srv, call, &v, PHASE_RESPONSE, NULL)) return;
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
        if (gg_dispatch_apply_verdict(srv, call, &v, PHASE_RESPONSE, NULL)) return;
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
        if (gg_dispatch_apply_verdict(srv, call, &v, PHASE_REQUEST, &endpoint)) return;
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

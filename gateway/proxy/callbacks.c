/* callbacks.c -- functions and objects a client passes through the gateway; see callbacks.h.
 *
 * What a callback meets on its way in (docs/protocol.md, "Callbacks through the gateway"):
 * the id must be one the gateway gave that upstream connection (410 otherwise, nothing sent),
 * the owning client must still be connected (410 "its client disconnected"), a name starting
 * with `_` is refused (403), a method must be in the interface the client sent when it
 * exported the object (404), the service's policies admit it as a call to that client (guard,
 * auth, ratelimit, your own: 403, 401, 429), and the client's limits hold (nesting depth,
 * callbacks in flight, its write buffer: 503). Every refusal is logged (callback_refused). */
#include "proxy/callbacks.h"
#include "core/buf.h"
#include "core/codec.h"
#include "core/errors.h"
#include "core/objects.h"
#include "core/objiface.h"
#include "core/objtable.h"
#include "proxy/server.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static gg_cb_port *port_of(gg_call *call)
{
    return (gg_cb_port *)((char *)call->owner - offsetof(gg_cb_port, calls));
}

static gg_client *client_of_cbs(gg_call_list *l)
{
    return (gg_client *)((char *)l - offsetof(gg_client, cbs));
}

/* ---- the client's table of what it exported -------------------------------------------- */

static void send_client_releases(void *conn);

/* Only send_releases is used (gg_server's dirty tables): a client's table of exports is
 * released to it the way an upstream's is. */
static const gg_upstream_ops client_release_ops = {
    .name = "client",
    .send_releases = send_client_releases,
};

static gg_objtab *own_table(gg_client *c)
{
    if (c->own) return c->own;
    gg_objtab *t = malloc(sizeof *t);
    gg_server *srv = gg_server_of(c->st.loop);
    if (!t || gg_objtab_init(t, GG_OBJ_UPSTREAM, srv->cfg->limits.max_refs_per_client)) {
        free(t);
        return NULL;
    }
    t->conn = c;
    t->ops = &client_release_ops;
    t->srv = srv;
    t->on_queue = gg_server_obj_dirty;
    c->own = t;
    t->shares_limit = c->objs; /* one limit for both directions */
    if (c->objs) c->objs->shares_limit = t;
    return t;
}

/* [2, "$release", [[[cid, count], ...]]] to the client, 256 pairs a message. Counted against
 * nothing: it is small, and dropping it would only keep the client's objects alive. */
static void send_client_releases(void *conn)
{
    gg_client *c = conn;
    gg_objrel rel[256];
    size_t n;
    while (c->own && (n = gg_objtab_take(c->own, rel, 256)) > 0) {
        if (c->st.flags & GG_ST_CLOSING) continue;
        char *p = gg_stream_reserve(&c->st, GG_OBJTAB_RELEASE_MAX(n));
        if (!p) continue;
        gg_stream_commit(&c->st, gg_objtab_put_release(p, rel, n));
    }
}

/* ---- client -> upstream ------------------------------------------------------------------ */

int gg_cb_map_object(gg_cb_out *o, const char *payload, size_t plen, gg_buf *out)
{
    const uint8_t *p = (const uint8_t *)payload;
    uint64_t cid;
    size_t il;
    if (plen < 2 || p[0] != 0x92 || !(il = gg_obj_get_uint(p + 1, plen - 1, &cid)) ||
        cid > GG_OBJ_ID_MAX || !gg_objiface_valid(payload + 1 + il, plen - 1 - il)) {
        o->code = GG_ERR_BAD_REQUEST;
        o->why = "malformed object reference: OBJECT is [id, [method names]]";
        return -3;
    }
    gg_objtab *own = own_table(o->c);
    gg_objtab **held = &o->port->held;
    if (own && !*held) {
        gg_objtab *t = malloc(sizeof *t);
        if (!t || gg_objtab_init(t, GG_OBJ_CLIENT, UINT32_MAX)) {
            free(t);
            return GG_OBJ_RW_NOMEM;
        }
        *held = t;
    }
    if (!own) return GG_OBJ_RW_NOMEM;
    /* Checked above, so NULL here is out of memory. Two walks of the interface: paid once
     * per object a client passes, never per call on it. */
    size_t isz = plen - 1 - il;
    gg_objiface *iface = gg_objiface_new(payload + 1 + il, isz);
    int err = 0;
    gg_objent *e = iface ? gg_objtab_import(own, cid, iface, &err) : NULL;
    if (!e) {
        if (err != GG_OBJ_ELIMIT) return GG_OBJ_RW_NOMEM;
        o->code = GG_ERR_OVERLOADED;
        o->why = "the connection holds limits.max_refs_per_client references already";
        return -3;
    }
    int64_t g = gg_objtab_give(*held, e);
    if (g >= 0 && gg_buf_append(o->given, NULL, &g, sizeof g)) {
        gg_objtab_release(*held, (uint64_t)g, 1);
        g = GG_OBJ_ENOMEM;
    }
    if (g < 0) {
        gg_objtab_unused(e); /* nobody holds it: released to the client */
        return GG_OBJ_RW_NOMEM;
    }
    uint8_t b[16];
    size_t n = 0;
    b[n++] = 0x92;
    n += gg_obj_put_uint(b + n, (uint64_t)g);
    if (gg_obj_put_ext_hdr(out, gg_server_of(o->c->st.loop)->obj_ext.object, n + isz) ||
        gg_buf_append(out, NULL, b, n) || gg_buf_append(out, NULL, p + 1 + il, isz))
        return GG_OBJ_RW_NOMEM;
    return 0;
}

void gg_cb_done(gg_cb_out *o)
{
    if (o->given) gg_buf_release(o->given, NULL);
}

void gg_cb_undo(gg_cb_out *o)
{
    if (o->given && o->port->held) {
        const uint64_t *g = (const uint64_t *)o->given->data;
        for (size_t i = 0; i < o->given->len / sizeof *g; i++)
            gg_objtab_release(o->port->held, g[i], 1);
    }
    gg_cb_done(o);
}

/* gg_obj_map_fn for an answer to a callback: the client's objects are given to the port, an
 * upstream object it hands back must be one of that same upstream connection's. */
static int map_client_answer(void *ud, int kind, const char *payload, size_t plen, gg_buf *out)
{
    gg_cb_out *o = ud;
    if (kind == 0) return gg_cb_map_object(o, payload, plen, out);
    uint64_t cid;
    int err;
    gg_objent *u;
    if (kind != 1) {
        o->code = GG_ERR_NOT_SUPPORTED;
        o->why = "promise pipelining through the gateway is not supported";
        return -3;
    }
    if (gg_obj_get_uint((const uint8_t *)payload, plen, &cid) != plen || !o->c->objs ||
        !(u = gg_objtab_resolve(o->c->objs, cid, &err)) || !o->port->up_objs ||
        u->tab != *o->port->up_objs) {
        o->code = GG_ERR_BAD_REQUEST;
        o->why = "the answer carried a reference the upstream connection does not own";
        return -3;
    }
    uint8_t b[9];
    return gg_obj_put_ext(out, gg_server_of(o->c->st.loop)->obj_ext.yours, b,
                          gg_obj_put_uint(b, u->id));
}

/* ---- upstream -> client -------------------------------------------------------------------- */

int gg_cb_map_yours(gg_cb_port *port, gg_client *c, const char *payload, size_t plen,
                    gg_buf *out, const char **why)
{
    uint64_t g;
    int err;
    gg_objent *e;
    if (gg_obj_get_uint((const uint8_t *)payload, plen, &g) != plen || !port->held || !c ||
        !(e = gg_objtab_resolve(port->held, g, &err)) || e->tab != c->own) {
        *why = "the upstream handed back a reference to an object this client did not pass";
        return -3;
    }
    uint8_t b[9];
    return gg_obj_put_ext(out, gg_server_of(c->st.loop)->obj_ext.yours, b, gg_obj_put_uint(b, e->id));
}

/* Answer the upstream's request msgid on port with an error, and log why (escaped). */
static void refuse(gg_server *srv, gg_cb_port *port, gg_service *svc, uint32_t msgid, int code,
                   const char *what, uint32_t what_len, double retry_after, const char *fmt, ...)
    __attribute__((format(printf, 9, 10)));

static void refuse(gg_server *srv, gg_cb_port *port, gg_service *svc, uint32_t msgid, int code,
                   const char *what, uint32_t what_len, double retry_after, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gg_log(&srv->lp.log, GG_LOG_INFO, "callback_refused",
           "service=%s name=\"%.*s\" code=%d reason=\"%s\"", svc->name,
           (int)(what_len > 64 ? 64 : what_len), what, code, msg);
    /* a 404 here is about a method, as the object's owner would say it */
    gg_reply_error_typed(port->st, msgid, code,
                         code == GG_ERR_NO_SUCH_SERVICE ? "no_such_method" : gg_error_type(code),
                         retry_after, msg);
}

uint16_t gg_cb_depth(const gg_client *c)
{
    uint16_t d = 0;
    for (const gg_call *k = c->cbs.head; k; k = k->unext)
        if (k->depth > d) d = k->depth;
    return d;
}

void gg_cb_request(gg_server *srv, gg_cb_port *port, gg_service *svc, uint32_t msgid,
                   const char *method, uint32_t method_len, const char *params, size_t params_len,
                   gg_cb_rewrite_fn fn, void *ud)
{
    const gg_limits *lim = &srv->cfg->limits;
    int is_get = method_len == 4 && memcmp(method, "$get", 4) == 0;
    if (!is_get && !(method_len == 5 && memcmp(method, "$call", 5) == 0)) {
        refuse(srv, port, svc, msgid, GG_ERR_NO_SUCH_SERVICE, method, method_len, -1,
               "the gateway accepts only $call and $get from upstreams");
        return;
    }
    gg_obj_params op;
    gg_obj_params_split(params, params_len, &op);
    uint32_t name_len = op.name_len;
    uint64_t g;
    /* a $get key that is not a string (an item) goes to the client as it is */
    if (!op.tl || (!op.nh && !is_get) || op.n > 4 || op.type != srv->obj_ext.yours ||
        gg_obj_get_uint((const uint8_t *)op.payload, op.plen, &g) != op.plen) {
        refuse(srv, port, svc, msgid, GG_ERR_BAD_REQUEST, method, method_len, -1,
               "%s params are [target, %s, ...] with a reference the gateway gave",
               is_get ? "$get" : "$call", is_get ? "key" : "method");
        return;
    }
    const char *name = op.nh ? op.name : params + 1 + op.tl; /* an item: its key's bytes */
    int err = GG_OBJ_EUNKNOWN;
    gg_objent *e = port->held ? gg_objtab_resolve(port->held, g, &err) : NULL;
    gg_client *c = e && e->tab ? e->tab->conn : NULL;
    if (!c || (c->st.flags & GG_ST_CLOSING)) {
        refuse(srv, port, svc, msgid, GG_ERR_OBJECT_GONE, name, name_len, -1,
               !e && err == GG_OBJ_EUNKNOWN ? "no object %llu on this connection"
                                             : "object %llu is gone: its client disconnected",
               (unsigned long long)g);
        return;
    }
    if (name_len && name[0] == '_') {
        refuse(srv, port, svc, msgid, GG_ERR_FORBIDDEN, name, name_len, -1, "%s '%.*s' is private",
               is_get ? "attribute" : "method", (int)(name_len > 64 ? 64 : name_len), name);
        return;
    }
    if (!is_get && !gg_objiface_has(e->iface, name, name_len)) {
        refuse(srv, port, svc, msgid, GG_ERR_NO_SUCH_SERVICE, name, name_len, -1,
               "the object has no method '%.*s'", (int)(name_len > 64 ? 64 : name_len), name);
        return;
    }
    if (svc->has_request) {
        /* an item ($get with a key that is not a string) has no name: policies see "[]" */
        const char *pn = name_len || !is_get ? name : "[]";
        uint32_t pl = name_len || !is_get ? name_len : 2;
        gg_verdict v;
        gg_policy_callback(srv, c, svc, pn, pl, &v);
        if (v.verdict == GG_V_REJECT || v.verdict == GG_V_ERROR) {
            refuse(srv, port, svc, msgid, v.code, pn, pl, v.retry_after, "%s", v.message);
            return;
        }
    }
    uint16_t depth = 0;
    for (const gg_call *k = c->calls.head; k; k = k->cnext)
        if (k->depth > depth) depth = k->depth;
    depth++;
    if (depth > lim->max_callback_depth) {
        refuse(srv, port, svc, msgid, GG_ERR_OVERLOADED, name, name_len, -1,
               "callbacks nested deeper than limits.max_callback_depth (%u)",
               lim->max_callback_depth);
        return;
    }
    if (c->cbs.n + c->cb_owed.n >= lim->max_callbacks_in_flight) {
        refuse(srv, port, svc, msgid, GG_ERR_OVERLOADED, name, name_len, -1,
               "the client has limits.max_callbacks_in_flight (%u) callbacks in flight",
               lim->max_callbacks_in_flight);
        return;
    }
    if (gg_stream_pending(&c->st) + params_len > lim->max_write_buffer) {
        refuse(srv, port, svc, msgid, GG_ERR_OVERLOADED, name, name_len, -1,
               "the client is not reading: its write buffer is full (limits.max_write_buffer)");
        return;
    }
    gg_call *call = gg_call_new(&srv->lp.calls);
    if (!call) {
        refuse(srv, port, svc, msgid, GG_ERR_OVERLOADED, name, name_len, -1, "too many calls in flight");
        return;
    }
    /* The params with every reference rewritten for the client (the target to its own id). */
    gg_buf out = {0}, given = {0};
    const char *why = NULL;
    int rc = fn(ud, c, params, params_len, &out, &given, &why);
    char *w = rc ? NULL : gg_stream_reserve(&c->st, 16 + method_len + out.len);
    if (!w) {
        const uint64_t *gv = (const uint64_t *)given.data;
        for (size_t i = 0; rc == 0 && c->objs && i < given.len / sizeof *gv; i++)
            gg_objtab_release(c->objs, gv[i], 1);
        gg_buf_release(&out, NULL);
        gg_buf_release(&given, NULL);
        gg_call_release(&srv->lp.calls, call);
        refuse(srv, port, svc, msgid, rc ? rc : GG_ERR_OVERLOADED, name, name_len, -1, "%s",
               why ? why : "out of memory");
        return;
    }
    gg_buf_release(&given, NULL);
    call->callback = 1;
    call->client_id = msgid;
    call->depth = depth;
    call->start_ns = g; /* callbacks: the object's id, for the messages */
    call->t0 = svc->conf->deadline_ms;
    gg_call_link_owner(&port->calls, call);
    gg_call_link_carrier(&c->cbs, call);
    gg_call_set_deadline(&srv->lp.calls, call, uv_now(srv->lp.uv) + svc->conf->deadline_ms);
    size_t k = gg_put_request_hdr(w, call->id, method, method_len);
    memcpy(w + k, out.data, out.len);
    gg_stream_commit(&c->st, k + out.len);
    gg_buf_release(&out, NULL);
}

uint32_t gg_cb_release(gg_cb_port *port, const char *params, size_t params_len)
{
    int64_t bad = gg_objtab_release_params(port->held, params, params_len);
    return bad < 0 ? 1 : (uint32_t)bad;
}

/* ---- the client's answers -------------------------------------------------------------- */

/* End a callback that may still be answered by its client: the record keeps its id (owed)
 * until the answer comes or the client closes, so a late answer never reaches a newer one. */
static void end_owed(gg_server *srv, gg_call *call)
{
    gg_client *c = call->carrier ? client_of_cbs(call->carrier) : NULL;
    if (c && !(c->st.flags & GG_ST_CLOSING)) gg_call_hold(call);
    else c = NULL;
    gg_call_end(&srv->lp.calls, call);
    if (c) gg_call_link_carrier(&c->cb_owed, call);
}

void gg_cb_response(gg_server *srv, gg_client *c, uint32_t msgid, const char *body, size_t len)
{
    gg_call *call = gg_call_find(&srv->lp.calls, msgid);
    if (!call || !call->callback || call->carrier != &c->cbs) {
        gg_call *owed = call ? NULL : gg_call_find_owed(&srv->lp.calls, msgid);
        if (owed && owed->carrier == &c->cb_owed) {
            gg_call_unlink_carrier(owed);
            gg_call_unhold(&srv->lp.calls, owed);
            gg_log(&srv->lp.log, GG_LOG_DEBUG, "late_callback_answer", "msgid=%u", msgid);
            return;
        }
        gg_log(&srv->lp.log, GG_LOG_INFO, "unexpected_response", "msgid=%u", msgid);
        return;
    }
    gg_cb_port *port = port_of(call);
    gg_obj_seen seen;
    gg_buf out = {0}, given = {0};
    gg_cb_out o = {srv, c, port, 0, NULL, &given};
    int rc = 0;
    if (gg_obj_scan(body, len, &srv->obj_ext, &seen) || seen.bad) {
        rc = gg_obj_rewrite(body, len, &srv->obj_ext, map_client_answer, &o, &out);
        if (rc == 0) body = out.data, len = out.len;
    }
    const gg_limits *lim = &srv->cfg->limits;
    char *w = rc == 0 && gg_stream_pending(port->st) + len <= lim->max_write_buffer
                  ? gg_stream_reserve(port->st, GG_RESPONSE_HDR_MAX + len)
                  : NULL;
    if (w) {
        size_t k = gg_put_response_hdr(w, call->client_id);
        memcpy(w + k, body, len);
        gg_stream_commit(port->st, k + len);
        gg_cb_done(&o);
    } else {
        gg_cb_undo(&o);
        const char *why = o.why ? o.why : rc ? "malformed object reference in the answer"
                                             : "the upstream is not reading its answers";
        gg_log(&srv->lp.log, GG_LOG_INFO, "callback_answer_refused", "msgid=%u reason=\"%s\"",
               call->client_id, why);
        gg_reply_error(port->st, call->client_id,
                       o.why ? o.code : rc ? GG_ERR_BAD_REQUEST : GG_ERR_OVERLOADED, "%s", why);
    }
    gg_buf_release(&out, NULL);
    gg_call_end(&srv->lp.calls, call);
}

void gg_cb_fail(gg_server *srv, gg_call *call, int code, const char *message)
{
    gg_reply_error(port_of(call)->st, call->client_id, code, "%s", message);
    end_owed(srv, call);
}

void gg_cb_on_deadline(gg_server *srv, gg_call *call)
{
    char msg[96];
    gg_log(&srv->lp.log, GG_LOG_INFO, "callback_deadline_exceeded", "object=%llu msgid=%u",
           (unsigned long long)call->start_ns, call->client_id);
    snprintf(msg, sizeof msg, "the client did not answer the callback within %.3f s",
             (double)call->t0 / 1000.0);
    gg_cb_fail(srv, call, GG_ERR_DEADLINE_EXCEEDED, msg);
}

void gg_cb_port_closed(gg_server *srv, gg_cb_port *port)
{
    while (port->calls.head) end_owed(srv, port->calls.head);
    if (port->held) { /* released to the clients that own them at the end of this turn */
        gg_objtab_free(port->held);
        free(port->held);
        port->held = NULL;
    }
}

void gg_cb_client_closed(gg_server *srv, gg_client *c)
{
    while (c->cbs.head) {
        gg_call *call = c->cbs.head;
        gg_reply_error(port_of(call)->st, call->client_id, GG_ERR_OBJECT_GONE,
                       "object %llu is gone: its client disconnected",
                       (unsigned long long)call->start_ns);
        gg_call_end(&srv->lp.calls, call);
    }
    while (c->cb_owed.head) {
        gg_call *call = c->cb_owed.head;
        gg_call_unlink_carrier(call);
        gg_call_unhold(&srv->lp.calls, call);
    }
    if (c->objs) c->objs->shares_limit = NULL;
    if (c->own) { /* ids upstreams hold for its objects answer 410 from now on */
        gg_server_obj_forget(c->own);
        gg_objtab_free(c->own);
        free(c->own);
        c->own = NULL;
    }
}

void gg_cb_counts(const gg_cb_port *port, uint64_t *held)
{
    if (port->held) *held += port->held->len;
}

/* dispatch_objects.c -- calls on remote objects ($call, $get, $release) and promise pipelining
 * (kept calls, calls on a promise, $finish): the object side of a call's life (dispatch.c). */
#include "proxy/dispatch_int.h"
#include "core/errors.h"
#include "proxy/server.h"
#include "core/buf.h"
#include "core/codec.h"
#include "core/objects.h"
#include "core/objtable.h"
#include "core/objiface.h"
#include "proxy/promises.h"
#include "proxy/callbacks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- remote objects ------------------------------------------------------------------------ */

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
    gg_obj_params op;
    gg_obj_params_split(params, params_len, &op);
    uint32_t n = op.n, name_len = op.name_len;
    const gg_obj_ext *ext = &srv->obj_ext;
    uint64_t cid;
    if (n >= 2 && n <= 4 && (p[1] == 0xc0 || (op.tl && op.type == ext->promise))) {
        dispatch_pipelined(srv, c, id, is_get, params, params_len); /* a plain method, a promise */
        return;
    }
    if (!op.tl || !op.nh || n > 4 || op.type != ext->yours ||
        gg_obj_get_uint((const uint8_t *)op.payload, op.plen, &cid) != op.plen) {
        gg_reply_error(&c->st, id, GG_ERR_BAD_REQUEST,
                       "%s params are [target, %s, ...] with a reference the gateway gave",
                       is_get ? "$get" : "$call", is_get ? "key" : "method");
        return;
    }
    const char *name = op.name;
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
    if (!is_get && keep_flag(n, op.rest, op.rest_len)) {
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
        if (gg_dispatch_apply_verdict(srv, call, &v, PHASE_REQUEST, &endpoint)) return;
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
    return gg_dispatch_apply_verdict(srv, call, &v, PHASE_REQUEST, endpoint);
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
    size_t al = gg_dispatch_object_size(rest, rest_len);
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
    gg_obj_params op;
    gg_obj_params_split(params, params_len, &op);
    uint32_t pid;
    size_t il = gg_kept_parse_promise(op.payload, op.plen, &pid);
    uint32_t name_len = op.name_len;
    const char *what = is_get ? "$get" : "$call";
    if (!il || !op.nh) {
        gg_reply_error(&c->st, id, GG_ERR_BAD_REQUEST,
                       "%s params are [promise, %s, ...] with a promise [msgid, path]", what,
                       is_get ? "key" : "method");
        return;
    }
    const char *name = op.name;
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
    size_t k = gg_get_array(params, params_len, &n);
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
    int64_t bad = gg_objtab_release_params(c->objs, params, params_len);
    if (bad < 0) {
        gg_dispatch_notify_dropped(srv, NULL, method, method_len, GG_ERR_BAD_REQUEST,
                                   "$release params are [[[id, count], ...]]");
        return;
    }
    if (bad)
        gg_dispatch_notify_dropped(srv, NULL, method, method_len, GG_ERR_OBJECT_GONE,
                                   "releases of references this connection does not hold");
}

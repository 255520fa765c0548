/* mprpc_objects.c -- the object side of a MessagePack-RPC upstream connection: the upstream's
 * objects in answers rewritten for each client, the client's own objects given to it, its
 * callbacks and releases, promise pipelining's carrier (the pool and framing are mprpc.c). */
#include "upstreams/mprpc_int.h"
#include "proxy/dispatch.h"
#include "core/errors.h"
#include "proxy/client.h"
#include "core/buf.h"
#include "core/objects.h"
#include "core/objtable.h"
#include "core/objiface.h"

#include <stdlib.h>
#include <stddef.h>
#include <string.h>

typedef struct obj_out {
    gg_uconn *uc;
    gg_objtab *cl; /* NULL: the client is gone, the references are released at once */
    gg_client *c;  /* the client (a YOURS it passed, handed back, becomes its own id) */
    const gg_obj_ext *ext;
    int code;
    const char *why;
    gg_buf given; /* the client ids given so far (uint64_t each), taken back on refusal */
    uint32_t seen, skip; /* references met; the first `skip` are left alone (second pass) */
} obj_out;

/* gg_obj_map_fn for an upstream's answer: OBJECT [U, iface] -> OBJECT [C, iface], C the id
 * the gateway gives this client for the upstream's object U. */
static int map_upstream_ref(void *ud, int kind, const char *payload, size_t plen, gg_buf *out)
{
    obj_out *o = ud;
    const uint8_t *p = (const uint8_t *)payload;
    uint64_t uid;
    size_t il;
    if (o->seen++ < o->skip) return 0;
    if (kind == 1 && !o->cl) return gg_buf_append(out, NULL, "\xc0", 1); /* nobody to read it */
    if (kind == 1) {
        int rc = gg_cb_map_yours(&o->uc->cb, o->c, payload, plen, out, &o->why);
        if (rc == -3) o->code = GG_ERR_UPSTREAM_UNAVAILABLE;
        return rc;
    }
    if (kind != 0) {
        o->code = GG_ERR_NOT_SUPPORTED;
        o->why = "the upstream sent a promise";
        return -3;
    }
    if (plen < 2 || p[0] != 0x92 || !(il = gg_obj_get_uint(p + 1, plen - 1, &uid)) ||
        uid > GG_OBJ_ID_MAX) {
        o->code = GG_ERR_UPSTREAM_UNAVAILABLE;
        o->why = "the upstream sent a malformed object reference";
        return -3;
    }
    if (!o->uc->objs) {
        gg_objtab *t = malloc(sizeof *t);
        if (!t || gg_objtab_init(t, GG_OBJ_UPSTREAM, UINT32_MAX)) {
            free(t);
            return GG_OBJ_RW_NOMEM;
        }
        t->conn = o->uc;
        t->ops = &gg_mprpc_ops;
        t->srv = srv_of(o->uc);
        t->on_queue = gg_server_obj_dirty;
        o->uc->objs = t;
    }
    int err;
    gg_objent *u = gg_objtab_import(o->uc->objs, uid, NULL, &err);
    if (!u) return GG_OBJ_RW_NOMEM;
    if (!u->iface) /* what calls on it are checked against (NULL: malformed, none pass) */
        u->iface = gg_objiface_new(payload + 1 + il, plen - 1 - il);
    int64_t cid = o->cl ? gg_objtab_give(o->cl, u) : GG_OBJ_EUNKNOWN;
    if (cid >= 0 && gg_buf_append(&o->given, NULL, &cid, sizeof cid)) {
        gg_objtab_release(o->cl, (uint64_t)cid, 1);
        cid = GG_OBJ_ENOMEM;
    }
    if (cid < 0) {
        gg_objtab_unused(u); /* released upstream: nobody holds it */
        if (!o->cl) return 0;
        o->code = GG_ERR_OVERLOADED;
        o->why = cid == GG_OBJ_ELIMIT ? "the connection holds limits.max_refs_per_client "
                                        "references already"
                                      : "out of memory for references";
        return -3;
    }
    uint8_t b[16];
    size_t n = 0;
    b[n++] = 0x92;
    n += gg_obj_put_uint(b + n, (uint64_t)cid);
    const char *iface = payload + 1 + il;
    size_t ilen = plen - 1 - il;
    if (gg_obj_put_ext_hdr(out, o->ext->object, n + ilen) || gg_buf_append(out, NULL, b, n) ||
        gg_buf_append(out, NULL, iface, ilen))
        return GG_OBJ_RW_NOMEM;
    return 0;
}

/* Rewrite bytes of the upstream's for client c (NULL: gone) into out. On refusal what was
 * given to the client is taken back, and the references after the failing one are still
 * counted, so that the upstream gets every one released. o->given (the client ids given) is
 * the caller's to release. */
static int rewrite_for_client(gg_uconn *uc, gg_client *c, const char *body, size_t len,
                              gg_buf *out, obj_out *o)
{
    gg_server *srv = srv_of(uc);
    *o = (obj_out){uc, c ? gg_client_objs(c) : NULL, c, &srv->obj_ext, 0, NULL, {0}, 0, 0};
    int rc = gg_obj_rewrite(body, len, &srv->obj_ext, map_upstream_ref, o, out);
    if (rc) {
        const uint64_t *given = (const uint64_t *)o->given.data;
        for (size_t i = 0; i < o->given.len / sizeof *given; i++)
            gg_objtab_release(o->cl, given[i], 1);
        o->given.len = 0;
        o->cl = NULL;
        o->skip = o->seen;
        o->seen = 0;
        gg_buf scratch = {0};
        gg_obj_rewrite(body, len, &srv->obj_ext, map_upstream_ref, o, &scratch);
        gg_buf_release(&scratch, NULL);
    }
    return rc;
}

/* gg_cb_rewrite_fn: a callback's params toward the client that owns its target. */
static int callback_params(void *ud, gg_client *c, const char *params, size_t len, gg_buf *out,
                           gg_buf *given, const char **why)
{
    obj_out o;
    int rc = rewrite_for_client(ud, c, params, len, out, &o);
    *given = o.given;
    if (!rc) return 0;
    *why = o.why ? o.why : "malformed object reference in the params";
    return o.why ? o.code : rc == GG_OBJ_RW_NOMEM ? GG_ERR_OVERLOADED : GG_ERR_BAD_REQUEST;
}

/* An answer of a service with objects = true: only one carrying references is copied, with
 * each rewritten to the id this client gets (objtable.h). */
void gg_mprpc_answer_with_objects(gg_uconn *uc, gg_call *call, const char *body, size_t len)
{
    gg_server *srv = srv_of(uc);
    gg_obj_seen seen;
    if (!gg_obj_scan(body, len, &srv->obj_ext, &seen) && !seen.bad) {
        gg_call_answer(srv, call, body, len);
        return;
    }
    obj_out o;
    gg_buf out = {0};
    int rc = rewrite_for_client(uc, gg_call_client(call), body, len, &out, &o);
    gg_buf_release(&o.given, NULL);
    if (rc == 0) {
        gg_call_answer(srv, call, out.data, out.len);
    } else {
        gg_call_unlink_carrier(call); /* answered: its connection owes it nothing more */
        gg_log(&srv->lp.log, GG_LOG_WARN, "object_refused", "service=%s upstream=%s reason=\"%s\"",
               uc->ep->svc->name, uc->ep->addr->text, o.why ? o.why : "malformed or out of memory");
        gg_call_fail(srv, call, o.why ? o.code : GG_ERR_UPSTREAM_UNAVAILABLE, "%s",
                     o.why ? o.why : "the upstream sent a malformed object reference");
    }
    gg_buf_release(&out, NULL);
}

/* A `$` request or notification of an upstream of a service with objects = true: calls on
 * the client objects it was given, releases of them (callbacks.c). */
void gg_mprpc_object_message(gg_uconn *uc, const char *msg, const gg_msg *m)
{
    gg_server *srv = srv_of(uc);
    const char *method = msg + m->method_off;
    const char *params = msg + m->body_off;
    size_t plen = m->size - m->body_off;
    if (m->type == GG_REQUEST) {
        gg_cb_request(srv, &uc->cb, uc->ep->svc, m->msgid, method, m->method_len, params, plen,
                      callback_params, uc);
        return;
    }
    uint32_t bad = 0;
    if (m->method_len == 8 && memcmp(method, "$release", 8) == 0)
        bad = gg_cb_release(&uc->cb, params, plen);
    else if (!(m->method_len == 7 && memcmp(method, "$finish", 7) == 0))
        bad = 1;
    if (bad)
        gg_log(&srv->lp.log, GG_LOG_WARN, "upstream_release_refused",
               "service=%s upstream=%s method=\"%.*s\" refused=%u", uc->ep->svc->name,
               uc->ep->addr->text, (int)(m->method_len > 64 ? 64 : m->method_len), method, bad);
}

/* gg_obj_map_fn for a plain call's params: only the client's own objects (dispatch.c
 * refused every other reference). */
static int map_client_objects(void *ud, int kind, const char *payload, size_t plen, gg_buf *out)
{
    gg_cb_out *o = ud;
    if (kind != 0) return GG_OBJ_RW_BAD;
    return gg_cb_map_object(o, payload, plen, out);
}

/* A call whose params carry the client's own functions or objects: they are given to the
 * connection uc (callbacks.c) and the call is written with the ids it gets. */
int gg_mprpc_send_with_objects(gg_uconn *uc, gg_call *call, const char *method,
                               uint32_t method_len, const char *body, size_t body_len)
{
    gg_server *srv = srv_of(uc);
    gg_client *c = gg_call_client(call);
    if (!c) return GG_ERR_UPSTREAM_UNAVAILABLE; /* nobody to call back */
    gg_buf out = {0}, given = {0};
    gg_cb_out o = {srv, c, &uc->cb, 0, NULL, &given};
    int rc = gg_obj_rewrite(body, body_len, &srv->obj_ext, map_client_objects, &o, &out);
    char *p = NULL;
    if (rc == 0 && gg_stream_pending(&uc->st) + out.len <= srv->cfg->limits.max_write_buffer)
        p = gg_stream_reserve(&uc->st, 16 + method_len + out.len);
    if (!p) {
        gg_cb_undo(&o);
        gg_buf_release(&out, NULL);
        return rc == -3 ? o.code : GG_ERR_OVERLOADED;
    }
    gg_cb_done(&o);
    size_t n = gg_put_request_hdr(p, call->id, method, method_len);
    memcpy(p + n, out.data, out.len);
    gg_stream_commit(&uc->st, n + out.len);
    gg_buf_release(&out, NULL);
    return 0;
}

/* gg_upstream_ops.carrier_conn: a call this implementation sent has its connection's
 * `calls` as carrier. */
void *gg_mprpc_carrier_conn(gg_call *call, gg_kept_list **kept)
{
    if (!call->carrier) return NULL;
    gg_uconn *uc = (gg_uconn *)((char *)call->carrier - offsetof(gg_uconn, calls));
    *kept = &uc->kept;
    return uc;
}

/* gg_upstream_ops.send_releases: [2, "$release", [[[id, count], ...]]], 256 pairs a message.
 * A connection that cannot take it now keeps nothing: the upstream's count only leaks (the
 * objects stay alive there until it closes), it never misroutes. */
void gg_mprpc_send_releases(void *conn)
{
    gg_uconn *uc = conn;
    gg_objtab *t = uc->objs;
    gg_objrel rel[256];
    size_t n;
    while (t && (n = gg_objtab_take(t, rel, 256)) > 0) {
        if (!gg_mprpc_conn_service(uc)) continue;
        char *p = gg_stream_reserve(&uc->st, GG_OBJTAB_RELEASE_MAX(n));
        if (!p) continue;
        gg_stream_commit(&uc->st, gg_objtab_put_release(p, rel, n));
    }
}

/* gg_upstream_ops.obj_counts */
void gg_mprpc_obj_counts(const gg_service *svc, uint64_t *upstream, uint64_t *client)
{
    for (int e = 0; e < svc->neps; e++) {
        const gg_uconn *conns = svc->eps[e].conns;
        for (int k = 0; k < svc->eps[e].nconns; k++)
            if (conns[k].objs) gg_objtab_counts(conns[k].objs, upstream, client);
    }
}

/* gg_upstream_ops.cb_port */
gg_cb_port *gg_mprpc_cb_port(void *conn)
{
    return &((gg_uconn *)conn)->cb;
}

/* gg_upstream_ops.cb_counts */
void gg_mprpc_cb_counts(const gg_service *svc, uint64_t *held)
{
    for (int e = 0; e < svc->neps; e++) {
        const gg_uconn *conns = svc->eps[e].conns;
        for (int k = 0; k < svc->eps[e].nconns; k++) gg_cb_counts(&conns[k].cb, held);
    }
}

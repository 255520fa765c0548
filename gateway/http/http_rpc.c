/* http_rpc.c -- the JSON-RPC 2.0 front door; see http_rpc.h and docs/http.md.
 *
 * One HTTP request is answered at a time per connection (http.h: pipelined requests wait for
 * the one before). A request's calls -- one, or every element of a batch -- are started at
 * once through gg_dispatch_request, like a MessagePack client's; each call's id is its slot in
 * the request's batch, and the client's protocol (rpc_proto) turns each answer into the JSON-RPC
 * response object of that slot. Once every slot has its answer the HTTP response is written,
 * in request order. */
#include "http/http_rpc.h"
#include "proxy/dispatch.h"
#include "core/errors.h"
#include "http/http.h"
#include "http/http_front.h"
#include "core/json.h"
#include "proxy/server.h"
#include "core/tls.h"

#include <openssl/crypto.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SLOT_WAITING  0 /* its call is in flight */
#define SLOT_ANSWERED 1
#define SLOT_NOTIFY   2 /* a notification: no response element */

typedef struct rpc_slot {
    json_t *id;    /* the request's id (a reference we hold), or NULL */
    json_t *reply; /* the response object, once answered (NULL then only when out of memory) */
    int state;
} rpc_slot;

/* The calls of one HTTP request. */
typedef struct rpc_batch {
    uint32_t n;
    uint32_t pending; /* answers still to come, plus one while the calls are being started */
    unsigned is_batch : 1, keep_alive : 1;
    rpc_slot slots[];
} rpc_batch;

typedef struct gg_http_rpc_conn {
    gg_client c; /* first member: a client like any other */
    gg_http_reader rd;
    gg_http_front *front;
    rpc_batch *batch; /* the request being answered, or NULL */
    char *token;      /* the Bearer token this connection is authenticated with, or NULL */
    size_t token_len;
    struct gg_http_rpc_conn *kick_next; /* front->kicks */
    unsigned kick_queued : 1;
    unsigned peer_eof : 1; /* the client shut its side: close after the answer */
} gg_http_rpc_conn;

static gg_http_rpc_conn *conn_of_reader(gg_http_reader *r)
{
    return (gg_http_rpc_conn *)(void *)((char *)r - offsetof(gg_http_rpc_conn, rd));
}

static gg_server *server_of(gg_http_rpc_conn *k)
{
    return gg_server_of(k->c.st.loop);
}

int gg_http_rpc_code(int code)
{
    switch (code) {
    case GG_ERR_BAD_REQUEST:
        return -32600;
    case GG_ERR_NO_SUCH_SERVICE:
        return -32601;
    case GG_ERR_INTERNAL:
        return -32603;
    default:
        break;
    }
    /* The rest of the gateway's codes, in JSON-RPC's range for server errors; -32000 itself is
     * kept for errors the upstream returned. */
    if (code > 400 && code < 500) return -32000 - (code - 400);
    if (code > 500 && code < 550) return -32050 - (code - 500);
    return -32099;
}

/* ---- response objects -------------------------------------------------------------------- */

static json_t *reply_result(json_t *id, json_t *result)
{
    return json_pack("{s:s, s:o, s:O}", "jsonrpc", "2.0", "result", result, "id",
                     id ? id : json_null());
}

/* Messages are text for people, from policies and upstreams too: invalid UTF-8 (or a name cut
 * in the middle of a character) becomes '?' rather than costing the whole answer. */
static json_t *text(const char *s)
{
    json_t *j = json_string(s);
    if (j) return j;
    size_t n = strlen(s);
    char *t = malloc(n + 1);
    if (!t) return NULL;
    for (size_t i = 0; i <= n; i++) t[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    j = json_string(t);
    free(t);
    return j;
}

/* data may be NULL; it is stolen. */
static json_t *reply_error(json_t *id, int code, const char *message, json_t *data)
{
    json_t *err =
        data ? json_pack("{s:i, s:o, s:o}", "code", code, "message", text(message), "data", data)
             : json_pack("{s:i, s:o}", "code", code, "message", text(message));
    if (!err) return NULL;
    return json_pack("{s:s, s:o, s:O}", "jsonrpc", "2.0", "error", err, "id",
                     id ? id : json_null());
}

static json_t *gateway_data(int code, double retry_after)
{
    json_t *d = json_pack("{s:i, s:s}", "code", code, "type", gg_error_type(code));
    if (d && retry_after >= 0) json_object_set_new(d, "retry_after", json_real(retry_after));
    return d;
}

static json_t *reply_gateway(json_t *id, int code, double retry_after, const char *message)
{
    return reply_error(id, gg_http_rpc_code(code), message, gateway_data(code, retry_after));
}

/* ---- writing --------------------------------------------------------------------------------- */

/* After an answer: close once written, or go on reading. Returns what on_request returns. */
static int after_answer(gg_http_rpc_conn *k, int keep_alive)
{
    if (keep_alive) return GG_HTTP_DONE;
    gg_stream_close_after_flush(&k->c.st);
    return GG_HTTP_STOP;
}

static int keep_alive_for(gg_http_rpc_conn *k, int asked)
{
    return asked && !k->peer_eof && !server_of(k)->draining;
}

static void respond_text(gg_http_rpc_conn *k, int status, const char *text, int keep_alive,
                         const char *extra)
{
    gg_http_count(k->front, 0, status);
    gg_http_respond(&k->c.st, status, "text/plain; charset=utf-8", text, strlen(text), keep_alive,
                    extra);
}

/* Write v (NULL: out of memory) as the JSON body of a response. */
static void respond_json(gg_http_rpc_conn *k, int status, json_t *v, int keep_alive,
                         const char *extra)
{
    size_t n = v ? json_dumpb(v, NULL, 0, JSON_COMPACT) : 0;
    if (!n) {
        respond_text(k, 500, "out of memory\n", keep_alive, NULL);
        return;
    }
    size_t head;
    char *p = gg_http_begin(&k->c.st, status, "application/json", n, keep_alive, extra, &head);
    if (!p) return; /* out of memory: the client sees no answer and times out */
    json_dumpb(v, p, n, JSON_COMPACT);
    gg_stream_commit(&k->c.st, head + n);
    gg_http_count(k->front, 0, status);
}

/* One JSON-RPC response object on its own (parse errors, refused requests). */
static int respond_single(gg_http_rpc_conn *k, int status, json_t *reply, int keep_alive,
                          const char *extra)
{
    respond_json(k, status, reply, keep_alive, extra);
    json_decref(reply);
    return after_answer(k, keep_alive);
}

static void batch_free(rpc_batch *b)
{
    if (!b) return;
    for (uint32_t i = 0; i < b->n; i++) {
        json_decref(b->slots[i].id);
        json_decref(b->slots[i].reply);
    }
    free(b);
}

/* Every slot has its answer: write the response and let the connection go on. */
static int finish(gg_http_rpc_conn *k)
{
    rpc_batch *b = k->batch;
    int keep_alive = keep_alive_for(k, b->keep_alive);
    json_t *out = NULL;
    int status = 200, oom = 0;
    if (b->is_batch) {
        out = json_array();
        oom = !out;
        for (uint32_t i = 0; out && i < b->n; i++) {
            if (b->slots[i].state == SLOT_NOTIFY) continue;
            if (!b->slots[i].reply || json_array_append(out, b->slots[i].reply)) oom = 1;
        }
        if (!oom && json_array_size(out) == 0) status = 204;
    } else if (b->slots[0].state == SLOT_NOTIFY) {
        status = 204;
    } else {
        out = json_incref(b->slots[0].reply);
        oom = !out;
    }
    if (status == 204) {
        gg_http_count(k->front, 0, 204);
        gg_http_respond(&k->c.st, 204, NULL, NULL, 0, keep_alive, NULL);
    } else {
        respond_json(k, status, oom ? NULL : out, keep_alive, NULL);
    }
    json_decref(out);
    batch_free(b);
    k->batch = NULL;
    return after_answer(k, keep_alive);
}

static void on_kick(uv_idle_t *h);

/* A request answered from inside another connection's callback (an upstream's answer, a
 * deadline): its connection goes on with its pipelined bytes in the next loop turn, never
 * re-entered from someone else's callback. */
static void queue_kick(gg_http_rpc_conn *k)
{
    gg_http_front *f = k->front;
    if (k->kick_queued || !f->kick_open) return;
    k->kick_queued = 1;
    k->kick_next = f->kicks;
    f->kicks = k;
    uv_idle_start(&f->kick, on_kick);
}

static void forget_kick(gg_http_rpc_conn *k)
{
    if (!k->kick_queued) return;
    for (gg_http_rpc_conn **p = &k->front->kicks; *p; p = &(*p)->kick_next) {
        if (*p == k) {
            *p = k->kick_next;
            break;
        }
    }
    k->kick_queued = 0;
}

static void on_kick(uv_idle_t *h)
{
    gg_http_front *f = h->data;
    while (f->kicks) {
        gg_http_rpc_conn *k = f->kicks;
        f->kicks = k->kick_next;
        k->kick_queued = 0;
        if (k->c.st.flags & (GG_ST_CLOSING | GG_ST_CLOSE_AFTER)) continue;
        if (gg_http_reader_next(&k->rd) && !k->c.held) gg_stream_resume(&k->c.st);
    }
    uv_idle_stop(&f->kick);
}

/* A slot's answer is in. */
static void settle(gg_client *c, uint32_t id, json_t *reply)
{
    gg_http_rpc_conn *k = (gg_http_rpc_conn *)c;
    rpc_batch *b = k->batch;
    if (!b || id >= b->n || b->slots[id].state != SLOT_WAITING) { /* every call answers once */
        json_decref(reply);
        return;
    }
    b->slots[id].reply = reply;
    b->slots[id].state = SLOT_ANSWERED;
    /* pending reaches 0 here only after the calls were all started: the answer came from
     * outside this connection's request handler. */
    if (--b->pending == 0 && finish(k) == GG_HTTP_DONE) queue_kick(k);
}

/* ---- the client protocol: answers of calls, in JSON -------------------------------------- */

static json_t *slot_id(gg_client *c, uint32_t id)
{
    rpc_batch *b = ((gg_http_rpc_conn *)c)->batch;
    return b && id < b->n ? b->slots[id].id : NULL;
}

static void rpc_result(gg_client *c, uint32_t id, const char *result, size_t len)
{
    char why[256];
    json_t *v = gg_json_from_msgpack(result, len, GG_JSON_DEPTH_MAX, why, sizeof why);
    json_t *reply;
    if (v) {
        reply = reply_result(slot_id(c, id), v);
    } else {
        /* Never a silently changed value: say why the result cannot be given. */
        char msg[320];
        snprintf(msg, sizeof msg, "the result cannot be represented in JSON: %s", why);
        reply = reply_gateway(slot_id(c, id), GG_ERR_INTERNAL, -1, msg);
    }
    settle(c, id, reply);
}

/* An error returned by the upstream, any MessagePack value: code -32000, the value as data. */
static json_t *upstream_error(gg_client *c, uint32_t id, const char *err, size_t len)
{
    char why[256];
    json_t *v = gg_json_from_msgpack(err, len, GG_JSON_DEPTH_MAX, why, sizeof why);
    if (!v) {
        char msg[320];
        snprintf(msg, sizeof msg, "the upstream's error cannot be represented in JSON: %s", why);
        return reply_gateway(slot_id(c, id), GG_ERR_INTERNAL, -1, msg);
    }
    json_t *m = json_is_object(v) ? json_object_get(v, "message") : NULL;
    if (json_is_string(m)) return reply_error(slot_id(c, id), -32000, json_string_value(m), v);
    if (json_is_string(v)) return reply_error(slot_id(c, id), -32000, json_string_value(v), v);
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_t *reply = reply_error(slot_id(c, id), -32000, text ? text : "upstream error", v);
    free(text);
    return reply;
}

static void rpc_answer(gg_client *c, uint32_t id, const char *body, size_t len)
{
    if (len && (unsigned char)body[0] == 0xc0) { /* error nil: a result */
        rpc_result(c, id, body + 1, len - 1);
        return;
    }
    /* body is the error value then the result: find where the error ends. */
    gg_scan_state st;
    gg_scan_limits lim = {.max_message = len, .max_depth = GG_DEPTH_CAP};
    gg_scan_reset(&st);
    json_t *reply;
    if (len && gg_scan(&st, body, len, &lim) == GG_SCAN_DONE)
        reply = upstream_error(c, id, body, st.msg.size);
    else
        reply = reply_gateway(slot_id(c, id), GG_ERR_INTERNAL, -1, "malformed upstream answer");
    settle(c, id, reply);
}

/* The auth policy tells a caller without an identity to "call ghost.auth(token) first"; over
 * HTTP the token goes in a header, so say that instead. The policy cannot word it per transport:
 * its decisions are cached per identity, and both kinds of client share them. */
#define AUTH_ADVICE ": call ghost.auth(token) "

static void rpc_error(gg_client *c, uint32_t id, int code, double retry_after, const char *message)
{
    const char *advice = code == GG_ERR_UNAUTHENTICATED ? strstr(message, AUTH_ADVICE) : NULL;
    if (advice) {
        char msg[320];
        snprintf(msg, sizeof msg, "%.*s: send the header Authorization: Bearer <token>",
                 (int)(advice - message > 200 ? 200 : advice - message), message);
        settle(c, id, reply_gateway(slot_id(c, id), code, retry_after, msg));
        return;
    }
    settle(c, id, reply_gateway(slot_id(c, id), code, retry_after, message));
}

static const gg_client_proto rpc_proto = {
    .name = "jsonrpc-http",
    .answer = rpc_answer,
    .result = rpc_result,
    .error = rpc_error,
};

/* ---- requests ------------------------------------------------------------------------------ */

/* params (absent, an array, an object) as the MessagePack array of arguments, in f->params.
 * An object is passed by name: one argument, the map. Depth counts as for a MessagePack
 * request, whose envelope is the first level. Returns 0, or -1 with a reason. */
static int pack_params(gg_http_front *f, const json_t *params, char *why, size_t whylen)
{
    const gg_limits *l = &f->srv->cfg->limits;
    int depth = (int)l->max_depth - 1; /* below the envelope */
    msgpack_packer pk;
    f->params.size = 0;
    msgpack_packer_init(&pk, &f->params, msgpack_sbuffer_write);
    if (json_is_array(params)) return gg_json_pack(&pk, params, depth, why, whylen);
    if (msgpack_pack_array(&pk, params ? 1 : 0)) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    return params ? gg_json_pack(&pk, params, depth - 1, why, whylen) : 0;
}

/* A JSON-RPC notification: like a MessagePack client's, it meets the service's policies with
 * this request's identity (gg_dispatch_notify) and has no answer: one that is refused or cannot
 * be delivered is counted and logged, and the HTTP response is the same. */
static void notify(gg_http_rpc_conn *k, const gg_method *name, int flaw, const json_t *params)
{
    gg_server *srv = server_of(k);
    const char *method = name->name;
    size_t mlen = name->len;
    gg_service *svc = name->dot < mlen ? gg_service_find(srv, method, name->dot) : NULL;
    char why[256];
    int rc = gg_method_refused(svc, flaw);
    if (rc) {
        gg_dispatch_notify_dropped(srv, svc, method, (uint32_t)mlen, rc, gg_method_flaw_reason(flaw));
        return;
    }
    if (!svc) {
        gg_dispatch_notify_dropped(srv, NULL, method, (uint32_t)mlen, GG_ERR_NO_SUCH_SERVICE,
                                   "no such service");
        return;
    }
    if (pack_params(k->front, params, why, sizeof why)) {
        gg_dispatch_notify_dropped(srv, svc, method, (uint32_t)mlen, GG_ERR_BAD_REQUEST, why);
        return;
    }
    if (k->front->params.size > srv->cfg->limits.max_message_size) {
        gg_dispatch_notify_dropped(srv, svc, method, (uint32_t)mlen, GG_ERR_TOO_LARGE,
                                   "params exceed limits.max_message_size");
        return;
    }
    gg_dispatch_notify(srv, &k->c, svc, name, k->front->params.data, k->front->params.size);
}

/* The gateway's own methods over HTTP: ghost.ping and sys.ping. ghost.auth is the
 * Authorization header's job here; sys.describe is for MessagePack clients (ghostgate stubs). */
static json_t *own_method(json_t *id, const char *method, size_t mlen)
{
    if ((mlen == 10 && memcmp(method, "ghost.ping", 10) == 0) ||
        (mlen == 8 && memcmp(method, "sys.ping", 8) == 0))
        return reply_result(id, json_string("pong"));
    char msg[320];
    snprintf(msg, sizeof msg,
             "no such method '%.*s' over HTTP (the gateway's own: ghost.ping, sys.ping; "
             "authenticate with Authorization: Bearer)",
             (int)(mlen > 64 ? 64 : mlen), method);
    return reply_gateway(id, GG_ERR_NO_SUCH_SERVICE, -1, msg);
}

/* Start slot i of b for the request object v. Answers the slot itself when it refuses. */
static void start_call(gg_http_rpc_conn *k, rpc_batch *b, uint32_t i, json_t *v)
{
    gg_server *srv = server_of(k);
    rpc_slot *s = &b->slots[i];
    json_t *reply = NULL;
    b->pending++;
    s->state = SLOT_WAITING;
    if (!json_is_object(v)) {
        reply = reply_error(NULL, -32600, "invalid request: not an object", NULL);
        goto answer;
    }
    json_t *id = json_object_get(v, "id");
    if (id && !json_is_string(id) && !json_is_number(id) && !json_is_null(id)) {
        reply = reply_error(NULL, -32600, "invalid request: id must be a string, a number or null",
                            NULL);
        goto answer;
    }
    s->id = json_incref(id);
    json_t *version = json_object_get(v, "jsonrpc");
    json_t *method = json_object_get(v, "method");
    json_t *params = json_object_get(v, "params");
    if (!json_is_string(version) || strcmp(json_string_value(version), "2.0") != 0) {
        reply = reply_error(id, -32600, "invalid request: jsonrpc must be \"2.0\"", NULL);
        goto answer;
    }
    if (!json_is_string(method)) {
        reply = reply_error(id, -32600, "invalid request: method must be a string", NULL);
        goto answer;
    }
    if (params && !json_is_array(params) && !json_is_object(params)) {
        reply =
            reply_error(id, -32602, "invalid params: params must be an array or an object", NULL);
        goto answer;
    }
    const char *m = json_string_value(method);
    size_t mlen = json_string_length(method);
    if (mlen == 0 || mlen > GG_METHOD_MAX) {
        reply = reply_gateway(id, GG_ERR_BAD_REQUEST, -1,
                              mlen ? "method name is too long" : "method is empty");
        goto answer;
    }
    uint32_t mdot;
    int flaw = gg_method_check(m, (uint32_t)mlen, &mdot);
    gg_method name = {m, (uint32_t)mlen, mdot};
    if (!id) { /* a valid notification */
        notify(k, &name, flaw, params);
        s->state = SLOT_NOTIFY;
        b->pending--;
        return;
    }
    if (srv->draining) {
        reply = reply_gateway(id, GG_ERR_SHUTTING_DOWN, -1, "the gateway is shutting down");
        goto answer;
    }
    const char *dot = mdot < mlen ? m + mdot : NULL;
    size_t svc_len = dot ? mdot : (mlen > 64 ? 64 : mlen);
    int refused = 0;
    if (flaw) refused = gg_method_refused(dot ? gg_service_find(srv, m, svc_len) : NULL, flaw);
    if (refused) {
        gg_log(&srv->lp.log, GG_LOG_INFO, "method_refused",
               "front=http method=\"%.*s\" reason=\"%s\"", (int)(mlen > 64 ? 64 : mlen), m,
               gg_method_flaw_reason(flaw));
        reply = reply_gateway(id, refused, -1, gg_method_flaw_reason(flaw));
        goto answer;
    }
    if ((dot && svc_len == 5 && memcmp(m, "ghost", 5) == 0) ||
        (mlen > 4 && !memcmp(m, "sys.", 4))) {
        reply = own_method(id, m, mlen);
        goto answer;
    }
    gg_service *svc = dot ? gg_service_find(srv, m, svc_len) : NULL;
    if (!svc) {
        char msg[128];
        snprintf(msg, sizeof msg, "no such service '%.*s'", (int)svc_len, m);
        reply = reply_gateway(id, GG_ERR_NO_SUCH_SERVICE, -1, msg);
        goto answer;
    }
    if (dot + 1 == m + mlen) {
        reply = reply_gateway(id, GG_ERR_BAD_REQUEST, -1, "method name is empty");
        goto answer;
    }
    char why[256];
    if (pack_params(k->front, params, why, sizeof why)) {
        char msg[320];
        snprintf(msg, sizeof msg, "invalid params: %s", why);
        reply = reply_error(id, -32602, msg, NULL);
        goto answer;
    }
    if (k->front->params.size > srv->cfg->limits.max_message_size) {
        reply = reply_gateway(id, GG_ERR_TOO_LARGE, -1, "params exceed limits.max_message_size");
        goto answer;
    }
    /* Answers come through rpc_proto with id i, maybe before this returns. */
    gg_dispatch_request(srv, &k->c, svc, i, &name, k->front->params.data, k->front->params.size);
    return;
answer:
    s->reply = reply;
    s->state = SLOT_ANSWERED;
    b->pending--;
}

#define GO_ON (-1) /* authenticate(): the request may go on to its calls */

/* Authorization: Bearer <token> authenticates the connection for this request's calls. Returns
 * GO_ON, or what on_request returns once it has answered the request (a refused token). */
static int authenticate(gg_http_rpc_conn *k, const gg_http_request *req, int keep_alive)
{
    gg_server *srv = server_of(k);
    if (!req->authorization) {
        /* Each request carries its own credentials: none means unauthenticated, also on a
         * connection that sent a token before (a proxy may carry many users' requests). */
        if (k->token) {
            free(k->token);
            k->token = NULL;
            gg_policy_client_closed(srv, &k->c); /* drops the identity with the Lua table */
        }
        return GO_ON;
    }
    const char *a = req->authorization;
    size_t n = req->authorization_len;
    if (n < 7 || strncasecmp(a, "bearer ", 7) != 0) {
        json_t *r = reply_gateway(NULL, GG_ERR_UNAUTHENTICATED, -1,
                                  "the Authorization header must be \"Bearer <token>\"");
        return respond_single(k, 401, r, keep_alive, "WWW-Authenticate: Bearer\r\n");
    }
    a += 7, n -= 7;
    while (n && *a == ' ') a++, n--;
    /* The same token again on this connection: it is authenticated already. Compared in
     * constant time: a proxy's connection may carry another user's guesses. */
    if (k->token && k->token_len == n && CRYPTO_memcmp(k->token, a, n) == 0) return GO_ON;
    if (k->token) {
        free(k->token);
        k->token = NULL;
        gg_policy_client_closed(srv, &k->c);
    }
    gg_auth_result res;
    gg_policy_authenticate(srv, &k->c, a, n, &res);
    if (res.code == 0) {
        k->token = malloc(n + 1);
        if (k->token) {
            memcpy(k->token, a, n);
            k->token[n] = 0;
            k->token_len = n;
        }
        return GO_ON;
    }
    /* The identity from an earlier token is gone with the table: nothing runs as anyone. */
    gg_policy_client_closed(srv, &k->c);
    char extra[96];
    int status = res.code == 429 || res.code == 500 || res.code == 501 ? res.code : 401;
    if (status == 429 && res.retry_after >= 0)
        snprintf(extra, sizeof extra, "Retry-After: %d\r\n", (int)(res.retry_after + 0.999));
    else if (status == 401)
        snprintf(extra, sizeof extra, "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n");
    else
        extra[0] = 0;
    json_t *r = reply_gateway(NULL, res.code, res.retry_after, res.message);
    return respond_single(k, status, r, keep_alive, extra);
}

static int is_json(const gg_http_request *req)
{
    const char *t = req->content_type;
    size_t n = req->content_type_len;
    if (!t || n < 16 || strncasecmp(t, "application/json", 16) != 0) return 0;
    return n == 16 || t[16] == ';' || t[16] == ' ' || t[16] == '\t';
}

static int on_request(gg_http_reader *r, const gg_http_request *req)
{
    gg_http_rpc_conn *k = conn_of_reader(r);
    gg_server *srv = server_of(k);
    const gg_config *cfg = srv->cfg;
    int keep_alive = keep_alive_for(k, req->keep_alive);
    k->c.last_active = uv_now(srv->lp.uv);
    const char *path = gg_http_front_path(k->front);
    if (req->path_len != strlen(path) || memcmp(req->path, path, req->path_len) != 0) {
        char text[320];
        snprintf(text, sizeof text, "not found: JSON-RPC is served at %s\n", path);
        respond_text(k, 404, text, keep_alive, NULL);
        return after_answer(k, keep_alive);
    }
    if (req->method != HTTP_POST) {
        respond_text(k, 405, "method not allowed: JSON-RPC requests are POSTed\n", keep_alive,
                     "Allow: POST\r\n");
        return after_answer(k, keep_alive);
    }
    if (!is_json(req)) {
        respond_text(k, 415, "unsupported media type: send Content-Type: application/json\n",
                     keep_alive, NULL);
        return after_answer(k, keep_alive);
    }
    int rc = authenticate(k, req, keep_alive);
    if (rc != GO_ON) return rc;

    json_error_t jerr;
    json_t *doc =
        json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!doc) {
        char msg[256];
        snprintf(msg, sizeof msg, "parse error: %s (line %d, column %d)", jerr.text, jerr.line,
                 jerr.column);
        return respond_single(k, 200, reply_error(NULL, -32700, msg, NULL), keep_alive, NULL);
    }
    int is_batch = json_is_array(doc);
    size_t n = is_batch ? json_array_size(doc) : 1;
    if (is_batch && n == 0) {
        json_decref(doc);
        return respond_single(k, 200,
                              reply_error(NULL, -32600, "invalid request: empty batch", NULL),
                              keep_alive, NULL);
    }
    if (n > cfg->limits.max_inflight_per_client) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "invalid request: a batch holds at most %u requests "
                 "(limits.max_inflight_per_client)",
                 cfg->limits.max_inflight_per_client);
        json_decref(doc);
        return respond_single(k, 200, reply_error(NULL, -32600, msg, NULL), keep_alive, NULL);
    }
    rpc_batch *b = calloc(1, sizeof *b + n * sizeof(rpc_slot));
    if (!b) {
        json_decref(doc);
        respond_text(k, 503, "out of memory\n", 0, NULL);
        return after_answer(k, 0);
    }
    b->n = (uint32_t)n;
    b->is_batch = is_batch;
    b->keep_alive = req->keep_alive;
    b->pending = 1; /* held until every call has been started */
    k->batch = b;
    for (uint32_t i = 0; i < b->n; i++)
        start_call(k, b, i, is_batch ? json_array_get(doc, i) : doc);
    json_decref(doc);
    if (--b->pending == 0) return finish(k);
    return GG_HTTP_BUSY;
}

static void on_http_error(gg_http_reader *r, int status, const char *why)
{
    gg_http_rpc_conn *k = conn_of_reader(r);
    gg_server *srv = server_of(k);
    char peer[64], text[200];
    gg_client_peer(&k->c, peer, sizeof peer);
    gg_log(&srv->lp.log, GG_LOG_INFO, "http_bad_request", "peer=%s status=%d reason=\"%s\"", peer,
           status, why);
    snprintf(text, sizeof text, "%s\n", why);
    respond_text(k, status, text, 0, NULL);
    gg_stream_close_after_flush(&k->c.st);
}

static const gg_http_reader_ops reader_ops = {
    .on_request = on_request,
    .on_error = on_http_error,
};

/* ---- the connection ------------------------------------------------------------------------ */

static void on_bytes(gg_stream *s, const char *data, size_t len)
{
    gg_http_rpc_conn *k = (gg_http_rpc_conn *)s;
    gg_server *srv = gg_server_of(s->loop);
    k->c.last_active = uv_now(srv->lp.uv);
    k->rd.max_body = gg_http_front_max_body(k->front); /* a reload may change it */
    gg_http_reader_feed(&k->rd, data, len);
}

static void on_eof(gg_stream *s, int status)
{
    gg_http_rpc_conn *k = (gg_http_rpc_conn *)s;
    if (status == UV_EOF) {
        /* The client may have shut only its sending side: the answer still goes out. */
        if (k->batch)
            k->peer_eof = 1;
        else
            gg_stream_close_after_flush(s);
        return;
    }
    gg_server *srv = gg_server_of(s->loop);
    char peer[64];
    gg_client_peer(&k->c, peer, sizeof peer);
    gg_log(&srv->lp.log, GG_LOG_INFO, "client_error", "peer=%s reason=\"%s\"", peer,
           uv_strerror(status));
    gg_stream_close(s);
}

static void on_drain(gg_stream *s)
{
    gg_http_rpc_conn *k = (gg_http_rpc_conn *)s;
    /* Requests that waited for the answers before them to be read go on now. */
    if (gg_http_reader_drained(&k->rd) && !k->c.held) gg_stream_resume(s);
    gg_client_drained(&k->c);
}

static void on_closed(gg_stream *s)
{
    gg_http_rpc_conn *k = (gg_http_rpc_conn *)s;
    gg_server *srv = gg_server_of(s->loop);
    gg_http_front *f = k->front;
    /* Calls still upstream stay registered and end quietly (client.c). */
    gg_client_remove(srv, &k->c);
    gg_http_reader_free(&k->rd);
    batch_free(k->batch);
    free(k->token);
    forget_kick(k);
    free(k);
    gg_http_front_unref(f);
}

static const gg_stream_ops rpc_stream_ops = {
    .on_eof = on_eof,
    .on_drain = on_drain,
    .on_closed = on_closed,
    .on_bytes = on_bytes,
};

void gg_http_rpc_accept(gg_http_front *f, uv_stream_t *server, int is_pipe, struct gg_tls_ctx *tls)
{
    gg_server *srv = f->srv;
    gg_http_rpc_conn *k = calloc(1, sizeof *k);
    if (!k) {
        gg_log(&srv->lp.log, GG_LOG_ERROR, "out_of_memory", "what=http client");
        return;
    }
    if (is_pipe)
        uv_pipe_init(srv->lp.uv, &k->c.st.io.pipe, 0);
    else
        uv_tcp_init(srv->lp.uv, &k->c.st.io.tcp);
    gg_stream_init(&k->c.st, &srv->lp, &rpc_stream_ops, GG_ST_READY);
    k->c.st.max_out = srv->cfg->limits.max_write_buffer;
    k->c.proto = &rpc_proto;
    k->front = f;
    gg_http_front_ref(f);
    gg_http_reader_init(&k->rd, &k->c.st, &reader_ops, gg_http_front_max_body(f));
    gg_client_add(srv, &k->c);
    if (uv_accept(server, &k->c.st.io.stream)) {
        gg_stream_close(&k->c.st);
        return;
    }
    if (srv->nclients > srv->cfg->limits.max_clients || srv->draining) {
        gg_log(&srv->lp.log, GG_LOG_WARN, "client_refused", "reason=%s limit=%u front=http",
               srv->draining ? "shutting_down" : "max_clients", srv->cfg->limits.max_clients);
        respond_text(k, 503, "too many connections\n", 0, "Retry-After: 1\r\n");
        gg_stream_close_after_flush(&k->c.st);
        return;
    }
    if (!is_pipe) uv_tcp_nodelay(&k->c.st.io.tcp, 1);
    if (tls && gg_tls_attach(&k->c.st, tls, NULL) == 0) gg_tls_http(k->c.st.tls);
    if ((tls && !k->c.st.tls) || gg_stream_start(&k->c.st)) gg_stream_close(&k->c.st);
}

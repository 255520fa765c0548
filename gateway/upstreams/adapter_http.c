/* adapter_http.c -- http.request from an adapter: httpc.c connections kept per host:port for
 * reuse, name lookups, the request head (httpc.h's builder), one retry, timeouts. */
#include "upstreams/adapter_int.h"

/* Let go of the task's HTTP request in progress, if any: its connection is abandoned (closed,
 * the late answer dropped) and a name lookup still running is cancelled. */
void gg_ad_drop_http(ad_task *t)
{
    if (t->conn) {
        t->conn->task = NULL;
        gg_ad_conn_abandon(t->conn);
        t->conn = NULL;
    }
    if (t->gai) {
        t->gai->task = NULL;
        uv_cancel((uv_req_t *)&t->gai->req);
        t->gai = NULL;
    }
}

/* --- http.request ----------------------------------------------------------------------------- */

static void idle_remove(ad_conn *c)
{
    gg_adapter *ad = c->ad;
    if (!c->idle) return;
    for (ad_conn **p = &ad->idle_conns; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    c->idle = 0;
    c->next = NULL;
    ad->nidle--;
}

/* Close a connection nobody waits for (its response, if any, is dropped). */
void gg_ad_conn_abandon(ad_conn *c)
{
    idle_remove(c);
    gg_httpc_close(&c->hc);
}

/* The request failed: messages name what failed; the Lua side adds "METHOD url: ". */
static void http_fail(ad_task *t, int code, const char *type, const char *why)
{
    if (t->timer_init) uv_timer_stop(&t->timer);
    t->conn = NULL;
    gg_ad_res_error(t, GG_AD_R_GATEWAY, code, type, "%s", why);
    gg_ad_op_done(t);
}

static void hc_connect(gg_httpc *hc, int status)
{
    ad_conn *c = (ad_conn *)hc;
    const char *tls_why = status < 0 && c->hc.st.tls ? gg_tls_error(c->hc.st.tls) : "";
    if (*tls_why && c->task) { /* the handshake failed: the task learns why */
        ad_task *t = c->task;
        char why[300];
        snprintf(why, sizeof why, "TLS failed: %s", tls_why);
        c->task = NULL;
        t->conn = NULL;
        http_fail(t, GG_ERR_UPSTREAM_UNAVAILABLE, "upstream_unavailable", why);
        return;
    }
    if (status < 0) {
        c->connect_status = status;
        return; /* hc_closed follows and reports it */
    }
    ad_task *t = c->task;
    if (!t) {
        gg_httpc_close(&c->hc);
        return;
    }
    if (gg_httpc_send(&c->hc, t->req, t->req_len, NULL, 0, t->is_head,
                      gg_ad_limits(c->ad)->max_message_size)) {
        c->task = NULL;
        t->conn = NULL;
        gg_httpc_close(&c->hc);
        http_fail(t, GG_ERR_OVERLOADED, "overloaded", "out of memory");
    }
}


static void http_continue(ad_task *t);

static void hc_response(gg_httpc *hc, const gg_httpc_resp *r, const char *err)
{
    ad_conn *c = (ad_conn *)hc;
    gg_adapter *ad = c->ad;
    ad_task *t = c->task;
    c->task = NULL;
    if (!t) return;
    t->conn = NULL;
    if (err) {
        /* A kept connection the server closed meanwhile fails before any byte of the
         * response: an idempotent request goes again, once, on a new connection. */
        if (c->hc.responses > 0 && !c->hc.got_bytes && t->idempotent && !t->retried) {
            t->retried = 1;
            http_continue(t);
            return;
        }
        http_fail(t, GG_ERR_UPSTREAM_UNAVAILABLE, "upstream_unavailable", err);
        return;
    }
    if (t->timer_init) uv_timer_stop(&t->timer);
    gg_ad_res_clear(t);
    t->res_status = r->status;
    t->res_data = malloc(r->body_len + 1);
    t->res_hdrs = malloc(r->headers_len + 1);
    if (!t->res_data || !t->res_hdrs) {
        gg_ad_res_error(t, GG_AD_R_GATEWAY, GG_ERR_OVERLOADED, "overloaded", "out of memory");
    } else {
        memcpy(t->res_data, r->body, r->body_len);
        t->res_len = r->body_len;
        memcpy(t->res_hdrs, r->headers, r->headers_len);
        t->res_hdrs_len = r->headers_len;
        t->res_nhdrs = r->nheaders;
    }
    gg_ad_op_done(t);
    if (c->hc.state != GG_HTTPC_READY) return; /* the server ends the connection */
    if (ad->released) {
        gg_ad_conn_abandon(c);
        return;
    }
    /* Keep it for the next request to the same place, within bounds. */
    if (ad->nidle >= MAX_IDLE_CONNS) {
        ad_conn *oldest = ad->idle_conns;
        while (oldest && oldest->next) oldest = oldest->next;
        if (oldest) gg_ad_conn_abandon(oldest);
    }
    c->idle = 1;
    c->idle_since = uv_now(ad->srv->lp.uv);
    c->next = ad->idle_conns;
    ad->idle_conns = c;
    ad->nidle++;
}

static void hc_closed(gg_httpc *hc)
{
    ad_conn *c = (ad_conn *)hc;
    gg_adapter *ad = c->ad;
    ad_task *t = c->task;
    idle_remove(c);
    if (t) { /* closed before a response: the connection never came up */
        char why[400];
        snprintf(why, sizeof why, "cannot connect to %s: %s", t->key,
                 c->connect_status ? uv_strerror(c->connect_status) : "connection closed");
        http_fail(t, GG_ERR_UPSTREAM_UNAVAILABLE, "upstream_unavailable", why);
    }
    free(c);
    ad->pending--;
    gg_ad_maybe_free(ad);
}

static const gg_httpc_ops ad_conn_ops = {
    .on_connect = hc_connect,
    .on_response = hc_response,
    .on_closed = hc_closed,
};

/* A new connection for t, to t->sa. */
static void http_connect(ad_task *t)
{
    gg_adapter *ad = t->ad;
    ad_conn *c = calloc(1, sizeof *c);
    if (!c) {
        http_fail(t, GG_ERR_OVERLOADED, "overloaded", "out of memory");
        return;
    }
    c->ad = ad;
    c->task = t;
    snprintf(c->key, sizeof c->key, "%s", t->key);
    gg_httpc_init(&c->hc, &ad->srv->lp, &ad_conn_ops, c);
    if (t->https) { /* the URL's host is the name the certificate must hold */
        c->hc.tls = ad->https;
        c->hc.tls_name = t->host;
        c->hc.tls_peer = c->key;
    }
    ad->pending++;
    t->conn = c;
    int rc = gg_httpc_connect(&c->hc, (const struct sockaddr *)&t->sa);
    if (rc) c->connect_status = rc; /* hc_closed reports it */
}

static void on_gai(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    ad_gai *g = req->data;
    gg_adapter *ad = g->ad;
    ad_task *t = g->task;
    if (t) {
        t->gai = NULL;
        if (status < 0 || !res) {
            char why[400];
            snprintf(why, sizeof why, "cannot resolve %s: %s", t->host,
                     uv_strerror(status < 0 ? status : UV_EAI_NONAME));
            http_fail(t, GG_ERR_UPSTREAM_UNAVAILABLE, "upstream_unavailable", why);
        } else {
            memset(&t->sa, 0, sizeof t->sa);
            memcpy(&t->sa, res->ai_addr, res->ai_addrlen);
            /* the port sits at the same offset in sockaddr_in and sockaddr_in6 */
            ((struct sockaddr_in *)&t->sa)->sin_port = htons((uint16_t)t->port);
            http_connect(t);
        }
    }
    if (res) uv_freeaddrinfo(res);
    free(g);
    ad->pending--;
    gg_ad_maybe_free(ad);
}

/* Find t's host: a literal address at once, a name through libuv's resolver (its thread
 * pool: the loop does not block); then connect. */
static void http_open(ad_task *t)
{
    gg_adapter *ad = t->ad;
    memset(&t->sa, 0, sizeof t->sa);
    if (uv_ip4_addr(t->host, (int)t->port, (struct sockaddr_in *)&t->sa) == 0 ||
        uv_ip6_addr(t->host, (int)t->port, (struct sockaddr_in6 *)&t->sa) == 0) {
        http_connect(t);
        return;
    }
    ad_gai *g = calloc(1, sizeof *g);
    if (!g) {
        http_fail(t, GG_ERR_OVERLOADED, "overloaded", "out of memory");
        return;
    }
    struct addrinfo hints = {0};
    hints.ai_socktype = SOCK_STREAM;
    g->ad = ad;
    g->task = t;
    g->req.data = g;
    int rc = uv_getaddrinfo(ad->srv->lp.uv, &g->req, on_gai, t->host, NULL, &hints);
    if (rc) {
        free(g);
        char why[400];
        snprintf(why, sizeof why, "cannot resolve %s: %s", t->host, uv_strerror(rc));
        http_fail(t, GG_ERR_UPSTREAM_UNAVAILABLE, "upstream_unavailable", why);
        return;
    }
    ad->pending++;
    t->gai = g;
}

/* Send t's request on a kept connection to the same host:port, or open a new one. */
static void http_continue(ad_task *t)
{
    gg_adapter *ad = t->ad;
    uint64_t now = uv_now(ad->srv->lp.uv);
    for (ad_conn *c = ad->idle_conns, *next; c && !t->retried; c = next) {
        next = c->next;
        if (now - c->idle_since > IDLE_CONN_MS) { /* the server has likely dropped it */
            gg_ad_conn_abandon(c);
            continue;
        }
        if (strcmp(c->key, t->key) || c->hc.state != GG_HTTPC_READY) continue;
        idle_remove(c);
        if (gg_httpc_send(&c->hc, t->req, t->req_len, NULL, 0, t->is_head,
                          gg_ad_limits(ad)->max_message_size)) {
            gg_ad_conn_abandon(c);
            http_fail(t, GG_ERR_OVERLOADED, "overloaded", "out of memory");
            return;
        }
        c->task = t;
        t->conn = c;
        return;
    }
    http_open(t);
}

static void on_http_timeout(uv_timer_t *timer)
{
    ad_task *t = timer->data;
    if (t->waiting != W_HTTP) return;
    gg_ad_drop_http(t);
    gg_ad_res_error(t, GG_AD_R_GATEWAY, GG_ERR_DEADLINE_EXCEEDED, "deadline_exceeded",
              "no response within %.3f s", (double)t->http_ms / 1000.0);
    gg_ad_op_done(t);
}

static int is_idempotent(const char *m)
{
    static const char *const safe[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < sizeof safe / sizeof safe[0]; i++)
        if (strcmp(m, safe[i]) == 0) return 1;
    return 0;
}

/* Start http.request(method, url, headers, body, timeout) yielded on co. Returns the values
 * pushed when it failed at once, or -1 when the task waits. */
int gg_ad_start_http(ad_task *t)
{
    gg_adapter *ad = t->ad;
    gg_server *srv = ad->srv;
    lua_State *co = t->co;
    size_t ulen = 0, blen = 0;
    const char *method = lua_tostring(co, 2);
    const char *url = lua_tolstring(co, 3, &ulen);
    const char *body = lua_tolstring(co, 5, &blen);
    double timeout = lua_isnumber(co, 6) ? lua_tonumber(co, 6) : 0;
    struct http_parser_url u;
    gg_buf b = {0}; /* heap (pool NULL): t->req takes it and free()s it */
    t->op = GG_AD_OP_HTTP;
    if (gg_ad_past_deadline(t)) return gg_ad_push_results(t);
    http_parser_url_init(&u);
    if (!method || !url || http_parser_parse_url(url, ulen, 0, &u) ||
        !(u.field_set & (1 << UF_HOST)) || !(u.field_set & (1 << UF_SCHEMA))) {
        gg_ad_res_error(t, GG_AD_R_LOCAL, GG_ERR_BAD_REQUEST, "bad_request", "not an http:// URL");
        goto fail;
    }
    size_t slen = u.field_data[UF_SCHEMA].len;
    const char *scheme = url + u.field_data[UF_SCHEMA].off;
    t->https = slen == 5 && strncasecmp(scheme, "https", 5) == 0;
    if (!t->https && (slen != 4 || strncasecmp(scheme, "http", 4))) {
        gg_ad_res_error(t, GG_AD_R_LOCAL, GG_ERR_NOT_SUPPORTED, "not_supported",
                        "only http:// and https:// URLs");
        goto fail;
    }
    if (t->https && !ad->https) { /* not an adapter service's task: never expected */
        gg_ad_res_error(t, GG_AD_R_GATEWAY, GG_ERR_NOT_SUPPORTED, "not_supported", "no TLS context");
        goto fail;
    }
    if (u.field_set & (1 << UF_USERINFO)) {
        gg_ad_res_error(t, GG_AD_R_LOCAL, GG_ERR_BAD_REQUEST, "bad_request",
                  "credentials in the URL are not supported: send an Authorization header");
        goto fail;
    }
    size_t host_off = u.field_data[UF_HOST].off, host_len = u.field_data[UF_HOST].len;
    if (host_len >= sizeof t->host) {
        gg_ad_res_error(t, GG_AD_R_LOCAL, GG_ERR_BAD_REQUEST, "bad_request", "host name too long");
        goto fail;
    }
    memcpy(t->host, url + host_off, host_len);
    t->host[host_len] = 0;
    t->port = (u.field_set & (1 << UF_PORT)) ? u.port : t->https ? 443 : 80;
    /* kept connections are found by key: an https one never serves an http:// URL */
    snprintf(t->key, sizeof t->key, "%s%s:%u", t->https ? "https://" : "", t->host, t->port);
    t->is_head = strcmp(method, "HEAD") == 0;
    t->idempotent = is_idempotent(method);

    /* The request: line, the caller's headers, Host, length, body. */
    int rc = gg_http_head_start(
        &b, method, url + u.field_data[UF_PATH].off,
        (u.field_set & (1 << UF_PATH)) ? u.field_data[UF_PATH].len : 0,
        url + u.field_data[UF_QUERY].off,
        (u.field_set & (1 << UF_QUERY)) ? u.field_data[UF_QUERY].len : 0);
    if (lua_istable(co, 4)) {
        int nh = (int)lua_objlen(co, 4);
        for (int i = 1; i + 1 <= nh; i += 2) {
            size_t kn = 0, vn = 0;
            lua_rawgeti(co, 4, i);
            lua_rawgeti(co, 4, i + 1);
            const char *k = lua_tolstring(co, -2, &kn);
            const char *v = lua_tolstring(co, -1, &vn);
            int hr = k && v ? gg_http_head_add(&b, k, kn, v, vn) : -2;
            lua_pop(co, 2);
            if (hr == -2) {
                gg_ad_res_error(t, GG_AD_R_LOCAL, GG_ERR_BAD_REQUEST, "bad_request", "bad header");
                goto fail;
            }
            rc |= hr;
        }
    }
    if (!rc && !gg_http_head_has(b.data, b.len, "host")) {
        /* host[:port] as the URL has it ([v6] brackets included) */
        size_t start = host_off, end = host_off + host_len;
        if (start > 0 && url[start - 1] == '[') start--, end++;
        if (u.field_set & (1 << UF_PORT))
            end = u.field_data[UF_PORT].off + u.field_data[UF_PORT].len;
        rc |= gg_http_head_add(&b, "Host", 4, url + start, end - start);
    }
    if (!rc && !gg_http_head_has(b.data, b.len, "user-agent"))
        rc |= gg_http_head_add(&b, "User-Agent", 10, "ghostgate", 9);
    int has_length = body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                     strcmp(method, "PATCH") == 0;
    rc |= gg_http_head_end(&b, has_length ? (long long)blen : -1);
    if (blen) rc |= gg_buf_append(&b, NULL, body, blen);
    if (rc) {
        gg_ad_res_error(t, GG_AD_R_GATEWAY, GG_ERR_OVERLOADED, "overloaded", "out of memory");
        goto fail;
    }
    lua_settop(co, 0);
    free(t->req);
    t->req = b.data;
    t->req_len = b.len;
    t->retried = 0;

    /* How long: what is left of the call's deadline, or less if the adapter says so. No
     * request outlives the call it serves (gg_ad_past_deadline refused the ones after it). */
    uint64_t now = uv_now(srv->lp.uv);
    uint64_t ms = t->deadline > now ? t->deadline - now : 1;
    if (timeout > 0 && timeout * 1000.0 < (double)ms) ms = (uint64_t)(timeout * 1000.0);
    if (ms == 0) ms = 1;
    t->http_ms = ms;
    if (!t->timer_init) {
        uv_timer_init(srv->lp.uv, &t->timer);
        t->timer.data = t;
        t->timer_init = 1;
    }
    t->waiting = W_HTTP;
    t->done = 0;
    t->sync = 1;
    uv_timer_start(&t->timer, on_http_timeout, ms, 0);
    http_continue(t);
    t->sync = 0;
    if (t->done) {
        t->done = 0;
        return gg_ad_push_results(t);
    }
    return -1;
fail:
    free(b.data);
    return gg_ad_push_results(t);
}

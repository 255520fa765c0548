/* http_front.c -- the HTTP listeners and the state the HTTP modules share; see http_front.h. */
#include "http/http_front.h"
#include "http/http_admin.h"
#include "http/http_rpc.h"
#include "proxy/server.h"
#include "core/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const int gg_http_counted_status[GG_HTTP_STATUS_SLOTS] = {200, 204, 400, 401, 404, 405, 411, 413,
                                                          414, 415, 417, 429, 431, 500, 503, 0};

void gg_http_count(gg_http_front *f, int admin, int status)
{
    int i = 0;
    while (gg_http_counted_status[i] && gg_http_counted_status[i] != status) i++;
    f->responses[admin ? 1 : 0][i]++; /* the last slot counts every other status */
}

const char *gg_http_front_path(const gg_http_front *f)
{
    const gg_config *cfg = f->srv->cfg;
    return cfg->nhttp && cfg->http_path ? cfg->http_path : f->path;
}

size_t gg_http_front_max_body(const gg_http_front *f)
{
    const gg_config *cfg = f->srv->cfg;
    return cfg->nhttp ? cfg->http_max_body : f->max_body;
}

static void front_free(gg_http_front *f)
{
    free(f->path);
    msgpack_sbuffer_destroy(&f->params);
    free(f->listeners);
    free(f);
}

void gg_http_front_ref(gg_http_front *f)
{
    f->refs++;
}

void gg_http_front_unref(gg_http_front *f)
{
    if (--f->refs == 0 && f->closed) front_free(f);
}

static void handle_closed(uv_handle_t *h)
{
    gg_http_front_unref(h->data);
}

static void on_room(void *arg);

/* max_handshakes counts HTTPS handshakes too, as listener.c does for tls:// listeners: at the
 * cap an HTTPS listener does not accept (the connection waits in the kernel's backlog) until
 * a handshake ends. */
static int tls_full(gg_http_listener *ls)
{
    gg_server *srv = ls->front->srv;
    if (!ls->tls || gg_tls_ctx_may_accept(srv->cfg->tls)) return 0;
    if (!ls->blocked)
        gg_log(&srv->lp.log, GG_LOG_WARN, "tls_handshakes_full", "listen=%s reason=\"max_handshakes "
               "in progress; new connections wait in the backlog\"", ls->bound);
    ls->blocked = 1;
    gg_tls_ctx_on_room(srv->cfg->tls, on_room, srv); /* the server outlives the front */
    return 1;
}

static void accept_one(gg_http_listener *ls)
{
    gg_server *srv = ls->front->srv;
    struct gg_tls_ctx *tls = ls->tls ? srv->cfg->tls : NULL;
    if (ls->admin)
        gg_http_admin_accept(ls->front, &ls->io.stream, ls->is_pipe, tls);
    else
        gg_http_rpc_accept(ls->front, &ls->io.stream, ls->is_pipe, tls);
}

static void on_room(void *arg)
{
    gg_server *srv = arg;
    gg_http_front *f = srv->http;
    for (int i = 0; f && i < f->nlisteners; i++) {
        gg_http_listener *ls = &f->listeners[i];
        if (!ls->blocked || !ls->open || tls_full(ls)) continue;
        ls->blocked = 0;
        accept_one(ls);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    gg_http_listener *ls = server->data;
    gg_server *srv = ls->front->srv;
    if (status < 0) {
        gg_log(&srv->lp.log, GG_LOG_WARN, "accept_failed", "listen=%s reason=\"%s\"", ls->bound,
               uv_strerror(status));
        return;
    }
    if (tls_full(ls)) return;
    accept_one(ls);
}

/* gg_listen_socket makes the socket as the MessagePack listeners do (SO_REUSEADDR, SO_REUSEPORT
 * for workers, stale unix socket files replaced); libuv takes it from there. */
static int listen_one(gg_http_front *f, gg_http_listener *ls, const gg_addr *a, char *err,
                      size_t errlen)
{
    gg_server *srv = f->srv;
    int fd = gg_listen_socket(a, srv->opts.reuseport && a->kind == GG_ADDR_TCP, 1, err, errlen);
    if (fd < 0) return -1;
    int rc;
    ls->is_pipe = a->kind == GG_ADDR_UNIX;
    if (ls->is_pipe) {
        uv_pipe_init(srv->lp.uv, &ls->io.pipe, 0);
        snprintf(ls->unlink_path, sizeof ls->unlink_path, "%s", a->path);
        rc = uv_pipe_open(&ls->io.pipe, fd);
    } else {
        uv_tcp_init(srv->lp.uv, &ls->io.tcp);
        rc = uv_tcp_open(&ls->io.tcp, fd);
    }
    ls->io.handle.data = ls;
    ls->open = 1;
    gg_http_front_ref(f);
    if (rc) {
        close(fd); /* libuv did not take it */
    } else {
        rc = uv_listen(&ls->io.stream, 1024, on_connection);
    }
    if (rc) {
        snprintf(err, errlen, "cannot listen on %s: %s", a->text, uv_strerror(rc));
        return -1;
    }
    snprintf(ls->bound, sizeof ls->bound, "%s", a->text);
    if (!ls->is_pipe) {
        struct sockaddr_storage ss;
        int len = sizeof ss;
        uv_tcp_getsockname(&ls->io.tcp, (struct sockaddr *)&ss, &len);
        gg_addr_format_sa((struct sockaddr *)&ss, ls->bound, sizeof ls->bound);
        ls->tls = a->tls;
        if (a->tls) memcpy(ls->bound, "tls", 3);
    }
    gg_log(&srv->lp.log, GG_LOG_INFO, "http_listening", "kind=%s listen=%s",
           ls->admin ? "admin" : "jsonrpc", ls->bound);
    return 0;
}

int gg_http_front_start(gg_server *srv, char *err, size_t errlen)
{
    gg_config *cfg = srv->cfg;
    int n = cfg->nhttp + cfg->nadmin;
    if (n == 0) return 0;
    gg_http_front *f = calloc(1, sizeof *f);
    if (!f || !(f->listeners = calloc((size_t)n, sizeof *f->listeners))) {
        free(f);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    f->srv = srv;
    msgpack_sbuffer_init(&f->params);
    f->max_body = cfg->http_max_body;
    if (!(f->path = strdup(cfg->http_path ? cfg->http_path : "/rpc"))) {
        free(f->listeners);
        free(f);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    srv->http = f;
    uv_idle_init(srv->lp.uv, &f->kick);
    f->kick.data = f;
    f->kick_open = 1;
    gg_http_front_ref(f);
    uv_timer_init(srv->lp.uv, &f->sweep);
    f->sweep.data = f;
    f->sweep_open = 1;
    gg_http_front_ref(f);
    if (cfg->nadmin) {
        uv_timer_start(&f->sweep, gg_http_admin_sweep, 1000, 1000);
        uv_unref((uv_handle_t *)&f->sweep);
    }
    for (int i = 0; i < n; i++) {
        gg_http_listener *ls = &f->listeners[f->nlisteners++];
        ls->front = f;
        ls->admin = i >= cfg->nhttp;
        const gg_addr *a = ls->admin ? &cfg->admin_listen[i - cfg->nhttp] : &cfg->http_listen[i];
        if (listen_one(f, ls, a, err, errlen)) return -1; /* shutdown_now closes what opened */
    }
    return 0;
}

static void close_listener(gg_http_listener *ls)
{
    if (!ls->open) return;
    ls->open = 0;
    ls->io.handle.data = ls->front;
    uv_close(&ls->io.handle, handle_closed);
    if (ls->unlink_path[0]) unlink(ls->unlink_path);
}

void gg_http_front_stop(gg_server *srv)
{
    gg_http_front *f = srv->http;
    if (!f) return;
    for (int i = 0; i < f->nlisteners; i++)
        if (!f->listeners[i].admin) close_listener(&f->listeners[i]);
}

void gg_http_front_close(gg_server *srv)
{
    gg_http_front *f = srv->http;
    if (!f) return;
    srv->http = NULL;
    f->closed = 1;
    for (int i = 0; i < f->nlisteners; i++) close_listener(&f->listeners[i]);
    gg_http_admin_close_all(f);
    if (f->kick_open) {
        f->kick_open = 0;
        uv_close((uv_handle_t *)&f->kick, handle_closed);
    }
    if (f->sweep_open) {
        f->sweep_open = 0;
        uv_close((uv_handle_t *)&f->sweep, handle_closed);
    }
}

/* gg_front_ops.addresses: the bound addresses of the HTTP listeners of one kind. */
static int front_addresses(const gg_server *srv, int admin, char *out, size_t size)
{
    const gg_http_front *f = srv->http;
    size_t n = 0;
    if (size) out[0] = 0;
    for (int i = 0; f && i < f->nlisteners; i++) {
        const gg_http_listener *ls = &f->listeners[i];
        if (!ls->admin != !admin || n >= size) continue;
        int w = snprintf(out + n, size - n, "%s%s", n ? "," : "", ls->bound);
        if (w > 0) n += (size_t)w;
    }
    return n < size ? (int)n : (int)size;
}

const gg_front_ops gg_http_front_ops = {
    .start = gg_http_front_start,
    .stop = gg_http_front_stop,
    .close = gg_http_front_close,
    .addresses = front_addresses,
};

/* listener.c -- TCP and Unix listeners; each accepted connection becomes a client. */
#include "proxy/listener.h"
#include "proxy/server.h"
#include "core/tls.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void on_room(void *arg);

/* At max_handshakes a TLS listener does not accept: libuv stops polling it until the next
 * uv_accept, so a flood of half-open connections waits in the kernel's backlog instead of
 * costing handshakes. The first handshake to end resumes it (on_room). */
static int tls_full(gg_listener *ls)
{
    gg_tls_ctx *ctx = ls->srv->cfg->tls;
    if (!ls->addr.tls || gg_tls_ctx_may_accept(ctx)) return 0;
    if (!ls->blocked)
        gg_log(&ls->srv->lp.log, GG_LOG_WARN, "tls_handshakes_full", "listen=%s reason=\"max_handshakes "
               "in progress; new connections wait in the backlog\"", ls->bound);
    ls->blocked = 1;
    gg_tls_ctx_on_room(ctx, on_room, ls->srv);
    return 1;
}

static void accept_one(gg_listener *ls)
{
    gg_client_accept(ls->srv, &ls->io.stream, ls->addr.kind == GG_ADDR_UNIX,
                     ls->addr.tls ? ls->srv->cfg->tls : NULL);
}

static void on_room(void *arg)
{
    gg_server *srv = arg;
    for (int i = 0; i < srv->nlisteners; i++) {
        gg_listener *ls = &srv->listeners[i];
        if (!ls->blocked || !ls->open || tls_full(ls)) continue;
        ls->blocked = 0;
        accept_one(ls);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    gg_listener *ls = server->data;
    if (status < 0) {
        gg_log(&ls->srv->lp.log, GG_LOG_WARN, "accept_failed", "listen=%s reason=\"%s\"", ls->bound,
               uv_strerror(status));
        return;
    }
    if (tls_full(ls)) return;
    accept_one(ls);
}

int gg_listen_socket(const gg_addr *a, int reuseport, int do_listen, char *err, size_t errlen)
{
    int fd, one = 1;
    if (a->kind == GG_ADDR_UNIX) {
        if (gg_addr_clear_stale(a->path, err, errlen)) return -1;
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        snprintf(sun.sun_path, sizeof sun.sun_path, "%s", a->path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof sun) || (do_listen && listen(fd, 1024)))
            goto fail;
        return fd;
    }
    socklen_t len = a->sa.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one)) ||
        bind(fd, (const struct sockaddr *)&a->sa, len) || (do_listen && listen(fd, 1024)))
        goto fail;
    return fd;
fail:
    snprintf(err, errlen, "cannot listen on %s: %s", a->text, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
}

static int start_one(gg_server *srv, gg_listener *ls, int inherited, char *err, size_t errlen)
{
    const gg_addr *a = &ls->addr;
    int rc;
    int fd = inherited;
    if (fd < 0 && srv->opts.reuseport && a->kind == GG_ADDR_TCP) {
        fd = gg_listen_socket(a, 1, 0, err, errlen);
        if (fd < 0) return -1;
    }
    if (a->kind == GG_ADDR_UNIX) {
        uv_pipe_init(srv->lp.uv, &ls->io.pipe, 0);
        ls->open = 1;
        if (fd >= 0) {
            rc = uv_pipe_open(&ls->io.pipe, fd);
        } else {
            if (gg_addr_clear_stale(a->path, err, errlen)) return -1;
            rc = uv_pipe_bind(&ls->io.pipe, a->path);
            ls->owns_path = rc == 0;
        }
        snprintf(ls->bound, sizeof ls->bound, "%s", a->text);
    } else {
        uv_tcp_init(srv->lp.uv, &ls->io.tcp);
        ls->open = 1;
        rc = fd >= 0 ? uv_tcp_open(&ls->io.tcp, fd) : uv_tcp_bind(&ls->io.tcp, (const struct sockaddr *)&a->sa, 0);
    }
    if (rc == 0) rc = uv_listen(&ls->io.stream, 1024, on_connection);
    if (rc) {
        snprintf(err, errlen, "cannot listen on %s: %s", a->text, uv_strerror(rc));
        return -1;
    }
    if (a->kind == GG_ADDR_TCP) {
        struct sockaddr_storage ss;
        int len = sizeof ss;
        uv_tcp_getsockname(&ls->io.tcp, (struct sockaddr *)&ss, &len);
        gg_addr_format_sa((struct sockaddr *)&ss, ls->bound, sizeof ls->bound);
        if (a->tls) memcpy(ls->bound, "tls", 3);
    }
    return 0;
}

int gg_listeners_start(gg_server *srv, char *err, size_t errlen)
{
    gg_config *cfg = srv->cfg;
    srv->listeners = calloc((size_t)cfg->nlisten, sizeof(gg_listener));
    if (!srv->listeners) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < cfg->nlisten; i++) {
        gg_listener *ls = &srv->listeners[srv->nlisteners++];
        ls->srv = srv;
        ls->addr = cfg->listen[i];
        ls->io.handle.data = ls;
        int inherited = srv->opts.listen_fds ? srv->opts.listen_fds[i] : -1;
        if (start_one(srv, ls, inherited, err, errlen)) return -1;
    }
    return 0;
}

void gg_listeners_stop(gg_server *srv)
{
    for (int i = 0; i < srv->nlisteners; i++) {
        gg_listener *ls = &srv->listeners[i];
        if (!ls->open) continue;
        ls->open = 0;
        uv_close(&ls->io.handle, NULL);
        if (ls->owns_path) unlink(ls->addr.path);
    }
}

/* redis_kit.h -- real redis-server processes for the C tests that talk to Redis (test_redis.c,
 * test_ratelease.c): a free loopback port, a server started on it with uv_spawn (no
 * persistence, DEBUG allowed from loopback, warnings on stderr), and its stop by PID, waited
 * for. Readiness is the client's business: gg_redis reconnects until the server answers.
 *
 *   rk_server s; int port = rk_free_port(loop);
 *   rk_start(loop, &s, port, "--requirepass", "pw", NULL, NULL);    up to four extra args
 *   ... rk_wait(loop, &flag, 5000) ...                                the loop until *flag
 *   rk_stop(loop, &s, SIGTERM);                                       kill, wait for the exit
 *
 * Everything is static inline: each test program includes this header once. */
#ifndef GG_REDIS_KIT_H
#define GG_REDIS_KIT_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

typedef struct rk_server {
    uv_process_t proc;
    int port;
    int exited; /* the process has exited (its handle is closing) */
} rk_server;

static inline void rk_exit_cb_(uv_process_t *p, int64_t status, int sig)
{
    ((rk_server *)p->data)->exited = 1;
    uv_close((uv_handle_t *)p, NULL);
}

/* A loopback port nothing listens on now (bound, read, closed). */
static inline int rk_free_port(uv_loop_t *loop)
{
    uv_tcp_t t;
    struct sockaddr_in sa;
    struct sockaddr_storage got;
    int len = sizeof got;
    uv_tcp_init(loop, &t);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_bind(&t, (struct sockaddr *)&sa, 0);
    uv_tcp_getsockname(&t, (struct sockaddr *)&got, &len);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ntohs(((struct sockaddr_in *)&got)->sin_port);
}

/* Start redis-server on port with up to four extra arguments (the first NULL ends them).
 * Returns uv_spawn's result. */
static inline int rk_start(uv_loop_t *loop, rk_server *s, int port, const char *a1,
                           const char *a2, const char *a3, const char *a4)
{
    char p[8];
    snprintf(p, sizeof p, "%d", port);
    char *args[] = {"redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--enable-debug-command", "local", "--loglevel",
                    "warning", (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL};
    uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE}, {.flags = UV_IGNORE},
                                     {.flags = UV_INHERIT_FD, .data.fd = 2}};
    uv_process_options_t o = {.file = "redis-server", .args = args, .exit_cb = rk_exit_cb_,
                              .stdio_count = 3, .stdio = stdio};
    memset(s, 0, sizeof *s);
    s->port = port;
    s->proc.data = s;
    return uv_spawn(loop, &s->proc, &o);
}

/* Run the loop until *flag is set or ms pass (something must wake the loop: the tests keep a
 * ticking timer). Returns *flag. */
static inline int rk_wait(uv_loop_t *loop, const int *flag, uint64_t ms)
{
    uint64_t end = uv_now(loop) + ms;
    while (!*flag && uv_now(loop) < end) uv_run(loop, UV_RUN_ONCE);
    return *flag;
}

/* Send sig to the server (by its PID) and wait up to 5 s for it to exit. */
static inline void rk_stop(uv_loop_t *loop, rk_server *s, int sig)
{
    if (s->exited) return;
    uv_process_kill(&s->proc, sig);
    rk_wait(loop, &s->exited, 5000);
}

#endif

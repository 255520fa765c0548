/* cli_register.c -- `ghostgate register`: keep one backend endpoint in the Redis registry
 * (registry.c) for backends that cannot do it themselves, until SIGTERM or SIGINT. */
#include "cli/cli.h"
#include "core/addr.h"
#include "core/log.h"
#include "core/registry.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char register_usage[] =
    "usage: ghostgate register -r URL -s SERVICE -a ADDR [--ttl SECONDS] [-l LEVEL]\n"
    "Register ADDR as an endpoint of SERVICE in the Redis registry and heartbeat (every TTL/3)\n"
    "until SIGTERM or SIGINT, then deregister at once. Gateways with `discover = true` for\n"
    "SERVICE route to it; if this process dies, the endpoint lapses after TTL. While Redis is\n"
    "unreachable it retries with backoff and registers again when Redis is back.\n"
    "  -r, --redis URL      redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or\n"
    "                       unix:PATH[?db=N&password=P]\n"
    "  -s, --service NAME   the service (letters, digits, _ . -)\n"
    "  -a, --addr ADDR      where the gateway reaches the backend: tcp://HOST:PORT or unix:PATH\n"
    "  -t, --ttl SECONDS    how long the endpoint outlives its last heartbeat (default 10,\n"
    "                       0.3 to 86400)\n"
    "  -l, --log-level LEVEL error, warn, info or debug (default info)\n"
    "  -h, --help           print this help\n"
    "Exit status: 0 deregistered after SIGTERM or SIGINT, 1 cannot start, 64 bad usage.\n";

typedef struct reg_main {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    gg_registration *reg;
    gg_logger log;
} reg_main;

static void done_cb(void *arg)
{
    reg_main *m = arg;
    m->reg = NULL;
    uv_close((uv_handle_t *)&m->sigterm, NULL);
    uv_close((uv_handle_t *)&m->sigint, NULL);
}

static void signal_cb(uv_signal_t *s, int signum)
{
    reg_main *m = s->data;
    if (!m->reg) return;
    uv_signal_stop(&m->sigterm);
    uv_signal_stop(&m->sigint);
    gg_log(&m->log, GG_LOG_INFO, "stopping", "signal=%s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    gg_registration_stop(m->reg, done_cb, m);
}

static int usage(const char *what, const char *arg)
{
    fprintf(stderr, "ghostgate register: %s%s%s%s\n%s", what, arg ? " '" : "", arg ? arg : "",
            arg ? "'" : "", register_usage);
    return 64;
}

int gg_cmd_register(int argc, char **argv)
{
    const char *url = NULL, *service = NULL, *addr = NULL, *ttl = "10", *level = "info";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(register_usage, stdout);
            return 0;
        }
        const char **dst = !strcmp(a, "-r") || !strcmp(a, "--redis")     ? &url
                           : !strcmp(a, "-s") || !strcmp(a, "--service") ? &service
                           : !strcmp(a, "-a") || !strcmp(a, "--addr")    ? &addr
                           : !strcmp(a, "-t") || !strcmp(a, "--ttl")     ? &ttl
                           : !strcmp(a, "-l") || !strcmp(a, "--log-level") ? &level
                                                                           : NULL;
        if (!dst) return usage("unexpected argument", a);
        if (i + 1 >= argc) return usage("missing value for", a);
        *dst = argv[++i];
    }
    if (!url) return usage("-r URL is required", NULL);
    if (!service) return usage("-s SERVICE is required", NULL);
    if (!addr) return usage("-a ADDR is required", NULL);

    char err[256];
    gg_redis_url u;
    if (gg_redis_url_parse(url, &u, err, sizeof err) < 0) return usage(err, NULL);
    if (gg_registry_check_service(service, err, sizeof err) < 0) return usage(err, service);
    gg_addr parsed;
    if (gg_registry_check_addr(addr, err, sizeof err) < 0 ||
        gg_addr_parse(addr, &parsed, err, sizeof err) < 0)
        return usage(err, NULL);
    char *end;
    double secs = strtod(ttl, &end);
    if (*end || !isfinite(secs) || secs * 1000 < GG_REGISTRY_MIN_TTL_MS ||
        secs * 1000 > GG_REGISTRY_MAX_TTL_MS)
        return usage("--ttl must be a number of seconds from 0.3 to 86400, got", ttl);
    int lvl = gg_log_level_parse(level);
    if (lvl < 0) return usage("unknown log level (error, warn, info, debug)", level);

    static reg_main m; /* outlives every callback: the loop runs to completion below */
    m.log = (gg_logger){.level = lvl, .fd = 2};
    uv_loop_init(&m.loop);
    uv_signal_init(&m.loop, &m.sigterm);
    uv_signal_init(&m.loop, &m.sigint);
    m.sigterm.data = m.sigint.data = &m;
    uv_signal_start(&m.sigterm, signal_cb, SIGTERM);
    uv_signal_start(&m.sigint, signal_cb, SIGINT);

    char host[128] = "", info[200];
    gethostname(host, sizeof host - 1);
    snprintf(info, sizeof info, "ghostgate-register host=%s pid=%d", host, (int)getpid());
    m.reg = gg_registration_new(&m.loop, &u, service, addr, info, (uint32_t)(secs * 1000 + 0.5),
                                &m.log, err, sizeof err);
    if (!m.reg) {
        fprintf(stderr, "ghostgate register: %s\n", err);
        uv_close((uv_handle_t *)&m.sigterm, NULL);
        uv_close((uv_handle_t *)&m.sigint, NULL);
        uv_run(&m.loop, UV_RUN_DEFAULT);
        uv_loop_close(&m.loop);
        return 1;
    }
    uv_run(&m.loop, UV_RUN_DEFAULT);
    uv_loop_close(&m.loop);
    return 0;
}

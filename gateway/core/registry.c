/* registry.c -- a backend's registration in the Redis registry (see registry.h). */
#include "core/registry.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gg_registration {
    uv_loop_t *loop;
    gg_redis *redis;
    uv_timer_t timer; /* the heartbeat; at stop, the one-shot that ends it */
    uint32_t ttl_ms;
    const gg_logger *log;
    int stopping;
    int stop_pending; /* stop commands not answered yet */
    int registered;   /* the last heartbeat reached Redis (for the log: once per outage) */
    uint64_t beats;
    void (*done)(void *arg);
    void *done_arg;
    char key[300];  /* ghostgate:{SERVICE}:ep:ADDR */
    char set[100];  /* ghostgate:{SERVICE}:eps */
    char service[65];
    char addr[201];
    char info[200];
};

int gg_registry_check_service(const char *s, char *err, size_t errlen)
{
    size_t n = strlen(s);
    int ok = n >= 1 && n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-';
    if (!ok)
        snprintf(err, errlen, "bad service name: 1 to 64 letters, digits, '_', '.' or '-'");
    return ok ? 0 : -1;
}

int gg_registry_check_addr(const char *a, char *err, size_t errlen)
{
    size_t n = strlen(a);
    int ok = n >= 1 && n <= 200;
    for (size_t i = 0; ok && i < n; i++) ok = a[i] > 0x20 && a[i] < 0x7f;
    if (!ok) snprintf(err, errlen, "bad address: 1 to 200 printable characters, no spaces");
    return ok ? 0 : -1;
}

static void ignore_cb(gg_redis *r, redisReply *rep, const char *err, void *arg)
{
}

static void set_cb(gg_redis *r, redisReply *rep, const char *err, void *arg)
{
    gg_registration *g = arg;
    if (err) {
        if (g->log && g->registered)
            gg_log(g->log, GG_LOG_WARN, "register_failed", "service=%s addr=%s why=\"%s\"",
                   g->service, g->addr, rep ? "error reply" : gg_redis_why(r));
        g->registered = 0;
        return;
    }
    g->beats++;
    if (!g->registered && g->log)
        gg_log(g->log, GG_LOG_INFO, "registered", "service=%s addr=%s ttl_ms=%u", g->service,
               g->addr, g->ttl_ms);
    g->registered = 1;
}

/* SADD answers 1 when the endpoint is new to the set (first start, Redis wiped, or a reader
 * pruned it after a lapse): that is when watchers need the hint. */
static void sadd_cb(gg_redis *r, redisReply *rep, const char *err, void *arg)
{
    gg_registration *g = arg;
    if (err || g->stopping || rep->type != REDIS_REPLY_INTEGER || rep->integer != 1) return;
    gg_redis_command(r, ignore_cb, NULL, 3,
                     (const char *[]){"PUBLISH", GG_REGISTRY_CHANNEL, g->service}, NULL);
}

static void beat(uv_timer_t *t)
{
    gg_registration *g = t->data;
    char px[16];
    snprintf(px, sizeof px, "%u", g->ttl_ms);
    if (gg_redis_command(g->redis, set_cb, g, 5,
                         (const char *[]){"SET", g->key, g->info, "PX", px}, NULL) < 0)
        return; /* down: the state callback beats again when it is back */
    gg_redis_command(g->redis, sadd_cb, g, 3, (const char *[]){"SADD", g->set, g->addr}, NULL);
}

static void state_cb(gg_redis *r, int up, const char *why, void *arg)
{
    gg_registration *g = arg;
    if (!up) g->registered = 0; /* say "registered" again when it is back */
    if (up && !g->stopping) uv_timer_start(&g->timer, beat, 0, g->ttl_ms / 3);
}

gg_registration *gg_registration_new(uv_loop_t *loop, const gg_redis_url *url, const char *service,
                                     const char *addr, const char *info, uint32_t ttl_ms,
                                     const gg_logger *log, char *err, size_t errlen)
{
    if (gg_registry_check_service(service, err, errlen) < 0) return NULL;
    if (gg_registry_check_addr(addr, err, errlen) < 0) return NULL;
    if (ttl_ms < GG_REGISTRY_MIN_TTL_MS || ttl_ms > GG_REGISTRY_MAX_TTL_MS) {
        snprintf(err, errlen, "ttl must be between %g and %u seconds",
                 GG_REGISTRY_MIN_TTL_MS / 1000.0, GG_REGISTRY_MAX_TTL_MS / 1000);
        return NULL;
    }
    gg_registration *g = calloc(1, sizeof *g);
    if (!g) goto fail_oom;
    g->loop = loop;
    g->ttl_ms = ttl_ms;
    g->log = log;
    snprintf(g->service, sizeof g->service, "%s", service);
    snprintf(g->addr, sizeof g->addr, "%s", addr);
    snprintf(g->info, sizeof g->info, "%s", info ? info : "");
    snprintf(g->key, sizeof g->key, GG_REGISTRY_PREFIX "{%s}:ep:%s", service, addr);
    snprintf(g->set, sizeof g->set, GG_REGISTRY_PREFIX "{%s}:eps", service);
    uv_timer_init(loop, &g->timer);
    g->timer.data = g;
    /* Commands must not outlive a heartbeat period: a late one would be overtaken. */
    uint32_t rto = ttl_ms / 3 < 1000 ? ttl_ms / 3 : 1000;
    gg_redis_opts o = {.on_state = state_cb, .arg = g, .log = log, .name = "registry",
                       .request_timeout_ms = rto, .connect_timeout_ms = rto};
    g->redis = gg_redis_new(loop, url, &o);
    if (!g->redis) goto fail_timer;
    return g;
fail_timer:
    uv_close((uv_handle_t *)&g->timer, (uv_close_cb)free);
fail_oom:
    snprintf(err, errlen, "out of memory");
    return NULL;
}

uint64_t gg_registration_beats(const gg_registration *g)
{
    return g->beats;
}

static void closed_cb(uv_handle_t *h)
{
    gg_registration *g = h->data;
    if (g->done) g->done(g->done_arg);
    free(g);
}

static void finish(gg_registration *g)
{
    gg_redis *r = g->redis;
    if (!r) return;
    g->redis = NULL;
    gg_redis_close(r); /* heartbeat commands still pending fail now: they only count */
    uv_close((uv_handle_t *)&g->timer, closed_cb);
}

static void finish_cb(uv_timer_t *t)
{
    finish(t->data);
}

static void unreg_cb(gg_redis *r, redisReply *rep, const char *err, void *arg)
{
    gg_registration *g = arg;
    if (--g->stop_pending == 0) {
        if (g->log)
            gg_log(g->log, GG_LOG_INFO, "deregistered", "service=%s addr=%s%s%s%s", g->service,
                   g->addr, err ? " why=\"" : "", err ? (rep ? "error reply" : err) : "",
                   err ? "\"" : "");
        /* Not from inside hiredis's callback: the close frees what it is walking. */
        uv_timer_start(&g->timer, finish_cb, 0, 0);
    }
}

void gg_registration_stop(gg_registration *g, void (*done)(void *arg), void *arg)
{
    g->stopping = 1;
    g->done = done;
    g->done_arg = arg;
    uv_timer_stop(&g->timer);
    if (gg_redis_command(g->redis, unreg_cb, g, 2, (const char *[]){"DEL", g->key}, NULL) == 0) {
        g->stop_pending = 1;
        if (gg_redis_command(g->redis, unreg_cb, g, 3,
                             (const char *[]){"SREM", g->set, g->addr}, NULL) == 0)
            g->stop_pending++;
        if (gg_redis_command(g->redis, unreg_cb, g, 3,
                             (const char *[]){"PUBLISH", GG_REGISTRY_CHANNEL, g->service},
                             NULL) == 0)
            g->stop_pending++;
        return;
    }
    uv_timer_start(&g->timer, finish_cb, 0, 0);
}

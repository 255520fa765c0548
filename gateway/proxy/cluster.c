/* cluster.c -- the top-level redis option: one connection per process, swapped in place on a
 * reload that changes it, and ratelimit's cluster buckets (see cluster.h). */
#include "proxy/cluster.h"
#include "proxy/server.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int gg_cluster_apply(gg_server *srv)
{
    gg_cluster *c = &srv->cluster;
    const gg_config *cfg = srv->cfg;
    c->workers = cfg->workers > 0 ? cfg->workers : 1;
    if (c->url && cfg->redis && !strcmp(c->url, cfg->redis)) return 0;
    gg_cluster_stop(srv);
    if (!cfg->redis) return 0;
    gg_redis_opts o = {.log = &srv->lp.log, .name = "cluster"};
    c->url = strdup(cfg->redis);
    c->redis = c->url ? gg_redis_new(srv->lp.uv, &cfg->redis_url, &o) : NULL;
    if (!c->redis) {
        free(c->url);
        c->url = NULL;
        gg_log(&srv->lp.log, GG_LOG_ERROR, "redis_failed", "reason=\"out of memory\"");
        return -1;
    }
    return 0;
}

void gg_cluster_stop(gg_server *srv)
{
    gg_cluster *c = &srv->cluster;
    /* Pending lease requests are answered "closed" now: no bucket waits on this connection. */
    if (c->redis) {
        const gg_redis_stats *st = gg_redis_stats_get(c->redis);
        c->redis_before.commands += st->commands;
        c->redis_before.replies += st->replies;
        c->redis_before.errors += st->errors;
        c->redis_before.connects += st->connects;
        gg_redis_close(c->redis);
    }
    c->redis = NULL;
    free(c->url);
    c->url = NULL;
}

int gg_cluster_metrics(const gg_server *srv, char *out, size_t size)
{
    const gg_cluster *c = &srv->cluster;
    if (size) out[0] = 0;
    if (!c->redis && !c->redis_before.connects && !c->redis_before.commands) return 0;
    gg_redis_stats r = c->redis_before;
    if (c->redis) {
        const gg_redis_stats *st = gg_redis_stats_get(c->redis);
        r.commands += st->commands;
        r.replies += st->replies;
        r.errors += st->errors;
        r.connects += st->connects;
    }
    const gg_lease_stats *l = &c->leases;
    int n = snprintf(
        out, size,
        "# HELP ghostgate_redis_up The cluster's Redis connection is up (1) or not (0).\n"
        "# TYPE ghostgate_redis_up gauge\nghostgate_redis_up %d\n"
        "# HELP ghostgate_redis_commands_total Commands sent to Redis.\n"
        "# TYPE ghostgate_redis_commands_total counter\nghostgate_redis_commands_total %llu\n"
        "# HELP ghostgate_redis_round_trips_total Commands Redis answered (error replies included).\n"
        "# TYPE ghostgate_redis_round_trips_total counter\nghostgate_redis_round_trips_total %llu\n"
        "# HELP ghostgate_redis_errors_total Error replies, timeouts, commands lost with a connection.\n"
        "# TYPE ghostgate_redis_errors_total counter\nghostgate_redis_errors_total %llu\n"
        "# HELP ghostgate_redis_connects_total Connections to Redis made (handshake done).\n"
        "# TYPE ghostgate_redis_connects_total counter\nghostgate_redis_connects_total %llu\n"
        "# HELP ghostgate_ratelimit_lease_refills_total Leases of cluster tokens Redis granted.\n"
        "# TYPE ghostgate_ratelimit_lease_refills_total counter\n"
        "ghostgate_ratelimit_lease_refills_total %llu\n"
        "# HELP ghostgate_ratelimit_lease_tokens_total Cluster tokens: granted by Redis, spent "
        "locally, expired unspent.\n"
        "# TYPE ghostgate_ratelimit_lease_tokens_total counter\n"
        "ghostgate_ratelimit_lease_tokens_total{kind=\"granted\"} %llu\n"
        "ghostgate_ratelimit_lease_tokens_total{kind=\"spent\"} %llu\n"
        "ghostgate_ratelimit_lease_tokens_total{kind=\"expired\"} %llu\n"
        "# HELP ghostgate_ratelimit_lease_errors_total Lease requests failed or refused.\n"
        "# TYPE ghostgate_ratelimit_lease_errors_total counter\n"
        "ghostgate_ratelimit_lease_errors_total %llu\n"
        "# HELP ghostgate_ratelimit_fallback_total Calls decided by on_redis_error.\n"
        "# TYPE ghostgate_ratelimit_fallback_total counter\nghostgate_ratelimit_fallback_total %llu\n",
        c->redis && gg_redis_is_up(c->redis), (unsigned long long)r.commands,
        (unsigned long long)r.replies, (unsigned long long)r.errors, (unsigned long long)r.connects,
        (unsigned long long)l->refills, (unsigned long long)l->granted, (unsigned long long)l->spent,
        (unsigned long long)l->expired, (unsigned long long)l->redis_errors,
        (unsigned long long)l->fallback);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* 64-bit FNV-1a: a key that is no bucket name (an identity with spaces, a long method) still
 * names one bucket, the same on every gateway. */
static uint64_t fnv1a(const char *s)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int fits(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("_.-:", *s)) return 0;
    return 1;
}

void *gg_cluster_bucket(void *server, const char *service, const char *key, double rate,
                            double burst, const char *on_error)
{
    gg_server *srv = server;
    char name[65], err[128];
    int n = snprintf(name, sizeof name, "%s:%s", service, key);
    if (n < 0 || n >= (int)sizeof name || !fits(name))
        snprintf(name, sizeof name, "%.40s:#%016llx", service, (unsigned long long)fnv1a(key));
    gg_lease_opts o = {.rate = rate,
                       .burst = burst,
                       .on_error = !strcmp(on_error, "open")     ? GG_LEASE_OPEN
                                   : !strcmp(on_error, "closed") ? GG_LEASE_CLOSED
                                                                 : GG_LEASE_LOCAL,
                       .local_share = 1.0 / srv->cluster.workers,
                       .totals = &srv->cluster.leases};
    return gg_lease_new(srv->lp.uv, &srv->cluster.redis, name, &o, err, sizeof err);
}

int gg_cluster_take(void *b)
{
    return gg_lease_take(b);
}

void gg_cluster_bucket_free(void *b)
{
    gg_lease_free(b);
}

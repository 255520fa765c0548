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
    if (c->redis) gg_redis_close(c->redis);
    c->redis = NULL;
    free(c->url);
    c->url = NULL;
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
                       .local_share = 1.0 / srv->cluster.workers};
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

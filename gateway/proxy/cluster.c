/* cluster.c -- the top-level redis option: one connection per process, swapped in place on a
 * reload that changes it, and ratelimit's cluster buckets (see cluster.h). */
#include "proxy/cluster.h"
#include "proxy/server.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A peer's message (an array "message", channel, payload): the reply is only valid during
 * the callback, and the handlers copy what they keep. */
static void on_peer_message(gg_redis *r, redisReply *reply, const char *err, void *arg)
{
    (void)r;
    gg_server *srv = arg;
    if (err || !reply || reply->elements < 3) return;
    const redisReply *ch = reply->element[1], *p = reply->element[2];
    if (ch->type != REDIS_REPLY_STRING || p->type != REDIS_REPLY_STRING) return;
    if (!strcmp(ch->str, GG_CLUSTER_BREAKER_CHANNEL))
        gg_cluster_breaker_message(srv, p->str, p->len);
    else if (!strcmp(ch->str, GG_CLUSTER_AUTH_CHANNEL))
        gg_cluster_auth_message(srv, p->str, p->len);
}

/* The subscribed connection: opened with the command connection, reconnected (and
 * resubscribed) on its own. Failing here leaves breakers and auth throttling local. */
static void open_sub(gg_server *srv)
{
    gg_cluster *c = &srv->cluster;
    gg_redis_opts o = {.log = &srv->lp.log, .name = "cluster-peers"};
    c->sub = gg_redis_new(srv->lp.uv, &srv->cfg->redis_url, &o);
    if (!c->sub || gg_redis_subscribe(c->sub, GG_CLUSTER_BREAKER_CHANNEL, on_peer_message, srv) ||
        gg_redis_subscribe(c->sub, GG_CLUSTER_AUTH_CHANNEL, on_peer_message, srv))
        gg_log(&srv->lp.log, GG_LOG_ERROR, "redis_failed",
               "name=cluster-peers reason=\"out of memory\"");
}

int gg_cluster_apply(gg_server *srv)
{
    gg_cluster *c = &srv->cluster;
    const gg_config *cfg = srv->cfg;
    c->workers = cfg->workers > 0 ? cfg->workers : 1;
    if (!c->sender[0]) /* unique enough among the processes sharing one Redis */
        snprintf(c->sender, sizeof c->sender, "%08x%08x", (unsigned)getpid(),
                 (unsigned)(uv_hrtime() ^ (uintptr_t)srv));
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
    open_sub(srv);
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
    if (c->sub) gg_redis_close(c->sub);
    c->sub = NULL;
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
    if (n < 0 || (size_t)n >= size) return -1;
    const gg_cluster_msgs *b = &c->breaker, *a = &c->auth;
    int m = snprintf(
        out + n, size - (size_t)n,
        "# HELP ghostgate_redis_peers_up The connection subscribed to the peers' messages is up "
        "(1) or not (0).\n"
        "# TYPE ghostgate_redis_peers_up gauge\nghostgate_redis_peers_up %d\n"
        "# HELP ghostgate_cluster_messages_total Messages between gateways (breaker, auth): "
        "published here, applied from peers, ignored (malformed or unknown here), lost (Redis "
        "down).\n"
        "# TYPE ghostgate_cluster_messages_total counter\n"
        "ghostgate_cluster_messages_total{kind=\"breaker\",what=\"published\"} %llu\n"
        "ghostgate_cluster_messages_total{kind=\"breaker\",what=\"applied\"} %llu\n"
        "ghostgate_cluster_messages_total{kind=\"breaker\",what=\"ignored\"} %llu\n"
        "ghostgate_cluster_messages_total{kind=\"breaker\",what=\"lost\"} %llu\n"
        "ghostgate_cluster_messages_total{kind=\"auth\",what=\"published\"} %llu\n"
        "ghostgate_cluster_messages_total{kind=\"auth\",what=\"applied\"} %llu\n"
        "ghostgate_cluster_messages_total{kind=\"auth\",what=\"ignored\"} %llu\n"
        "ghostgate_cluster_messages_total{kind=\"auth\",what=\"lost\"} %llu\n"
        "# HELP ghostgate_auth_failures_counted_total Failed authentications counted in Redis.\n"
        "# TYPE ghostgate_auth_failures_counted_total counter\n"
        "ghostgate_auth_failures_counted_total %llu\n",
        c->sub && gg_redis_is_up(c->sub), (unsigned long long)b->published,
        (unsigned long long)b->applied, (unsigned long long)b->ignored,
        (unsigned long long)b->lost, (unsigned long long)a->published,
        (unsigned long long)a->applied, (unsigned long long)a->ignored,
        (unsigned long long)a->lost, (unsigned long long)c->auth_counted);
    return m < 0 || (size_t)m >= size - (size_t)n ? -1 : 0;
}

/* 64-bit FNV-1a: a key that is no bucket name (an identity with spaces, a long method) still
 * names one bucket, the same on every gateway. */
static uint64_t fnv1a(const char *s)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* Whether s can be a limit's name as it is. One that cannot (too long, or another character: an
 * identity key with a scope glob's '*') is named service:#<hash of the key>; a name that fits
 * never has a '#', so the two kinds never meet. */
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
    gg_lease *l = gg_lease_new(srv->lp.uv, &srv->cluster.redis, name, &o, err, sizeof err);
    if (!l && uv_now(srv->lp.uv) - srv->cluster.bucket_failed_at >= 1000) {
        /* the policy answers 429; without this line nothing would say why */
        srv->cluster.bucket_failed_at = uv_now(srv->lp.uv);
        gg_log(&srv->lp.log, GG_LOG_ERROR, "cluster_bucket_failed",
               "service=%s name=%s reason=\"%s\"", service, name, err);
    }
    return l;
}

int gg_cluster_take(void *b)
{
    return gg_lease_take(b);
}

void gg_cluster_bucket_free(void *b)
{
    gg_lease_free(b);
}

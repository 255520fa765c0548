/* ratelease.c -- cluster-wide token buckets in leases (see ratelease.h). */
#include "core/ratelease.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A token bucket refilled continuously from Redis's own clock (TIME: one clock for every
 * gateway; allowed in scripts since Redis 5 with effects replication). Grants min(want, whole
 * tokens). The key expires once a full bucket would have refilled, so idle limits cost nothing. */
const char gg_lease_script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
    "local tokens, ts = tonumber(b[1]), tonumber(b[2])\n"
    "if not tokens or not ts then tokens, ts = burst, now end\n"
    "if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1e6) end\n"
    "local grant = math.min(want, math.floor(tokens))\n"
    "if grant < 0 then grant = 0 end\n"
    "redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens - grant), 'ts', now)\n"
    "redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)\n"
    "return grant\n";

/* Lease sizing: enough for LEASE_AHEAD of this instance's recent rate, between LEASE_MIN and
 * burst/8 (so that a few instances cannot strand the bucket between them); the next lease is
 * asked for when a quarter is left, so steady traffic never finds the lease empty. */
#define LEASE_AHEAD_S 0.2
#define LEASE_MIN     5.0

struct gg_lease {
    uv_loop_t *loop;
    gg_redis *const *rp; /* the caller's connection cell: it may swap or clear the connection */
    gg_lease_stats *totals; /* o.totals, or own_totals */
    gg_lease_stats own_totals;
    gg_lease_opts o;
    char key[96];
    char sha[41]; /* the script's SHA1 once known (SCRIPT LOAD), else "" */
    double tokens;         /* leased, unspent */
    uint64_t lease_at;     /* uv_now of the last grant */
    double want;           /* size of the last request */
    double rate_est;       /* admitted per second, smoothed */
    uint64_t rate_t0;      /* window start of the estimate */
    uint64_t rate_n;       /* takes in the window */
    double starved;        /* calls refused by an empty lease since the last request: a
                            * sudden burst sizes the next lease before rate_est has seen it */
    int inflight;          /* a lease request (or SCRIPT LOAD) is pending */
    int cold;              /* no lease yet, or the last one expired unspent: calls are decided
                            * as before the first lease until the next one is back */
    uint64_t next_ask;     /* uv_now before which the bucket is known to be short */
    int freed;             /* gg_lease_free ran while a request was pending */
    double owed;           /* calls admitted while Redis was up but no lease was ours (cold):
                            * the next grants pay them back, so they count in the cluster's
                            * limit instead of on top of it */
    double local_tokens;   /* GG_LEASE_LOCAL fallback bucket */
    uint64_t local_t;
    gg_lease_stats stats;
};

static void ask(gg_lease *l);

gg_lease *gg_lease_new(uv_loop_t *loop, gg_redis *const *rp, const char *name, const gg_lease_opts *o,
                       char *err, size_t errlen)
{
    size_t n = strlen(name);
    int ok = n >= 1 && n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)name[i]) || strchr("_.-:#", name[i]);
    if (!ok) {
        snprintf(err, errlen, "bad limit name: 1 to 64 letters, digits, '_', '.', '-', ':' or '#'");
        return NULL;
    }
    if (!(o->rate > 0) || !(o->burst >= 1)) {
        snprintf(err, errlen, "rate must be > 0 and burst >= 1");
        return NULL;
    }
    gg_lease *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->loop = loop;
    l->rp = rp;
    l->o = *o;
    l->totals = o->totals ? o->totals : &l->own_totals;
    if (!(l->o.local_share > 0 && l->o.local_share <= 1)) l->o.local_share = 1;
    if (!l->o.lease_ttl_ms) l->o.lease_ttl_ms = 1000;
    snprintf(l->key, sizeof l->key, "ghostgate:rl:{%s}", name);
    l->rate_t0 = l->local_t = uv_now(loop);
    /* The fallback bucket fills from now, no burst at a start; but one call is not refused
     * for want of a round trip (a bucket per identity would refuse every first call). */
    l->local_tokens = o->burst * l->o.local_share < 1 ? o->burst * l->o.local_share : 1;
    l->cold = 1;
    return l;
}

static void lease_cb(gg_redis *r, redisReply *rep, const char *err, void *arg);

static void load_cb(gg_redis *r, redisReply *rep, const char *err, void *arg)
{
    gg_lease *l = arg;
    l->inflight = 0;
    if (l->freed) {
        free(l);
        return;
    }
    if (err || rep->type != REDIS_REPLY_STRING || rep->len != 40) {
        l->stats.redis_errors++;
        l->totals->redis_errors++;
        return;
    }
    memcpy(l->sha, rep->str, 40);
    l->sha[40] = 0;
    ask(l);
}

static int up(const gg_lease *l)
{
    return *l->rp && gg_redis_is_up(*l->rp);
}

/* The next lease, in the background. Redis loses its script cache on a restart (NOSCRIPT):
 * then the script is loaded again first. */
static void ask(gg_lease *l)
{
    if (l->inflight || !up(l) || uv_now(l->loop) < l->next_ask) return;
    if (!l->sha[0]) {
        if (gg_redis_command(*l->rp, load_cb, l, 3,
                             (const char *[]){"SCRIPT", "LOAD", gg_lease_script}, NULL) == 0)
            l->inflight = 1;
        return;
    }
    double cap = l->o.burst / 8 > LEASE_MIN ? l->o.burst / 8 : LEASE_MIN;
    double want = ceil(l->rate_est * LEASE_AHEAD_S);
    if (want < 2 * l->starved) want = 2 * l->starved;
    if (want < LEASE_MIN) want = LEASE_MIN;
    if (want > cap) want = cap;
    l->want = want;
    char rate[32], burst[32], w[32];
    snprintf(rate, sizeof rate, "%.6f", l->o.rate);
    snprintf(burst, sizeof burst, "%.6f", l->o.burst);
    snprintf(w, sizeof w, "%.0f", want);
    if (gg_redis_command(*l->rp, lease_cb, l, 7,
                         (const char *[]){"EVALSHA", l->sha, "1", l->key, rate, burst, w},
                         NULL) == 0) {
        l->inflight = 1;
        l->starved = 0;
    }
}

static void lease_cb(gg_redis *r, redisReply *rep, const char *err, void *arg)
{
    gg_lease *l = arg;
    l->inflight = 0;
    if (l->freed) {
        free(l);
        return;
    }
    if (err) {
        l->stats.redis_errors++;
        l->totals->redis_errors++;
        if (rep && !strncmp(err, "NOSCRIPT", 8)) {
            l->sha[0] = 0;
            ask(l);
        }
        return;
    }
    if (rep->type != REDIS_REPLY_INTEGER) {
        l->stats.redis_errors++;
        l->totals->redis_errors++;
        return;
    }
    l->stats.refills++;
    l->totals->refills++;
    l->stats.granted += (uint64_t)rep->integer;
    l->totals->granted += (uint64_t)rep->integer;
    double got = (double)rep->integer, pay = got < l->owed ? got : l->owed;
    l->owed -= pay;
    l->tokens += got - pay;
    l->lease_at = uv_now(l->loop);
    l->cold = 0;
    /* A short grant means the bucket is dry: asking again before it can have refilled what
     * was missing would only cost round trips (over the limit, every call would ask). */
    double missing = l->want - (double)rep->integer;
    if (missing > 0) l->next_ask = l->lease_at + 1 + (uint64_t)(missing * 1000.0 / l->o.rate);
}

static int take_fallback(gg_lease *l, uint64_t now)
{
    l->stats.fallback++;
    l->totals->fallback++;
    if (l->o.on_error == GG_LEASE_OPEN) return 1;
    if (l->o.on_error == GG_LEASE_CLOSED) return 0;
    double share = l->o.local_share;
    l->local_tokens += (double)(now - l->local_t) / 1000.0 * l->o.rate * share;
    if (l->local_tokens > l->o.burst * share) l->local_tokens = l->o.burst * share;
    l->local_t = now;
    if (l->local_tokens < 1) return 0;
    l->local_tokens -= 1;
    return 1;
}

int gg_lease_take(gg_lease *l)
{
    uint64_t now = uv_now(l->loop);
    /* The local rate, over windows of 100 ms at least, smoothed: it sizes the next lease. */
    l->rate_n++;
    if (now - l->rate_t0 >= 100) {
        double cur = (double)l->rate_n * 1000.0 / (double)(now - l->rate_t0);
        l->rate_est = l->rate_est > 0 ? 0.5 * l->rate_est + 0.5 * cur : cur;
        l->rate_t0 = now;
        l->rate_n = 0;
    }
    if (l->tokens >= 1 && now - l->lease_at > l->o.lease_ttl_ms) {
        /* Tokens left unspent for a whole lease: traffic here is slower than the lease, not
         * over the limit. Refusing now would refuse a trickle of calls far under the limit
         * each time a lease expires: decide as before the first lease until the next one. */
        l->stats.expired += (uint64_t)l->tokens;
        l->totals->expired += (uint64_t)l->tokens;
        l->tokens = 0;
        l->cold = 1;
    }
    if (!up(l) || l->cold) {
        /* Redis away, or no lease (the first round trip after a start, or after the last lease
         * expired): a lease taken before the outage is still ours, then on_redis_error
         * decides. */
        if (l->cold) ask(l);
        if (l->tokens >= 1) { /* a lease taken before the outage is still ours */
            l->tokens -= 1;
            l->stats.spent++;
            l->totals->spent++;
            return 1;
        }
        int ok = take_fallback(l, now);
        if (ok && up(l)) l->owed += 1; /* on credit: the lease on its way pays it back */
        return ok;
    }
    int ok = 0;
    if (l->tokens >= 1) {
        l->tokens -= 1;
        l->stats.spent++;
        l->totals->spent++;
        ok = 1;
    } else {
        l->starved += 1;
    }
    if (l->tokens < (l->want > 0 ? l->want / 4 : 1)) ask(l);
    return ok;
}

const gg_lease_stats *gg_lease_stats_get(const gg_lease *l)
{
    return &l->stats;
}

void gg_lease_free(gg_lease *l)
{
    if (l->inflight)
        l->freed = 1; /* the pending callback frees it */
    else
        free(l);
}

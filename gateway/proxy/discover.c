/* discover.c -- discover = true: watch the Redis registry and hand each service's endpoints to
 * its pool (see discover.h). */
#include "proxy/discover.h"
#include "core/registry.h"
#include "proxy/server.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DRAIN_CHECK_MS 100 /* how often draining endpoints are looked at */

#define ST_CONNECTING 0 /* never read yet */
#define ST_FRESH      1
#define ST_STALE      2

struct gg_discover;

/* One service name that discovers (or did: entries live as long as the process, so that a
 * Redis callback's argument is never freed under it). */
typedef struct dsvc {
    struct gg_discover *d;
    struct dsvc *next;
    char name[65];
    char set[100];    /* ghostgate:{NAME}:eps */
    int used;         /* a discover service of the current config */
    int busy;         /* a read is in flight */
    int again;        /* asked again while busy: read once more after */
    int draining;     /* the pool has endpoints still draining */
    gg_addr *addrs;   /* the last table read */
    int naddrs;
    char **members;   /* between SMEMBERS and MGET */
    int nmembers;
    uint64_t bad_hash; /* of the refused addresses last logged */
} dsvc;

typedef struct gg_discover {
    gg_server *srv;
    gg_redis *cmd, *sub; /* NULL while no service discovers */
    char *url;
    uv_timer_t resync, drain;
    int timers; /* both initialised (closed at stop) */
    dsvc *svcs;
    int state;          /* ST_* */
    int cmd_up, sub_up;
    time_t stale_since; /* wall clock, for /ready and /routes */
    uint64_t stale_at;  /* loop time, for the log */
    char why[160];
    uint64_t suppressed; /* failures during the current outage, not logged one by one */
    uint64_t resyncs, reads, errors, pruned;
} gg_discover;

static void read_service(dsvc *s);

static void free_members(dsvc *s)
{
    for (int i = 0; i < s->nmembers; i++) free(s->members[i]);
    free(s->members);
    s->members = NULL;
    s->nmembers = 0;
}

/* ---- state: fresh or stale --------------------------------------------------------------- */

/* A read failed or a connection went down: stale from now on (logged once per outage). */
static void went_stale(gg_discover *d, const char *why)
{
    d->errors++;
    if (d->state == ST_STALE) {
        d->suppressed++;
        return;
    }
    d->state = ST_STALE;
    d->stale_since = time(NULL);
    d->stale_at = uv_now(d->srv->lp.uv);
    d->suppressed = 0;
    snprintf(d->why, sizeof d->why, "%s", why && *why ? why : "redis unreachable");
    gg_log(&d->srv->lp.log, GG_LOG_WARN, "registry_stale",
           "reason=\"%s\" kept=\"the last endpoints read\"", d->why);
}

static void went_fresh(gg_discover *d)
{
    /* without the subscription hints are lost: stale until it is back (it then reads all) */
    if (d->state == ST_FRESH || !d->sub_up) return;
    if (d->state == ST_STALE)
        gg_log_notice(&d->srv->lp.log, "registry_fresh", "stale_ms=%llu suppressed=%llu",
                      (unsigned long long)(uv_now(d->srv->lp.uv) - d->stale_at),
                      (unsigned long long)d->suppressed);
    d->state = ST_FRESH;
    d->why[0] = 0;
}

/* ---- applying a table -------------------------------------------------------------------- */

static void on_drain_check(uv_timer_t *t);

static void apply(dsvc *s)
{
    gg_discover *d = s->d;
    gg_service *svc = gg_service_find(d->srv, s->name, strlen(s->name));
    s->draining = 0;
    if (!svc || !svc->conf->discover || !svc->ops->set_endpoints) return;
    s->draining = svc->ops->set_endpoints(svc, s->addrs, s->naddrs) > 0;
    if (s->draining && !uv_is_active((uv_handle_t *)&d->drain))
        uv_timer_start(&d->drain, on_drain_check, DRAIN_CHECK_MS, DRAIN_CHECK_MS);
}

/* Draining endpoints close once their calls and references are over: look again. */
static void on_drain_check(uv_timer_t *t)
{
    gg_discover *d = t->data;
    int any = 0;
    for (dsvc *s = d->svcs; s; s = s->next)
        if (s->used && s->draining) {
            apply(s);
            any |= s->draining;
        }
    if (!any) uv_timer_stop(&d->drain);
}

/* 64-bit FNV-1a of one refused address; a read's refused set is the sum of its members'
 * (SMEMBERS has no order), so that each is logged once rather than at every read. */
static uint64_t fnv(const char *p)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h;
}

/* A registered address the pool can take without blocking the loop: tcp://IP:PORT, IP:PORT
 * ([IPv6]:PORT) or unix:PATH. A host name would need a lookup (gg_addr_parse blocks), tls://
 * a TLS context the service does not have, http:// another protocol. */
static int parse_member(const char *m, gg_addr *a, char *err, size_t errlen)
{
    if (gg_registry_check_addr(m, err, errlen)) return -1;
    if (strncmp(m, "unix:", 5) != 0) {
        const char *h = strncmp(m, "tcp://", 6) == 0 ? m + 6 : m;
        const char *colon = strrchr(h, ':');
        char host[64];
        unsigned char buf[16];
        if (strstr(m, "://") && strncmp(m, "tcp://", 6) != 0) {
            snprintf(err, errlen, "only tcp://IP:PORT and unix:PATH endpoints are discovered");
            return -1;
        }
        size_t n = colon ? (size_t)(colon - h) : 0;
        if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
            h++;
            n -= 2;
        }
        if (!colon || n == 0 || n >= sizeof host) {
            snprintf(err, errlen, "not tcp://IP:PORT or unix:PATH");
            return -1;
        }
        memcpy(host, h, n);
        host[n] = 0;
        if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1) {
            snprintf(err, errlen, "a discovered endpoint is an IP address, not a host name");
            return -1;
        }
    }
    return gg_addr_parse(m, a, err, errlen);
}

/* The members whose key exists (from MGET) become the table; log what was refused. */
static void take_table(dsvc *s, const int *alive)
{
    gg_discover *d = s->d;
    gg_addr *addrs = calloc((size_t)(s->nmembers ? s->nmembers : 1), sizeof *addrs);
    if (!addrs) {
        gg_log(&d->srv->lp.log, GG_LOG_ERROR, "out_of_memory", "what=registry service=%s", s->name);
        return;
    }
    int n = 0;
    uint64_t bad = 0;
    char err[160];
    for (int i = 0; i < s->nmembers; i++)
        if (alive[i] && parse_member(s->members[i], &addrs[n], err, sizeof err) == 0) n++;
        else if (alive[i]) bad += fnv(s->members[i]);
    if (bad && bad != s->bad_hash)
        for (int i = 0; i < s->nmembers; i++)
            if (alive[i] && parse_member(s->members[i], &(gg_addr){0}, err, sizeof err))
                gg_log(&d->srv->lp.log, GG_LOG_WARN, "registry_endpoint_refused",
                       "service=%s upstream=\"%s\" reason=\"%s\"", s->name, s->members[i], err);
    s->bad_hash = bad;
    free(s->addrs);
    s->addrs = addrs;
    s->naddrs = n;
    apply(s);
}

/* ---- reading a service ------------------------------------------------------------------- */

static void read_done(dsvc *s)
{
    s->busy = 0;
    free_members(s);
    if (s->again && s->used) {
        s->again = 0;
        read_service(s);
    }
}

static void ignore_cb(gg_redis *r, redisReply *rep, const char *err, void *arg)
{
    (void)r, (void)rep, (void)err, (void)arg;
}

static void mget_cb(gg_redis *r, redisReply *rep, const char *err, void *arg)
{
    dsvc *s = arg;
    gg_discover *d = s->d;
    if (r != d->cmd) { /* closed (reload to another Redis, shutdown) */
        s->busy = 0;
        free_members(s);
        return;
    }
    if (err || rep->type != REDIS_REPLY_ARRAY || (int)rep->elements != s->nmembers) {
        went_stale(d, err ? err : "unexpected reply to MGET");
        read_done(s);
        return;
    }
    int *alive = calloc((size_t)s->nmembers, sizeof *alive);
    const char **argv = calloc((size_t)s->nmembers + 2, sizeof *argv);
    if (!alive || !argv) {
        free(alive);
        free(argv);
        read_done(s);
        return;
    }
    int dead = 0;
    argv[0] = "SREM";
    argv[1] = s->set;
    for (int i = 0; i < s->nmembers; i++) {
        alive[i] = rep->element[i]->type == REDIS_REPLY_STRING;
        if (!alive[i]) argv[2 + dead++] = s->members[i];
    }
    /* Expired keys: prune their members (a late heartbeat adds its own back with SADD). */
    if (dead && gg_redis_command(r, ignore_cb, NULL, dead + 2, argv, NULL) == 0) d->pruned += (uint64_t)dead;
    went_fresh(d);
    take_table(s, alive);
    free(alive);
    free(argv);
    read_done(s);
}

static void smembers_cb(gg_redis *r, redisReply *rep, const char *err, void *arg)
{
    dsvc *s = arg;
    gg_discover *d = s->d;
    if (r != d->cmd) {
        s->busy = 0;
        return;
    }
    if (err || rep->type != REDIS_REPLY_ARRAY) {
        went_stale(d, err ? err : "unexpected reply to SMEMBERS");
        read_done(s);
        return;
    }
    size_t n = rep->elements;
    if (n > GG_DISCOVER_MAX_ENDPOINTS * 4) n = GG_DISCOVER_MAX_ENDPOINTS * 4; /* bounded work */
    s->members = calloc(n ? n : 1, sizeof *s->members);
    const char **argv = calloc(n + 1, sizeof *argv);
    char **keys = calloc(n ? n : 1, sizeof *keys);
    int ok = s->members && argv && keys;
    for (size_t i = 0; ok && i < n; i++) {
        redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_STRING) continue;
        size_t klen = strlen(GG_REGISTRY_PREFIX) + strlen(s->name) + 6 + e->len + 1;
        s->members[s->nmembers] = strndup(e->str, e->len);
        keys[s->nmembers] = malloc(klen);
        if (!s->members[s->nmembers] || !keys[s->nmembers]) {
            free(s->members[s->nmembers]);
            free(keys[s->nmembers]);
            ok = 0;
            break;
        }
        snprintf(keys[s->nmembers], klen, GG_REGISTRY_PREFIX "{%s}:ep:%s", s->name,
                 s->members[s->nmembers]);
        argv[1 + s->nmembers] = keys[s->nmembers];
        s->nmembers++;
    }
    int sent = 0;
    if (ok && s->nmembers == 0) {
        went_fresh(d);
        take_table(s, NULL);
    } else if (ok) {
        argv[0] = "MGET";
        sent = gg_redis_command(r, mget_cb, s, s->nmembers + 1, argv, NULL) == 0;
        if (!sent) went_stale(d, gg_redis_why(r));
    }
    for (int i = 0; keys && i < s->nmembers; i++) free(keys[i]);
    free(keys);
    free(argv);
    if (!sent) read_done(s);
}

static void read_service(dsvc *s)
{
    gg_discover *d = s->d;
    if (s->busy) {
        s->again = 1;
        return;
    }
    if (!d->cmd || !s->used) return;
    d->reads++;
    if (gg_redis_command(d->cmd, smembers_cb, s, 2, (const char *[]){"SMEMBERS", s->set}, NULL)) {
        went_stale(d, gg_redis_why(d->cmd));
        return;
    }
    s->busy = 1;
}

static void read_all(gg_discover *d)
{
    d->resyncs++;
    for (dsvc *s = d->svcs; s; s = s->next)
        if (s->used) read_service(s);
}

/* ---- watching ---------------------------------------------------------------------------- */

static void on_resync(uv_timer_t *t)
{
    read_all(t->data);
}

static void on_message(gg_redis *r, redisReply *rep, const char *err, void *arg)
{
    gg_discover *d = arg;
    (void)r;
    if (err || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
        rep->element[2]->type != REDIS_REPLY_STRING)
        return;
    redisReply *p = rep->element[2];
    for (dsvc *s = d->svcs; s; s = s->next)
        if (s->used && strlen(s->name) == p->len && !memcmp(s->name, p->str, p->len)) {
            read_service(s);
            return;
        }
}

static void on_state(gg_redis *r, int up, const char *why, void *arg)
{
    gg_discover *d = arg;
    if (r == d->cmd) d->cmd_up = up;
    if (r == d->sub) d->sub_up = up;
    if (!up) {
        went_stale(d, why);
        return;
    }
    /* Back (or first up): whatever was published meanwhile is lost, read everything. Fresh
     * again once a read succeeds. */
    if (d->cmd_up && d->sub_up) read_all(d);
}

static void close_redis(gg_discover *d)
{
    gg_redis *cmd = d->cmd, *sub = d->sub;
    d->cmd = d->sub = NULL; /* callbacks that run from the closes see they are stale */
    d->cmd_up = d->sub_up = 0;
    if (cmd) gg_redis_close(cmd);
    if (sub) gg_redis_close(sub);
    free(d->url);
    d->url = NULL;
}

static dsvc *svc_entry(gg_discover *d, const char *name)
{
    for (dsvc *s = d->svcs; s; s = s->next)
        if (!strcmp(s->name, name)) return s;
    dsvc *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->d = d;
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->set, sizeof s->set, GG_REGISTRY_PREFIX "{%s}:eps", name);
    s->next = d->svcs;
    d->svcs = s;
    return s;
}

int gg_discover_apply(gg_server *srv)
{
    const gg_config *cfg = srv->cfg;
    gg_generation *gen = srv->gen;
    int wanted = 0;
    for (int i = 0; i < gen->nservices; i++) wanted |= gen->services[i].conf->discover;
    gg_discover *d = srv->disc;
    if (!wanted && !d) return 0;
    if (!d) {
        d = srv->disc = calloc(1, sizeof *d);
        if (!d) goto nomem;
        d->srv = srv;
        uv_timer_init(srv->lp.uv, &d->resync);
        uv_timer_init(srv->lp.uv, &d->drain);
        d->resync.data = d->drain.data = d;
        uv_unref((uv_handle_t *)&d->resync); /* a draining gateway does not wait for them */
        uv_unref((uv_handle_t *)&d->drain);
        d->timers = 1;
    }
    for (dsvc *s = d->svcs; s; s = s->next) s->used = 0;
    for (int i = 0; i < gen->nservices; i++) {
        gg_service *svc = &gen->services[i];
        if (!svc->conf->discover) continue;
        dsvc *s = svc_entry(d, svc->name);
        if (!s) goto nomem;
        s->used = 1;
        apply(s); /* the table survives a reload (a pool that moved already has it) */
    }
    if (!wanted || !cfg->redis || (d->url && strcmp(d->url, cfg->redis))) {
        close_redis(d);
        uv_timer_stop(&d->resync);
        d->state = ST_CONNECTING;
        if (!wanted) return 0;
    }
    if (!d->cmd) {
        gg_redis_opts o = {.log = &srv->lp.log, .name = "discover", .on_state = on_state, .arg = d};
        d->url = strdup(cfg->redis);
        d->cmd = d->url ? gg_redis_new(srv->lp.uv, &cfg->redis_url, &o) : NULL;
        o.name = "discover-watch";
        d->sub = d->cmd ? gg_redis_new(srv->lp.uv, &cfg->redis_url, &o) : NULL;
        if (!d->sub || gg_redis_subscribe(d->sub, GG_REGISTRY_CHANNEL, on_message, d)) {
            close_redis(d);
            goto nomem;
        }
    } else {
        read_all(d); /* a reload: new services may discover; read them now */
    }
    uv_timer_start(&d->resync, on_resync, cfg->discover_resync_ms, cfg->discover_resync_ms);
    return 0;
nomem:
    gg_log(&srv->lp.log, GG_LOG_ERROR, "out_of_memory", "what=registry");
    return -1;
}

void gg_discover_stop(gg_server *srv)
{
    gg_discover *d = srv->disc;
    if (!d) return;
    close_redis(d);
    if (d->timers) {
        d->timers = 0;
        uv_close((uv_handle_t *)&d->resync, NULL);
        uv_close((uv_handle_t *)&d->drain, NULL);
    }
}

void gg_discover_free(gg_server *srv)
{
    gg_discover *d = srv->disc;
    if (!d) return;
    while (d->svcs) {
        dsvc *s = d->svcs;
        d->svcs = s->next;
        free_members(s);
        free(s->addrs);
        free(s);
    }
    free(d->url);
    free(d);
    srv->disc = NULL;
}

int gg_discover_stale(const gg_server *srv, char *out, size_t size)
{
    const gg_discover *d = srv->disc;
    if (size) out[0] = 0;
    if (!d || !d->cmd) return 0;
    if (d->state == ST_CONNECTING) { /* at start, or after a reload to another Redis */
        snprintf(out, size, "registry not read yet");
        return 1;
    }
    if (d->state != ST_STALE) return 0;
    struct tm tm;
    char when[32];
    gmtime_r(&d->stale_since, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(out, size, "registry stale since %s: %s", when, d->why);
    return 1;
}

int gg_discover_known(const gg_server *srv, const char *service)
{
    const gg_discover *d = srv->disc;
    for (const dsvc *s = d ? d->svcs : NULL; s; s = s->next)
        if (s->used && !strcmp(s->name, service)) return s->naddrs;
    return -1;
}

int gg_discover_metrics(const gg_server *srv, char *out, size_t size)
{
    const gg_discover *d = srv->disc;
    if (size) out[0] = 0;
    if (!d) return 0;
    size_t used = 0;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        int n_ = snprintf(out + used, size - used, __VA_ARGS__);                                   \
        if (n_ < 0 || (size_t)n_ >= size - used) return -1;                                        \
        used += (size_t)n_;                                                                        \
    } while (0)
    PUT("# HELP ghostgate_registry_endpoints Endpoints the registry lists for a service with "
        "discover = true (the last table read).\n# TYPE ghostgate_registry_endpoints gauge\n");
    for (const dsvc *s = d->svcs; s; s = s->next) /* names are [A-Za-z0-9_-]: no escaping */
        if (s->used) PUT("ghostgate_registry_endpoints{service=\"%s\"} %d\n", s->name, s->naddrs);
    PUT("# HELP ghostgate_registry_stale The registry cannot be read now: the last table is kept "
        "(1), or it can (0).\n# TYPE ghostgate_registry_stale gauge\nghostgate_registry_stale %d\n"
        "# HELP ghostgate_registry_resyncs_total Full re-reads of the registry (periodic, and "
        "after each reconnect).\n# TYPE ghostgate_registry_resyncs_total counter\n"
        "ghostgate_registry_resyncs_total %llu\n"
        "# HELP ghostgate_registry_reads_total Reads of one service's endpoints (hints and "
        "resyncs).\n# TYPE ghostgate_registry_reads_total counter\n"
        "ghostgate_registry_reads_total %llu\n"
        "# HELP ghostgate_registry_errors_total Registry reads failed and Redis connections "
        "lost.\n# TYPE ghostgate_registry_errors_total counter\n"
        "ghostgate_registry_errors_total %llu\n"
        "# HELP ghostgate_registry_pruned_total Listed endpoints whose key had expired, removed "
        "from the set.\n# TYPE ghostgate_registry_pruned_total counter\n"
        "ghostgate_registry_pruned_total %llu\n",
        d->state == ST_STALE, (unsigned long long)d->resyncs, (unsigned long long)d->reads,
        (unsigned long long)d->errors, (unsigned long long)d->pruned);
#undef PUT
    return 0;
}

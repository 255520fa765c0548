/* metrics.c -- counters and their Prometheus text; see metrics.h. */
#include "proxy/metrics.h"
#include "proxy/discover.h"
#include "core/errors.h"
#include "proxy/server.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double bucket_le[GG_MET_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                 0.005,  0.01,    0.025,  0.05,  0.1,
                                                 0.25,   0.5,     1,      2.5};

/* Outcome classes: 0 ok, 1 upstream error, then one per gateway error code. */
static const int class_code[GG_MET_CODES] = {0,   1,   400, 401, 403, 404, 413, 429,
                                             500, 501, 502, 503, 504, 530, 531, -1};

static int class_of(int outcome)
{
    for (int i = 0; i < GG_MET_CODES - 1; i++)
        if (class_code[i] == outcome) return i;
    return 8; /* an unknown code counts as internal */
}

void gg_metrics_free(gg_metrics *m)
{
    for (int i = 0; i < m->nservices; i++) {
        free(m->services[i]->methods);
        free(m->services[i]);
    }
    free(m->services);
    memset(m, 0, sizeof *m);
}

gg_service_stats *gg_metrics_service(gg_metrics *m, const char *name)
{
    for (int i = 0; i < m->nservices; i++)
        if (strcmp(m->services[i]->name, name) == 0) return m->services[i];
    if (m->nservices == m->cap) {
        int cap = m->cap ? m->cap * 2 : 8;
        gg_service_stats **p = realloc(m->services, sizeof *p * (size_t)cap);
        if (!p) return NULL;
        m->services = p;
        m->cap = cap;
    }
    gg_service_stats *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->methods = calloc(GG_MET_METHODS * 2, sizeof *s->methods);
    if (!s->methods) {
        free(s);
        return NULL;
    }
    m->services[m->nservices] = s;
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->other.name, sizeof s->other.name, "_other");
    s->other.len = 6;
    m->nservices++;
    return s;
}

static uint32_t hash(const char *p, uint32_t n)
{
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

/* Whether a label shows these bytes as they were sent: UTF-8 (no overlong forms, surrogates or
 * code points past U+10FFFF), no control characters, and not the name of the "_other" row. A
 * name that fails would be shown changed, maybe as another name's label: it gets no row. */
static int labelable(const char *p, uint32_t n)
{
    if (n == 6 && memcmp(p, "_other", 6) == 0) return 0;
    const uint8_t *s = (const uint8_t *)p, *e = s + n;
    while (s < e) {
        uint8_t c = *s;
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f) return 0;
            s++;
            continue;
        }
        uint32_t need = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1, cp = c & (0x3fu >> need);
        if (c < 0xc2 || c > 0xf4 || (uint32_t)(e - s) <= need) return 0;
        for (uint32_t i = 1; i <= need; i++) {
            if ((s[i] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i] & 0x3fu);
        }
        if ((need == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (need == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        s += need + 1;
    }
    return 1;
}

/* The row of method, or the empty slot where it would go (*slot), or NULL when neither. */
static gg_method_stats *lookup(gg_service_stats *s, const char *method, uint32_t len,
                               gg_method_stats **slot)
{
    *slot = NULL;
    if (len == 0 || len >= sizeof s->other.name) return NULL;
    uint32_t mask = GG_MET_METHODS * 2 - 1, i = hash(method, len) & mask;
    for (;;) {
        gg_method_stats *m = &s->methods[i];
        if (m->len == len && memcmp(m->name, method, len) == 0) return m;
        if (!m->len) {
            *slot = m;
            return NULL;
        }
        i = (i + 1) & mask;
    }
}

gg_method_stats *gg_metrics_method(gg_service_stats *s, const char *method, uint32_t len)
{
    gg_method_stats *slot, *m = lookup(s, method, len, &slot);
    if (m) return m;
    if (!slot || s->nmethods >= GG_MET_METHODS || !labelable(method, len)) return &s->other;
    memcpy(slot->name, method, len);
    slot->name[len] = 0;
    slot->len = len;
    s->nmethods++;
    return slot;
}

gg_method_stats *gg_metrics_method_find(gg_service_stats *s, const char *method, uint32_t len)
{
    gg_method_stats *slot, *m = lookup(s, method, len, &slot);
    return m ? m : &s->other;
}

void gg_metrics_notification(gg_metrics *m, gg_service_stats *s, int code)
{
    if (!s) {
        m->notify_unrouted[class_of(code)]++;
        return;
    }
    if (code == 0)
        s->notifications++;
    else if (code == GG_MET_ANSWERED)
        s->notify_answered++;
    else
        s->notify_dropped[class_of(code)]++;
}

void gg_metrics_record(gg_method_stats *m, int outcome, uint64_t ns)
{
    double s = (double)ns / 1e9;
    int b = 0;
    while (b < GG_MET_BUCKETS && s > bucket_le[b]) b++;
    m->calls++;
    m->outcomes[class_of(outcome)]++;
    m->buckets[b]++;
    m->seconds += s;
}

/* ---- rendering (the admin endpoint; not a hot path) -------------------------------------- */

typedef struct out {
    gg_buf *b;
    gg_bufpool *pool;
    int failed;
} out;

__attribute__((format(printf, 2, 3))) static void emit(out *o, const char *fmt, ...)
{
    if (o->failed) return;
    va_list ap;
    va_start(ap, fmt);
    if (gg_buf_vprintf(o->b, o->pool, fmt, ap)) o->failed = 1;
    va_end(ap);
}

/* Label values: escaped as the text format wants ('\\', '"', '\n'). Method names reach here
 * only as printable UTF-8 (labelable); what else is shown (service names, addresses, from the
 * config) has its other control bytes and any byte past ASCII that is not UTF-8 made '?', so
 * that the body stays UTF-8. */
static const char *label(const char *s, char *buf, size_t n)
{
    size_t k = 0;
    while (*s && k + 5 < n) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\' || c == '\n') {
            buf[k++] = '\\';
            buf[k++] = c == '\n' ? 'n' : (char)c;
            s++;
            continue;
        }
        if (c >= 0x80) {
            uint32_t len = 1;
            while (len < 4 && ((unsigned char)s[len] & 0xc0) == 0x80) len++;
            if (labelable(s, len)) {
                memcpy(buf + k, s, len);
                k += len;
                s += len;
                continue;
            }
        }
        buf[k++] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
        s++;
    }
    buf[k] = 0;
    return buf;
}

static void render_calls(out *o, gg_metrics *m)
{
    char sv[160], mv[160];
    emit(o, "# HELP ghostgate_calls_total Calls that ended, by service and method.\n"
            "# TYPE ghostgate_calls_total counter\n");
    for (int i = 0; i < m->nservices; i++) {
        gg_service_stats *s = m->services[i];
        for (uint32_t k = 0; k <= GG_MET_METHODS * 2; k++) {
            gg_method_stats *ms = k < GG_MET_METHODS * 2 ? &s->methods[k] : &s->other;
            if (!ms->calls) continue;
            emit(o, "ghostgate_calls_total{service=\"%s\",method=\"%s\"} %llu\n",
                 label(s->name, sv, sizeof sv), label(ms->name, mv, sizeof mv),
                 (unsigned long long)ms->calls);
        }
    }
    emit(o, "# HELP ghostgate_errors_total Calls that ended in an error, by code and type "
            "(code \"upstream\": the upstream returned the error).\n"
            "# TYPE ghostgate_errors_total counter\n");
    for (int i = 0; i < m->nservices; i++) {
        gg_service_stats *s = m->services[i];
        for (uint32_t k = 0; k <= GG_MET_METHODS * 2; k++) {
            gg_method_stats *ms = k < GG_MET_METHODS * 2 ? &s->methods[k] : &s->other;
            if (!ms->calls) continue;
            for (int c = 1; c < GG_MET_CODES - 1; c++) {
                if (!ms->outcomes[c]) continue;
                if (c == 1)
                    emit(o, "ghostgate_errors_total{service=\"%s\",method=\"%s\",code=\"upstream\","
                            "type=\"upstream_error\"} %llu\n",
                         label(s->name, sv, sizeof sv), label(ms->name, mv, sizeof mv),
                         (unsigned long long)ms->outcomes[c]);
                else
                    emit(o, "ghostgate_errors_total{service=\"%s\",method=\"%s\",code=\"%d\",type=\"%s\"} %llu\n",
                         label(s->name, sv, sizeof sv), label(ms->name, mv, sizeof mv), class_code[c],
                         gg_error_type(class_code[c]), (unsigned long long)ms->outcomes[c]);
            }
        }
    }
    emit(o, "# HELP ghostgate_rate_limited_total Calls refused by a rate limit.\n"
            "# TYPE ghostgate_rate_limited_total counter\n");
    for (int i = 0; i < m->nservices; i++) {
        gg_service_stats *s = m->services[i];
        uint64_t n = s->other.outcomes[7];
        for (uint32_t k = 0; k < GG_MET_METHODS * 2; k++) n += s->methods[k].outcomes[7];
        emit(o, "ghostgate_rate_limited_total{service=\"%s\"} %llu\n", label(s->name, sv, sizeof sv),
             (unsigned long long)n);
    }
    emit(o, "# HELP ghostgate_call_duration_seconds Time from request to answer.\n"
            "# TYPE ghostgate_call_duration_seconds histogram\n");
    for (int i = 0; i < m->nservices; i++) {
        gg_service_stats *s = m->services[i];
        for (uint32_t k = 0; k <= GG_MET_METHODS * 2; k++) {
            gg_method_stats *ms = k < GG_MET_METHODS * 2 ? &s->methods[k] : &s->other;
            if (!ms->calls) continue;
            label(s->name, sv, sizeof sv);
            label(ms->name, mv, sizeof mv);
            uint64_t cum = 0;
            for (int b = 0; b < GG_MET_BUCKETS; b++) {
                cum += ms->buckets[b];
                emit(o, "ghostgate_call_duration_seconds_bucket{service=\"%s\",method=\"%s\",le=\"%g\"} %llu\n",
                     sv, mv, bucket_le[b], (unsigned long long)cum);
            }
            emit(o, "ghostgate_call_duration_seconds_bucket{service=\"%s\",method=\"%s\",le=\"+Inf\"} %llu\n",
                 sv, mv, (unsigned long long)ms->calls);
            emit(o, "ghostgate_call_duration_seconds_sum{service=\"%s\",method=\"%s\"} %.9f\n", sv, mv,
                 ms->seconds);
            emit(o, "ghostgate_call_duration_seconds_count{service=\"%s\",method=\"%s\"} %llu\n", sv, mv,
                 (unsigned long long)ms->calls);
        }
    }
    emit(o, "# HELP ghostgate_inflight_calls Calls in flight.\n# TYPE ghostgate_inflight_calls gauge\n");
    for (int i = 0; i < m->nservices; i++)
        emit(o, "ghostgate_inflight_calls{service=\"%s\"} %u\n", label(m->services[i]->name, sv, sizeof sv),
             m->services[i]->inflight);
}

static void render_notifications(out *o, gg_metrics *m)
{
    char sv[160];
    emit(o, "# HELP ghostgate_notifications_total Client notifications sent upstream.\n"
            "# TYPE ghostgate_notifications_total counter\n");
    for (int i = 0; i < m->nservices; i++)
        emit(o, "ghostgate_notifications_total{service=\"%s\"} %llu\n",
             label(m->services[i]->name, sv, sizeof sv),
             (unsigned long long)m->services[i]->notifications);
    emit(o, "# HELP ghostgate_notifications_dropped_total Client notifications not sent, by the "
            "error type a call would have got (\"answered\": a policy answered it; service \"\": "
            "it reached no service).\n"
            "# TYPE ghostgate_notifications_dropped_total counter\n");
    for (int c = 2; c < GG_MET_CODES - 1; c++)
        if (m->notify_unrouted[c])
            emit(o, "ghostgate_notifications_dropped_total{service=\"\",reason=\"%s\"} %llu\n",
                 gg_error_type(class_code[c]), (unsigned long long)m->notify_unrouted[c]);
    for (int i = 0; i < m->nservices; i++) {
        gg_service_stats *s = m->services[i];
        label(s->name, sv, sizeof sv);
        for (int c = 2; c < GG_MET_CODES - 1; c++)
            if (s->notify_dropped[c])
                emit(o,
                     "ghostgate_notifications_dropped_total{service=\"%s\",reason=\"%s\"} "
                     "%llu\n",
                     sv, gg_error_type(class_code[c]), (unsigned long long)s->notify_dropped[c]);
        if (s->notify_answered)
            emit(o,
                 "ghostgate_notifications_dropped_total{service=\"%s\",reason=\"answered\"} "
                 "%llu\n",
                 sv, (unsigned long long)s->notify_answered);
    }
}

static void render_upstreams(out *o, gg_server *srv)
{
    char sv[160], uv_[200];
    gg_generation *gen = srv->gen;
    emit(o, "# HELP ghostgate_upstream_connections Live connections to an upstream endpoint.\n"
            "# TYPE ghostgate_upstream_connections gauge\n");
    for (int i = 0; i < gen->nservices; i++) {
        gg_service *svc = &gen->services[i];
        for (int e = 0; e < svc->neps; e++)
            if (svc->eps[e].gone != GG_EP_FREE) /* a discover service's empty slot */
                emit(o, "ghostgate_upstream_connections{service=\"%s\",upstream=\"%s\"} %d\n",
                     label(svc->name, sv, sizeof sv),
                     label(svc->eps[e].addr->text, uv_, sizeof uv_), svc->eps[e].nconnected);
    }
    emit(o, "# HELP ghostgate_object_refs Live remote-object references of a service with "
            "objects = true: side=\"upstream\" objects its upstreams exported that the gateway "
            "holds, side=\"client\" references clients hold to them, side=\"client_owned\" "
            "functions and objects clients passed that its upstreams hold.\n"
            "# TYPE ghostgate_object_refs gauge\n");
    for (int i = 0; i < gen->nservices; i++) {
        gg_service *svc = &gen->services[i];
        if (!svc->conf->objects || !svc->ops->obj_counts) continue;
        uint64_t up = 0, cl = 0, owned = 0;
        svc->ops->obj_counts(svc, &up, &cl);
        if (svc->ops->cb_counts) svc->ops->cb_counts(svc, &owned);
        label(svc->name, sv, sizeof sv);
        emit(o, "ghostgate_object_refs{service=\"%s\",side=\"upstream\"} %llu\n"
                "ghostgate_object_refs{service=\"%s\",side=\"client\"} %llu\n"
                "ghostgate_object_refs{service=\"%s\",side=\"client_owned\"} %llu\n",
             sv, (unsigned long long)up, sv, (unsigned long long)cl, sv,
             (unsigned long long)owned);
    }
    emit(o, "# HELP ghostgate_upstream_pool_size Pooled connections configured per endpoint.\n"
            "# TYPE ghostgate_upstream_pool_size gauge\n");
    for (int i = 0; i < gen->nservices; i++) {
        gg_service *svc = &gen->services[i];
        for (int e = 0; e < svc->neps; e++)
            if (svc->eps[e].gone != GG_EP_FREE) /* a discover service's empty slot */
                emit(o, "ghostgate_upstream_pool_size{service=\"%s\",upstream=\"%s\"} %d\n",
                     label(svc->name, sv, sizeof sv),
                     label(svc->eps[e].addr->text, uv_, sizeof uv_), svc->eps[e].nconns);
    }
    emit(o, "# HELP ghostgate_upstream_connect_failures_total Failed connection attempts.\n"
            "# TYPE ghostgate_upstream_connect_failures_total counter\n");
    for (int i = 0; i < gen->nservices; i++) {
        gg_service *svc = &gen->services[i];
        for (int e = 0; e < svc->neps; e++)
            if (svc->eps[e].gone != GG_EP_FREE) /* a discover service's empty slot */
                emit(o,
                     "ghostgate_upstream_connect_failures_total{service=\"%s\",upstream=\"%s\"} "
                     "%llu\n",
                     label(svc->name, sv, sizeof sv),
                     label(svc->eps[e].addr->text, uv_, sizeof uv_),
                     (unsigned long long)svc->eps[e].connect_failures);
    }
}

static void emit_breaker(void *data, const char *service, const char *upstream, int state)
{
    char sv[160], uv_[200];
    emit(data, "ghostgate_breaker_state{service=\"%s\",upstream=\"%s\"} %d\n",
         label(service, sv, sizeof sv), label(upstream, uv_, sizeof uv_), state);
}

/* Breaker states come from the policies (Lua). */
static void render_breakers(out *o, gg_server *srv)
{
    emit(o, "# HELP ghostgate_breaker_state Circuit breaker per endpoint: 0 closed, 1 open, 2 half-open.\n"
            "# TYPE ghostgate_breaker_state gauge\n");
    gg_policy_breakers(srv, srv->gen, emit_breaker, o);
}

int gg_metrics_render(gg_server *srv, gg_buf *b, gg_bufpool *pool)
{
    out o = {.b = b, .pool = pool};
    gg_metrics *m = &srv->met;
    render_calls(&o, m);
    render_notifications(&o, m);
    render_upstreams(&o, srv);
    render_breakers(&o, srv);
    emit(&o, "# HELP ghostgate_clients Client connections.\n# TYPE ghostgate_clients gauge\n"
             "ghostgate_clients %u\n",
         srv->nclients);
    emit(&o, "# HELP ghostgate_calls_in_flight Calls in flight in the gateway.\n"
             "# TYPE ghostgate_calls_in_flight gauge\nghostgate_calls_in_flight %u\n",
         srv->lp.calls.live);
    emit(&o, "# HELP ghostgate_reloads_total Config reloads, by result.\n"
             "# TYPE ghostgate_reloads_total counter\n"
             "ghostgate_reloads_total{result=\"ok\"} %llu\nghostgate_reloads_total{result=\"failed\"} %llu\n",
         (unsigned long long)m->reloads, (unsigned long long)m->reload_failures);
    char cluster[4096];
    if (gg_cluster_metrics(srv, cluster, sizeof cluster) == 0 && cluster[0]) emit(&o, "%s", cluster);
    char disc[8192];
    if (gg_discover_metrics(srv, disc, sizeof disc) == 0 && disc[0]) emit(&o, "%s", disc);
    return o.failed ? -1 : 0;
}

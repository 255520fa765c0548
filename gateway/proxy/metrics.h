/* metrics.h -- what the gateway counts, for /metrics (Prometheus text format).
 *
 * Per service and method: calls, errors by code, a latency histogram. Methods are the
 * clients' strings, so a method gets a row of its own only once a call of it has passed the
 * service's policies (a refused name would let anyone fill the rows), only when the name is
 * printable UTF-8 that a label shows as sent, and at most GG_MET_METHODS per service; every
 * other call is counted in the row method="_other". Counters live in the server, keyed by
 * service name, so they survive reloads. Recording a call costs a hash of its method name and
 * a few increments. Client notifications are counted per service: sent, or dropped by
 * reason. */
#ifndef GG_METRICS_H
#define GG_METRICS_H

#include "core/buf.h"

#include <stddef.h>
#include <stdint.h>

#define GG_MET_METHODS 256
#define GG_MET_BUCKETS 14 /* upper bounds in metrics.c, then +Inf */
#define GG_MET_CODES   16 /* outcome classes: see metrics.c */

struct gg_server;

typedef struct gg_method_stats {
    char name[64];
    uint32_t len;
    uint64_t calls;
    uint64_t outcomes[GG_MET_CODES];
    uint64_t buckets[GG_MET_BUCKETS + 1];
    double seconds;
} gg_method_stats;

typedef struct gg_service_stats {
    char name[64];
    uint32_t inflight;
    uint32_t nmethods;
    gg_method_stats *methods; /* open addressing, GG_MET_METHODS * 2 slots */
    gg_method_stats other;
    uint64_t notifications;                /* sent upstream */
    uint64_t notify_dropped[GG_MET_CODES]; /* by outcome class of the refusal */
    uint64_t notify_answered;              /* a policy answered: nothing sent */
} gg_service_stats;

typedef struct gg_metrics {
    gg_service_stats **services; /* each allocated once: services keep pointers to them */
    int nservices, cap;
    uint64_t reloads;
    uint64_t reload_failures;
    /* notifications that reached no service (no such service, or a name refused before the
     * lookup could name one): service="" in /metrics, by outcome class */
    uint64_t notify_unrouted[GG_MET_CODES];
    /* the rate of notification_dropped log lines (gg_dispatch_notify_dropped) */
    uint64_t notify_log_second;
    uint32_t notify_log_lines;
    uint64_t notify_log_suppressed;
} gg_metrics;

void gg_metrics_free(gg_metrics *m);
/* The counters of service `name`, made on first use (NULL when out of memory). */
gg_service_stats *gg_metrics_service(gg_metrics *m, const char *name);
/* The row of one method, given one if it has none yet: for a call that passed the policies.
 * Never NULL: "_other" once the table is full, or for a name a label cannot show. */
gg_method_stats *gg_metrics_method(gg_service_stats *s, const char *method, uint32_t len);
/* The row method already has, or "_other": for a call that ended before it passed the
 * policies (refused, answered by a policy, too many calls). Never gives a name a row. */
gg_method_stats *gg_metrics_method_find(gg_service_stats *s, const char *method, uint32_t len);
/* A client notification to s (NULL: no such service) was sent (code 0), answered by a policy
 * (code GG_MET_ANSWERED) or dropped with gateway error `code`. */
#define GG_MET_ANSWERED (-1)
void gg_metrics_notification(gg_metrics *m, gg_service_stats *s, int code);
/* A call ended: outcome 0 ok, 1 the upstream returned an error, else a gateway error code. */
void gg_metrics_record(gg_method_stats *m, int outcome, uint64_t nanoseconds);

/* Append the Prometheus text of everything the server counts to out. Returns 0 or -1. */
int gg_metrics_render(struct gg_server *srv, gg_buf *out, gg_bufpool *pool);

#endif

/* pool.c -- what every upstream pool shares; see pool.h. */
#include "proxy/pool.h"
#include "proxy/server.h"

#include <stdlib.h>

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS   5000

uint64_t gg_backoff_next(gg_backoff *b)
{
    if (!b->ms)
        b->ms = BACKOFF_FIRST_MS;
    else if ((b->ms *= 2) > BACKOFF_MAX_MS)
        b->ms = BACKOFF_MAX_MS;
    return (uint64_t)b->ms * (80 + (uint64_t)(rand() % 41)) / 100;
}

void gg_endpoint_set_connected(gg_endpoint *ep, int on)
{
    ep->nconnected += on ? 1 : -1;
    gg_policy_endpoint_changed(ep->svc->srv, ep);
}

void gg_endpoint_connect_failed(gg_endpoint *ep, int conn, int status, uint64_t retry_ms)
{
    gg_server *srv = ep->svc->srv;
    gg_logger *lg = &srv->lp.log;
    ep->connect_failures++;
    gg_log(lg, GG_LOG_DEBUG, "upstream_connect_failed",
           "service=%s upstream=%s conn=%d reason=\"%s\" retry_ms=%llu", ep->svc->name,
           ep->addr->text, conn, uv_strerror(status), (unsigned long long)retry_ms);
    if (ep->down) {
        ep->down_repeats++;
        return;
    }
    if (ep->nconnected > 0) return; /* the pool still serves: not a state change */
    ep->down = 1;
    ep->down_since = uv_now(srv->lp.uv);
    ep->down_repeats = 0;
    gg_log(lg, GG_LOG_WARN, "upstream_down",
           "service=%s upstream=%s reason=\"%s\" retry_ms=%llu", ep->svc->name, ep->addr->text,
           uv_strerror(status), (unsigned long long)retry_ms);
}

int gg_endpoint_tls_failed_level(gg_endpoint *ep)
{
    int first = !ep->down && !ep->tls_warned;
    ep->tls_warned = 1;
    return first ? GG_LOG_WARN : GG_LOG_DEBUG;
}

void gg_endpoint_connected(gg_endpoint *ep, int conn)
{
    gg_server *srv = ep->svc->srv;
    ep->tls_warned = 0;
    gg_log(&srv->lp.log, GG_LOG_INFO, "upstream_connected", "service=%s upstream=%s conn=%d",
           ep->svc->name, ep->addr->text, conn);
    if (!ep->down) return;
    ep->down = 0;
    gg_log_notice(&srv->lp.log, "upstream_back",
                  "service=%s upstream=%s down_ms=%llu suppressed=%llu", ep->svc->name,
                  ep->addr->text, (unsigned long long)(uv_now(srv->lp.uv) - ep->down_since),
                  (unsigned long long)ep->down_repeats);
}


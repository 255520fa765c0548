/* service.c -- services and their generations; see service.h. */
#include "proxy/service.h"
#include "proxy/server.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_name(const void *key, const void *elem)
{
    const gg_service *k = key, *s = elem;
    size_t n = k->name_len < s->name_len ? k->name_len : s->name_len;
    int c = memcmp(k->name, s->name, n);
    if (c) return c;
    return k->name_len < s->name_len ? -1 : k->name_len > s->name_len;
}

gg_service *gg_generation_find(gg_generation *gen, const char *name, size_t len)
{
    gg_service key = {.name = name, .name_len = len};
    return bsearch(&key, gen->services, (size_t)gen->nservices, sizeof key, cmp_name);
}

int gg_service_live_endpoints(const gg_service *svc)
{
    int n = 0;
    for (int e = 0; e < svc->neps; e++) n += svc->eps[e].gone == GG_EP_LIVE;
    return n;
}

gg_service *gg_service_find(gg_server *srv, const char *name, size_t len)
{
    return gg_generation_find(srv->gen, name, len);
}

gg_generation *gg_generation_new(gg_server *srv, gg_config *cfg)
{
    gg_generation *gen = calloc(1, sizeof *gen);
    if (!gen) return NULL;
    gen->srv = srv;
    gen->cfg = cfg;
    gen->pipelines_ref = LUA_NOREF;
    gen->services = calloc((size_t)(cfg->nservices ? cfg->nservices : 1), sizeof(gg_service));
    if (!gen->services) goto fail;
    for (int i = 0; i < cfg->nservices; i++) {
        const gg_service_conf *sc = &cfg->services[i];
        gg_service *svc = &gen->services[gen->nservices++];
        svc->srv = srv;
        svc->gen = gen;
        svc->conf = sc;
        svc->ops = srv->opts.upstreams[sc->protocol]; /* an index: no protocol compared */
        svc->name = sc->name;
        svc->name_len = strlen(sc->name);
        svc->pipeline_ref = LUA_NOREF;
        svc->stats = gg_metrics_service(&srv->met, svc->name);
        if (!svc->stats) goto fail;
    }
    return gen;
fail:
    gg_generation_free(gen);
    return NULL;
}

void gg_generation_connect(gg_generation *gen, gg_generation *old)
{
    char err[128];
    for (int i = 0; i < gen->nservices; i++) {
        gg_service *svc = &gen->services[i];
        gg_service *prev = old ? gg_generation_find(old, svc->name, svc->name_len) : NULL;
        err[0] = 0;
        if (svc->ops->start(svc, prev, GG_UPSTREAM_CONNECT, err, sizeof err))
            gg_log(&gen->srv->lp.log, GG_LOG_ERROR, "out_of_memory", "what=%s service=%s", err,
                   svc->name);
    }
}

/* Close what every service holds. `counted`: the generation is retired and waits for the
 * close callbacks before it frees itself. */
static void close_all(gg_generation *gen, int counted)
{
    for (int i = 0; i < gen->nservices; i++) gen->services[i].ops->release(&gen->services[i], counted);
}

void gg_generation_stop(gg_generation *gen)
{
    close_all(gen, 0);
}

void gg_generation_retire(gg_generation *gen)
{
    gen->retired = 1;
    gg_generation_maybe_free(gen);
}

void gg_generation_maybe_free(gg_generation *gen)
{
    if (!gen->retired || gen->calls) return;
    if (gen->retired == 1) { /* last call gone: close what did not move to the new generation */
        gen->retired = 2;
        gen->closing++; /* held while closing, so a synchronous callback cannot free it early */
        close_all(gen, 1);
        gen->closing--;
    }
    if (gen->closing) return;
    gg_server_generation_freed(gen->srv, gen);
    gg_generation_free(gen);
}

int gg_generation_load(gg_generation *gen, char *err, size_t errlen)
{
    for (int i = 0; i < gen->nservices; i++) {
        gg_service *svc = &gen->services[i];
        if (svc->ops->start(svc, NULL, GG_UPSTREAM_LOAD, err, errlen)) return -1;
    }
    return 0;
}

void gg_generation_free(gg_generation *gen)
{
    if (!gen) return;
    for (int i = 0; i < gen->nservices; i++) {
        gg_service *svc = &gen->services[i];
        if (svc->impl) svc->ops->release(svc, 0); /* mprpc has no impl: its handles are closed */
        for (int e = 0; e < svc->neps; e++) {
            free(svc->eps[e].conns);
            free(svc->eps[e].own_addr);
        }
        free(svc->eps);
        free(svc->policy_names);
    }
    gg_policy_generation_free(gen->srv, gen);
    free(gen->services);
    gg_config_free(gen->cfg);
    free(gen);
}


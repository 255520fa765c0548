/* server.c -- the loop's context: start, run, drain and stop a gateway. */
#include "proxy/server.h"
#include "proxy/discover.h"
#include "proxy/dispatch.h"
#include "core/errors.h"
#include "core/tls.h"
#include "lua/lua_bridge.h"

#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


void gg_server_defer_resume(gg_server *srv, gg_client *c)
{
    if (c->resume_queued) return;
    c->resume_queued = 1;
    c->resume_next = srv->resume;
    srv->resume = c;
}

void gg_server_forget_resume(gg_server *srv, gg_client *c)
{
    if (!c->resume_queued) return;
    for (gg_client **p = &srv->resume; *p; p = &(*p)->resume_next) {
        if (*p == c) {
            *p = c->resume_next;
            break;
        }
    }
    c->resume_queued = 0;
}

/* End of every loop turn, before the flush: resume clients that were paused. Doing it here
 * means no client is ever re-entered from inside another connection's callback. */
/* Releases of remote objects go upstream once per loop turn, one $release per connection. */
static void send_releases(gg_server *srv)
{
    while (srv->obj_dirty) {
        gg_objtab *t = srv->obj_dirty;
        srv->obj_dirty = t->next_dirty;
        t->next_dirty = NULL;
        t->dirty = 0;
        ((const gg_upstream_ops *)t->ops)->send_releases(t->conn);
    }
}

void gg_server_obj_dirty(gg_objtab *up)
{
    gg_server *srv = up->srv;
    if (up->dirty) return;
    up->dirty = 1;
    up->next_dirty = srv->obj_dirty;
    srv->obj_dirty = up;
}

void gg_server_obj_forget(gg_objtab *up)
{
    if (!up->dirty) return;
    gg_server *srv = up->srv;
    for (gg_objtab **p = &srv->obj_dirty; *p; p = &(*p)->next_dirty) {
        if (*p == up) {
            *p = up->next_dirty;
            break;
        }
    }
    up->dirty = 0;
}

static void resume_clients(gg_loop *lp)
{
    gg_server *srv = gg_server_of(lp);
    if (srv->obj_dirty) send_releases(srv);
    while (srv->resume) {
        gg_client *c = srv->resume;
        srv->resume = c->resume_next;
        c->resume_queued = 0;
        gg_stream_resume(&c->st);
    }
}

static void on_sweep(uv_timer_t *t)
{
    gg_clients_sweep(t->data);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Stop everything; uv_run returns once the last handle has closed. */
void gg_server_shutdown(gg_server *srv)
{
    if (srv->stopped) return;
    srv->stopped = 1;
    if (srv->opts.worker >= 0)
        gg_log(&srv->lp.log, GG_LOG_INFO, "stopped", "clients=%u", srv->nclients);
    else
        gg_log_notice(&srv->lp.log, "stopped", "clients=%u", srv->nclients);
    gg_listeners_stop(srv);
    gg_cluster_stop(srv);
    gg_discover_stop(srv);
    if (srv->opts.front) srv->opts.front->close(srv);
    gg_stream_flush_all(&srv->lp);
    gg_clients_close_all(srv);
    gg_generation_stop(srv->gen);
    for (gg_generation *g = srv->retired; g; g = g->next)
        if (g->retired == 1) gg_generation_stop(g); /* those at 2 are closing already */
    gg_loop_close(&srv->lp);
    close_handle((uv_handle_t *)&srv->sweeper);
    close_handle((uv_handle_t *)&srv->drain_timer);
    if (srv->signals) {
        close_handle((uv_handle_t *)&srv->sigterm);
        close_handle((uv_handle_t *)&srv->sigint);
        close_handle((uv_handle_t *)&srv->sighup);
    }
}

void gg_server_check_drained(gg_server *srv)
{
    if (srv->draining == 1 && srv->lp.calls.live == 0) {
        srv->draining = 2;
        gg_server_shutdown(srv);
    }
}

static void on_drain_timeout(uv_timer_t *t)
{
    gg_server *srv = t->data;
    gg_log(&srv->lp.log, GG_LOG_WARN, "drain_timeout", "calls=%u", srv->lp.calls.live);
    gg_call *call;
    while ((call = gg_deadline_first(&srv->lp.calls)))
        gg_call_fail(srv, call, GG_ERR_SHUTTING_DOWN, "the gateway stopped before the answer came");
    gg_server_check_drained(srv);
}

static void on_signal(uv_signal_t *h, int signum)
{
    gg_server *srv = h->data;
    if (signum == SIGHUP) {
        if (!srv->draining) gg_server_reload(srv);
        return;
    }
    if (srv->draining) {
        gg_log(&srv->lp.log, GG_LOG_WARN, "drain_skipped", "signal=%d calls=%u", signum, srv->lp.calls.live);
        on_drain_timeout(&srv->drain_timer);
        return;
    }
    gg_log(&srv->lp.log, GG_LOG_INFO, "draining", "signal=%d calls=%u", signum, srv->lp.calls.live);
    srv->draining = 1;
    gg_listeners_stop(srv);
    if (srv->opts.front) srv->opts.front->stop(srv);
    uv_timer_start(&srv->drain_timer, on_drain_timeout, srv->cfg->drain_timeout_ms, 0);
    gg_server_check_drained(srv);
}

/* Appends ",text" (no comma first) to list[*n]; a list that does not fit is cut, never overrun. */
static void list_add(char *list, size_t size, size_t *n, const char *text)
{
    if (*n >= size) return;
    int w = snprintf(list + *n, size - *n, "%s%s", *n ? "," : "", text);
    if (w > 0) *n += (size_t)w;
}

/* The bound addresses (port 0 resolved) of the MessagePack listeners, then of the HTTP ones of
 * one kind. Printed once at the default level: the only place a port 0 listener's port shows. */
static void log_ready(gg_server *srv)
{
    char list[1024], http[512], admin[512];
    size_t n = 0, nh = 0, na = 0;
    list[0] = http[0] = admin[0] = 0;
    for (int i = 0; i < srv->nlisteners; i++)
        list_add(list, sizeof list, &n, srv->listeners[i].bound);
    if (srv->opts.front) {
        nh = (size_t)srv->opts.front->addresses(srv, 0, http, sizeof http);
        na = (size_t)srv->opts.front->addresses(srv, 1, admin, sizeof admin);
    }
    if (srv->opts.worker >= 0)
        gg_log(&srv->lp.log, GG_LOG_INFO, "worker_ready",
               "worker=%d listen=%s http=%s admin=%s services=%d pid=%d", srv->opts.worker, list,
               nh ? http : "-", na ? admin : "-", srv->gen->nservices, (int)getpid());
    else
        gg_log_notice(&srv->lp.log, "ready",
                      "listen=%s http=%s admin=%s services=%d workers=1 pid=%d config=%s", list,
                      nh ? http : "-", na ? admin : "-", srv->gen->nservices, (int)getpid(),
                      srv->cfg->source);
}

static int same_addrs(const gg_addr *a, int na, const gg_addr *b, int nb)
{
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (strcmp(a[i].text, b[i].text)) return 0;
    return 1;
}

static int same_service(const gg_service_conf *a, const gg_service_conf *b)
{
    return a->protocol == b->protocol && a->discover == b->discover &&
           a->deadline_ms == b->deadline_ms &&
           a->connections == b->connections && a->keep_prefix == b->keep_prefix &&
           !strcmp(a->adapter ? a->adapter : "", b->adapter ? b->adapter : "") &&
           same_addrs(a->upstreams, a->nupstreams, b->upstreams, b->nupstreams);
}

static const gg_service_conf *find_conf(const gg_config *cfg, const char *name)
{
    for (int i = 0; i < cfg->nservices; i++)
        if (!strcmp(cfg->services[i].name, name)) return &cfg->services[i];
    return NULL;
}

/* What a reload changed, for its log line: services added, removed, and those whose upstreams,
 * protocol, adapter, deadline or pool size changed (policies are compared by policy.c, which
 * keeps the state of those whose options did not change). O(services^2), once per reload. */
static void describe_changes(const gg_config *old, const gg_config *cfg, char *out, size_t size)
{
    char added[256], removed[256], changed[256];
    size_t na = 0, nr = 0, nc = 0;
    added[0] = removed[0] = changed[0] = 0;
    for (int i = 0; i < cfg->nservices; i++) {
        const gg_service_conf *was = find_conf(old, cfg->services[i].name);
        if (!was)
            list_add(added, sizeof added, &na, cfg->services[i].name);
        else if (!same_service(was, &cfg->services[i]))
            list_add(changed, sizeof changed, &nc, cfg->services[i].name);
    }
    for (int i = 0; i < old->nservices; i++)
        if (!find_conf(cfg, old->services[i].name))
            list_add(removed, sizeof removed, &nr, old->services[i].name);
    snprintf(out, size, "added=%s removed=%s changed=%s", na ? added : "-", nr ? removed : "-",
             nc ? changed : "-");
}

/* Limits a reload can change for new connections and messages. */
static void apply_limits(gg_server *srv, gg_config *cfg)
{
    srv->lp.scan_limits.max_message = cfg->limits.max_message_size;
    srv->lp.scan_limits.max_depth = cfg->limits.max_depth;
    srv->lp.log.level = srv->forced_log_level >= 0 ? srv->forced_log_level : cfg->log_level;
}

void gg_server_generation_freed(gg_server *srv, gg_generation *gen)
{
    for (gg_generation **p = &srv->retired; *p; p = &(*p)->next) {
        if (*p == gen) {
            *p = gen->next;
            return;
        }
    }
}

/* Peers keep resuming across a reload: the tls:// listeners' session-ticket keys and the
 * services' kept upstream sessions move to the new config's contexts, when those trust the
 * same things as the old ones (gg_tls_ctx_carry). */
static void carry_tls(gg_config *from, gg_config *to)
{
    gg_tls_ctx_carry(to->tls, from->tls);
    for (int i = 0; i < to->nservices; i++)
        for (int j = 0; to->services[i].tls && j < from->nservices; j++)
            if (strcmp(to->services[i].name, from->services[j].name) == 0) {
                gg_tls_ctx_carry(to->services[i].tls, from->services[j].tls);
                break;
            }
}

int gg_server_reload(gg_server *srv)
{
    char err[1024];
    gg_loop *lp = &srv->lp;
    gg_watchdog_enter(&srv->wd, "-", "reload", NULL); /* the config file is code too */
    gg_config *cfg = gg_config_load_in(srv->L, srv->config_path, err, sizeof err);
    gg_watchdog_leave(&srv->wd);
    if (!cfg) {
        gg_log(&lp->log, GG_LOG_ERROR, "reload_failed", "reason=\"%s\" kept=%s", err, srv->cfg->source);
        srv->met.reload_failures++;
        return -1;
    }
    gg_generation *gen = gg_generation_new(srv, cfg);
    if (!gen) {
        gg_config_free(cfg);
        gg_log(&lp->log, GG_LOG_ERROR, "reload_failed", "reason=\"out of memory\"");
        return -1;
    }
    if (gg_policy_build(srv, gen, srv->gen, err, sizeof err) ||
        gg_generation_load(gen, err, sizeof err)) {
        gg_log(&lp->log, GG_LOG_ERROR, "reload_failed", "reason=\"%s\" kept=%s", err, srv->cfg->source);
        srv->met.reload_failures++;
        gg_generation_free(gen);
        return -1;
    }
    int same_listen = cfg->nlisten == srv->cfg->nlisten;
    for (int i = 0; same_listen && i < cfg->nlisten; i++)
        same_listen = strcmp(cfg->listen[i].text, srv->cfg->listen[i].text) == 0;
    if (!same_listen)
        gg_log(&lp->log, GG_LOG_WARN, "reload_partial", "reason=\"listen addresses change on restart\"");
    if (cfg->limits.max_calls != srv->cfg->limits.max_calls)
        gg_log(&lp->log, GG_LOG_WARN, "reload_partial", "reason=\"max_calls changes on restart\"");
    if (memcmp(&cfg->obj_ext, &srv->obj_ext, sizeof srv->obj_ext))
        gg_log(&lp->log, GG_LOG_WARN, "reload_partial", "reason=\"objects.ext changes on restart\"");
    gg_generation *old = srv->gen;
    carry_tls(srv->cfg, cfg); /* before the new pools connect */
    gg_generation_connect(gen, old);
    gg_policy_sync_endpoints(srv, gen);
    srv->gen = gen;
    srv->cfg = cfg;
    apply_limits(srv, cfg);
    gg_cluster_apply(srv);
    gg_discover_apply(srv);
    old->next = srv->retired;
    srv->retired = old;
    srv->reloads++;
    srv->met.reloads++;
    char changes[800];
    describe_changes(old->cfg, cfg, changes, sizeof changes);
    /* With workers each one says so (with its number): a worker that failed is then visible. */
    if (srv->opts.worker >= 0)
        gg_log_notice(&lp->log, "reloaded",
                      "config=%s worker=%d services=%d %s reloads=%u calls_on_old=%u", cfg->source,
                      srv->opts.worker, gen->nservices, changes, srv->reloads, old->calls);
    else
        gg_log_notice(&lp->log, "reloaded", "config=%s services=%d %s reloads=%u calls_on_old=%u",
                      cfg->source, gen->nservices, changes, srv->reloads, old->calls);
    gg_generation_retire(old);
    return 0;
}

/* Each client is a file descriptor: take the hard limit, and say so when max_clients cannot
 * be reached (connections over the limit are refused by the kernel, silently otherwise). */
static void raise_fd_limit(gg_server *srv)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl)) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    uint64_t want = (uint64_t)srv->cfg->limits.max_clients + 64; /* listeners, upstreams, logs */
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
        gg_log(&srv->lp.log, GG_LOG_WARN, "fd_limit_low",
               "limit=%llu max_clients=%u reason=\"connections beyond the limit are refused; raise "
               "RLIMIT_NOFILE (LimitNOFILE= in systemd)\"",
               (unsigned long long)rl.rlim_cur, srv->cfg->limits.max_clients);
}

char *gg_pid_file_write(gg_config *cfg, gg_logger *log)
{
    lua_State *L = cfg->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, cfg->table_ref);
    lua_getfield(L, -1, "pid_file");
    char *path = lua_isstring(L, -1) ? strdup(lua_tostring(L, -1)) : NULL;
    lua_pop(L, 2);
    if (!path) return NULL;
    FILE *f = fopen(path, "w");
    if (f && fprintf(f, "%d\n", (int)getpid()) > 0 && fclose(f) == 0) return path;
    if (f) fclose(f);
    gg_log(log, GG_LOG_WARN, "pid_file_failed", "path=%s", path);
    free(path);
    return NULL;
}

void gg_pid_file_remove(char *path)
{
    if (!path) return;
    /* Only our own: a gateway started since (with the same pid_file) owns the file now. */
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (f) {
        if (fscanf(f, "%ld", &pid) == 1 && pid == (long)getpid()) unlink(path);
        fclose(f);
    }
    free(path);
}

gg_server *gg_server_open(gg_config *cfg, const gg_run_opts *opts, uv_loop_t *uv)
{
    gg_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        gg_config_free(cfg);
        return NULL;
    }
    srv->cfg = cfg;
    srv->obj_ext = cfg->obj_ext; /* objects.ext: fixed for the process (ids in flight use it) */
    srv->opts = *opts;
    srv->config_path = opts->config_path;
    srv->forced_log_level = opts->log_level;
    /* The server owns the Lua state from here on: configs come and go with reloads. */
    srv->L = cfg->L;
    cfg->owns_L = 0;
    gg_loop_limits lim = {.max_message = cfg->limits.max_message_size,
                          .max_depth = cfg->limits.max_depth,
                          .max_calls = cfg->limits.max_calls};
    if (gg_loop_init(&srv->lp, uv, &lim) || !(srv->gen = gg_generation_new(srv, cfg))) {
        gg_config_free(cfg);
        gg_lua_close(srv->L);
        free(srv);
        return NULL;
    }
    gg_loop *lp = &srv->lp;
    lp->data = srv;
    apply_limits(srv, cfg);
    raise_fd_limit(srv);
    if (gg_watchdog_start(&srv->wd, cfg->watchdog_ms, &lp->log))
        gg_log(&lp->log, GG_LOG_WARN, "watchdog_off", "reason=\"cannot start its thread\"");
    lp->before_flush = resume_clients;
    lp->calls.on_deadline = gg_dispatch_on_deadline;

    uv_timer_init(uv, &srv->drain_timer);
    srv->drain_timer.data = srv;
    uv_unref((uv_handle_t *)&srv->drain_timer);
    uv_timer_init(uv, &srv->sweeper);
    srv->sweeper.data = srv;
    uint64_t every = cfg->limits.idle_timeout_ms < cfg->limits.message_timeout_ms
                         ? cfg->limits.idle_timeout_ms
                         : cfg->limits.message_timeout_ms;
    if (cfg->limits.write_timeout_ms < every) every = cfg->limits.write_timeout_ms;
    every /= 4;
    if (every < 10) every = 10;
    if (every > 1000) every = 1000;
    uv_timer_start(&srv->sweeper, on_sweep, every, every);
    uv_unref((uv_handle_t *)&srv->sweeper);
    return srv;
}

int gg_server_start(gg_server *srv, char *err, size_t errlen)
{
    if (gg_policy_init(srv, err, errlen) || gg_policy_build(srv, srv->gen, NULL, err, errlen) ||
        gg_generation_load(srv->gen, err, errlen) || gg_listeners_start(srv, err, errlen) ||
        (srv->opts.front && srv->opts.front->start(srv, err, errlen)))
        return -1;
    gg_generation_connect(srv->gen, NULL);
    gg_policy_sync_endpoints(srv, srv->gen);
    gg_cluster_apply(srv);
    gg_discover_apply(srv);
    return 0;
}

void gg_server_close(gg_server *srv)
{
    gg_watchdog_stop(&srv->wd);
    while (srv->retired) {
        gg_generation *g = srv->retired;
        srv->retired = g->next;
        gg_generation_free(g);
    }
    gg_generation_free(srv->gen);
    gg_discover_free(srv);
    gg_policy_stop(srv);
    free(srv->listeners);
    gg_loop_free(&srv->lp);
    gg_metrics_free(&srv->met);
    gg_lua_close(srv->L);
    free(srv);
}

int gg_server_run(gg_config *cfg, const gg_run_opts *opts)
{
    char *pid_file = NULL; /* written once serving, removed at exit: gg_pid_file_write */
    int status = 1;
    char err[1024];
    uv_loop_t *uv = uv_default_loop();
    gg_server *srv = gg_server_open(cfg, opts, uv);
    if (!srv) {
        fprintf(stderr, "ghostgate: out of memory\n");
        return 1;
    }
    /* A peer that vanishes mid-write must cost an EPIPE, not the process. */
    signal(SIGPIPE, SIG_IGN);
    uv_signal_t *sigs[] = {&srv->sigterm, &srv->sigint, &srv->sighup};
    int signums[] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(uv, sigs[i]);
        sigs[i]->data = srv;
        uv_signal_start(sigs[i], on_signal, signums[i]);
    }
    srv->signals = 1;

    if (gg_server_start(srv, err, sizeof err) == 0) {
        if (opts->ready_fd >= 0) {
            ssize_t w = write(opts->ready_fd, "r", 1);
            (void)w; /* the master notices a worker that never becomes ready */
            close(opts->ready_fd);
        } else {
            pid_file = gg_pid_file_write(srv->cfg, &srv->lp.log);
        }
        log_ready(srv);
        status = 0;
    } else {
        gg_log(&srv->lp.log, GG_LOG_ERROR, "startup_failed", "reason=\"%s\"", err);
        gg_server_shutdown(srv);
    }
    uv_run(uv, UV_RUN_DEFAULT);
    gg_watchdog_stop(&srv->wd);
    uv_loop_close(uv);
    gg_server_close(srv);
    gg_pid_file_remove(pid_file);
    return status;
}

/* workers.c -- several worker processes serving the same sockets, and the master that keeps
 * them alive.
 *
 * With `workers = N` (N > 1) the process that starts is the master: it binds the Unix sockets
 * and reserves the TCP ports (so port 0 means one port for all), forks N workers and waits.
 * Each worker is a whole gateway (its own loop, Lua state and policy state) whose TCP
 * listeners bind the same port with SO_REUSEPORT, so the kernel spreads connections over
 * them; Unix sockets are inherited. The master forwards SIGHUP (reload) and SIGTERM (drain) to
 * the workers and restarts a worker that dies, with a growing delay if it keeps dying. The
 * master runs no event loop: it only waits for signals. */
#include "cli/workers.h"
#include "proxy/listener.h"
#include "core/log.h"
#include "core/tls.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READY_TIMEOUT_MS 15000
#define RESTART_MIN_MS   100
#define RESTART_MAX_MS   10000

typedef struct worker {
    pid_t pid;       /* 0 when not running */
    int ready_fd;    /* the master's end of the ready pipe while starting, else -1 */
    uint64_t restart_at;
    uint32_t backoff_ms;
    uint64_t started;
} worker;

typedef struct master {
    gg_config *cfg;
    gg_run_opts opts;
    gg_logger log;
    int *inherit;   /* per listen address: the unix socket workers inherit, or -1 */
    int *reserved;  /* per listen address: the TCP port reservation, or -1 */
    worker *w;
    int n;
    int stopping;
    sigset_t sigs;
} master;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Bind what the workers share. A TCP port of 0 is resolved here, once, and written back into
 * the config the workers get, so that they all bind the same port. */
static int bind_shared(master *m, char *err, size_t errlen)
{
    gg_config *cfg = m->cfg;
    m->inherit = malloc(sizeof(int) * (size_t)cfg->nlisten);
    m->reserved = malloc(sizeof(int) * (size_t)cfg->nlisten);
    if (!m->inherit || !m->reserved) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < cfg->nlisten; i++) m->inherit[i] = m->reserved[i] = -1;
    for (int i = 0; i < cfg->nlisten; i++) {
        gg_addr *a = &cfg->listen[i];
        if (a->kind == GG_ADDR_UNIX) {
            if ((m->inherit[i] = gg_listen_socket(a, 0, 1, err, errlen)) < 0) return -1;
            continue;
        }
        /* Bound but not listening: it holds the port and takes no connection. */
        if ((m->reserved[i] = gg_listen_socket(a, 1, 0, err, errlen)) < 0) return -1;
        socklen_t len = sizeof a->sa;
        getsockname(m->reserved[i], (struct sockaddr *)&a->sa, &len);
        gg_addr_format_sa((struct sockaddr *)&a->sa, a->text, sizeof a->text);
        if (a->tls) memcpy(a->text, "tls", 3); /* the scheme stays what the config says */
    }
    return 0;
}

static void spawn(master *m, int i)
{
    worker *w = &m->w[i];
    int p[2];
    if (pipe(p)) {
        gg_log(&m->log, GG_LOG_ERROR, "worker_spawn_failed", "worker=%d reason=\"%s\"", i, strerror(errno));
        w->restart_at = now_ms() + RESTART_MAX_MS;
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        gg_log(&m->log, GG_LOG_ERROR, "worker_spawn_failed", "worker=%d reason=\"%s\"", i, strerror(errno));
        close(p[0]);
        close(p[1]);
        w->restart_at = now_ms() + RESTART_MAX_MS;
        return;
    }
    if (pid == 0) {
        close(p[0]);
        for (int k = 0; k < m->cfg->nlisten; k++)
            if (m->reserved[k] >= 0) close(m->reserved[k]);
        for (int k = 0; k < m->n; k++)
            if (m->w[k].ready_fd >= 0) close(m->w[k].ready_fd);
        sigprocmask(SIG_UNBLOCK, &m->sigs, NULL);
        gg_run_opts o = m->opts;
        o.ready_fd = p[1];
        o.listen_fds = m->inherit;
        o.reuseport = 1;
        o.worker = i;
        gg_config *cfg = m->cfg;
        if (w->started) { /* a restart: take the config as it is on disk now, if it loads */
            char err[512];
            gg_config *fresh = gg_config_load(m->opts.config_path, err, sizeof err);
            if (fresh) {
                /* keep the addresses the master resolved (port 0) */
                memcpy(fresh->listen, cfg->listen, sizeof *cfg->listen * (size_t)cfg->nlisten);
                /* and the tls:// listeners' ticket keys every other worker uses (they came
                 * from the master's config through fork): a client's ticket from a worker
                 * that went on serving resumes here too */
                gg_tls_ctx_carry(fresh->tls, cfg->tls);
                cfg = fresh;
            }
        }
        _exit(gg_server_run(cfg, &o));
    }
    close(p[1]);
    w->pid = pid;
    if (w->started) { /* a restart: nobody waits for its ready byte */
        close(p[0]);
        w->ready_fd = -1;
    } else {
        w->ready_fd = p[0];
    }
    w->started = now_ms();
    gg_log(&m->log, GG_LOG_INFO, "worker_started", "worker=%d pid=%d", i, (int)pid);
}

static void forward(master *m, int sig)
{
    for (int i = 0; i < m->n; i++)
        if (m->w[i].pid > 0) kill(m->w[i].pid, sig);
}

static int live(master *m)
{
    int n = 0;
    for (int i = 0; i < m->n; i++) n += m->w[i].pid > 0;
    return n;
}

static void reap(master *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < m->n; i++) {
            worker *w = &m->w[i];
            if (w->pid != pid) continue;
            w->pid = 0;
            if (w->ready_fd >= 0) {
                close(w->ready_fd);
                w->ready_fd = -1;
            }
            if (m->stopping) break;
            /* A worker that lived a while restarts at once; one that keeps dying, slower. */
            uint64_t now = now_ms();
            if (now - w->started > 5000)
                w->backoff_ms = RESTART_MIN_MS;
            else if ((w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : RESTART_MIN_MS) > RESTART_MAX_MS)
                w->backoff_ms = RESTART_MAX_MS;
            w->restart_at = now + w->backoff_ms;
            if (WIFSIGNALED(status))
                gg_log(&m->log, GG_LOG_WARN, "worker_died", "worker=%d pid=%d signal=%d restart_ms=%u", i,
                       (int)pid, WTERMSIG(status), w->backoff_ms);
            else
                gg_log(&m->log, GG_LOG_WARN, "worker_died", "worker=%d pid=%d status=%d restart_ms=%u", i,
                       (int)pid, WEXITSTATUS(status), w->backoff_ms);
            break;
        }
    }
}

/* Wait until every first-generation worker said it listens (or died). */
static int wait_ready(master *m)
{
    uint64_t until = now_ms() + READY_TIMEOUT_MS;
    for (int i = 0; i < m->n; i++) {
        worker *w = &m->w[i];
        char c;
        while (w->ready_fd >= 0) {
            ssize_t r = read(w->ready_fd, &c, 1);
            if (r == 1 || r == 0) {
                close(w->ready_fd);
                w->ready_fd = -1;
                if (r == 0) return -1; /* it exited before listening */
            } else if (errno != EINTR || now_ms() > until) {
                return -1;
            }
        }
    }
    return 0;
}

static void log_ready(master *m)
{
    char list[1024];
    size_t n = 0;
    list[0] = 0;
    for (int i = 0; i < m->cfg->nlisten && n < sizeof list; i++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? "," : "", m->cfg->listen[i].text);
    gg_log_notice(&m->log, "ready", "listen=%s services=%d workers=%d pid=%d config=%s", list,
                  m->cfg->nservices, m->n, (int)getpid(), m->cfg->source);
}

int gg_master_run(gg_config *cfg, const gg_run_opts *opts)
{
    master m = {.cfg = cfg, .opts = *opts, .n = cfg->workers};
    char err[512], *pid_file = NULL; /* the master's pid: reload signals it, it tells workers */
    int status = 1;
    m.log.fd = 2;
    m.log.level = opts->log_level >= 0 ? opts->log_level : cfg->log_level;
    m.w = calloc((size_t)m.n, sizeof *m.w);
    if (!m.w) goto out;
    for (int i = 0; i < m.n; i++) m.w[i].ready_fd = -1;
    signal(SIGPIPE, SIG_IGN);
    /* Signals are taken with sigtimedwait, never by handlers: block them before any fork. */
    sigemptyset(&m.sigs);
    sigaddset(&m.sigs, SIGTERM);
    sigaddset(&m.sigs, SIGINT);
    sigaddset(&m.sigs, SIGHUP);
    sigaddset(&m.sigs, SIGCHLD);
    sigprocmask(SIG_BLOCK, &m.sigs, NULL);
    if (bind_shared(&m, err, sizeof err)) {
        gg_log(&m.log, GG_LOG_ERROR, "startup_failed", "reason=\"%s\"", err);
        goto out;
    }
    for (int i = 0; i < m.n; i++) spawn(&m, i);
    if (wait_ready(&m)) {
        gg_log(&m.log, GG_LOG_ERROR, "startup_failed", "reason=\"a worker did not start\"");
        m.stopping = 1;
        forward(&m, SIGTERM);
    } else {
        pid_file = gg_pid_file_write(cfg, &m.log);
        log_ready(&m);
        status = 0;
    }
    while (!m.stopping || live(&m)) {
        struct timespec tick = {0, 200 * 1000000};
        siginfo_t si;
        int sig = sigtimedwait(&m.sigs, &si, &tick);
        if (sig == SIGCHLD) {
            reap(&m);
        } else if (sig == SIGHUP) {
            gg_log(&m.log, GG_LOG_INFO, "reload", "workers=%d", live(&m));
            forward(&m, SIGHUP);
        } else if (sig == SIGTERM || sig == SIGINT) {
            gg_log(&m.log, GG_LOG_INFO, m.stopping ? "stop_now" : "draining", "workers=%d", live(&m));
            /* a second signal is passed on too: the workers then stop without waiting */
            m.stopping = 1;
            forward(&m, sig);
        }
        reap(&m); /* a SIGCHLD may have been merged with another signal */
        uint64_t now = now_ms();
        for (int i = 0; i < m.n && !m.stopping; i++)
            if (!m.w[i].pid && m.w[i].restart_at && now >= m.w[i].restart_at) {
                m.w[i].restart_at = 0;
                spawn(&m, i);
            }
    }
    gg_log_notice(&m.log, "stopped", "workers=%d", m.n);
out:
    for (int i = 0; m.inherit && i < cfg->nlisten; i++) {
        if (m.inherit[i] >= 0) {
            close(m.inherit[i]);
            unlink(cfg->listen[i].path);
        }
        if (m.reserved[i] >= 0) close(m.reserved[i]);
    }
    free(m.inherit);
    free(m.reserved);
    free(m.w);
    gg_config_free(cfg);
    gg_pid_file_remove(pid_file);
    return status;
}

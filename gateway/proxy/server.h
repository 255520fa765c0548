/* server.h -- the loop's context: everything a running gateway owns, and nothing global. */
#ifndef GG_SERVER_H
#define GG_SERVER_H

#include "core/buf.h"
#include "proxy/client.h"
#include "proxy/cluster.h"
#include "core/codec.h"
#include "proxy/config.h"
#include "core/calls.h"
#include "proxy/listener.h"
#include "core/log.h"
#include "core/loop.h"
#include "proxy/metrics.h"
#include "proxy/policy.h"
#include "core/stream.h"
#include "proxy/service.h"
#include "core/watchdog.h"
#include "core/objects.h"
#include "core/objtable.h"

#include <uv.h>

struct gg_server;

/* The HTTP side (http/http_front.c), registered from above so that proxy/ never includes
 * http/: NULL in gg_run_opts means no HTTP listeners at all (the loop-level C tests). */
typedef struct gg_front_ops {
    /* Listen on the configured HTTP addresses. Returns 0, or -1 with a reason in err. */
    int (*start)(struct gg_server *srv, char *err, size_t errlen);
    /* Drain: stop accepting front-door connections; the admin endpoint keeps answering. */
    void (*stop)(struct gg_server *srv);
    /* Shutdown: close every HTTP listener and connection. */
    void (*close)(struct gg_server *srv);
    /* The bound addresses of one kind (admin 0 or 1), comma-separated into out (cut, never
     * overrun, when it does not fit). Returns how many were written. For the ready line. */
    int (*addresses)(const struct gg_server *srv, int admin, char *out, size_t size);
} gg_front_ops;

/* How a serving process runs (main.c for a single process, workers.c for each worker). */
typedef struct gg_run_opts {
    const char *config_path;  /* NULL: the embedded default */
    int log_level;            /* >= 0 overrides the config's, also across reloads */
    int ready_fd;             /* >= 0: one byte is written there once listening (workers) */
    const int *listen_fds;    /* per cfg->listen entry: an inherited socket, or -1 */
    int reuseport;            /* bind TCP listeners with SO_REUSEPORT (several workers) */
    int worker;               /* worker number for logs; -1 for a single process */
    const gg_front_ops *front; /* the HTTP side (cli/main.c: gg_http_front_ops), or NULL */
    /* The upstream implementation of each protocol, indexed by GG_PROTO_* (cli/main.c:
     * gg_upstream_protocols). Required. */
    const gg_upstream_ops *const *upstreams;
} gg_run_opts;

typedef struct gg_server {
    gg_loop lp; /* connections reach the server through their loop: lp.data */
    gg_config *cfg;          /* the current generation's config */
    gg_run_opts opts;
    const char *config_path; /* NULL: the embedded default */
    lua_State *L;            /* one Lua state for the server's life: policy state survives reloads */
    gg_policy_host pol;
    gg_metrics met; /* counters by service name: they outlive reloads */
    gg_cluster cluster; /* the top-level redis option: shared state of a cluster of gateways */
    struct gg_discover *disc; /* discover = true services' registry watch (discover.h), or NULL */
    gg_obj_ext obj_ext; /* the remote-object ext type numbers (the defaults of objects.h) */
    struct gg_objtab *obj_dirty; /* upstream tables with releases to send this turn */

    gg_listener *listeners;
    int nlisteners;
    struct gg_http_front *http; /* the HTTP listeners (http_front.c), NULL when none */
    gg_generation *gen;     /* the services calls go to now */
    gg_generation *retired; /* older generations with calls still in flight */
    unsigned reloads;
    int forced_log_level; /* from the command line, kept across reloads; -1: the config's */

    gg_client *clients; /* in order of arrival */
    gg_client *clients_tail;
    uint32_t nclients;
    gg_client *resume; /* clients to resume reading at the end of this turn */
    uv_timer_t sweeper;

    gg_watchdog wd; /* notices a policy that never returns */
    int signals;    /* the three signal handles below are open (gg_server_run only) */
    uv_signal_t sigterm, sigint, sighup;
    int draining; /* 1 while draining, 2 once stopped */
    int stopped;  /* gg_server_shutdown has run */
    uv_timer_t drain_timer;
} gg_server;

static inline gg_server *gg_server_of(gg_loop *lp)
{
    return lp->data;
}

/* Write this process's pid into cfg's pid_file, if it sets one (logs pid_file_failed on log
 * when it cannot). Returns the path, malloc'd, for gg_pid_file_remove at exit; or NULL. */
char *gg_pid_file_write(gg_config *cfg, gg_logger *log);
/* Remove the pid file at path if it still holds this process's pid, and free path (NULL is
 * fine): a pid file left after exit makes `ghostgate reload` signal a pid that is gone. */
void gg_pid_file_remove(char *path);

/* Run a gateway on cfg until it is told to stop. Takes ownership of cfg. Returns the exit status for the process. */
int gg_server_run(gg_config *cfg, const gg_run_opts *opts);

/* An upstream objects table (up->srv set) has releases queued: they are sent at the end of
 * this loop turn (its ops' send_releases). gg_server_obj_forget: the table is being freed. */
void gg_server_obj_dirty(gg_objtab *up);
void gg_server_obj_forget(gg_objtab *up);

/* The steps of gg_server_run, for a gateway on a loop of the caller's (loop-level C tests):
 *   srv = gg_server_open(cfg, &opts, uv); gg_server_start(srv, err, sizeof err);
 *   ... uv_run ...; gg_server_shutdown(srv); uv_run(uv, UV_RUN_DEFAULT); gg_server_close(srv);
 * No signal handler is installed and no pid file written: those belong to gg_server_run.
 * gg_server_open takes ownership of cfg (freed on failure too) and returns NULL when out of
 * memory. opts is copied. */
gg_server *gg_server_open(gg_config *cfg, const gg_run_opts *opts, uv_loop_t *uv);
/* Policies, adapters, listeners, the HTTP side, then the upstream pools. Returns 0, or -1
 * with a reason in err (the caller shuts down). */
int gg_server_start(gg_server *srv, char *err, size_t errlen);
/* Stop everything now: listeners, clients, upstreams, timers. Calls in flight are failed.
 * uv_run returns once the last handle has closed. Idempotent. */
void gg_server_shutdown(gg_server *srv);
/* Free what srv owns, after uv_run has returned (every handle closed). Not the loop. */
void gg_server_close(gg_server *srv);
/* Re-read the config (SIGHUP): new calls use the new services and policies, calls in flight
 * finish under the old ones. A broken config is refused and the old one stays. */
int gg_server_reload(gg_server *srv);
/* A retired generation has freed itself. */
void gg_server_generation_freed(gg_server *srv, gg_generation *gen);

/* Resume reading from c at the end of this loop turn (never from inside a callback). */
void gg_server_defer_resume(gg_server *srv, gg_client *c);
void gg_server_forget_resume(gg_server *srv, gg_client *c);
/* During a drain: stop once no call is in flight. */
void gg_server_check_drained(gg_server *srv);

#endif

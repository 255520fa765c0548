/* watchdog.c -- the thread that ends a process stuck in Lua; see watchdog.h. */
#include "core/watchdog.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The name of policy number `i` (1-based) in a comma-separated list. */
static void policy_name(const char *list, int i, char *out, size_t n)
{
    snprintf(out, n, "?");
    if (!list || i < 1) return;
    const char *p = list;
    for (int k = 1; k < i && p; k++) {
        p = strchr(p, ',');
        if (p) p++;
    }
    if (!p) return;
    size_t len = strcspn(p, ",");
    snprintf(out, n, "%.*s", (int)len, p);
}

static void *watch(void *arg)
{
    gg_watchdog *w = arg;
    uint64_t tick = w->timeout_ms / 4;
    if (tick < 20) tick = 20;
    if (tick > 250) tick = 250;
    uint64_t seen = 0, since = 0;
    pthread_mutex_lock(&w->lock);
    while (!atomic_load(&w->stop)) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)(tick % 1000) * 1000000;
        until.tv_sec += (time_t)(tick / 1000) + until.tv_nsec / 1000000000;
        until.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&w->wake, &w->lock, &until);
        if (atomic_load(&w->stop)) break;
        uint64_t now = now_ms();
        uint64_t progress = atomic_load_explicit(&w->progress, memory_order_relaxed);
        if (!atomic_load_explicit(&w->busy, memory_order_acquire) || progress != seen) {
            seen = progress;
            since = now;
            continue;
        }
        if (now - since < w->timeout_ms) continue;
        char name[64];
        policy_name(atomic_load(&w->policies), w->current, name, sizeof name);
        const char *svc = atomic_load(&w->service), *phase = atomic_load(&w->phase);
        gg_log_write(w->log, GG_LOG_ERROR, "policy_stuck",
                     "service=%s phase=%s policy=%s seconds=%.1f action=\"exit 70: the process is restarted "
                     "by its master or service manager\"",
                     svc ? svc : "?", phase ? phase : "?", name, (double)(now - since) / 1000.0);
        /* Nothing can unwind a compiled trace: leave now, without running exit handlers that
         * could touch the state the stuck thread holds. */
        _exit(70);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int gg_watchdog_start(gg_watchdog *w, uint64_t timeout_ms, const gg_logger *log)
{
    w->timeout_ms = timeout_ms;
    w->log = log;
    atomic_store(&w->stop, 0);
    if (!timeout_ms) return 0;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->lock, NULL);
    if (pthread_create(&w->thread, NULL, watch, w)) {
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->lock);
        return -1;
    }
    w->running = 1;
    return 0;
}

void gg_watchdog_stop(gg_watchdog *w)
{
    if (!w->running) return;
    pthread_mutex_lock(&w->lock);
    atomic_store(&w->stop, 1);
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
    w->running = 0;
}

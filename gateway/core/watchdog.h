/* watchdog.h -- notice a policy that never returns, and take its process down.
 *
 * LuaJIT's hooks do not fire inside compiled traces (LuaJIT #723, #779), so a policy stuck in
 * `while true do end` cannot be interrupted from inside. A thread watches instead: the loop
 * marks each entry into Lua and each return; if Lua has been running for `timeout` without
 * returning, the thread logs which service, phase and policy it was, and ends the process
 * (exit status 70). With `workers > 1` the master starts a new worker at once; a single
 * process relies on its service manager (deploy/ghostgate.service restarts it). */
#ifndef GG_WATCHDOG_H
#define GG_WATCHDOG_H

#include "core/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct gg_watchdog {
    _Atomic uint32_t busy;     /* 1 while Lua runs */
    _Atomic uint64_t progress; /* bumped at every return from Lua */
    uint64_t count;            /* the loop's own copy of progress */
    const char *_Atomic service; /* what is running (static or long-lived strings) */
    const char *_Atomic phase;
    const char *_Atomic policies; /* the service's policy names, comma-separated */
    int32_t current;           /* written by the Lua runner: index of the running policy */
    uint64_t timeout_ms;       /* 0: off */
    const gg_logger *log;
    atomic_int stop;
    pthread_mutex_t lock; /* with wake: stop does not wait for the thread's tick */
    pthread_cond_t wake;
    pthread_t thread;
    int running;
} gg_watchdog;

/* Start the thread (nothing when timeout_ms is 0). Returns 0 or -1. */
int gg_watchdog_start(gg_watchdog *w, uint64_t timeout_ms, const gg_logger *log);
void gg_watchdog_stop(gg_watchdog *w);

/* Around every call into Lua. Plain stores: nothing here costs a lock. */
static inline void gg_watchdog_enter(gg_watchdog *w, const char *service, const char *phase,
                                     const char *policies)
{
    atomic_store_explicit(&w->service, service, memory_order_relaxed);
    atomic_store_explicit(&w->phase, phase, memory_order_relaxed);
    atomic_store_explicit(&w->policies, policies, memory_order_relaxed);
    w->current = 0;
    atomic_store_explicit(&w->busy, 1, memory_order_release);
}

static inline void gg_watchdog_leave(gg_watchdog *w)
{
    atomic_store_explicit(&w->progress, ++w->count, memory_order_relaxed);
    atomic_store_explicit(&w->busy, 0, memory_order_release);
}

#endif

/* server.h -- the loop's context: everything a running gateway owns, and nothing global. */
#ifndef GG_SERVER_H
#define GG_SERVER_H

#include "buf.h"
#include "client.h"
#include "codec.h"
#include "config.h"
#include "futures.h"
#include "listener.h"
#include "log.h"
#include "loop.h"
#include "policy.h"
#include "stream.h"
#include "upstream.h"

#include <uv.h>

typedef struct gg_server {
    gg_loop lp; /* connections reach the server through their loop: lp.data */
    gg_config *cfg;
    gg_policy_host pol;

    gg_listener *listeners;
    int nlisteners;
    gg_service *services; /* sorted by name */
    int nservices;

    gg_client *clients; /* in order of arrival */
    gg_client *clients_tail;
    uint32_t nclients;
    gg_client *resume; /* clients to resume reading at the end of this turn */
    uv_timer_t sweeper;

    uv_signal_t sigterm, sigint, sighup;
    int draining; /* 1 while draining, 2 once stopped */
    uv_timer_t drain_timer;
} gg_server;

static inline gg_server *gg_server_of(gg_loop *lp)
{
    return lp->data;
}

/* Run a gateway on cfg until it is told to stop. Takes ownership of cfg. Returns the exit
 * status for the process. */
int gg_server_run(gg_config *cfg);

/* Resume reading from c at the end of this loop turn (never from inside a callback). */
void gg_server_defer_resume(gg_server *srv, gg_client *c);
void gg_server_forget_resume(gg_server *srv, gg_client *c);
/* During a drain: stop once no call is in flight. */
void gg_server_check_drained(gg_server *srv);

#endif

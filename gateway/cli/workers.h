/* workers.h -- the master of several worker processes (workers > 1); see workers.c. */
#ifndef GG_WORKERS_H
#define GG_WORKERS_H

#include "proxy/config.h"
#include "proxy/server.h"

/* Bind the shared sockets, start cfg->workers workers and supervise them until SIGTERM.
 * Takes ownership of cfg. Returns the exit status for the process. */
int gg_master_run(gg_config *cfg, const gg_run_opts *opts);

#endif

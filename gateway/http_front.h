/* http_front.h -- the HTTP listeners: the JSON-RPC front door (config `http`) and the admin
 * endpoint (config `admin`: /metrics, /health, /ready, /routes). */
#ifndef GG_HTTP_FRONT_H
#define GG_HTTP_FRONT_H

#include <stddef.h>

struct gg_server;

/* Listen on the configured addresses (nothing when none). Returns 0, or -1 with a reason. */
int gg_http_front_start(struct gg_server *srv, char *err, size_t errlen);
/* Stop accepting (drain, shutdown). Connections are closed with the clients. */
void gg_http_front_stop(struct gg_server *srv);

#endif

/* http_admin.h -- the admin endpoint (config `admin`): GET /metrics (Prometheus text), /health,
 * /ready and /routes (JSON), answered at once from the loop's own state. See docs/http.md.
 *
 * Its connections are not clients: they do not count against limits.max_clients and are kept
 * on a list of their own, at most GG_ADMIN_MAX_CONNS; past that the oldest idle one is closed
 * for the newcomer, so a scraper always gets in. */
#ifndef GG_HTTP_ADMIN_H
#define GG_HTTP_ADMIN_H

#include <uv.h>

struct gg_http_front;

struct gg_tls_ctx;
/* tls: HTTPS (a tls:// listener), else NULL. */
void gg_http_admin_accept(struct gg_http_front *f, uv_stream_t *server, int is_pipe, struct gg_tls_ctx *tls);
/* The front's sweep timer: close admin connections idle past limits.idle_timeout, or slower
 * than limits.message_timeout to send a request. */
void gg_http_admin_sweep(uv_timer_t *t);
/* Close every admin connection (after its queued output). */
void gg_http_admin_close_all(struct gg_http_front *f);

#endif

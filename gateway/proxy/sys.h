/* sys.h -- the gateway's `sys.*` methods, answered by the gateway itself (not routed). */
#ifndef GG_SYS_H
#define GG_SYS_H

#include "core/codec.h"

struct gg_server;
struct gg_client;

/* Answer request m (msg[0..m->size)) whose method begins with "sys.":
 *   sys.describe  {service = {methods = {name = {args = {"integer", ...}, names = {...}}},
 *                             upstreams = n}}  (lua/ghost/describe.lua builds it)
 *   sys.ping      "pong"
 * Any other sys.* gets 404. Returns 0 (the answer is queued, errors included). */
int gg_sys_request(struct gg_server *srv, struct gg_client *c, const char *msg, const gg_msg *m);

#endif

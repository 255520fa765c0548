/* dispatch_int.h -- what dispatch.c and dispatch_objects.c share (private to proxy/dispatch*.c).
 *
 *   dispatch.c          a call's life: request phase, upstream, response phase, one answer;
 *                       plain calls and notifications
 *   dispatch_objects.c  calls on remote objects and promise pipelining */
#ifndef GG_DISPATCH_INT_H
#define GG_DISPATCH_INT_H

#include "proxy/dispatch.h"
#include "proxy/policy.h"

#include <stddef.h>

/* The phase whose verdict gg_dispatch_apply_verdict applies. */
#define PHASE_REQUEST  0
#define PHASE_RESPONSE 1

/* Apply a policy's verdict (dispatch.c). Returns 1 when the call was answered (and ended) or
 * rescheduled, 0 when the caller goes on (*endpoint set in the REQUEST phase). */
int gg_dispatch_apply_verdict(struct gg_server *srv, gg_call *call, const gg_verdict *v, int phase,
                              int *endpoint);

/* Bytes of the MessagePack object at p (already framed by a scan), or 0. */
size_t gg_dispatch_object_size(const char *p, size_t len);

#endif

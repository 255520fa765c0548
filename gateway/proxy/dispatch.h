/* dispatch.h -- a call's life from request to its one answer (see dispatch.c). */
#ifndef GG_DISPATCH_H
#define GG_DISPATCH_H

#include "core/codec.h"
#include "core/calls.h"

#include <stddef.h>
#include <stdint.h>

struct gg_server;
struct gg_client;
struct gg_service;

/* Safe defaults: whether the core refuses a method name gg_method_check() flagged with `flaw`
 * (GG_NAME_*), before any policy, for every way in. 0: it goes on (no flaw, or svc opted in
 * with method_names = "any"); else GG_ERR_FORBIDDEN for a private segment, GG_ERR_BAD_REQUEST
 * for the rest. svc may be NULL (unknown service, sys.*, ghost.*: nobody opted in). */
int gg_method_refused(const struct gg_service *svc, int flaw);

/* Start a call of client c to service svc: id is the client's id for it, m the full
 * "svc.name" as split at parse time, params the MessagePack array of arguments. The bytes
 * are only read during the call. Answers at once on refusal. */
void gg_dispatch_request(struct gg_server *srv, struct gg_client *c, struct gg_service *svc,
                         uint32_t id, const gg_method *m, const char *params, size_t params_len);

/* A call of client c on a remote object the gateway gave it (method "$call" or "$get",
 * docs/protocol.md#remote-objects): the target is resolved in the client's table, the
 * service's request policies run with the object's method name, and the call goes to the
 * upstream connection that exported the object. Answers at once on refusal (410 for an id
 * the client does not hold). A nil target is a plain "svc.method" and a PROMISE target the
 * result of a kept call: promise pipelining (proxy/promises.h). */
void gg_dispatch_object(struct gg_server *srv, struct gg_client *c, uint32_t id,
                        const char *method, uint32_t method_len, const char *params,
                        size_t params_len);

/* A remote-objects notification of client c: $release [[id, count], ...] drops references
 * it holds (what no client holds any more is released upstream at the end of the turn);
 * $finish [msgid, ...] forgets kept calls and tells their upstreams; others are dropped and
 * logged. */
void gg_dispatch_object_notify(struct gg_server *srv, struct gg_client *c, const char *method,
                               uint32_t method_len, const char *params, size_t params_len);

/* A notification of client c to service svc (arguments as for gg_dispatch_request): it meets
 * the request phase of svc's policies like a call, then goes to the upstream. One that is
 * refused or cannot be sent is dropped: it has no answer, so it is counted in /metrics and
 * logged (gg_dispatch_notify_dropped). The bytes are only read during the call. */
void gg_dispatch_notify(struct gg_server *srv, struct gg_client *c, struct gg_service *svc,
                        const gg_method *m, const char *params, size_t params_len);
/* Count and log a notification dropped with gateway error `code` (GG_MET_ANSWERED: a policy
 * answered it); svc is NULL when it names no service. `why` is a message for the log or NULL.
 * The log line names the method escaped, and at most a few such lines are written per second. */
void gg_dispatch_notify_dropped(struct gg_server *srv, struct gg_service *svc, const char *method,
                                uint32_t method_len, int code, const char *why);

/* The gateway's calls past their deadline (gg_calls.on_deadline; lp is the server's gg_loop):
 * each fails with deadline_exceeded. */
void gg_dispatch_on_deadline(void *lp, gg_call *call);

/* The upstream's answer: body is the raw [error, result] bytes. Ends the call (or retries). */
void gg_call_answer(struct gg_server *srv, gg_call *call, const char *body, size_t body_len);
/* End a call with a gateway error (the response phase may still answer it or retry). */
void gg_call_fail(struct gg_server *srv, gg_call *call, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif

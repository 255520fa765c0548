/* policy.h -- the core's side of the Lua policies (lua/ghost/policy.lua).
 *
 * A service without policies never enters Lua. A service with policies costs one Lua call per
 * call for the request phase (guard and auth decisions are cached on the Lua side per
 * identity and method) and one more for the response phase when a policy wants it. */
#ifndef GG_POLICY_H
#define GG_POLICY_H

#include "core/calls.h"
#include "lua/lua_consts.h"
#include "proxy/policy_host.h"

#include <lua.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

struct gg_server;
struct gg_client;
struct gg_service;
struct gg_endpoint;
struct gg_generation;

/* The verdicts GG_V_* are in lua/lua_consts.h, shared with ghost.policy. */

typedef struct gg_verdict {
    int verdict;
    int endpoint;       /* CONTINUE: 1-based endpoint, 0 = the core chooses */
    double deadline;    /* CONTINUE: seconds from now */
    int code;           /* REJECT */
    double retry_after; /* REJECT: < 0 when none */
    double delay;       /* RETRY: seconds */
    char message[512];  /* REJECT, ERROR */
    const char *result; /* RESPOND*: valid until the next policy call */
    size_t result_len;
} gg_verdict;

typedef struct gg_policy_host {
    lua_State *L;
    int host_ref, request_ref, response_ref, callback_ref, endpoint_ref, endpoints_ref, auth_ref;
    msgpack_sbuffer out; /* packed RESPOND values */
    const char *cur_params; /* the params of the call in its request phase */
    size_t cur_len;
    int cur_object; /* the call in its request phase is on a remote object */
    uint32_t errors; /* policy errors so far: their ids */
} gg_policy_host;

/* Set up the Lua side once (srv->L). Returns 0, or -1 with a reason in err. */
int gg_policy_init(struct gg_server *srv, char *err, size_t errlen);
void gg_policy_stop(struct gg_server *srv);
/* Build the pipelines of gen's services (svc->pipeline_ref) and the authenticator; `old` is
 * the generation it replaces (unchanged policies keep their state), or NULL. Returns 0, or -1
 * with a reason in err (nothing of gen is built then). */
int gg_policy_build(struct gg_server *srv, struct gg_generation *gen, struct gg_generation *old,
                    char *err, size_t errlen);
/* Tell the pipelines which endpoints each service of gen has (discover = true services: the
 * slots of proxy/discover.h) and how many connections each has now. */
void gg_policy_sync_endpoints(struct gg_server *srv, struct gg_generation *gen);
void gg_policy_generation_free(struct gg_server *srv, struct gg_generation *gen);
/* A new id for one error the gateway logs and answers (policy, adapter and upstream errors):
 * the caller finds the log line by it; the pid keeps workers' ids apart. */
static inline unsigned gg_policy_error_id(gg_policy_host *pol)
{
    return ((unsigned)getpid() << 16) ^ ++pol->errors;
}

/* Request phase of a call (call->id gives its slot). The call is not yet sent. call NULL: a
 * notification, which meets the same decisions but will have no response phase. */
void gg_policy_request(struct gg_server *srv, struct gg_client *c, struct gg_service *svc,
                       gg_call *call, const char *method, uint32_t method_len, const char *params,
                       size_t params_len, gg_verdict *v);
/* The same for a call on a remote object ($call, $get, a call on a promise): method is the
 * object's method or attribute name, and the decide phases are told it is one (a guard's
 * `objects` list). */
void gg_policy_request_object(struct gg_server *srv, struct gg_client *c, struct gg_service *svc,
                              gg_call *call, const char *method, uint32_t method_len,
                              const char *params, size_t params_len, gg_verdict *v);
/* A callback: an upstream of svc calls method on a function or object that client c passed.
 * The decide phases (told it is an object and a callback: a guard's `callbacks` list) and the
 * access phases (ctx.callback) run as c; v is REJECT (code, message, retry_after) or CONTINUE. */
void gg_policy_callback(struct gg_server *srv, struct gg_client *c, struct gg_service *svc,
                        const char *method, uint32_t method_len, gg_verdict *v);
/* Response phase. kind: 0 ok, 1 the upstream returned an error, 2 gateway error (code). result
 * is the raw result (kind 0) when a policy wants results. */
void gg_policy_response(struct gg_server *srv, gg_call *call, int kind, int code,
                        const char *result, size_t result_len, gg_verdict *v);
/* What authenticating a connection gave. */
typedef struct gg_auth_result {
    int code;           /* 0: authenticated; else a gateway error code (401, 429, 500, 501) */
    double retry_after; /* seconds, < 0 when none */
    const char *identity; /* code 0, inside policy.c only: a Lua string, valid until the stack
                           * top is restored (gg_policy_authenticate leaves it NULL) */
    size_t identity_len;
    const char *message; /* code != 0: why; valid as long as the result */
    char buf[512];
} gg_auth_result;

/* Authenticate connection c with a token (an HTTP front door's Authorization: Bearer): the same
 * authenticator, throttling and logs as ghost.auth. On success the connection's identity is
 * what its calls run as. */
void gg_policy_authenticate(struct gg_server *srv, struct gg_client *c, const char *token,
                            size_t len, gg_auth_result *res);
/* ghost.auth(token) on connection c: answers the request itself (MessagePack-RPC). */
void gg_policy_auth(struct gg_server *srv, struct gg_client *c, uint32_t msgid, const char *params,
                    size_t params_len);
/* Every breaker of gen's policies: fn(data, service, upstream, state) with state 0 closed,
 * 1 open, 2 half-open. The strings are valid only during the call. For /metrics and /routes. */
typedef void (*gg_breaker_fn)(void *data, const char *service, const char *upstream, int state);
void gg_policy_breakers(struct gg_server *srv, struct gg_generation *gen, gg_breaker_fn fn, void *data);
/* Whether connection c has authenticated (ghost.auth or a Bearer token). */
/* sys.describe for c: push on the policy Lua stack what the running generation lets c call
 * (ghost.describe.for_client: filtered by c's identity and scopes, cached per generation and
 * identity). The value is shared by the cache: read it, do not change it. Returns 0, or -1
 * with the reason in err and nothing pushed. */
int gg_policy_describe(struct gg_server *srv, struct gg_client *c, char *err, size_t errlen);
int gg_policy_client_authenticated(struct gg_server *srv, struct gg_client *c);
void gg_policy_client_closed(struct gg_server *srv, struct gg_client *c);
void gg_policy_endpoint_changed(struct gg_server *srv, struct gg_endpoint *ep);
/* The endpoint slots of svc (discover = true) changed: the pipeline's endpoint list follows
 * (ghost.gateway.set_endpoints), then each endpoint's connection count. */
struct gg_service;
void gg_policy_endpoints_listed(struct gg_server *srv, struct gg_service *svc);

#endif

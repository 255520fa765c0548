/* errors.h -- the gateway's error codes and the error object sent to callers.
 *
 * A gateway error is the `error` element of a response: a map {code, type, message}. Codes
 * are listed in docs/protocol.md; errors an upstream returns pass through untouched. */
#ifndef GG_ERRORS_H
#define GG_ERRORS_H

#include <stdint.h>

struct gg_stream;

/* The one table of gateway error codes: the enum below, gg_error_type and Lua's
 * ghost.consts.errors (gateway/lua/lua_consts.c) are generated from it, so policies and the
 * client library never write a number. X(NAME, code, "type"). */
#define GG_ERRORS(X)                                                                               \
    X(BAD_REQUEST, 400, "bad_request")                                                             \
    X(UNAUTHENTICATED, 401, "unauthenticated")                                                     \
    X(FORBIDDEN, 403, "forbidden")                                                                 \
    X(NO_SUCH_SERVICE, 404, "no_such_service")                                                     \
    X(OBJECT_GONE, 410, "object_gone")                                                             \
    X(TOO_LARGE, 413, "too_large")                                                                 \
    X(RATE_LIMITED, 429, "rate_limited")                                                           \
    X(INTERNAL, 500, "internal")                                                                   \
    X(NOT_SUPPORTED, 501, "not_supported")                                                         \
    X(UPSTREAM_UNAVAILABLE, 502, "upstream_unavailable")                                           \
    X(OVERLOADED, 503, "overloaded")                                                               \
    X(DEADLINE_EXCEEDED, 504, "deadline_exceeded")                                                 \
    X(CIRCUIT_OPEN, 530, "circuit_open")                                                           \
    X(SHUTTING_DOWN, 531, "shutting_down")

enum {
#define GG_ERR_ENUM_(name, code, type) GG_ERR_##name = code,
    GG_ERRORS(GG_ERR_ENUM_)
#undef GG_ERR_ENUM_
};

/* "no_such_service" for 404, ...; "internal" for an unknown code. */
const char *gg_error_type(int code);

/* Queue the response [1, msgid, {code, type, message}, nil] on s. The message is formatted
 * from fmt and truncated to 512 bytes. Returns 0, or -1 when out of memory. */
int gg_reply_error(struct gg_stream *s, uint32_t msgid, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The same with a fixed message and, when retry_after >= 0, a `retry_after` field (seconds). */
int gg_reply_error_full(struct gg_stream *s, uint32_t msgid, int code, double retry_after,
                        const char *message);

/* The same with a type of the caller's ("no_such_method": a 404 of remote objects, the type
 * the owner of an object answers with, docs/protocol.md). */
int gg_reply_error_typed(struct gg_stream *s, uint32_t msgid, int code, const char *type,
                         double retry_after, const char *message);

#endif

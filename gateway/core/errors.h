/* errors.h -- the gateway's error codes and the error object sent to callers.
 *
 * A gateway error is the `error` element of a response: a map {code, type, message}. Codes
 * are listed in docs/protocol.md; errors an upstream returns pass through untouched. */
#ifndef GG_ERRORS_H
#define GG_ERRORS_H

#include <stdint.h>

struct gg_stream;

#define GG_ERR_BAD_REQUEST          400
#define GG_ERR_UNAUTHENTICATED      401
#define GG_ERR_FORBIDDEN            403
#define GG_ERR_NO_SUCH_SERVICE      404
#define GG_ERR_TOO_LARGE            413
#define GG_ERR_RATE_LIMITED         429
#define GG_ERR_INTERNAL             500
#define GG_ERR_NOT_SUPPORTED        501
#define GG_ERR_UPSTREAM_UNAVAILABLE 502
#define GG_ERR_OVERLOADED           503
#define GG_ERR_DEADLINE_EXCEEDED    504
#define GG_ERR_CIRCUIT_OPEN         530
#define GG_ERR_SHUTTING_DOWN        531

/* "no_such_service" for 404, ...; "internal" for an unknown code. */
const char *gg_error_type(int code);

/* Queue the response [1, msgid, {code, type, message}, nil] on s. The message is formatted
 * from fmt and truncated to 512 bytes. Returns 0, or -1 when out of memory. */
int gg_reply_error(struct gg_stream *s, uint32_t msgid, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The same with a fixed message and, when retry_after >= 0, a `retry_after` field (seconds). */
int gg_reply_error_full(struct gg_stream *s, uint32_t msgid, int code, double retry_after,
                        const char *message);

#endif

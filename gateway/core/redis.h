/* redis.h -- one Redis connection on a libuv loop that never blocks it: hiredis for RESP, our
 * own event adapter, connect and request timeouts, reconnect with jittered backoff.
 *
 * Redis is ghostgate's scale-out store (registry, cluster rate limits, shared breakers). It is
 * never required: callers keep working on what they know while a connection is down, and
 * gg_redis_command refuses at once instead of queueing. */
#ifndef GG_REDIS_H
#define GG_REDIS_H

#include "core/log.h"

#include <hiredis/hiredis.h>
#include <stdint.h>
#include <uv.h>

#define GG_REDIS_EDOWN (-1)  /* not connected (or closing): the callback will not run */
#define GG_REDIS_ENOMEM (-2) /* out of memory: the callback will not run */

/* Where a Redis is: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] (IPv6 hosts in brackets) or
 * unix:PATH[?db=N&password=P&user=U]. PASSWORD, USER and P may be %-encoded. */
typedef struct gg_redis_url {
    char host[256]; /* empty for a unix socket */
    int port;       /* default 6379 */
    char path[108]; /* a unix socket path, else empty */
    char user[128]; /* ACL user (AUTH user password), else empty */
    char password[256];
    int db; /* SELECT db after connecting when > 0 */
} gg_redis_url;

/* Parse s into u. Returns 0, or -1 with a message in err (which never repeats the password). */
int gg_redis_url_parse(const char *s, gg_redis_url *u, char *err, size_t errlen);
/* The URL without its password, for logs and /ready: "redis://127.0.0.1:6379/2". */
void gg_redis_url_describe(const gg_redis_url *u, char *out, size_t outlen);

typedef struct gg_redis gg_redis;

/* A reply. reply is NULL when the command failed without one (timeout, connection lost,
 * closed); err then says why. For a Redis error reply, reply is set and err is its text.
 * reply is only valid for the duration of the callback. */
typedef void (*gg_redis_cb)(gg_redis *r, redisReply *reply, const char *err, void *arg);
/* The connection went up (after AUTH, SELECT and a PING answered) or down (why says why).
 * Down is reported once per outage, including the first failed attempt after gg_redis_new. */
typedef void (*gg_redis_state_cb)(gg_redis *r, int up, const char *why, void *arg);

typedef struct gg_redis_opts {
    uint32_t connect_timeout_ms; /* connect + handshake (default 1000) */
    uint32_t request_timeout_ms; /* oldest pending command; on expiry the connection is dropped
                                  * and reopened, every pending command fails (default 1000) */
    uint32_t backoff_min_ms;     /* first reconnect delay, doubling (default 100) */
    uint32_t backoff_max_ms;     /* default 5000 */
    gg_redis_state_cb on_state;  /* may be NULL */
    void *arg;
    const gg_logger *log; /* redis_up / redis_down lines; NULL: silent */
    const char *name;     /* in those lines: what this connection is for ("registry") */
} gg_redis_opts;

typedef struct gg_redis_stats {
    uint64_t commands; /* sent */
    uint64_t replies;  /* round trips completed with a reply (error replies included) */
    uint64_t errors;   /* error replies, timeouts, commands lost with their connection */
    uint64_t connects; /* successful handshakes */
} gg_redis_stats;

/* Start connecting at once (reconnecting forever until gg_redis_close). o and its strings are
 * copied. Returns NULL when out of memory. */
gg_redis *gg_redis_new(uv_loop_t *loop, const gg_redis_url *url, const gg_redis_opts *o);

/* Send one command (argv as in redisAsyncCommandArgv; argvlen may be NULL for C strings).
 * Returns 0 (cb runs exactly once, later, never from inside this call) or GG_REDIS_EDOWN /
 * GG_REDIS_ENOMEM (cb never runs). */
int gg_redis_command(gg_redis *r, gg_redis_cb cb, void *arg, int argc, const char **argv,
                     const size_t *argvlen);

/* Subscribe to channel on this connection, now if it is up and again after every reconnect.
 * cb gets each message as reply (an array: "message", channel, payload) and err NULL; it is
 * never called with errors. A connection with a subscription is in Redis's subscribed mode:
 * send other commands on another gg_redis. Returns 0 or GG_REDIS_ENOMEM. */
int gg_redis_subscribe(gg_redis *r, const char *channel, gg_redis_cb cb, void *arg);

int gg_redis_is_up(const gg_redis *r);
const gg_redis_stats *gg_redis_stats_get(const gg_redis *r);
/* Why the connection is down ("" when up). Sanitised: safe in a log line. */
const char *gg_redis_why(const gg_redis *r);

/* Close: every pending command's callback runs once with err "closed" (before this returns, or
 * right after the current hiredis callback when called from inside one), no state callback follows, the memory goes when the handles have closed. Safe from inside any
 * gg_redis callback. r must not be used afterwards. */
void gg_redis_close(gg_redis *r);

#endif

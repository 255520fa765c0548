/* cluster_auth.c -- failed authentications counted across the gateways of a cluster, so that
 * a client cannot multiply its guesses by the number of gateways.
 *
 * Each failure here is one atomic script on the command connection: INCRBY the address's
 * counter `ghostgate:authfail:{ADDR}`, give it the window as its TTL when it has none, answer
 * the count and the TTL left. When the count reaches the limit, this gateway throttles the
 * address for that TTL and publishes "ADDR WAIT_MS SENDER" on GG_CLUSTER_AUTH_CHANNEL, and
 * every peer throttles it too. The authenticator's own local count always applies as well, so
 * with Redis down a gateway throttles exactly as without Redis. A throttled attempt never
 * reaches this file: an attacker's refused guesses cost no Redis command. */
#include "proxy/cluster.h"
#include "lua/lua_bridge.h"
#include "proxy/server.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ADDR 200
#define MAX_WAIT_MS 86400000L

/* KEYS[1] the counter, ARGV[1] the window in ms -> { count, ms left } */
static const char count_script[] =
    "local n = redis.call('INCRBY', KEYS[1], 1) "
    "local t = redis.call('PTTL', KEYS[1]) "
    "if t < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) t = tonumber(ARGV[1]) end "
    "return { n, t }";

typedef struct count_req {
    gg_server *srv;
    int limit;
    char addr[];
} count_req;

static int valid_addr(const char *a, size_t n)
{
    if (n == 0 || n > MAX_ADDR) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)a[i] <= ' ' || (unsigned char)a[i] >= 127) return 0;
    return 1;
}

typedef struct throttle_arg {
    gg_server *srv;
    const char *addr;
    double wait;
} throttle_arg;

/* authenticator:throttle(addr, wait) */
static int throttle_fn(lua_State *L, void *ud)
{
    throttle_arg *a = ud;
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->srv->pol.auth_ref);
    lua_getfield(L, -1, "throttle");
    lua_insert(L, -2);
    lua_pushstring(L, a->addr);
    lua_pushnumber(L, a->wait);
    lua_call(L, 3, 0);
    return 0;
}

/* Refuse addr's authentications for ms here. Returns 0, or -1 when there is no authenticator
 * (a gateway without an auth section). */
static int throttle(gg_server *srv, const char *addr, long ms)
{
    if (!srv->pol.L || srv->pol.auth_ref == LUA_NOREF) return -1;
    lua_State *L = srv->pol.L;
    int top = lua_gettop(L);
    throttle_arg a = {srv, addr, (double)ms / 1000.0};
    gg_watchdog_enter(&srv->wd, "ghost", "auth", NULL);
    int rc = gg_lua_protect(L, throttle_fn, &a, 0, 0);
    gg_watchdog_leave(&srv->wd);
    if (rc) {
        const char *e = lua_tostring(L, -1);
        gg_log(&srv->lp.log, GG_LOG_ERROR, "policy_error", "service=ghost phase=auth error=\"%s\"",
               e ? e : "?");
    }
    lua_settop(L, top);
    return rc ? -1 : 0;
}

static void on_published(gg_redis *r, redisReply *reply, const char *err, void *arg)
{
    (void)r;
    (void)reply;
    (void)err;
    (void)arg; /* errors are counted by the connection */
}

/* The script's answer. On "closed" (shutdown, reload to another Redis) the request is only
 * freed: nothing of the server is touched. */
static void on_counted(gg_redis *r, redisReply *reply, const char *err, void *arg)
{
    (void)r;
    count_req *q = arg;
    gg_server *srv = q->srv;
    if (err || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_INTEGER)
        goto done;
    long long n = reply->element[0]->integer, ms = reply->element[1]->integer;
    if (n < q->limit || ms <= 0) goto done;
    if (ms > MAX_WAIT_MS) ms = MAX_WAIT_MS;
    gg_log(&srv->lp.log, GG_LOG_WARN, "auth_throttled",
           "peer=%s failures=%lld scope=cluster retry_after_ms=%lld", q->addr, n, ms);
    throttle(srv, q->addr, (long)ms);
    gg_cluster *c = &srv->cluster;
    char msg[MAX_ADDR + 64];
    snprintf(msg, sizeof msg, "%s %lld %s", q->addr, ms, c->sender);
    const char *argv[] = {"PUBLISH", GG_CLUSTER_AUTH_CHANNEL, msg};
    if (c->redis && !gg_redis_command(c->redis, on_published, NULL, 3, argv, NULL))
        c->auth.published++;
    else
        c->auth.lost++;
done:
    free(q);
}

void gg_cluster_auth_failed(gg_server *srv, const char *addr, int limit, double window)
{
    gg_cluster *c = &srv->cluster;
    size_t n = strlen(addr);
    if (!c->redis || !valid_addr(addr, n) || limit < 1) return;
    count_req *q = malloc(sizeof *q + n + 1);
    if (!q) return;
    q->srv = srv;
    q->limit = limit;
    memcpy(q->addr, addr, n + 1);
    char key[MAX_ADDR + 32], ms[24];
    snprintf(key, sizeof key, "ghostgate:authfail:{%s}", addr);
    long w = (long)(window * 1000.0 + 0.5);
    snprintf(ms, sizeof ms, "%ld", w < 1 ? 1 : w > MAX_WAIT_MS ? MAX_WAIT_MS : w);
    const char *argv[] = {"EVAL", count_script, "1", key, ms};
    if (gg_redis_command(c->redis, on_counted, q, 5, argv, NULL)) {
        free(q); /* Redis away: the local count is all there is */
        return;
    }
    c->auth_counted++;
}

static void ignored(gg_server *srv, const char *why, const char *payload, size_t len)
{
    srv->cluster.auth.ignored++;
    gg_log(&srv->lp.log, GG_LOG_WARN, "cluster_message_ignored",
           "channel=%s reason=\"%s\" message=\"%.*s\"", GG_CLUSTER_AUTH_CHANNEL, why,
           (int)(len > 200 ? 200 : len), payload);
}

void gg_cluster_auth_message(gg_server *srv, const char *payload, size_t len)
{
    char buf[MAX_ADDR + 64];
    if (len >= sizeof buf) return ignored(srv, "too long", payload, len);
    memcpy(buf, payload, len);
    buf[len] = 0;
    char *sp1 = strchr(buf, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (strlen(buf) != len || !sp1 || !sp2 || strchr(sp2 + 1, ' '))
        return ignored(srv, "not ADDR WAIT_MS SENDER", payload, len);
    *sp1 = *sp2 = 0;
    const char *addr = buf, *wait = sp1 + 1, *sender = sp2 + 1;
    if (!strcmp(sender, srv->cluster.sender)) return; /* ours, back from Redis */
    if (!valid_addr(addr, strlen(addr)) || !valid_addr(sender, strlen(sender)))
        return ignored(srv, "not ADDR WAIT_MS SENDER", payload, len);
    char *end;
    long ms = strtol(wait, &end, 10);
    if (*end || wait[0] < '0' || wait[0] > '9' || ms < 1 || ms > MAX_WAIT_MS)
        return ignored(srv, "wait is not 1 to 86400000 ms", payload, len);
    if (throttle(srv, addr, ms)) return ignored(srv, "no authentication here", payload, len);
    gg_log(&srv->lp.log, GG_LOG_WARN, "auth_throttled", "peer=%s scope=cluster retry_after_ms=%ld",
           addr, ms);
    srv->cluster.auth.applied++;
}

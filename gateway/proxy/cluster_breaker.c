/* cluster_breaker.c -- breakers across the gateways of a cluster: a breaker that opens or
 * closes here is published on GG_CLUSTER_BREAKER_CHANNEL, and a peer's message makes the same
 * endpoint suspect here at once (the breaker policy decides what that means: it goes open for
 * the peer's cooldown, then probes on its own). Counting stays local: a message is a hint,
 * never a vote, so a lost message costs only the N failures each gateway would pay alone.
 *
 * Message: "SERVICE UPSTREAM STATE COOLDOWN_MS SENDER", one space between fields (documented
 * in docs/scale-out.md). Anyone who can PUBLISH on the Redis can send one: it is validated
 * like any input, and one naming a service or upstream this gateway does not have is counted
 * and ignored. */
#include "proxy/cluster.h"
#include "lua/lua_bridge.h"
#include "proxy/server.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PAYLOAD 1024
#define MAX_COOLDOWN_MS 86400000L /* a day: longer is no breaker's cooldown */

static void on_published(gg_redis *r, redisReply *reply, const char *err, void *arg)
{
    (void)r;
    (void)reply;
    (void)err;
    (void)arg; /* errors are counted by the connection (ghostgate_redis_errors_total) */
}

int gg_cluster_breaker_publish(void *server, const char *service, const char *upstream,
                               const char *state, double cooldown)
{
    gg_server *srv = server;
    gg_cluster *c = &srv->cluster;
    if (!c->redis) return 0;
    char msg[MAX_PAYLOAD + 1];
    long ms = cooldown > 0 ? (long)(cooldown * 1000.0 + 0.5) : 0;
    if (ms > MAX_COOLDOWN_MS) ms = MAX_COOLDOWN_MS;
    int n = snprintf(msg, sizeof msg, "%s %s %s %ld %s", service, upstream, state, ms, c->sender);
    if (n < 0 || n >= (int)sizeof msg || strchr(upstream, ' ')) { /* no peer could read it */
        c->breaker.lost++;
        return 0;
    }
    const char *argv[] = {"PUBLISH", GG_CLUSTER_BREAKER_CHANNEL, msg};
    if (gg_redis_command(c->redis, on_published, NULL, 3, argv, NULL)) {
        c->breaker.lost++;
        return 0;
    }
    c->breaker.published++;
    return 1;
}

typedef struct remote_arg {
    gg_server *srv;
    const char *service, *upstream, *state;
    double cooldown;
    int known;
} remote_arg;

/* ghost.gateway.breaker_remote(pipelines, service, upstream, state, cooldown) -> known */
static int remote_fn(lua_State *L, void *ud)
{
    remote_arg *a = ud;
    lua_getglobal(L, "require");
    lua_pushstring(L, "ghost.gateway");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "breaker_remote");
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->srv->gen->pipelines_ref);
    lua_pushstring(L, a->service);
    lua_pushstring(L, a->upstream);
    lua_pushstring(L, a->state);
    lua_pushnumber(L, a->cooldown);
    lua_call(L, 5, 1);
    a->known = lua_toboolean(L, -1);
    return 0;
}

static void ignored(gg_server *srv, const char *why, const char *payload, size_t len)
{
    srv->cluster.breaker.ignored++;
    gg_log(&srv->lp.log, GG_LOG_WARN, "cluster_message_ignored",
           "channel=%s reason=\"%s\" message=\"%.*s\"", GG_CLUSTER_BREAKER_CHANNEL, why,
           (int)(len > 200 ? 200 : len), payload);
}

/* Cut s (NUL-terminated, changed in place) at single spaces into at most max fields. Returns
 * how many, or -1 when a field is empty (two spaces, a leading or trailing one). */
static int split_fields(char *s, char **f, int max)
{
    int n = 0;
    for (;;) {
        if (n == max || !*s || *s == ' ') return -1;
        f[n++] = s;
        char *sp = strchr(s, ' ');
        if (!sp) return n;
        *sp = 0;
        s = sp + 1;
    }
}

static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 127) return 0;
    return 1;
}

void gg_cluster_breaker_message(gg_server *srv, const char *payload, size_t len)
{
    char buf[MAX_PAYLOAD + 1], *f[5];
    if (len > MAX_PAYLOAD) return ignored(srv, "too long", payload, len);
    memcpy(buf, payload, len);
    buf[len] = 0;
    if (strlen(buf) != len || split_fields(buf, f, 5) != 5)
        return ignored(srv, "not SERVICE UPSTREAM STATE COOLDOWN_MS SENDER", payload, len);
    if (!strcmp(f[4], srv->cluster.sender)) return; /* ours, back from Redis */
    for (int i = 0; i < 5; i++)
        if (!printable(f[i]))
            return ignored(srv, "not SERVICE UPSTREAM STATE COOLDOWN_MS SENDER", payload, len);
    if (strcmp(f[2], "open") && strcmp(f[2], "closed"))
        return ignored(srv, "state is neither open nor closed", payload, len);
    char *end;
    long ms = strtol(f[3], &end, 10);
    if (*end || f[3][0] == '-' || f[3][0] == '+' || ms > MAX_COOLDOWN_MS)
        return ignored(srv, "cooldown is not 0 to 86400000 ms", payload, len);
    if (!srv->pol.L || !srv->gen || srv->gen->pipelines_ref == LUA_NOREF)
        return ignored(srv, "no breaker here", payload, len);
    remote_arg a = {srv, f[0], f[1], f[2], (double)ms / 1000.0, 0};
    lua_State *L = srv->pol.L;
    int top = lua_gettop(L);
    /* a literal, not f[0]: the watchdog thread may read the name after this frame is gone */
    gg_watchdog_enter(&srv->wd, "cluster", "breaker", NULL);
    int rc = gg_lua_protect(L, remote_fn, &a, 0, 0);
    gg_watchdog_leave(&srv->wd);
    if (rc) {
        const char *e = lua_tostring(L, -1);
        gg_log(&srv->lp.log, GG_LOG_ERROR, "policy_error", "service=%s phase=breaker error=\"%s\"",
               f[0], e ? e : "?");
    }
    lua_settop(L, top);
    if (rc || !a.known) return ignored(srv, "no breaker here for this service and upstream", payload, len);
    srv->cluster.breaker.applied++;
}

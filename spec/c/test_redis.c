/* test_redis.c -- gg_redis against real redis-server processes (started on free loopback
 * ports, stopped by PID): URLs, a refused connect that reports (hiredis 0.14's own libuv
 * adapter never does), reconnect after a kill, AUTH + SELECT over TCP and a unix socket,
 * request timeouts, subscriptions that come back, and close with commands pending. */
#include "core/redis.h"
#include "redis_kit.h"
#include "unit.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

static uv_loop_t *loop;

/* Ticks while a test waits, so that uv_run(ONCE) returns and deadlines are checked. */
static uv_timer_t ticker;

static void ticker_cb(uv_timer_t *t)
{
}

/* --- Recording callbacks ----------------------------------------------------------------- */

typedef struct rec {
    int ups, downs, replies, errors, up;
    char why[200];
    char last[200]; /* the last reply as text (string, status, integer) */
} rec;

static void state_cb(gg_redis *r, int up, const char *why, void *arg)
{
    rec *c = arg;
    c->up = up;
    if (up)
        c->ups++;
    else
        c->downs++;
    snprintf(c->why, sizeof c->why, "%s", why);
}

static void reply_cb(gg_redis *r, redisReply *rep, const char *err, void *arg)
{
    rec *c = arg;
    if (err) {
        c->errors++;
        snprintf(c->why, sizeof c->why, "%s", err);
        return;
    }
    c->replies++;
    if (rep->type == REDIS_REPLY_INTEGER)
        snprintf(c->last, sizeof c->last, "%lld", rep->integer);
    else if (rep->str)
        snprintf(c->last, sizeof c->last, "%.*s", (int)rep->len, rep->str);
    else
        c->last[0] = 0;
}

static gg_redis *connect_url(const char *url, rec *st)
{
    gg_redis_url u;
    char err[128];
    if (gg_redis_url_parse(url, &u, err, sizeof err) < 0) {
        fprintf(stderr, "%s: %s\n", url, err);
        return NULL;
    }
    gg_redis_opts o = {.on_state = state_cb, .arg = st, .request_timeout_ms = 300,
                       .backoff_min_ms = 20, .backoff_max_ms = 100};
    return gg_redis_new(loop, &u, &o);
}

static int cmd(gg_redis *r, rec *c, int argc, const char **argv)
{
    int before = c->replies + c->errors;
    if (gg_redis_command(r, reply_cb, c, argc, argv, NULL) < 0) return 0;
    int target = before + 1, done = 0;
    uint64_t end = uv_now(loop) + 3000;
    while (!(done = c->replies + c->errors >= target) && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    return done;
}

static void close_and_drain(gg_redis *r)
{
    gg_redis_close(r);
    uv_run(loop, UV_RUN_NOWAIT);
    uv_run(loop, UV_RUN_NOWAIT);
}

/* --- Tests ------------------------------------------------------------------------------- */

static void test_urls(void)
{
    gg_redis_url u;
    char err[128], d[256];
    UNIT_EQ_INT(gg_redis_url_parse("redis://10.0.0.1", &u, err, sizeof err), 0);
    UNIT_EQ_STR(u.host, "10.0.0.1");
    UNIT_EQ_INT(u.port, 6379);
    UNIT_EQ_INT(u.db, 0);
    UNIT_EQ_INT(gg_redis_url_parse("redis://:s%40cr3t@cache.local:7000/3", &u, err, sizeof err),
                0);
    UNIT_EQ_STR(u.password, "s@cr3t");
    UNIT_EQ_STR(u.user, "");
    UNIT_EQ_STR(u.host, "cache.local");
    UNIT_EQ_INT(u.port, 7000);
    UNIT_EQ_INT(u.db, 3);
    gg_redis_url_describe(&u, d, sizeof d);
    UNIT_EQ_STR(d, "redis://cache.local:7000/3"); /* never the password */
    UNIT_EQ_INT(gg_redis_url_parse("redis://gw:pw@[::1]:6380/", &u, err, sizeof err), 0);
    UNIT_EQ_STR(u.user, "gw");
    UNIT_EQ_STR(u.host, "::1");
    UNIT_EQ_INT(u.port, 6380);
    gg_redis_url_describe(&u, d, sizeof d);
    UNIT_EQ_STR(d, "redis://[::1]:6380");
    UNIT_EQ_INT(gg_redis_url_parse("unix:/run/redis.sock?db=2&password=x", &u, err, sizeof err),
                0);
    UNIT_EQ_STR(u.path, "/run/redis.sock");
    UNIT_EQ_INT(u.db, 2);
    UNIT_EQ_STR(u.password, "x");
    gg_redis_url_describe(&u, d, sizeof d);
    UNIT_EQ_STR(d, "unix:/run/redis.sock?db=2");

    static const struct {
        const char *url, *err;
    } bad[] = {
        {"http://x", "redis: expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or unix:PATH"},
        {"redis://", "redis: missing host"},
        {"redis://h:0", "redis: port must be 1..65535"},
        {"redis://h:65536", "redis: port must be 1..65535"},
        {"redis://h:", "redis: missing port after ':'"},
        {"redis://h/x", "redis: db must be a number 0..99999 after '/'"},
        {"redis://pw@h", "redis: expected USER:PASSWORD@ or :PASSWORD@ before the host"},
        {"redis://:p%zz@h", "redis: malformed or too long password"},
        {"redis://[::1", "redis: missing ']' after an IPv6 host"},
        {"unix:", "redis: unix: needs a socket path"},
        {"unix:/s?db", "redis: expected key=value after '?' in a unix: URL"},
        {"unix:/s?tls=1", "redis: unknown unix: URL option (db, password, user)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        UNIT_EQ_INT(gg_redis_url_parse(bad[i].url, &u, err, sizeof err), -1);
        UNIT_EQ_STR(err, bad[i].err);
    }
}

/* Nothing listening: the refusal is reported (hiredis 0.14's libuv adapter hangs here), then
 * the same client comes up on its own once a server starts, survives a kill -9 and comes back. */
static void test_refused_reconnect(void)
{
    int port = rk_free_port(loop);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    rec st = {0}, c = {0};
    gg_redis *r = connect_url(url, &st);
    if (!UNIT_CHECK(r)) return;
    UNIT_CHECK(rk_wait(loop, &st.downs, 1000));
    UNIT_CHECK(strstr(st.why, "Connection refused") != NULL);
    UNIT_EQ_INT(gg_redis_command(r, reply_cb, &c, 1, (const char *[]){"PING"}, NULL),
                GG_REDIS_EDOWN);

    rk_server s;
    UNIT_EQ_INT(rk_start(loop, &s, port, NULL, NULL, NULL, NULL), 0);
    UNIT_CHECK(rk_wait(loop, &st.up, 5000));
    UNIT_EQ_INT(st.downs, 1); /* one outage, reported once however many retries */
    UNIT_CHECK(cmd(r, &c, 3, (const char *[]){"SET", "k", "v"}));
    UNIT_CHECK(cmd(r, &c, 2, (const char *[]){"GET", "k"}));
    UNIT_EQ_STR(c.last, "v");

    rk_stop(loop, &s, SIGKILL);
    UNIT_CHECK(rk_wait(loop, &st.downs, 2000) && st.downs == 2);
    UNIT_EQ_INT(st.up, 0);
    UNIT_EQ_INT(rk_start(loop, &s, port, NULL, NULL, NULL, NULL), 0);
    UNIT_CHECK(rk_wait(loop, &st.up, 5000));
    UNIT_CHECK(cmd(r, &c, 2, (const char *[]){"GET", "k"}));
    UNIT_EQ_STR(c.last, ""); /* a new, empty server */
    UNIT_EQ_INT(gg_redis_stats_get(r)->connects, 2);
    close_and_drain(r);
    rk_stop(loop, &s, SIGTERM);
}

static void test_auth_db_unix(void)
{
    int port = rk_free_port(loop);
    char dir[] = "/tmp/gg-redis-XXXXXX", sock[64], url[160];
    if (!UNIT_CHECK(mkdtemp(dir))) return;
    snprintf(sock, sizeof sock, "%s/redis.sock", dir);
    rk_server s;
    UNIT_EQ_INT(rk_start(loop, &s, port, "--requirepass", "s@cret", "--unixsocket", sock), 0);

    rec bad = {0};
    snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d", port);
    gg_redis *r = connect_url(url, &bad);
    UNIT_CHECK(rk_wait(loop, &bad.downs, 5000));
    /* Connection refused until the server listens, then the AUTH refusal: wait for that one. */
    uint64_t end = uv_now(loop) + 5000;
    while (!strstr(gg_redis_why(r), "WRONGPASS") && uv_now(loop) < end) {
        int never = 0;
        rk_wait(loop, &never, 20);
    }
    UNIT_CHECK(strstr(gg_redis_why(r), "handshake failed: WRONGPASS") != NULL);
    UNIT_EQ_INT(bad.ups, 0);
    close_and_drain(r);

    rec st = {0}, c = {0};
    snprintf(url, sizeof url, "redis://:s%%40cret@127.0.0.1:%d/3", port);
    r = connect_url(url, &st);
    UNIT_CHECK(rk_wait(loop, &st.up, 5000));
    UNIT_CHECK(cmd(r, &c, 2, (const char *[]){"CLIENT", "INFO"}));
    UNIT_CHECK(strstr(c.last, " db=3 ") != NULL);
    close_and_drain(r);

    rec su = {0};
    snprintf(url, sizeof url, "unix:%s?db=2&password=s%%40cret", sock);
    r = connect_url(url, &su);
    if (!UNIT_CHECK(rk_wait(loop, &su.up, 5000))) fprintf(stderr, "why: %s\n", su.why);
    UNIT_CHECK(cmd(r, &c, 2, (const char *[]){"CLIENT", "INFO"}));
    UNIT_CHECK(strstr(c.last, " db=2 ") != NULL);
    close_and_drain(r);
    rk_stop(loop, &s, SIGTERM);
    unlink(sock);
    rmdir(dir);
}

/* A server that stops answering: the oldest command fails after request_timeout_ms instead of
 * waiting forever, and the connection is reopened. */
static void test_request_timeout(void)
{
    int port = rk_free_port(loop);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    rk_server s;
    UNIT_EQ_INT(rk_start(loop, &s, port, NULL, NULL, NULL, NULL), 0);
    rec st = {0}, c = {0};
    gg_redis *r = connect_url(url, &st);
    UNIT_CHECK(rk_wait(loop, &st.up, 5000));
    st.downs = 0; /* the server may have refused a first attempt while starting */
    uint64_t t0 = uv_now(loop);
    UNIT_CHECK(cmd(r, &c, 3, (const char *[]){"DEBUG", "SLEEP", "1"}));
    uint64_t took = uv_now(loop) - t0;
    UNIT_EQ_INT(c.errors, 1);
    UNIT_EQ_STR(c.why, "request timeout");
    UNIT_CHECK(took >= 250 && took < 900);
    UNIT_EQ_INT(st.downs, 1);
    UNIT_CHECK(rk_wait(loop, &st.up, 5000)); /* back after the sleep */
    UNIT_CHECK(cmd(r, &c, 1, (const char *[]){"PING"}));
    UNIT_EQ_STR(c.last, "PONG");
    close_and_drain(r);
    rk_stop(loop, &s, SIGTERM);
}

typedef struct msgs {
    int n;
    char last[64];
} msgs;

static void msg_cb(gg_redis *r, redisReply *rep, const char *err, void *arg)
{
    msgs *m = arg;
    m->n++;
    snprintf(m->last, sizeof m->last, "%s", rep->element[2]->str);
}

/* PUBLISH until someone receives it (a SUBSCRIBE may still be in flight). */
static int publish_until_heard(gg_redis *pub, rec *c, msgs *m, const char *payload)
{
    int before = m->n;
    for (int i = 0; i < 100 && m->n == before; i++) {
        if (!cmd(pub, c, 3, (const char *[]){"PUBLISH", "gg-test", payload})) continue;
        int never = 0;
        if (strcmp(c->last, "1")) rk_wait(loop, &never, 20);
        else rk_wait(loop, &never, 0);
    }
    return m->n > before;
}

static void test_subscribe_survives_restart(void)
{
    int port = rk_free_port(loop);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    rk_server s;
    UNIT_EQ_INT(rk_start(loop, &s, port, NULL, NULL, NULL, NULL), 0);
    rec sst = {0}, pst = {0}, c = {0};
    msgs m = {0};
    gg_redis *sub = connect_url(url, &sst), *pub = connect_url(url, &pst);
    UNIT_EQ_INT(gg_redis_subscribe(sub, "gg-test", msg_cb, &m), 0);
    UNIT_CHECK(rk_wait(loop, &sst.up, 5000) && rk_wait(loop, &pst.up, 5000));
    UNIT_CHECK(publish_until_heard(pub, &c, &m, "one"));
    UNIT_EQ_STR(m.last, "one");

    rk_stop(loop, &s, SIGKILL);
    UNIT_CHECK(rk_wait(loop, &sst.downs, 2000));
    UNIT_EQ_INT(rk_start(loop, &s, port, NULL, NULL, NULL, NULL), 0);
    sst.up = pst.up = 0;
    UNIT_CHECK(rk_wait(loop, &sst.up, 5000) && rk_wait(loop, &pst.up, 5000));
    UNIT_CHECK(publish_until_heard(pub, &c, &m, "two"));
    UNIT_EQ_STR(m.last, "two");
    close_and_drain(sub);
    close_and_drain(pub);
    rk_stop(loop, &s, SIGTERM);
}

/* Close with commands in flight: each callback runs exactly once, with "closed". */
static void test_close_pending(void)
{
    int port = rk_free_port(loop);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    rk_server s;
    UNIT_EQ_INT(rk_start(loop, &s, port, NULL, NULL, NULL, NULL), 0);
    rec st = {0}, c = {0};
    gg_redis *r = connect_url(url, &st);
    UNIT_CHECK(rk_wait(loop, &st.up, 5000));
    st.downs = 0;
    for (int i = 0; i < 3; i++)
        UNIT_EQ_INT(gg_redis_command(r, reply_cb, &c, 3, (const char *[]){"DEBUG", "SLEEP", "0.1"},
                                     NULL),
                    0);
    gg_redis_close(r);
    UNIT_EQ_INT(c.errors, 3);
    UNIT_EQ_STR(c.why, "closed");
    UNIT_EQ_INT(st.downs, 0); /* a close is not an outage */
    int never = 0;
    rk_wait(loop, &never, 200);
    UNIT_EQ_INT(c.errors + c.replies, 3);
    rk_stop(loop, &s, SIGTERM);
}

static void close_on_down_cb(gg_redis *r, int up, const char *why, void *arg)
{
    if (!up) {
        ++*(int *)arg;
        gg_redis_close(r);
    }
}

/* Closing from inside the down callback (an owner giving up) stops the retries: no use after
 * the close, no callback after it. */
static void test_close_from_state_callback(void)
{
    gg_redis_url u;
    char err[128], url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", rk_free_port(loop));
    gg_redis_url_parse(url, &u, err, sizeof err);
    int downs = 0;
    gg_redis_opts o = {.on_state = close_on_down_cb, .arg = &downs, .backoff_min_ms = 5};
    gg_redis_new(loop, &u, &o);
    int never = 0;
    rk_wait(loop, &never, 200);
    UNIT_EQ_INT(downs, 1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    uv_timer_init(loop, &ticker);
    uv_timer_start(&ticker, ticker_cb, 5, 5);
    UNIT_RUN(test_urls);
    UNIT_RUN(test_refused_reconnect);
    UNIT_RUN(test_auth_db_unix);
    UNIT_RUN(test_request_timeout);
    UNIT_RUN(test_subscribe_survives_restart);
    UNIT_RUN(test_close_pending);
    UNIT_RUN(test_close_from_state_callback);
    uv_close((uv_handle_t *)&ticker, NULL);
    uv_run(loop, UV_RUN_DEFAULT); /* every handle closed: returns at once */
    UNIT_CHECK(uv_loop_close(loop) == 0);
    return unit_summary();
}

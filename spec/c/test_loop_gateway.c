/* test_loop_gateway.c -- a whole gateway on the test's own uv loop (gg_server_open/start/
 * shutdown/close), a client and a test upstream framed by gg_stream over loopback TCP. Each
 * scenario ends with gg_server_shutdown and uv_run, then asserts that every msgid was answered
 * exactly once, no call is left in flight and uv_loop_close() == 0. */
#include "loop_kit.h"
#include "unit.h"

#include "core/addr.h"
#include "core/errors.h"
#include "proxy/config.h"
#include "proxy/server.h"
#include "upstreams/upstreams.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

#define MAX_UP 4

typedef struct gw gw;
struct gw {
    lk_loop L;        /* the test's loop; the gateway runs on L.uv */
    gg_server *srv;
    uv_tcp_t up_listener;
    char up_addr[64]; /* tcp://127.0.0.1:PORT */
    lk_peer up[MAX_UP]; /* accepted upstream connections, in order */
    int accepts;
    lk_peer cli;
    uv_connect_t creq;
    int connected;
    uint32_t held[64]; /* upstream msgids withheld */
    uint64_t held_value[64]; /* and what each one answers (scenario 7) */
    lk_peer *held_on[64];    /* on which upstream connection */
    int nheld;
    char cfg_path[512]; /* kept on disk for reloads (scenario 7); "" when not */
    int results_own;    /* answers whose result is the one their request asked for */
    int ok, errors, last_error; /* answers the client got */
    int err502, err504, err531;
    int results_ok;
    uint32_t live_at_end, owed_at_end, gen_calls_at_end, clients_at_end, reloads_at_end;
    int stopped;
    int sent_next; /* scenario 2: the call after the loss is sent */
    uv_check_t watch; /* per-turn condition checks (events, not delays) */
    void (*on_turn)(gw *g);
    void (*on_connected)(gw *g);
    void (*on_accept)(gw *g, lk_peer *p);
    void (*on_up_message)(gw *g, lk_peer *p, const char *msg, const gg_msg *m);
    void (*on_answer)(gw *g, const char *msg, const gg_msg *m);
};

/* --- Ending a scenario --------------------------------------------------------------------- */

static void stop(gw *g)
{
    if (g->stopped) return;
    g->stopped = 1;
    gg_server_shutdown(g->srv);
    uv_close((uv_handle_t *)&g->up_listener, NULL);
    uv_close((uv_handle_t *)&g->watch, NULL);
    if (!(g->cli.s.flags & GG_ST_CLOSING)) gg_stream_close(&g->cli.s);
}

/* --- The test upstream ----------------------------------------------------------------------- */

static void up_on_message(lk_peer *p, const char *msg, const gg_msg *m)
{
    gw *g = p->test;
    if (g->on_up_message) g->on_up_message(g, p, msg, m);
    else lk_send_response(&p->s, m->msgid, 7);
}

static void on_up_connection(uv_stream_t *l, int status)
{
    gw *g = l->data;
    if (status < 0 || g->accepts >= MAX_UP) return;
    lk_peer *p = &g->up[g->accepts++];
    lk_peer_tcp(&g->L, p);
    p->test = g;
    p->on_message = up_on_message;
    if (uv_accept(l, &p->s.io.stream)) {
        gg_stream_close(&p->s);
        return;
    }
    lk_peer_ready(p);
    if (g->on_accept) g->on_accept(g, p);
}

static void hold(gw *g, lk_peer *p, const char *msg, const gg_msg *m)
{
    if (g->nheld < 64) g->held[g->nheld++] = m->msgid;
}

static void answer_held(gw *g, lk_peer *p)
{
    for (int i = 0; i < g->nheld; i++) lk_send_response(&p->s, g->held[i], 7);
    g->nheld = 0;
}

/* --- The client -------------------------------------------------------------------------------- */

static void cli_on_message(lk_peer *p, const char *msg, const gg_msg *m)
{
    gw *g = p->test;
    long long code = lk_error_code(msg, m);
    if (code == 0) {
        g->ok++;
        if (lk_result_uint(msg, m) == 7) g->results_ok++;
    } else {
        g->errors++;
        g->last_error = (int)code;
        g->err502 += code == GG_ERR_UPSTREAM_UNAVAILABLE;
        g->err504 += code == GG_ERR_DEADLINE_EXCEEDED;
        g->err531 += code == GG_ERR_SHUTTING_DOWN;
    }
    if (g->on_answer) g->on_answer(g, msg, m);
}

static void on_cli_connect(uv_connect_t *req, int status)
{
    gw *g = req->data;
    if (status < 0) {
        stop(g);
        return;
    }
    g->connected = 1;
    lk_peer_ready(&g->cli);
    if (g->on_connected) g->on_connected(g);
}

static void on_watch(uv_check_t *h)
{
    gw *g = h->data;
    if (!g->stopped && g->on_turn) g->on_turn(g);
}

/* --- Opening a scenario -------------------------------------------------------------------- */

/* The config file: one service `t` on the test upstream with the service fields in svc. */
static int write_config(gw *g, const char *path, const char *svc)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f,
            "return { listen = \"tcp://127.0.0.1:0\", log_level = \"error\",\n"
            "  services = { t = { upstream = \"%s\", %s } } }\n",
            g->up_addr, svc);
    return fclose(f);
}

/* A gateway with one service `t` (the service fields in svc) on the test upstream, and a client
 * connecting to it. keep_config: the file stays (g->cfg_path) for gg_server_reload. Returns 0
 * or -1. */
static int gw_open_with(gw *g, const char *svc, int keep_config)
{
    memset(g, 0, sizeof *g);
    if (lk_loop_open(&g->L, 1024 * 1024)) return -1;
    /* The upstream: a listener on 127.0.0.1:0. */
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&g->L.uv, &g->up_listener);
    g->up_listener.data = g;
    if (uv_tcp_bind(&g->up_listener, (struct sockaddr *)&sa, 0) ||
        uv_listen((uv_stream_t *)&g->up_listener, 16, on_up_connection))
        return -1;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(&g->up_listener, (struct sockaddr *)&ss, &len);
    snprintf(g->up_addr, sizeof g->up_addr, "tcp://127.0.0.1:%d",
             ntohs(((struct sockaddr_in *)&ss)->sin_port));

    /* The config, from a file of the test's own (kept for reloads when keep_config). */
    char path[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/gg-loop-gateway-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    close(fd);
    if (write_config(g, path, svc)) return -1;
    char err[1024];
    gg_config *cfg = gg_config_load(path, err, sizeof err);
    if (keep_config)
        snprintf(g->cfg_path, sizeof g->cfg_path, "%s", path);
    else
        unlink(path);
    if (!cfg) {
        fprintf(stderr, "config: %s\n", err);
        return -1;
    }
    /* No HTTP side (front NULL); the real upstream implementations. */
    gg_run_opts opts = {.log_level = -1, .ready_fd = -1, .worker = -1,
                        .upstreams = gg_upstream_protocols,
                        .config_path = keep_config ? g->cfg_path : NULL};
    g->srv = gg_server_open(cfg, &opts, &g->L.uv);
    if (!g->srv) return -1;
    if (gg_server_start(g->srv, err, sizeof err)) {
        fprintf(stderr, "start: %s\n", err);
        return -1;
    }

    /* The client, to the gateway's bound address. */
    gg_addr a;
    if (gg_addr_parse(g->srv->listeners[0].bound, &a, err, sizeof err)) return -1;
    lk_peer_tcp(&g->L, &g->cli);
    g->cli.test = g;
    g->cli.on_message = cli_on_message;
    g->creq.data = g;
    if (uv_tcp_connect(&g->creq, &g->cli.s.io.tcp, (struct sockaddr *)&a.sa, on_cli_connect))
        return -1;
    uv_check_init(&g->L.uv, &g->watch);
    g->watch.data = g;
    uv_check_start(&g->watch, on_watch);
    return 0;
}

static int gw_open(gw *g, const char *svc)
{
    return gw_open_with(g, svc, 0);
}

/* Run to the end: the scenario calls stop(); every handle closes; the gateway is freed. */
static int gw_run(gw *g)
{
    int rc = uv_run(&g->L.uv, UV_RUN_DEFAULT);
    g->live_at_end = g->srv->lp.calls.live;
    g->owed_at_end = g->srv->lp.calls.owed;
    g->gen_calls_at_end = g->srv->gen->calls;
    g->clients_at_end = g->srv->nclients;
    g->reloads_at_end = g->srv->reloads;
    gg_server_close(g->srv);
    return rc;
}

static void check_end(gw *g)
{
    if (g->cfg_path[0]) unlink(g->cfg_path);
    UNIT_CHECK(g->stopped);
    UNIT_EQ_INT(g->live_at_end, 0);
    UNIT_EQ_INT(g->owed_at_end, 0);
    UNIT_EQ_INT(g->gen_calls_at_end, 0);
    UNIT_EQ_INT(g->clients_at_end, 0);
    UNIT_EQ_INT(g->cli.closed, 1);
    for (int i = 0; i < g->accepts; i++) UNIT_EQ_INT(g->up[i].closed, 1);
    UNIT_EQ_INT(lk_loop_end(&g->L), 0);
}

static void send_calls(gw *g, uint32_t from, uint32_t to)
{
    for (uint32_t i = from; i < to; i++) lk_send_request(&g->cli.s, i, "t.m");
}

/* --- 1. 100 pipelined round trips -------------------------------------------------------------- */

static void send_100(gw *g)
{
    send_calls(g, 0, 100);
}

static void stop_at_100(gw *g, const char *msg, const gg_msg *m)
{
    if (g->cli.messages == 100) stop(g);
}

static void test_pipelined_round_trips(void)
{
    gw g;
    if (!UNIT_EQ_INT(gw_open(&g, "deadline = 5, connections = 1"), 0)) return;
    g.on_connected = send_100;
    g.on_answer = stop_at_100;
    UNIT_EQ_INT(gw_run(&g), 0);
    UNIT_EQ_INT(g.cli.messages, 100);
    UNIT_CHECK(lk_answers_each(&g.cli.seen, 0, 100, 1));
    UNIT_EQ_INT(g.results_ok, 100);
    UNIT_EQ_INT(g.errors, 0);
    UNIT_EQ_INT(g.accepts, 1);
    UNIT_EQ_INT(g.up[0].messages, 100);
    check_end(&g);
}

/* --- 2. Upstream loss with calls in flight: 502s, reconnect, the next call succeeds ---------- */

static void send_10(gw *g)
{
    send_calls(g, 0, 10);
}

static void lose_at_10(gw *g, lk_peer *p, const char *msg, const gg_msg *m)
{
    if (g->accepts > 1) {
        lk_send_response(&p->s, m->msgid, 7); /* the new connection answers */
        return;
    }
    hold(g, p, msg, m);
    if (g->nheld == 10) gg_stream_close(&p->s); /* the upstream dies with 10 calls */
}

/* Once all ten have failed and the pool is back, one more call. */
static void next_call_when_back(gw *g)
{
    /* accepts == 2: the pool's new connection is connecting or up, so the call waits for it
     * (during the backoff before it, the call would get a 502 at once). */
    if (g->err502 == 10 && g->accepts == 2 && !g->sent_next) {
        g->sent_next = 1;
        send_calls(g, 10, 11);
    }
}

static void stop_at_ok(gw *g, const char *msg, const gg_msg *m)
{
    if (g->ok) stop(g);
}

static void test_upstream_loss(void)
{
    gw g;
    if (!UNIT_EQ_INT(gw_open(&g, "deadline = 5, connections = 1"), 0)) return;
    g.on_connected = send_10;
    g.on_up_message = lose_at_10;
    g.on_turn = next_call_when_back;
    g.on_answer = stop_at_ok;
    UNIT_EQ_INT(gw_run(&g), 0);
    UNIT_EQ_INT(g.err502, 10);
    UNIT_CHECK(lk_answers_each(&g.cli.seen, 0, 11, 1));
    UNIT_EQ_INT(g.accepts, 2);
    UNIT_EQ_INT(g.ok, 1);
    UNIT_EQ_INT(g.results_ok, 1);
    UNIT_EQ_INT(g.cli.messages, 11);
    check_end(&g);
}

/* --- 3. Deadline: one call withheld gets a 504; its late answer is dropped ------------------- */

static void send_1(gw *g)
{
    send_calls(g, 1, 2);
}

static void hold_first(gw *g, lk_peer *p, const char *msg, const gg_msg *m)
{
    if (p->messages == 1) hold(g, p, msg, m);
    else lk_send_response(&p->s, m->msgid, 7);
}

/* The 504 came: the upstream answers the withheld call now (late), then call 2 follows on the
 * same connection, so its answer proves the late one was read first. */
static void late_then_next(gw *g, const char *msg, const gg_msg *m)
{
    if (m->msgid == 1 && g->err504 == 1) {
        answer_held(g, &g->up[0]);
        send_calls(g, 2, 3);
    } else if (m->msgid == 2) {
        stop(g);
    }
}

static void test_deadline(void)
{
    gw g;
    if (!UNIT_EQ_INT(gw_open(&g, "deadline = 0.2, connections = 1"), 0)) return;
    g.on_connected = send_1;
    g.on_up_message = hold_first;
    g.on_answer = late_then_next;
    UNIT_EQ_INT(gw_run(&g), 0);
    UNIT_EQ_INT(g.err504, 1);
    UNIT_EQ_INT(g.errors, 1);
    UNIT_EQ_INT(g.ok, 1);
    UNIT_CHECK(lk_answers_each(&g.cli.seen, 1, 3, 1));
    UNIT_EQ_INT(g.cli.messages, 2);
    UNIT_EQ_INT(g.up[0].messages, 2);
    check_end(&g);
}

/* --- 4. Retry: the first connection dies with the call in flight; one answer, from the second.
 *     Attempts made while the pool is in its reconnect backoff fail at once (never sent) and
 *     are retried too, so the count allows for them. */

static void die_first(gw *g, lk_peer *p, const char *msg, const gg_msg *m)
{
    if (p == &g->up[0])
        gg_stream_close(&p->s);
    else
        lk_send_response(&p->s, m->msgid, 7);
}

static void stop_at_answer(gw *g, const char *msg, const gg_msg *m)
{
    stop(g);
}

static void test_retry_after_loss(void)
{
    gw g;
    if (!UNIT_EQ_INT(gw_open(&g, "deadline = 5, connections = 1,\n"
                                 "  policies = { retry { attempts = 10, backoff = 0.05,\n"
                                 "    max_backoff = 0.4, idempotent = { \"*\" } } }"),
                      0))
        return;
    g.on_connected = send_1;
    g.on_up_message = die_first;
    g.on_answer = stop_at_answer;
    UNIT_EQ_INT(gw_run(&g), 0);
    UNIT_EQ_INT(g.cli.messages, 1);
    UNIT_EQ_INT(g.cli.seen.count[1], 1);
    UNIT_EQ_INT(g.ok, 1);
    UNIT_EQ_INT(g.errors, 0);
    UNIT_EQ_INT(g.accepts, 2);
    UNIT_EQ_INT(g.up[0].messages, 1);
    UNIT_EQ_INT(g.up[1].messages, 1);
    check_end(&g);
}

/* --- 5. Client close with 5 calls upstream: the answers are absorbed ------------------------ */

static void send_5(gw *g)
{
    send_calls(g, 0, 5);
}

static void hold_then_client_leaves(gw *g, lk_peer *p, const char *msg, const gg_msg *m)
{
    hold(g, p, msg, m);
    if (g->nheld == 5) gg_stream_close(&g->cli.s);
}

/* The gateway noticed the client left: the upstream answers; once the gateway has taken the
 * five answers (no call live or owed), stop. */
static void answer_when_client_gone(gw *g)
{
    gg_server *srv = g->srv;
    if (g->nheld == 5 && g->cli.closed && srv->nclients == 0) {
        answer_held(g, &g->up[0]);
        g->nheld = -1;
    } else if (g->nheld == -1 && srv->lp.calls.live == 0 && srv->lp.calls.owed == 0) {
        stop(g);
    }
}

static void test_client_close_with_calls_upstream(void)
{
    gw g;
    if (!UNIT_EQ_INT(gw_open(&g, "deadline = 5, connections = 1"), 0)) return;
    g.on_connected = send_5;
    g.on_up_message = hold_then_client_leaves;
    g.on_turn = answer_when_client_gone;
    UNIT_EQ_INT(gw_run(&g), 0);
    UNIT_EQ_INT(g.cli.messages, 0);
    UNIT_EQ_INT(g.up[0].messages, 5);
    UNIT_EQ_INT(g.up[0].eofs, 1); /* the connection stayed up until the shutdown */
    check_end(&g);
}

/* --- 6. Shutdown with calls in flight: each answered once (531) or absorbed ----------------- */

static void hold_then_shutdown(gw *g, lk_peer *p, const char *msg, const gg_msg *m)
{
    hold(g, p, msg, m);
    if (g->nheld == 5) stop(g);
}

static void test_shutdown_with_calls_in_flight(void)
{
    gw g;
    if (!UNIT_EQ_INT(gw_open(&g, "deadline = 5, connections = 1"), 0)) return;
    g.on_connected = send_5;
    g.on_up_message = hold_then_shutdown;
    UNIT_EQ_INT(gw_run(&g), 0);
    UNIT_EQ_INT(g.up[0].messages, 5);
    UNIT_EQ_INT(g.ok, 0);
    UNIT_EQ_INT(g.errors, g.err531); /* whatever was answered says "shutting down" */
    for (uint32_t i = 0; i < 5; i++) UNIT_CHECK(g.cli.seen.count[i] <= 1);
    UNIT_EQ_INT(g.cli.seen.out_of_range, 0);
    UNIT_EQ_INT(g.owed_at_end, 0);
    UNIT_EQ_INT(g.gen_calls_at_end, 0);
    check_end(&g);
}

/* --- 7. Reloads with calls in flight: each answered once, with its own result -------------- */

#define RELOAD_CALLS    200
#define RELOAD_INFLIGHT 8

/* Every reload changes the policies (a new guard and bucket: new pipelines for the next calls)
 * and keeps the endpoints (the pools move to the new generation with the calls on them). */
static void reload_config(gw *g, int i)
{
    char svc[512];
    snprintf(svc, sizeof svc,
             "deadline = 5, connections = 2, policies = {\n"
             "  guard { allow = { \"m\", \"v%d\" } }, ratelimit { rate = %d },\n"
             "  breaker { failures = 5 }, route {} }",
             i, 100000 + i);
    if (i == 0) return;
    UNIT_EQ_INT(write_config(g, g->cfg_path, svc), 0);
    UNIT_EQ_INT(gg_server_reload(g->srv), 0);
}

/* [0, msgid, "t.m", [value]]: the upstream answers value, so a crossed answer shows. */
static void send_valued(gw *g, uint32_t msgid)
{
    char b[64];
    size_t n = gg_put_request_hdr(b, msgid, "t.m", 3);
    n += gg_put_array_hdr(b + n, 1);
    n += gg_put_uint(b + n, (uint64_t)msgid * 7 + 3);
    gg_stream_write(&g->cli.s, b, n);
}

static void send_first_calls(gw *g)
{
    for (uint32_t i = 0; i < RELOAD_INFLIGHT; i++) send_valued(g, i);
    g->sent_next = RELOAD_INFLIGHT;
}

/* The upstream withholds every answer until the scenario releases them. */
static void hold_valued(gw *g, lk_peer *p, const char *msg, const gg_msg *m)
{
    uint64_t v = 0;
    gg_get_uint(msg + m->body_off + 1, m->size - m->body_off - 1, &v); /* params [v] */
    if (g->nheld == 64) return;
    g->held_on[g->nheld] = p;
    g->held_value[g->nheld] = v;
    g->held[g->nheld++] = m->msgid;
}

/* Once all the calls in flight are held upstream: reload, then let the upstream answer them
 * (under the generation they started in), last held first. */
static void reload_then_answer(gw *g)
{
    if (g->nheld < RELOAD_INFLIGHT && !(g->nheld && g->sent_next >= RELOAD_CALLS)) return;
    reload_config(g, (int)g->srv->reloads + 1);
    while (g->nheld) {
        g->nheld--;
        lk_send_response(&g->held_on[g->nheld]->s, g->held[g->nheld], g->held_value[g->nheld]);
    }
}

static void next_valued(gw *g, const char *msg, const gg_msg *m)
{
    if (lk_error_code(msg, m) == 0 && lk_result_uint(msg, m) == (long long)m->msgid * 7 + 3)
        g->results_own++;
    if (g->sent_next < RELOAD_CALLS) send_valued(g, (uint32_t)g->sent_next++);
    if (g->cli.messages == RELOAD_CALLS) stop(g);
}

static void test_reloads_with_calls_in_flight(void)
{
    gw g;
    if (!UNIT_EQ_INT(gw_open_with(&g, "deadline = 5, connections = 2, policies = {\n"
                                      "  guard { allow = { \"m\", \"v0\" } }, ratelimit { rate = 100000 },\n"
                                      "  breaker { failures = 5 }, route {} }",
                                  1),
                     0))
        return;
    g.on_connected = send_first_calls;
    g.on_up_message = hold_valued;
    g.on_turn = reload_then_answer;
    g.on_answer = next_valued;
    UNIT_EQ_INT(gw_run(&g), 0);
    UNIT_EQ_INT(g.cli.messages, RELOAD_CALLS);
    UNIT_CHECK(lk_answers_each(&g.cli.seen, 0, RELOAD_CALLS, 1));
    UNIT_EQ_INT(g.errors, 0);
    UNIT_EQ_INT(g.results_own, RELOAD_CALLS);
    UNIT_EQ_INT(g.reloads_at_end, RELOAD_CALLS / RELOAD_INFLIGHT);
    UNIT_EQ_INT(g.accepts, 2); /* the pools moved: no reconnect across the reloads */
    check_end(&g);
}

int main(void)
{
    UNIT_RUN(test_pipelined_round_trips);
    UNIT_RUN(test_upstream_loss);
    UNIT_RUN(test_deadline);
    UNIT_RUN(test_retry_after_loss);
    UNIT_RUN(test_client_close_with_calls_upstream);
    UNIT_RUN(test_shutdown_with_calls_in_flight);
    UNIT_RUN(test_reloads_with_calls_in_flight);
    return unit_summary();
}

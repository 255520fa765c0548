/* test_loop_calls.c -- the calls module (core/calls.h) on a real uv loop: deadlines fire on
 * its timer, once each and in order; a call that ended never fires; a moved deadline moves the
 * firing; gg_call_end leaves the owner's and the carrier's lists once (their hooks counted);
 * an orphaned call stays live; a late answer finds no call. Each call is ended exactly once,
 * by its answer or by its deadline, and the pool is empty after uv_run. */
#include "loop_kit.h"
#include "unit.h"

#include <stddef.h>
#include <uv.h>

#define NCALLS 50

/* The test is the calls' owner: it ends a call the way the gateway does (gg_call_end) and
 * counts who ended it. */
typedef struct owner {
    lk_loop L;
    gg_call_list mine;    /* the owner's list (a client's, in the gateway) */
    gg_call_list conn;    /* the carrier's list (an upstream connection's) */
    int owner_unlinks, carrier_unlinks; /* on_unlink hook runs */
    gg_call *call[NCALLS];
    uint32_t id[NCALLS];
    uint64_t due[NCALLS];
    int ended[NCALLS];    /* times each call was ended */
    int by_deadline[NCALLS];
    int early[NCALLS];    /* deadline fired before it was due */
    int fired;            /* on_deadline calls */
    int out_of_order;     /* a deadline fired before an earlier one */
    uint64_t last_due;
    void (*after_deadline)(struct owner *o);
    lk_peer *cli, *srv;   /* the answering scenario */
    int answered, late, withheld;
} owner;

static int index_of(owner *o, gg_call *call)
{
    for (int i = 0; i < NCALLS; i++)
        if (o->call[i] == call && o->id[i] == call->id) return i;
    return -1;
}

static void end_call(owner *o, gg_call *call)
{
    int i = index_of(o, call);
    if (i >= 0) o->ended[i]++;
    gg_call_end(&o->L.lp.calls, call);
}

static void owner_unlinked(gg_call_list *l)
{
    ((owner *)((char *)l - offsetof(owner, mine)))->owner_unlinks++;
}

static void carrier_unlinked(gg_call_list *l)
{
    ((owner *)((char *)l - offsetof(owner, conn)))->carrier_unlinks++;
}

static void on_deadline(void *lpv, gg_call *call)
{
    gg_loop *lp = lpv;
    owner *o = lp->data;
    int i = index_of(o, call);
    o->fired++;
    if (call->deadline < o->last_due) o->out_of_order++;
    o->last_due = call->deadline;
    if (i >= 0) {
        o->by_deadline[i]++;
        if (uv_now(lp->uv) < o->due[i]) o->early[i]++;
    }
    end_call(o, call);
    if (o->after_deadline) o->after_deadline(o);
}

static int owner_open(owner *o)
{
    memset(o, 0, sizeof *o);
    if (lk_loop_open(&o->L, 64 * 1024)) return -1;
    o->L.lp.data = o;
    o->L.lp.calls.on_deadline = on_deadline;
    o->mine.on_unlink = owner_unlinked;
    o->conn.on_unlink = carrier_unlinked;
    return 0;
}

static gg_call *start_call(owner *o, int i, uint64_t in_ms)
{
    gg_call *call = gg_call_new(&o->L.lp.calls);
    if (!call) return NULL;
    o->call[i] = call;
    o->id[i] = call->id;
    o->due[i] = uv_now(&o->L.uv) + in_ms;
    gg_call_set_deadline(&o->L.lp.calls, call, o->due[i]);
    return call;
}

/* --- 50 deadlines of 5-60 ms: each fires once, none early, in deadline order -------------- */

static void test_deadlines_in_order(void)
{
    owner o;
    if (!UNIT_EQ_INT(owner_open(&o), 0)) return;
    for (int i = 0; i < NCALLS; i++) /* deadlines scattered over 5..60 ms, not in start order */
        UNIT_CHECK(start_call(&o, i, 5 + (uint64_t)((i * 37) % 56)) != NULL);

    UNIT_EQ_INT(uv_run(&o.L.uv, UV_RUN_DEFAULT), 0);

    UNIT_EQ_INT(o.fired, NCALLS);
    UNIT_EQ_INT(o.out_of_order, 0);
    for (int i = 0; i < NCALLS; i++) {
        UNIT_EQ_INT(o.ended[i], 1);
        UNIT_EQ_INT(o.early[i], 0);
    }
    UNIT_EQ_INT(o.L.lp.calls.live, 0);
    UNIT_EQ_INT(o.L.lp.calls.nheap, 0);
    UNIT_EQ_INT(lk_loop_end(&o.L), 0);
}

/* --- A call that ended before its deadline never fires; moving a deadline moves the firing */

static void test_ended_never_fires(void)
{
    owner o;
    if (!UNIT_EQ_INT(owner_open(&o), 0)) return;
    for (int i = 0; i < 20; i++) start_call(&o, i, 5 + (uint64_t)i);
    /* The earliest and every odd one end now (their answer came): the timer, armed for the
     * earliest, fires, finds nothing due and is set for the next. */
    for (int i = 0; i < 20; i++)
        if (i == 0 || i % 2) end_call(&o, o.call[i]);
    /* Call 2 moves later than everyone, call 18 earlier than everyone. */
    o.due[2] = uv_now(&o.L.uv) + 40;
    gg_call_set_deadline(&o.L.lp.calls, o.call[2], o.due[2]);
    o.due[18] = uv_now(&o.L.uv) + 1;
    gg_call_set_deadline(&o.L.lp.calls, o.call[18], o.due[18]);

    UNIT_EQ_INT(uv_run(&o.L.uv, UV_RUN_DEFAULT), 0);

    UNIT_EQ_INT(o.fired, 9);
    UNIT_EQ_INT(o.out_of_order, 0);
    for (int i = 0; i < 20; i++) {
        UNIT_EQ_INT(o.ended[i], 1);
        UNIT_EQ_INT(o.by_deadline[i], (i == 0 || i % 2) ? 0 : 1);
        UNIT_EQ_INT(o.early[i], 0);
    }
    UNIT_EQ_INT(o.last_due, o.due[2]); /* the one moved later fired last */
    UNIT_EQ_INT(o.L.lp.calls.live, 0);
    UNIT_EQ_INT(lk_loop_end(&o.L), 0);
}

/* --- Answers over a real connection: each call ends once, by its answer or its deadline;
 *     late answers find no call and are dropped -------------------------------------------- */

/* The upstream: answers even msgids at once, withholds odd ones until told to release. */
static void upstream_on_message(lk_peer *p, const char *msg, const gg_msg *m)
{
    owner *o = p->test;
    if (m->method_len == 7 && memcmp(msg + m->method_off, "release", 7) == 0) {
        for (int i = 1; i < 20; i += 2) lk_send_response(&p->s, o->id[i], 1);
        gg_stream_close_after_flush(&p->s);
        return;
    }
    for (int i = 0; i < 20; i++) {
        if (o->id[i] != m->msgid) continue;
        if (i % 2 == 0)
            lk_send_response(&p->s, m->msgid, 0);
        else
            o->withheld++;
    }
}

/* The owner's side of the connection: an answer ends its call if the call is still live. */
static void owner_on_answer(lk_peer *p, const char *msg, const gg_msg *m)
{
    owner *o = p->test;
    gg_calls *c = &o->L.lp.calls;
    gg_call *call = gg_call_find(c, m->msgid);
    if (call) {
        o->answered++;
        gg_call_unhold(c, call);
        end_call(o, call); /* leaves both lists: each hook runs once */
        return;
    }
    call = gg_call_find_owed(c, m->msgid);
    if (call) {
        o->late++;
        gg_call_unhold(c, call); /* the last holder: the record goes back to the pool */
    }
}

/* When the ten withheld calls have timed out, the upstream may answer them (late). */
static void release_when_all_timed_out(owner *o)
{
    if (o->fired == 10) lk_send_request(&o->cli->s, LK_MAX_IDS - 1, "release");
}

static void test_answer_or_deadline_once(void)
{
    owner o;
    if (!UNIT_EQ_INT(owner_open(&o), 0)) return;
    lk_peer cli, up;
    UNIT_EQ_INT(lk_pair(&o.L, &cli, &up), 0);
    o.cli = &cli;
    o.srv = &up;
    cli.test = up.test = &o;
    cli.on_message = owner_on_answer;
    up.on_message = upstream_on_message;
    o.after_deadline = release_when_all_timed_out;
    for (int i = 0; i < 20; i++) {
        gg_call *call = start_call(&o, i, 20);
        gg_call_link_owner(&o.mine, call);
        gg_call_link_carrier(&o.conn, call);
        gg_call_hold(call); /* the upstream connection may present its id */
        lk_send_request(&cli.s, call->id, "u.m");
    }

    UNIT_EQ_INT(uv_run(&o.L.uv, UV_RUN_DEFAULT), 0);

    UNIT_EQ_INT(o.withheld, 10);
    UNIT_EQ_INT(o.answered, 10);
    UNIT_EQ_INT(o.fired, 10);
    UNIT_EQ_INT(o.late, 10);
    for (int i = 0; i < 20; i++) {
        UNIT_EQ_INT(o.ended[i], 1);
        UNIT_EQ_INT(o.by_deadline[i], i % 2);
        UNIT_CHECK(gg_call_find(&o.L.lp.calls, o.id[i]) == NULL); /* a stale id is not found */
        UNIT_CHECK(gg_call_find_owed(&o.L.lp.calls, o.id[i]) == NULL);
    }
    UNIT_EQ_INT(o.owner_unlinks, 20);
    UNIT_EQ_INT(o.carrier_unlinks, 20);
    UNIT_EQ_INT(o.mine.n, 0);
    UNIT_EQ_INT(o.conn.n, 0);
    UNIT_CHECK(o.mine.head == NULL && o.conn.head == NULL);
    UNIT_EQ_INT(cli.closed, 1);
    UNIT_EQ_INT(up.closed, 1);
    UNIT_EQ_INT(o.L.lp.calls.live, 0);
    UNIT_EQ_INT(o.L.lp.calls.owed, 0);
    UNIT_EQ_INT(lk_loop_end(&o.L), 0);
}

/* --- An owner that goes away orphans its calls: they stay live, owner NULL, no hook; their
 *     deadline still ends them ------------------------------------------------------------ */

static void test_orphaned_calls_stay_live(void)
{
    owner o;
    if (!UNIT_EQ_INT(owner_open(&o), 0)) return;
    for (int i = 0; i < 3; i++) {
        gg_call *call = start_call(&o, i, 5);
        gg_call_link_owner(&o.mine, call);
        gg_call_link_carrier(&o.conn, call);
    }
    gg_call_list_orphan_owner(&o.mine);
    UNIT_EQ_INT(o.mine.n, 0);
    UNIT_EQ_INT(o.L.lp.calls.live, 3);
    for (int i = 0; i < 3; i++) {
        UNIT_CHECK(o.call[i]->owner == NULL);
        UNIT_CHECK(gg_call_find(&o.L.lp.calls, o.id[i]) == o.call[i]);
    }

    UNIT_EQ_INT(uv_run(&o.L.uv, UV_RUN_DEFAULT), 0);

    UNIT_EQ_INT(o.fired, 3);
    UNIT_EQ_INT(o.owner_unlinks, 0);   /* orphaned: no owner hook */
    UNIT_EQ_INT(o.carrier_unlinks, 3); /* the carrier still let go of each once */
    UNIT_EQ_INT(o.conn.n, 0);
    for (int i = 0; i < 3; i++) UNIT_EQ_INT(o.ended[i], 1);
    UNIT_EQ_INT(o.L.lp.calls.live, 0);
    UNIT_EQ_INT(lk_loop_end(&o.L), 0);
}

int main(void)
{
    UNIT_RUN(test_deadlines_in_order);
    UNIT_RUN(test_ended_never_fires);
    UNIT_RUN(test_answer_or_deadline_once);
    UNIT_RUN(test_orphaned_calls_stay_live);
    return unit_summary();
}

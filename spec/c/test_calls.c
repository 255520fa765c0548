/* test_calls.c -- call ids retire with their call, and not while held; the deadline heap
 * stays ordered; owner and carrier lists unlink once, with their hooks, in gg_call_end. */
#include "core/calls.h"
#include "unit.h"

#include <stdlib.h>

static void test_ids_retire(void)
{
    gg_calls c;
    UNIT_EQ_INT(gg_calls_init(&c, 4096), 0);
    gg_call *a = gg_call_new(&c);

    uint32_t id = a->id;
    UNIT_CHECK(gg_call_find(&c, id) == a);
    gg_call_release(&c, a);
    UNIT_CHECK(gg_call_find(&c, id) == NULL);
    gg_call *b = gg_call_new(&c); /* same record, new generation */

    UNIT_CHECK(b == a);
    UNIT_CHECK(b->id != id);
    UNIT_CHECK(gg_call_find(&c, id) == NULL);
    UNIT_CHECK(gg_call_find(&c, b->id) == b);
    UNIT_CHECK(gg_call_find(&c, 0xfffff) == NULL); /* index never allocated */
    gg_call_release(&c, b);
    UNIT_EQ_INT(c.live, 0);
    gg_calls_free(&c);
}

/* A held record that ends is owed: not found as live, never handed out again, its id kept
 * however many calls come and go, until its holder lets go. */
static void test_held_ids_are_not_reused(void)
{
    gg_calls c;
    UNIT_EQ_INT(gg_calls_init(&c, 4096), 0);
    gg_call *a = gg_call_new(&c);
    uint32_t id = a->id;
    gg_call_hold(a);
    gg_call_release(&c, a);
    UNIT_CHECK(gg_call_find(&c, id) == NULL);
    UNIT_CHECK(gg_call_find_owed(&c, id) == a);
    UNIT_EQ_INT(c.live, 0);
    UNIT_EQ_INT(c.owed, 1);
    int reissued = 0;
    for (int i = 0; i < 100000; i++) { /* 24 times round the 12-bit generation */
        gg_call *b = gg_call_new(&c);
        if (b == a || b->id == id) reissued++;
        gg_call_release(&c, b);
    }
    UNIT_EQ_INT(reissued, 0);
    UNIT_CHECK(gg_call_find_owed(&c, id) == a);
    gg_call_unhold(&c, a);
    UNIT_EQ_INT(c.owed, 0);
    UNIT_CHECK(gg_call_find_owed(&c, id) == NULL);
    gg_call *d = gg_call_new(&c); /* back in the pool, with a new generation */
    UNIT_CHECK(d == a);
    UNIT_CHECK(d->id != id);
    /* a holder that lets go before the call ends changes nothing */
    gg_call_hold(d);
    gg_call_unhold(&c, d);
    UNIT_CHECK(gg_call_find(&c, d->id) == d);
    gg_call_release(&c, d);
    UNIT_EQ_INT(c.owed, 0);
    gg_calls_free(&c);
}

static void test_max_calls(void)
{
    gg_calls c;
    gg_calls_init(&c, 16);
    gg_call *all[16];
    for (int i = 0; i < 16; i++) UNIT_CHECK((all[i] = gg_call_new(&c)) != NULL);
    UNIT_CHECK(gg_call_new(&c) == NULL);
    gg_call_release(&c, all[3]);
    UNIT_CHECK(gg_call_new(&c) != NULL);
    gg_calls_free(&c);
}

static void test_heap_order(void)
{
    enum { N = 2000 };
    gg_calls c;
    gg_calls_init(&c, N);
    gg_call *calls[N];
    srand(7);
    for (int i = 0; i < N; i++) {
        calls[i] = gg_call_new(&c);
        calls[i]->deadline = (uint64_t)(rand() % 1000);
        gg_deadline_add(&c, calls[i]);
    }
    /* remove a third from the middle of the heap */
    for (int i = 0; i < N; i += 3) gg_deadline_remove(&c, calls[i]);
    uint64_t last = 0;
    int n = 0;
    gg_call *first;
    while ((first = gg_deadline_first(&c))) {
        if (!UNIT_CHECK(first->deadline >= last)) break;
        last = first->deadline;
        gg_deadline_remove(&c, first);
        n++;
    }
    UNIT_EQ_INT(n, N - (N + 2) / 3);
    gg_calls_free(&c);
}

typedef struct party {
    gg_call_list calls;
    int unlinked; /* on_unlink calls */
} party;

static void count_unlink(gg_call_list *l)
{
    ((party *)l)->unlinked++;
}

/* gg_call_end takes a call off its owner and its carrier, each hook running once, off the
 * heap, and gives the record back; the other calls of both lists stay linked. */
static void test_end_unlinks_both_sides_once(void)
{
    gg_calls c;
    UNIT_EQ_INT(gg_calls_init(&c, 64), 0);
    party owner = {.calls = {.on_unlink = count_unlink}};
    party carrier = {.calls = {.on_unlink = count_unlink}};
    gg_call *a = gg_call_new(&c), *b = gg_call_new(&c), *d = gg_call_new(&c);
    gg_call *calls[] = {a, b, d};
    for (int i = 0; i < 3; i++) {
        gg_call_link_owner(&owner.calls, calls[i]);
        gg_call_link_carrier(&carrier.calls, calls[i]);
        gg_call_set_deadline(&c, calls[i], 100 + (uint64_t)i); /* no timer: heap only */
    }
    UNIT_EQ_INT(owner.calls.n, 3);
    uint32_t id = b->id;
    gg_call_end(&c, b); /* from the middle of both lists */
    UNIT_EQ_INT(owner.unlinked, 1);
    UNIT_EQ_INT(carrier.unlinked, 1);
    UNIT_EQ_INT(owner.calls.n, 2);
    UNIT_EQ_INT(carrier.calls.n, 2);
    UNIT_EQ_INT(c.nheap, 2);
    UNIT_EQ_INT(c.live, 2);
    UNIT_CHECK(gg_call_find(&c, id) == NULL);
    UNIT_CHECK(owner.calls.head == d && d->cnext == a && a->cnext == NULL);
    UNIT_CHECK(carrier.calls.head == d && d->unext == a && a->unext == NULL);
    gg_call_unlink_carrier(a); /* an answer or a retry leaves the carrier alone */
    UNIT_EQ_INT(carrier.unlinked, 2);
    gg_call_end(&c, a);
    UNIT_EQ_INT(carrier.unlinked, 2); /* not again */
    UNIT_EQ_INT(owner.unlinked, 2);
    gg_call_end(&c, d);
    UNIT_CHECK(owner.calls.head == NULL && carrier.calls.head == NULL);
    UNIT_EQ_INT(c.nheap, 0);
    UNIT_EQ_INT(c.live, 0);
    gg_calls_free(&c);
}

/* An owner that goes away orphans its calls: they stay live with no owner, no hook runs, and
 * they end later like any call. */
static void test_orphaned_calls_stay_live(void)
{
    gg_calls c;
    UNIT_EQ_INT(gg_calls_init(&c, 64), 0);
    party owner = {.calls = {.on_unlink = count_unlink}};
    gg_call *a = gg_call_new(&c), *b = gg_call_new(&c);
    gg_call_link_owner(&owner.calls, a);
    gg_call_link_owner(&owner.calls, b);
    gg_call_list_orphan_owner(&owner.calls);
    UNIT_CHECK(a->owner == NULL && b->owner == NULL);
    UNIT_EQ_INT(owner.calls.n, 0);
    UNIT_CHECK(gg_call_find(&c, a->id) == a);
    gg_call_end(&c, a);
    gg_call_end(&c, b);
    UNIT_EQ_INT(owner.unlinked, 0);
    UNIT_EQ_INT(c.live, 0);
    gg_calls_free(&c);
}

/* gg_call_set_deadline on a call already in the heap moves it, earlier or later. */
static void test_set_deadline_moves(void)
{
    gg_calls c;
    UNIT_EQ_INT(gg_calls_init(&c, 64), 0);
    gg_call *a = gg_call_new(&c), *b = gg_call_new(&c);
    gg_call_set_deadline(&c, a, 50);
    gg_call_set_deadline(&c, b, 60);
    UNIT_CHECK(gg_deadline_first(&c) == a);
    gg_call_set_deadline(&c, a, 70); /* later */
    UNIT_CHECK(gg_deadline_first(&c) == b);
    UNIT_EQ_INT(c.nheap, 2);
    gg_call_set_deadline(&c, a, 10); /* earlier */
    UNIT_CHECK(gg_deadline_first(&c) == a);
    UNIT_EQ_INT(c.nheap, 2);
    gg_call_end(&c, a);
    gg_call_end(&c, b);
    UNIT_EQ_INT(c.nheap, 0);
    gg_calls_free(&c);
}

int main(void)
{
    UNIT_RUN(test_ids_retire);
    UNIT_RUN(test_held_ids_are_not_reused);
    UNIT_RUN(test_max_calls);
    UNIT_RUN(test_heap_order);
    UNIT_RUN(test_end_unlinks_both_sides_once);
    UNIT_RUN(test_orphaned_calls_stay_live);
    UNIT_RUN(test_set_deadline_moves);
    return unit_summary();
}

/* calls.h -- the calls in flight: every call answered exactly once.
 *
 * A call record is the future of one client request. Its `id` is the msgid the gateway sends
 * upstream: the record's index in the pool plus a generation, so a response finds its call in
 * O(1) with no hash table. Records come from a pool of chunks and go back to it: nothing is
 * allocated per call once the pool is warm.
 *
 * Stale ids. MessagePack-RPC gives a msgid 32 bits: 20 for the index leave 12 for the
 * generation, so a record's id comes back after 4,096 reuses -- a few milliseconds for a record
 * at the head of the free list under load. A generation alone therefore cannot keep a late
 * answer (an upstream answering after the deadline, an adapter task returning after its call
 * ended) from matching a newer call. What does: a record whose id may still be answered is not
 * reused at all. Whoever may still present the id holds the record (gg_call_hold): the upstream
 * connection that carries a request it has not answered, the adapter task that runs a call.
 * A call that ends while held is *owed*: no longer live (gg_call_find misses it, so nothing is
 * delivered to it), its id kept, out of the pool until the last holder lets go (the answer
 * arrives and is dropped, the connection closes, the task ends). Only then does its generation
 * move on and the record become free. Holding costs a counter in the record: lookups stay O(1)
 * and nothing is allocated. Owed records use pool capacity (max_calls); the upstream side caps
 * how many one connection may owe (upstream.c).
 *
 * Links. A call has at most one owner (who gets the answer: a gateway client, a Lua
 * connection, an adapter task) and at most one carrier (what took it upstream: a pool
 * connection, or the Lua connection it went out on). Both are a gg_call_list embedded in that
 * party; this module knows no party's type. A list's on_unlink hook runs after a call left it
 * (backpressure resumes a client, an idle Lua connection unrefs its handle).
 *
 * Ending. gg_call_end is the one way a linked call ends: it leaves both lists (their hooks
 * run), the deadline heap, and goes back to the pool (or becomes owed while held). What an
 * owner must do first (answer, metrics) it does before calling it.
 *
 * Deadlines. The calls own the deadline heap and its one uv timer; when a call is due the
 * timer calls on_deadline(owner, call), which must end it (or move its deadline). */
#ifndef GG_CALLS_H
#define GG_CALLS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct gg_service;
struct gg_retry;
struct gg_call;

#define GG_CALL_IDX_BITS 20 /* up to 1,048,576 calls in flight */
#define GG_CALL_IDX_MASK ((1u << GG_CALL_IDX_BITS) - 1)
#define GG_CALL_CHUNK    1024

/* A party's calls: embedded in the party, which finds itself from it with container_of. */
typedef struct gg_call_list {
    struct gg_call *head;
    uint32_t n;
    void (*on_unlink)(struct gg_call_list *l); /* after a call left it; NULL: nothing */
} gg_call_list;

/* What a ghost.core call waits for (lkind). */
#define GG_LCALL_REQUEST 0
#define GG_LCALL_CONNECT 1
#define GG_LCALL_SLEEP   2

typedef struct gg_call {
    gg_call_list *owner;           /* who gets the answer; NULL once gone: it is dropped */
    struct gg_call *cprev, *cnext; /* the owner's calls */
    gg_call_list *carrier;         /* what carries it upstream; NULL while none does */
    struct gg_call *uprev, *unext; /* the carrier's calls; unext is also the pool's free list */
    struct gg_service *svc;
    uint64_t deadline;     /* loop time, ms */
    uint32_t id;           /* msgid upstream: index | generation << GG_CALL_IDX_BITS */
    uint32_t heap_idx;     /* position in the deadline heap */
    uint64_t start_ns;     /* uv_hrtime() when sent, for the policies' latency */
    uint64_t t0;           /* uv_hrtime() when the request arrived, for the metrics */
    struct gg_method_stats *mstats; /* where its outcome is counted */
    int16_t outcome;       /* 0 ok, 1 upstream error, else the gateway error code answered */
    uint16_t endpoint;     /* 1-based endpoint index of the service it went to */
    uint8_t attempt;       /* 1 for the first try (retry policy) */
    uint8_t sent;          /* queued on a connected upstream connection: it may have arrived */
    /* Each owner's own fields, typed. */
    union {
        struct {                       /* the gateway (proxy/) */
            struct gg_retry *retry;    /* the request's copy, when its policies may retry it */
            uint32_t client_id;        /* the client's id: its msgid, or an HTTP batch slot;
                                        * a callback: the upstream's msgid */
            uint16_t depth;            /* callbacks it is nested in (proxy/callbacks.c) */
            uint8_t callback;          /* a request the gateway sent a client (callbacks.c) */
            uint8_t client_objs;       /* its params carry objects the client owns */
        };
        struct {                       /* ghost.core (lua/) */
            void *lconn;               /* the connection it went out on; NULL: core.sleep */
            int waiter_ref;            /* registry ref of what the answer wakes */
            uint32_t timeout_ms;       /* for the deadline's message */
            uint8_t lkind;             /* GG_LCALL_* */
        };
    };
    uint16_t holds;        /* parties that may still present this id (see the top) */
    uint8_t live;
    uint8_t owed;          /* ended while held: its id stays reserved until the last unhold */
    uint8_t in_heap;       /* has a deadline in the heap */
} gg_call;

typedef struct gg_calls {
    gg_call **chunks;
    uint32_t nchunks, max_chunks;
    gg_call *free;
    uint32_t live;
    uint32_t owed; /* records ended but still held */
    uint32_t max;  /* limits.max_calls */
    /* Deadline min-heap. */
    gg_call **heap;
    uint32_t nheap;
    /* Its timer (gg_calls_timer_init). */
    uv_timer_t timer;
    uint64_t due; /* when the timer fires; 0 when stopped */
    /* Called for each call whose deadline has passed; must end the call or move its deadline. */
    void (*on_deadline)(void *owner, gg_call *call);
    void *owner;
    uint8_t timer_on; /* the timer was initialised */
} gg_calls;

/* Set up c for max calls, with no timer (a test, or until gg_calls_timer_init). Returns 0 or
 * -1 when out of memory (nothing to undo). */
int gg_calls_init(gg_calls *c, uint32_t max);
/* Free the memory (the timer closed and the loop run since). */
void gg_calls_free(gg_calls *c);
/* Give the deadlines a timer on uv; due calls go to on_deadline(owner, call). */
void gg_calls_timer_init(gg_calls *c, uv_loop_t *uv, void (*on_deadline)(void *, gg_call *),
                         void *owner);
/* Close the timer (the loop can then run to completion). */
void gg_calls_close(gg_calls *c);

/* A zeroed call with a fresh id, or NULL when max calls are in flight (overloaded). */
gg_call *gg_call_new(gg_calls *c);
/* The live call with this upstream msgid, or NULL. */
gg_call *gg_call_find(gg_calls *c, uint32_t id);
/* The owed (ended, still held) record with this msgid, or NULL. */
gg_call *gg_call_find_owed(gg_calls *c, uint32_t id);
/* The call has ended: leave its owner, its carrier (hooks run) and the deadline heap, then
 * gg_call_release. The one way a linked call ends. */
void gg_call_end(gg_calls *c, gg_call *call);
/* The call has ended. Unheld, the record goes back to the pool and its id is retired; held, it
 * becomes owed and keeps its id until gg_call_unhold lets the last holder go. The caller has
 * unlinked it from every list but a holder's own (gg_call_end does; call this directly only
 * for a call never linked). */
void gg_call_release(gg_calls *c, gg_call *call);
/* Someone may present call->id later (it was sent upstream; a task runs it). */
static inline void gg_call_hold(gg_call *call)
{
    call->holds++;
}
/* That someone will not: an owed record with no holder left goes back to the pool. */
void gg_call_unhold(gg_calls *c, gg_call *call);

/* Links; inline because every call takes them (one predictable branch for the hook). */
static inline void gg_call_link_owner(gg_call_list *l, gg_call *call)
{
    call->owner = l;
    call->cprev = NULL;
    call->cnext = l->head;
    if (l->head) l->head->cprev = call;
    l->head = call;
    l->n++;
}

static inline void gg_call_unlink_owner(gg_call *call)
{
    gg_call_list *l = call->owner;
    if (!l) return;
    if (call->cprev)
        call->cprev->cnext = call->cnext;
    else
        l->head = call->cnext;
    if (call->cnext) call->cnext->cprev = call->cprev;
    call->owner = NULL;
    call->cprev = call->cnext = NULL;
    l->n--;
    if (l->on_unlink) l->on_unlink(l);
}

static inline void gg_call_link_carrier(gg_call_list *l, gg_call *call)
{
    call->carrier = l;
    call->uprev = NULL;
    call->unext = l->head;
    if (l->head) l->head->uprev = call;
    l->head = call;
    l->n++;
}

static inline void gg_call_unlink_carrier(gg_call *call)
{
    gg_call_list *l = call->carrier;
    if (!l) return;
    if (call->uprev)
        call->uprev->unext = call->unext;
    else
        l->head = call->unext;
    if (call->unext) call->unext->uprev = call->uprev;
    call->carrier = NULL;
    call->uprev = call->unext = NULL;
    l->n--;
    if (l->on_unlink) l->on_unlink(l);
}

/* The owner is going away: its calls stay live with no owner (their answers are dropped). No
 * hook runs. */
static inline void gg_call_list_orphan_owner(gg_call_list *l)
{
    for (gg_call *call = l->head; call; call = call->cnext) call->owner = NULL;
    l->head = NULL;
    l->n = 0;
}

/* Give the call a deadline at loop time `at` (ms), or move the one it has; arms the timer. */
void gg_call_set_deadline(gg_calls *c, gg_call *call, uint64_t at);
/* The earliest deadline in the heap, or NULL. */
static inline gg_call *gg_deadline_first(gg_calls *c)
{
    return c->nheap ? c->heap[0] : 0;
}
/* Heap primitives (no timer): gg_call_set_deadline and gg_call_end use them. */
void gg_deadline_add(gg_calls *c, gg_call *call);
void gg_deadline_remove(gg_calls *c, gg_call *call);

#endif

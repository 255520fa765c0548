/* futures.h -- the calls in flight: every call answered exactly once.
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
 * how many one connection may owe (upstream.c). */
#ifndef GG_FUTURES_H
#define GG_FUTURES_H

#include <stdint.h>

struct gg_client;
struct gg_uconn;
struct gg_service;

#define GG_CALL_IDX_BITS 20 /* up to 1,048,576 calls in flight */
#define GG_CALL_IDX_MASK ((1u << GG_CALL_IDX_BITS) - 1)
#define GG_CALL_CHUNK    1024

typedef struct gg_call {
    struct gg_client *client; /* NULL once the client is gone: the answer is dropped */
    struct gg_call *cprev, *cnext; /* the client's calls */
    struct gg_uconn *up;           /* the upstream connection carrying it (gateway) */
    struct gg_call *uprev, *unext; /* that connection's calls; also the pool's free list */
    struct gg_service *svc;
    uint64_t deadline;     /* loop time, ms */
    uint32_t id;           /* msgid upstream: index | generation << GG_CALL_IDX_BITS */
    uint32_t client_msgid; /* msgid the client chose */
    uint32_t heap_idx;     /* position in the deadline heap */
    uint64_t start_ns;     /* uv_hrtime() when sent, for the policies' latency */
    uint64_t t0;           /* uv_hrtime() when the request arrived, for the metrics */
    struct gg_method_stats *mstats; /* where its outcome is counted */
    int16_t outcome;       /* 0 ok, 1 upstream error, else the gateway error code answered */
    uint16_t endpoint;     /* 1-based endpoint index of the service it went to */
    uint8_t attempt;       /* 1 for the first try (retry policy) */
    uint8_t sent;          /* queued on a connected upstream connection: it may have arrived */
    int ref;               /* free for the owner: the Lua library keeps a registry ref here */
    void *data;            /* free for the owner */
    uint16_t holds;        /* parties that may still present this id (see the top) */
    uint8_t live;
    uint8_t owed;          /* ended while held: its id stays reserved until the last unhold */
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
} gg_calls;

int gg_calls_init(gg_calls *c, uint32_t max);
void gg_calls_free(gg_calls *c);

/* A zeroed call with a fresh id, or NULL when max calls are in flight (overloaded). */
gg_call *gg_call_new(gg_calls *c);
/* The live call with this upstream msgid, or NULL. */
gg_call *gg_call_find(gg_calls *c, uint32_t id);
/* The owed (ended, still held) record with this msgid, or NULL. */
gg_call *gg_call_find_owed(gg_calls *c, uint32_t id);
/* The call has ended. Unheld, the record goes back to the pool and its id is retired; held, it
 * becomes owed and keeps its id (and `up`) until gg_call_unhold lets the last holder go. The
 * caller has unlinked it from every list but a holder's own. */
void gg_call_release(gg_calls *c, gg_call *call);
/* Someone may present call->id later (it was sent upstream; a task runs it). */
static inline void gg_call_hold(gg_call *call)
{
    call->holds++;
}
/* That someone will not: an owed record with no holder left goes back to the pool. */
void gg_call_unhold(gg_calls *c, gg_call *call);

void gg_deadline_add(gg_calls *c, gg_call *call);
void gg_deadline_remove(gg_calls *c, gg_call *call);
/* The earliest deadline in the heap, or NULL. */
static inline gg_call *gg_deadline_first(gg_calls *c)
{
    return c->nheap ? c->heap[0] : 0;
}

#endif

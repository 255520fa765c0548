/* calls.c -- calls in flight: their records, ids, deadline heap and timer, and the lists that link
 * a call to its owner and its carrier; see calls.h. */
#include "core/calls.h"

#include <stdlib.h>
#include <string.h>

int gg_calls_init(gg_calls *c, uint32_t max)
{
    memset(c, 0, sizeof *c);
    if (max > GG_CALL_IDX_MASK + 1) max = GG_CALL_IDX_MASK + 1;
    c->max = max;
    c->max_chunks = (max + GG_CALL_CHUNK - 1) / GG_CALL_CHUNK;
    c->chunks = calloc(c->max_chunks, sizeof *c->chunks);
    c->heap = malloc(sizeof *c->heap * max);
    if (!c->chunks || !c->heap) {
        gg_calls_free(c);
        return -1;
    }
    return 0;
}

void gg_calls_free(gg_calls *c)
{
    for (uint32_t i = 0; i < c->nchunks; i++) free(c->chunks[i]);
    free(c->chunks);
    free(c->heap);
    memset(c, 0, sizeof *c);
}

static int grow(gg_calls *c)
{
    if (c->nchunks == c->max_chunks) return -1;
    gg_call *chunk = calloc(GG_CALL_CHUNK, sizeof *chunk);
    if (!chunk) return -1;
    uint32_t base = c->nchunks * GG_CALL_CHUNK;
    c->chunks[c->nchunks++] = chunk;
    for (int i = GG_CALL_CHUNK - 1; i >= 0; i--) {
        chunk[i].id = base + (uint32_t)i;
        chunk[i].unext = c->free;
        c->free = &chunk[i];
    }
    return 0;
}

gg_call *gg_call_new(gg_calls *c)
{
    if (c->live >= c->max) return NULL;
    if (!c->free && grow(c)) return NULL;
    gg_call *call = c->free;
    c->free = call->unext;
    uint32_t id = call->id;
    memset(call, 0, sizeof *call);
    call->id = id;
    call->live = 1;
    c->live++;
    return call;
}

static gg_call *slot(gg_calls *c, uint32_t id)
{
    uint32_t idx = id & GG_CALL_IDX_MASK;
    if (idx / GG_CALL_CHUNK >= c->nchunks) return NULL;
    gg_call *call = &c->chunks[idx / GG_CALL_CHUNK][idx % GG_CALL_CHUNK];
    return call->id == id ? call : NULL;
}

gg_call *gg_call_find(gg_calls *c, uint32_t id)
{
    gg_call *call = slot(c, id);
    return call && call->live ? call : NULL;
}

gg_call *gg_call_find_owed(gg_calls *c, uint32_t id)
{
    gg_call *call = slot(c, id);
    return call && call->owed ? call : NULL;
}

/* Back to the pool. A new generation retires the id; no one holds it any more, so no answer
 * to it can still come (calls.h). */
static void to_pool(gg_calls *c, gg_call *call)
{
    uint32_t idx = call->id & GG_CALL_IDX_MASK;
    uint32_t gen = (call->id >> GG_CALL_IDX_BITS) + 1;
    call->id = idx | (gen << GG_CALL_IDX_BITS);
    call->owed = 0;
    call->carrier = NULL;
    call->unext = c->free; /* the carrier link is free now: it doubles as the free list */
    c->free = call;
}

void gg_call_release(gg_calls *c, gg_call *call)
{
    call->live = 0;
    call->owner = NULL;
    c->live--;
    if (call->holds) {
        call->owed = 1;
        c->owed++;
        return;
    }
    to_pool(c, call);
}

void gg_call_unhold(gg_calls *c, gg_call *call)
{
    if (--call->holds || !call->owed) return;
    c->owed--;
    to_pool(c, call);
}

static void heap_set(gg_calls *c, uint32_t i, gg_call *call)
{
    c->heap[i] = call;
    call->heap_idx = i;
}

static void sift_up(gg_calls *c, uint32_t i)
{
    gg_call *call = c->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (c->heap[parent]->deadline <= call->deadline) break;
        heap_set(c, i, c->heap[parent]);
        i = parent;
    }
    heap_set(c, i, call);
}

static void sift_down(gg_calls *c, uint32_t i)
{
    gg_call *call = c->heap[i];
    for (;;) {
        uint32_t l = 2 * i + 1, m = i;
        uint64_t best = call->deadline;
        if (l < c->nheap && c->heap[l]->deadline < best) {
            m = l;
            best = c->heap[l]->deadline;
        }
        if (l + 1 < c->nheap && c->heap[l + 1]->deadline < best) m = l + 1;
        if (m == i) break;
        heap_set(c, i, c->heap[m]);
        i = m;
    }
    heap_set(c, i, call);
}

void gg_deadline_add(gg_calls *c, gg_call *call)
{
    call->in_heap = 1;
    heap_set(c, c->nheap++, call);
    sift_up(c, c->nheap - 1);
}

void gg_deadline_remove(gg_calls *c, gg_call *call)
{
    if (!call->in_heap) return;
    call->in_heap = 0;
    uint32_t i = call->heap_idx;
    gg_call *last = c->heap[--c->nheap];
    if (i == c->nheap) return;
    heap_set(c, i, last);
    if (i > 0 && c->heap[(i - 1) / 2]->deadline > last->deadline)
        sift_up(c, i);
    else
        sift_down(c, i);
}

void gg_call_end(gg_calls *c, gg_call *call)
{
    gg_call_unlink_owner(call);
    gg_call_unlink_carrier(call);
    gg_deadline_remove(c, call);
    gg_call_release(c, call);
}

/* --- the deadline timer ----------------------------------------------------------------- */

static void arm(gg_calls *c, uint64_t deadline);

static void on_timer(uv_timer_t *t)
{
    gg_calls *c = t->data;
    uint64_t now = uv_now(t->loop);
    c->due = 0;
    gg_call *call;
    while ((call = gg_deadline_first(c)) && call->deadline <= now) c->on_deadline(c->owner, call);
    if (call) arm(c, call->deadline);
}

/* The timer is not moved back when the earliest call ends early: it fires, finds nothing due,
 * and is set for the new earliest. That is one wake-up per deadline period, not one timer
 * update per call. */
static void arm(gg_calls *c, uint64_t deadline)
{
    if (!c->timer_on || (c->due && c->due <= deadline)) return;
    uint64_t now = uv_now(c->timer.loop);
    c->due = deadline;
    uv_timer_start(&c->timer, on_timer, deadline > now ? deadline - now : 0, 0);
}

void gg_calls_timer_init(gg_calls *c, uv_loop_t *uv, void (*on_deadline)(void *, gg_call *),
                         void *owner)
{
    uv_timer_init(uv, &c->timer);
    c->timer.data = c;
    c->on_deadline = on_deadline;
    c->owner = owner;
    c->timer_on = 1;
}

void gg_calls_close(gg_calls *c)
{
    if (c->timer_on && !uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, NULL);
}

void gg_call_set_deadline(gg_calls *c, gg_call *call, uint64_t at)
{
    gg_deadline_remove(c, call);
    call->deadline = at;
    gg_deadline_add(c, call);
    arm(c, at);
}

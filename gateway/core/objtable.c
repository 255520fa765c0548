/* objtable.c -- per-connection remote-object tables; see objtable.h.
 *
 * Two open-addressing indexes per table (linear probing, backward-shift deletion, so no
 * tombstones; load kept under 1/2), over individually allocated entries whose addresses stay
 * valid while client entries point at them. */
#include "core/objtable.h"

#include "core/codec.h"
#include "core/objects.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

enum { BY_ID, BY_SRC };

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

static uint64_t key_of(const gg_objent *e, int kind)
{
    return kind == BY_ID ? e->id : (uint64_t)(uintptr_t)e->src;
}

static int idx_init(gg_objidx *ix)
{
    ix->mask = 15;
    ix->used = 0;
    ix->slot = calloc(ix->mask + 1, sizeof *ix->slot);
    return ix->slot ? 0 : GG_OBJ_ENOMEM;
}

static gg_objent *idx_find(const gg_objidx *ix, int kind, uint64_t key)
{
    for (uint32_t i = (uint32_t)mix64(key) & ix->mask;; i = (i + 1) & ix->mask) {
        gg_objent *e = ix->slot[i];
        if (!e) return NULL;
        if (key_of(e, kind) == key) return e;
    }
}

static void idx_put_raw(gg_objidx *ix, int kind, gg_objent *e)
{
    uint32_t i = (uint32_t)mix64(key_of(e, kind)) & ix->mask;
    while (ix->slot[i]) i = (i + 1) & ix->mask;
    ix->slot[i] = e;
    ix->used++;
}

static int idx_put(gg_objidx *ix, int kind, gg_objent *e)
{
    if ((ix->used + 1) * 2 > ix->mask + 1) {
        gg_objidx n = {.mask = ix->mask * 2 + 1};
        n.slot = calloc(n.mask + 1, sizeof *n.slot);
        if (!n.slot) return GG_OBJ_ENOMEM;
        for (uint32_t i = 0; i <= ix->mask; i++)
            if (ix->slot[i]) idx_put_raw(&n, kind, ix->slot[i]);
        free(ix->slot);
        *ix = n;
    }
    idx_put_raw(ix, kind, e);
    return 0;
}

static void idx_del(gg_objidx *ix, int kind, gg_objent *e)
{
    uint32_t i = (uint32_t)mix64(key_of(e, kind)) & ix->mask;
    while (ix->slot[i] != e) {
        if (!ix->slot[i]) return;
        i = (i + 1) & ix->mask;
    }
    ix->slot[i] = NULL;
    ix->used--;
    /* Backward shift: move later members of the run into the hole when it is on their path. */
    for (uint32_t j = (i + 1) & ix->mask; ix->slot[j]; j = (j + 1) & ix->mask) {
        uint32_t home = (uint32_t)mix64(key_of(ix->slot[j], kind)) & ix->mask;
        if (((j - home) & ix->mask) >= ((j - i) & ix->mask)) {
            ix->slot[i] = ix->slot[j];
            ix->slot[j] = NULL;
            i = j;
        }
    }
}

int gg_objtab_init(gg_objtab *t, int side, uint32_t max_refs)
{
    memset(t, 0, sizeof *t);
    t->side = side;
    t->max_refs = max_refs;
    if (idx_init(&t->by_id)) return GG_OBJ_ENOMEM;
    if (idx_init(&t->by_src)) {
        free(t->by_id.slot);
        return GG_OBJ_ENOMEM;
    }
    if (getrandom(&t->rng, sizeof t->rng, 0) != (ssize_t)sizeof t->rng)
        t->rng = mix64((uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)t);
    if (t->rng == 0) t->rng = 1;
    return 0;
}

static uint64_t next_id(gg_objtab *t)
{
    for (;;) {
        t->rng ^= t->rng << 13;
        t->rng ^= t->rng >> 7;
        t->rng ^= t->rng << 17;
        uint64_t id = mix64(t->rng) & GG_OBJ_ID_MAX;
        if (id != 0 && !idx_find(&t->by_id, BY_ID, id)) return id;
    }
}

/* Queue the whole remaining count of an upstream entry for release. */
static void queue_release(gg_objent *u)
{
    gg_objtab *up = u->tab;
    if (!up || u->dead || u->count == 0) return;
    if (u->pending == 0) {
        if (up->queued == up->queue_cap) {
            uint32_t cap = up->queue_cap ? up->queue_cap * 2 : 16;
            gg_objent **q = realloc(up->queue, cap * sizeof *q);
            if (!q) return; /* out of memory: the reference leaks upstream, never misroutes */
            up->queue = q;
            up->queue_cap = cap;
        }
        up->queue[up->queued++] = u;
        if (up->queued == 1 && up->on_queue) up->on_queue(up);
    }
    u->pending += u->count;
    u->count = 0;
}

/* An upstream entry that no client uses and the gateway owes nothing is freed. */
static void maybe_free_upstream(gg_objent *u)
{
    if (u->users || u->pending || u->count) return;
    if (u->tab) {
        idx_del(&u->tab->by_id, BY_ID, u);
        u->tab->len--;
    }
    free(u->iface);
    free(u);
}

void gg_objtab_unused(gg_objent *u)
{
    if (u->users) return;
    queue_release(u);
    maybe_free_upstream(u);
}

static int full(const gg_objtab *t)
{
    return (uint64_t)t->len + (t->shares_limit ? t->shares_limit->len : 0) >= t->max_refs;
}

gg_objent *gg_objtab_import(gg_objtab *up, uint64_t uid, void *iface, int *err)
{
    gg_objent *e = idx_find(&up->by_id, BY_ID, uid);
    if (e) {
        free(iface); /* the first export's interface stands */
        e->count++;
        return e;
    }
    if (full(up)) {
        free(iface);
        *err = GG_OBJ_ELIMIT;
        return NULL;
    }
    e = calloc(1, sizeof *e);
    if (!e || idx_put(&up->by_id, BY_ID, (e->id = uid, e))) {
        free(e);
        free(iface);
        *err = GG_OBJ_ENOMEM;
        return NULL;
    }
    e->count = 1;
    e->tab = up;
    e->iface = iface;
    up->len++;
    return e;
}

int64_t gg_objtab_give(gg_objtab *cl, gg_objent *src)
{
    if (src->dead) return GG_OBJ_EGONE;
    gg_objent *e = idx_find(&cl->by_src, BY_SRC, (uint64_t)(uintptr_t)src);
    if (e) {
        e->count++;
        return (int64_t)e->id;
    }
    if (full(cl)) return GG_OBJ_ELIMIT;
    e = calloc(1, sizeof *e);
    if (!e) return GG_OBJ_ENOMEM;
    e->id = next_id(cl);
    e->src = src;
    e->tab = cl;
    e->count = 1;
    if (idx_put(&cl->by_id, BY_ID, e)) goto fail;
    if (idx_put(&cl->by_src, BY_SRC, e)) goto fail_id;
    src->users++;
    cl->len++;
    return (int64_t)e->id;
fail_id:
    idx_del(&cl->by_id, BY_ID, e);
fail:
    free(e);
    return GG_OBJ_ENOMEM;
}

gg_objent *gg_objtab_resolve(gg_objtab *cl, uint64_t id, int *err)
{
    gg_objent *e = idx_find(&cl->by_id, BY_ID, id);
    if (!e) {
        *err = GG_OBJ_EUNKNOWN;
        return NULL;
    }
    if (e->src->dead) {
        *err = GG_OBJ_EGONE;
        return NULL;
    }
    return e->src;
}

/* Remove a client entry; its upstream entry loses a user. */
static void drop_client_entry(gg_objtab *cl, gg_objent *e, int unindex)
{
    gg_objent *u = e->src;
    if (unindex) {
        idx_del(&cl->by_id, BY_ID, e);
        idx_del(&cl->by_src, BY_SRC, e);
    }
    cl->len--;
    free(e);
    if (--u->users == 0) {
        queue_release(u);
        maybe_free_upstream(u);
    }
}

int gg_objtab_release(gg_objtab *cl, uint64_t id, uint32_t n)
{
    gg_objent *e = idx_find(&cl->by_id, BY_ID, id);
    if (!e) return GG_OBJ_EUNKNOWN;
    if (n == 0 || n > e->count) return GG_OBJ_EOVER;
    e->count -= n;
    if (e->count == 0) drop_client_entry(cl, e, 1);
    return 0;
}

int64_t gg_objtab_release_params(gg_objtab *t, const char *params, size_t len)
{
    const char *p = params, *end = params + len;
    uint32_t one, pairs;
    size_t k = gg_get_array(p, len, &one);
    size_t k2 = k && one == 1 ? gg_get_array(p + k, len - k, &pairs) : 0;
    if (!k2) return -1;
    p += k + k2;
    int64_t bad = 0;
    for (uint32_t i = 0; i < pairs; i++) {
        uint32_t two;
        uint64_t id, n;
        size_t a = gg_get_array(p, (size_t)(end - p), &two), b = 0, d = 0;
        const uint8_t *u = (const uint8_t *)p;
        if (a && two == 2) b = gg_obj_get_uint(u + a, (size_t)(end - p) - a, &id);
        if (b) d = gg_obj_get_uint(u + a + b, (size_t)(end - p) - a - b, &n);
        if (!d) return bad + 1; /* the rest cannot be found */
        p += a + b + d;
        /* Unknown ids and over-releases change nothing: a forged release cannot free what
         * another connection holds (ids resolve only in this connection's table). */
        if (!t || n > UINT32_MAX || gg_objtab_release(t, id, (uint32_t)n)) bad++;
    }
    return bad;
}

void gg_objtab_clear(gg_objtab *cl)
{
    for (uint32_t i = 0; i <= cl->by_id.mask; i++) {
        gg_objent *e = cl->by_id.slot[i];
        if (e) drop_client_entry(cl, e, 0);
    }
    memset(cl->by_id.slot, 0, (cl->by_id.mask + 1) * sizeof *cl->by_id.slot);
    memset(cl->by_src.slot, 0, (cl->by_src.mask + 1) * sizeof *cl->by_src.slot);
    cl->by_id.used = cl->by_src.used = 0;
}

void gg_objtab_owner_gone(gg_objtab *up)
{
    for (uint32_t i = 0; i <= up->by_id.mask; i++) {
        gg_objent *e = up->by_id.slot[i];
        if (!e) continue;
        up->by_id.slot[i] = NULL;
        e->dead = 1;
        e->tab = NULL;
        e->count = e->pending = 0;
        if (e->users == 0) {
            free(e->iface);
            free(e);
        }
    }
    up->by_id.used = 0;
    up->len = 0;
    up->queued = 0;
}

void gg_objtab_counts(const gg_objtab *up, uint64_t *entries, uint64_t *users)
{
    *entries += up->len;
    for (uint32_t i = 0; up->by_id.slot && i <= up->by_id.mask; i++)
        if (up->by_id.slot[i]) *users += up->by_id.slot[i]->users;
}

size_t gg_objtab_take(gg_objtab *up, gg_objrel *out, size_t max)
{
    size_t n = 0;
    while (n < max && up->queued > 0) {
        gg_objent *u = up->queue[--up->queued];
        out[n].id = u->id;
        out[n].count = u->pending;
        n++;
        u->pending = 0;
        maybe_free_upstream(u);
    }
    return n;
}

size_t gg_objtab_put_release(char *p, const gg_objrel *rel, size_t n)
{
    size_t k = gg_put_notify_hdr(p, "$release", 8);
    p[k++] = (char)0x91;
    p[k++] = (char)0xdc; /* array 16 of pairs */
    p[k++] = (char)(n >> 8);
    p[k++] = (char)n;
    for (size_t i = 0; i < n; i++) {
        p[k++] = (char)0x92;
        k += gg_obj_put_uint((uint8_t *)p + k, rel[i].id);
        k += gg_obj_put_uint((uint8_t *)p + k, rel[i].count);
    }
    return k;
}

void gg_objtab_free(gg_objtab *t)
{
    if (t->by_id.slot) {
        if (t->side == GG_OBJ_CLIENT)
            gg_objtab_clear(t);
        else
            gg_objtab_owner_gone(t);
    }
    free(t->by_id.slot);
    free(t->by_src.slot);
    free(t->queue);
    memset(t, 0, sizeof *t);
}

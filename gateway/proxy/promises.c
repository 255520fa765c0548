/* promises.c -- kept answers of promise pipelining through the gateway; see promises.h. */
#include "proxy/promises.h"
#include "core/objects.h"
#include "core/codec.h"

#include <stdlib.h>
#include <string.h>

gg_kept_tab *gg_kept_tab_new(uint32_t max)
{
    gg_kept_tab *t = calloc(1, sizeof *t);
    if (t) t->max = max;
    return t;
}

static void unlink_conn(gg_kept *k)
{
    if (!k->list) return;
    if (k->uprev)
        k->uprev->unext = k->unext;
    else
        k->list->head = k->unext;
    if (k->unext) k->unext->uprev = k->uprev;
    k->list = NULL;
    k->uprev = k->unext = NULL;
}

/* Tell the upstream it may forget its kept answer: [2, "$finish", [id]]. A connection that
 * cannot take it now only keeps the answer until it closes (as a lost $release would). */
static void send_finish(gg_kept *k)
{
    if (!k->conn || !k->call || !k->ops->notify_to) return;
    uint8_t b[10];
    b[0] = 0x91;
    size_t n = 1 + gg_obj_put_uint(b + 1, k->call->id);
    k->ops->notify_to(k->conn, "$finish", 7, (const char *)b, n);
}

/* The record goes: the upstream is told, the call's id let go, the memory freed. */
static void drop(gg_kept *k, gg_calls *calls)
{
    send_finish(k);
    unlink_conn(k);
    if (k->call) gg_call_unhold(calls, k->call);
    free(k->why);
    free(k);
}

void gg_kept_tab_free(gg_kept_tab *t, gg_calls *calls)
{
    if (!t) return;
    for (uint32_t i = 0; i < t->n; i++) drop(t->rec[i], calls);
    free(t->rec);
    free(t);
}

static uint32_t index_of(const gg_kept_tab *t, uint32_t msgid)
{
    uint32_t i = 0;
    while (i < t->n && t->rec[i]->msgid != msgid) i++;
    return i;
}

gg_kept *gg_kept_find(const gg_kept_tab *t, uint32_t msgid)
{
    uint32_t i = t ? index_of(t, msgid) : 0;
    return t && i < t->n ? t->rec[i] : NULL;
}

int gg_kept_finish(gg_kept_tab *t, uint32_t msgid, gg_calls *calls)
{
    uint32_t i = t ? index_of(t, msgid) : 0;
    if (!t || i == t->n) return -1;
    gg_kept *k = t->rec[i];
    t->rec[i] = t->rec[--t->n];
    drop(k, calls);
    return 0;
}

gg_kept *gg_kept_add(gg_kept_tab *t, uint32_t msgid, gg_call *call, gg_calls *calls, int *err)
{
    gg_kept_finish(t, msgid, calls);
    if (t->n >= t->max) {
        *err = GG_KEPT_ELIMIT;
        return NULL;
    }
    if (t->n == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 8;
        gg_kept **r = realloc(t->rec, cap * sizeof *r);
        if (!r) {
            *err = GG_KEPT_ENOMEM;
            return NULL;
        }
        t->rec = r;
        t->cap = cap;
    }
    gg_kept *k = calloc(1, sizeof *k);
    if (!k) {
        *err = GG_KEPT_ENOMEM;
        return NULL;
    }
    k->msgid = msgid;
    k->call = call;
    if (call) gg_call_hold(call);
    t->rec[t->n++] = k;
    return k;
}

void gg_kept_attach(gg_kept *k, void *conn, const gg_upstream_ops *ops, gg_kept_list *list)
{
    k->conn = conn;
    k->ops = ops;
    k->list = list;
    k->uprev = NULL;
    k->unext = list->head;
    if (list->head) list->head->uprev = k;
    list->head = k;
}

int gg_kept_refused(gg_kept *k, int code, const char *why)
{
    k->code = code;
    free(k->why);
    k->why = why ? strdup(why) : NULL;
    return why && !k->why ? GG_KEPT_ENOMEM : 0;
}

void gg_kept_conn_closed(gg_kept_list *list)
{
    while (list->head) {
        gg_kept *k = list->head;
        unlink_conn(k);
        k->conn = NULL;
    }
}

size_t gg_kept_parse_promise(const char *payload, size_t plen, uint32_t *msgid)
{
    const uint8_t *p = (const uint8_t *)payload;
    uint64_t v;
    if (plen < 2 || (p[0] != 0x91 && p[0] != 0x92)) return 0;
    size_t il = gg_obj_get_uint(p + 1, plen - 1, &v);
    if (!il || v > UINT32_MAX) return 0;
    size_t head = 1 + il, left = plen - head;
    if (p[0] == 0x91) {
        if (left) return 0;
    } else { /* exactly one array: the path */
        gg_scan_state st;
        gg_scan_limits lim = {.max_message = left, .max_depth = 16};
        uint8_t c = left ? p[head] : 0;
        if (!left || !((c & 0xf0) == 0x90 || c == 0xdc || c == 0xdd)) return 0;
        gg_scan_reset(&st);
        if (gg_scan(&st, payload + head, left, &lim) != GG_SCAN_DONE || st.msg.size != left)
            return 0;
    }
    *msgid = (uint32_t)v;
    return head;
}

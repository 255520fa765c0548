/* fuzz_kept.c -- libFuzzer target for promise pipelining on the gateway side (promises.c):
 * the PROMISE payload decoder and the recorded-interface decoder (objiface.c) on any bytes, and a client's kept-call records driven by any
 * sequence of operations.
 *
 * Properties: the decoder never reads past its input and accepts only [msgid] or
 * [msgid, path] with path one whole array; a record is found by exactly the msgid it was kept
 * under until it is finished; a closed connection detaches its records and is told nothing
 * more; $finish goes out once per finished record still attached; and when the table is
 * freed every call id it held is let go (no owed record left) and nothing leaks (ASan). */
#include "core/calls.h"
#include "proxy/promises.h"
#include "core/objiface.h"

#include <stdlib.h>
#include <string.h>

static unsigned finishes; /* $finish notifications sent */

static void count_finish(void *conn, const char *method, uint32_t method_len, const char *params,
                         size_t params_len)
{
    if (!conn || method_len != 7 || memcmp(method, "$finish", 7) || params_len < 2) abort();
    finishes++;
}

static const gg_upstream_ops ops = {.name = "fuzz", .notify_to = count_finish};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    uint32_t msgid;
    size_t head = gg_kept_parse_promise(buf, size, &msgid);
    if (head) {
        if (head > size || head < 2 || (data[0] != 0x91 && data[0] != 0x92)) abort();
        if (data[0] == 0x91 && head != size) abort();
        if (data[0] == 0x92 && head >= size) abort();
    }
    /* An interface: accepted only as an array of strings; every name it lists is found. */
    gg_objiface *f = gg_objiface_new(buf, size);
    if (f && (f->len != size || memcmp(f->bytes, data, size))) abort();
    if (f && size > 2 && (data[1] & 0xe0) == 0xa0 && (data[0] & 0xf0) == 0x90 &&
        !gg_objiface_has(f, buf + 2, data[1] & 0x1f))
        abort();
    if (gg_objiface_has(f, "\xff", 1) && size < 3) abort();
    free(f);
    free(buf);

    /* The same bytes as a program on one client's records and two connections. */
    gg_calls calls;
    if (gg_calls_init(&calls, 64)) return 0;
    gg_kept_tab *t = gg_kept_tab_new(8);
    gg_kept_list lists[2] = {{NULL}, {NULL}};
    int conns[2];
    gg_kept *last = NULL;
    unsigned attached_finished = 0;
    for (size_t i = 0; i < size; i++) {
        uint8_t op = data[i] >> 5, arg = data[i] & 31;
        int err;
        if (op <= 1) { /* keep msgid arg (replacing a record of the same msgid) */
            gg_kept *old = gg_kept_find(t, arg);
            if (old && old->conn) attached_finished++;
            gg_call *call = gg_call_new(&calls);
            if (!call) continue;
            gg_kept *k = gg_kept_add(t, arg, call, &calls, &err);
            gg_call_release(&calls, call); /* answered: only the record holds its id */
            if (k && (k->msgid != arg || gg_kept_find(t, arg) != k)) abort();
            if (!k && err != GG_KEPT_ELIMIT) abort();
            last = k;
        } else if (op == 2) { /* finish */
            gg_kept *k = gg_kept_find(t, arg);
            if (k && k->conn) attached_finished++;
            if (k == last) last = NULL;
            if ((gg_kept_finish(t, arg, &calls) == 0) != (k != NULL)) abort();
            if (gg_kept_find(t, arg)) abort();
        } else if (op == 3 && last && !last->list) { /* the last kept call went out on a conn */
            gg_kept_attach(last, &conns[arg & 1], &ops, &lists[arg & 1]);
        } else if (op == 4) { /* a connection closed */
            gg_kept_conn_closed(&lists[arg & 1]);
            if (lists[arg & 1].head) abort();
        } else if (op == 5 && last) {
            if (gg_kept_refused(last, 400 + arg, arg & 1 ? "refused" : NULL)) abort();
        } else if (op == 6) {
            gg_kept *k = gg_kept_find(t, arg);
            if (k && (k->msgid != arg || (k->conn && k->conn != &conns[0] && k->conn != &conns[1])))
                abort();
        }
        if (last && !gg_kept_find(t, last->msgid)) last = NULL;
    }
    for (uint32_t i = 0; t && i < t->n; i++)
        if (t->rec[i]->conn) attached_finished++;
    gg_kept_tab_free(t, &calls);
    if (finishes != attached_finished || calls.owed != 0 || calls.live != 0) abort();
    finishes = 0;
    gg_calls_free(&calls);
    return 0;
}

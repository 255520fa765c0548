/* promises.h -- the gateway's kept answers: calls a client made with `keep`, which later
 * calls may target with a PROMISE before (or after) their answer arrives (promise pipelining,
 * docs/protocol.md#promise-pipelining).
 *
 * The gateway keeps no result. A kept call is sent to one upstream connection, which keeps
 * the answer itself (the client's `keep` is forwarded); a pipelined call is rewritten to a
 * PROMISE naming the gateway's own msgid of that call and sent on the same connection, so
 * the backend runs it when its answer is ready: one round trip from the client. The record
 * holds the call record (gg_call_hold): the upstream keys its kept answer by that msgid, so
 * the gateway must not give the id to another call until the upstream was told $finish.
 *
 * A record costs a fixed size (plus an error message for a call refused at the gateway);
 * a client holds at most limits.max_kept_per_client of them. No function here logs. */
#ifndef GG_PROMISES_H
#define GG_PROMISES_H

#include "core/calls.h"
#include "proxy/upstream.h"

#include <stddef.h>
#include <stdint.h>

typedef struct gg_kept gg_kept;

/* The records whose answers one upstream connection keeps (embedded in the connection). */
typedef struct gg_kept_list {
    gg_kept *head;
} gg_kept_list;

struct gg_kept {
    uint32_t msgid;                /* the client's msgid of the kept call */
    gg_call *call;                 /* held: call->id is the msgid the upstream knows; NULL
                                    * for a call refused before it was one */
    void *conn;                    /* the upstream connection keeping the answer; NULL: none */
    const gg_upstream_ops *ops;
    gg_kept_list *list;            /* conn's records */
    gg_kept *uprev, *unext;
    int code;                      /* != 0: refused at the gateway with this error; */
    char *why;                     /*        and this message (malloc'd) */
};

/* One client's records. Found by a linear walk: there are at most max of them and only
 * pipelined calls and $finish look. */
typedef struct gg_kept_tab {
    gg_kept **rec;
    uint32_t n, cap, max;
} gg_kept_tab;

enum { GG_KEPT_ENOMEM = -1, GG_KEPT_ELIMIT = -2 };

/* A new empty table for at most max records; NULL when out of memory. */
gg_kept_tab *gg_kept_tab_new(uint32_t max);

/* Drop every record (the client closed) and free the table; NULL is fine. */
void gg_kept_tab_free(gg_kept_tab *t, gg_calls *calls);

/* A new record for the client's msgid, holding call (NULL: the call was refused before the
 * gateway made one; gg_kept_refused says why). A record the client kept under the
 * same msgid before is dropped first (msgids come back; the peer to peer library replaces
 * too). NULL with *err: GG_KEPT_ELIMIT (max records), GG_KEPT_ENOMEM; the call is untouched. */
gg_kept *gg_kept_add(gg_kept_tab *t, uint32_t msgid, gg_call *call, gg_calls *calls, int *err);

/* The record of the client's msgid, or NULL (never kept, finished). */
gg_kept *gg_kept_find(const gg_kept_tab *t, uint32_t msgid);

/* The call went out on conn (ops' connection, whose records are list): from now on
 * pipelined calls go there, and $finish too. */
void gg_kept_attach(gg_kept *k, void *conn, const gg_upstream_ops *ops, gg_kept_list *list);

/* The call was refused at the gateway with code and message: calls on its promise get the
 * same. 0 or GG_KEPT_ENOMEM (then they get the code with a generic message). */
int gg_kept_refused(gg_kept *k, int code, const char *why);

/* The client finished msgid ($finish) : the record goes, the upstream is told $finish for
 * the msgid it knows (when its connection is still up), and the call's id is let go.
 * 0, or -1 when msgid is not kept. */
int gg_kept_finish(gg_kept_tab *t, uint32_t msgid, gg_calls *calls);

/* The payload of a PROMISE ext value: [msgid] or [msgid, path], path an array (of keys,
 * copied to the upstream as it is). Returns how many bytes the array header and msgid take
 * (the path follows), or 0 when it is not one (or msgid does not fit 32 bits). Reads only
 * payload[0..plen). */
size_t gg_kept_parse_promise(const char *payload, size_t plen, uint32_t *msgid);

/* The upstream connection whose records are list closed: its kept answers are gone. The
 * records stay (the client still names them) and answer 410 object_gone. */
void gg_kept_conn_closed(gg_kept_list *list);

#endif

/* objtable.h -- the gateway's remote-object tables, one per connection (docs/protocol.md,
 * "Remote objects").
 *
 * Every reference that crosses the gateway is translated, as Cap'n Proto's level-1 tables do:
 *   - on an upstream connection, the table holds what the upstream exported to the gateway
 *     (its imports), keyed by the upstream's own id, counting how many times the upstream sent
 *     each one: exactly what the gateway must release to it in the end;
 *   - on a client connection, the table holds what the gateway handed the client, keyed by an
 *     id the gateway chose for that client only: random 53-bit numbers (unguessable, never a
 *     pointer or a counter), resolvable only in that client's table, so an id forged, stale,
 *     or given to another client finds nothing (GG_OBJ_EUNKNOWN: 410 object_gone on the wire).
 *     Each entry points at the upstream entry it stands for and counts how many times it was
 *     sent to the client; the same upstream object sent twice gets the same client id.
 * An upstream entry lives while the upstream still counts it or a client entry points at it.
 * When the last client entry pointing at it goes, its whole count is queued for release to
 * the upstream; the queue is taken once per loop turn as one $release (gg_objtab_take).
 *
 * Memory: entries are allocated when a reference is first created (never per call); every
 * entry counts against the table's max_refs. No function here does I/O or logs. */
#ifndef GG_OBJTABLE_H
#define GG_OBJTABLE_H

#include <stddef.h>
#include <stdint.h>

enum {
    GG_OBJ_ENOMEM = -1,
    GG_OBJ_ELIMIT = -2,   /* max_refs entries already: limits.max_refs_per_client */
    GG_OBJ_EUNKNOWN = -3, /* an id this connection was never given, or released */
    GG_OBJ_EGONE = -4,    /* the owner's connection died */
    GG_OBJ_EOVER = -5,    /* a release of more references than the connection holds */
};

#define GG_OBJ_ID_MAX ((UINT64_C(1) << 53) - 1) /* ids stay exact in doubles (Lua, JSON) */

typedef struct gg_objtab gg_objtab;

/* One reference. Upstream side: id is the upstream's id, count what it sent us, users the
 * client entries pointing here. Client side: id is the gateway's id for that client, count
 * what the client was sent, src the upstream entry. */
typedef struct gg_objent {
    uint64_t id;
    uint32_t count;
    uint32_t users;
    struct gg_objent *src;
    gg_objtab *tab;   /* the table holding it; NULL once that table is gone (upstream died) */
    void *iface;      /* owner side: the interface recorded at export (a gg_objiface,
                       * core/objiface.h), freed with the entry (NULL: none recorded) */
    uint32_t pending; /* upstream side: references queued for release */
    uint8_t dead;     /* upstream side: its connection died */
} gg_objent;

/* A queued release: [id, count] of one $release. */
typedef struct gg_objrel {
    uint64_t id;
    uint32_t count;
} gg_objrel;

typedef struct gg_objidx {
    gg_objent **slot;
    uint32_t mask, used;
} gg_objidx;

enum { GG_OBJ_CLIENT = 1, GG_OBJ_UPSTREAM = 2 };

struct gg_objtab {
    int side; /* GG_OBJ_CLIENT or GG_OBJ_UPSTREAM */
    gg_objidx by_id;
    gg_objidx by_src; /* client side: src -> entry, so one upstream object has one client id */
    uint32_t len, max_refs;
    /* Another table whose entries count against this one's max_refs too (a client's exports
     * and the references it holds share limits.max_refs_per_client); NULL: none. */
    const gg_objtab *shares_limit;
    uint64_t rng;      /* xorshift state seeded from getrandom(2) (client ids) */
    gg_objent **queue; /* upstream side: entries with pending releases */
    uint32_t queued, queue_cap;
    /* Upstream side, set by the connection that holds the table: itself, and the
     * gg_upstream_ops that sends on it (proxy/upstream.h), so that a call on one of its
     * objects goes back to exactly that connection. */
    void *conn;
    const void *ops;
    /* Upstream side: called when the first release is queued (the queue was empty), so that
     * the owner sends it at the end of the loop turn; `dirty`/`next_dirty` are its own. */
    void (*on_queue)(gg_objtab *up);
    void *srv;
    gg_objtab *next_dirty;
    int dirty;
};

/* Initialise an empty table of one side (GG_OBJ_CLIENT, GG_OBJ_UPSTREAM) holding at most
 * max_refs entries. 0 or GG_OBJ_ENOMEM. */
int gg_objtab_init(gg_objtab *t, int side, uint32_t max_refs);

/* Free the table. Upstream side: as gg_objtab_owner_gone (entries still used by clients are
 * detached, answer GG_OBJ_EGONE, and are freed by their last client's release). Client side:
 * as gg_objtab_clear. */
void gg_objtab_free(gg_objtab *t);

/* Owner side: the owner sent its object `uid` (ext 64) with the interface iface (a malloc'd
 * block or NULL: the table takes it, and frees it at once when the entry exists already or on
 * error). Returns the entry (count + 1), or NULL with *err. */
gg_objent *gg_objtab_import(gg_objtab *up, uint64_t uid, void *iface, int *err);

/* Upstream side: an imported entry that no client got after all (the client died while the
 * answer carrying it was in flight, or gg_objtab_give failed): queue its release. */
void gg_objtab_unused(gg_objent *u);

/* Client side: hand the upstream entry src to this client (count + 1; the same src keeps
 * its id). Returns the client's id (> 0), or a negative GG_OBJ_E*. */
int64_t gg_objtab_give(gg_objtab *cl, gg_objent *src);

/* Client side: the upstream entry a client's id stands for, or NULL with *err
 * (GG_OBJ_EUNKNOWN, GG_OBJ_EGONE). */
gg_objent *gg_objtab_resolve(gg_objtab *cl, uint64_t id, int *err);

/* Client side: the client released n references to id ($release). 0, GG_OBJ_EUNKNOWN or
 * GG_OBJ_EOVER (nothing changes on error). At zero the entry goes, and with its upstream
 * entry's last user the upstream's count is queued for release. */
int gg_objtab_release(gg_objtab *cl, uint64_t id, uint32_t n);

/* Either side: a `$release` [[[id, n], ...]] on table t (NULL: nothing held), each pair as
 * gg_objtab_release. Returns the pairs that changed nothing (one more when the rest of the
 * list could not be read), or -1 when params are not [[...]]. */
int64_t gg_objtab_release_params(gg_objtab *t, const char *params, size_t len);

/* Client side: the client disconnected: release everything it held. */
void gg_objtab_clear(gg_objtab *cl);

/* Upstream side: the connection died: every entry is dead (clients resolving them get
 * GG_OBJ_EGONE); entries without users are freed; the release queue is dropped. */
void gg_objtab_owner_gone(gg_objtab *up);

/* Upstream side: the live entries (objects the upstream exported that the gateway still
 * holds) and the client entries pointing at them (references clients hold). O(entries). */
void gg_objtab_counts(const gg_objtab *up, uint64_t *entries, uint64_t *users);

/* Upstream side: take up to max queued releases (one $release message). Returns how many. */
size_t gg_objtab_take(gg_objtab *up, gg_objrel *out, size_t max);

/* Write [2, "$release", [[[id, count], ...]]] with the n releases at p (n < 65536), which has
 * room for GG_OBJTAB_RELEASE_MAX(n) bytes. Returns the bytes written. The one writer of the
 * message, both ways: the gateway's releases to an upstream and to a client. */
#define GG_OBJTAB_RELEASE_MAX(n) (24 + (size_t)(n) * 20)
size_t gg_objtab_put_release(char *p, const gg_objrel *rel, size_t n);

#endif

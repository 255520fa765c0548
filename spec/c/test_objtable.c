/* test_objtable.c -- the gateway's remote-object tables (objtable.c) and the ext scan
 * (objects.c): ids scoped per connection, counts that survive a re-export crossing a
 * release, batching, clients and upstreams that go away, limits. */
#include "core/objects.h"
#include "core/objtable.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

static void test_ids_are_scoped_and_unguessable(void)
{
    gg_objtab up, a, b;
    int err = 0;
    UNIT_EQ_INT(gg_objtab_init(&up, GG_OBJ_UPSTREAM, 100), 0);
    UNIT_EQ_INT(gg_objtab_init(&a, GG_OBJ_CLIENT, 100), 0);
    UNIT_EQ_INT(gg_objtab_init(&b, GG_OBJ_CLIENT, 100), 0);
    gg_objent *u1 = gg_objtab_import(&up, 1, NULL, &err);
    gg_objent *u2 = gg_objtab_import(&up, 2, NULL, &err);
    if (!UNIT_CHECK(u1 && u2)) return;
    int64_t a1 = gg_objtab_give(&a, u1), a2 = gg_objtab_give(&a, u2), b1 = gg_objtab_give(&b, u1);
    UNIT_CHECK(a1 > 0 && a2 > 0 && b1 > 0);
    UNIT_CHECK(a1 != 1 && a2 != 2 && a2 != a1 + 1); /* not the upstream's ids, not a counter */
    UNIT_CHECK((uint64_t)a1 <= GG_OBJ_ID_MAX);
    UNIT_CHECK(gg_objtab_resolve(&a, (uint64_t)a1, &err) == u1);
    UNIT_CHECK(gg_objtab_resolve(&b, (uint64_t)b1, &err) == u1);
    /* another client's id, a forged one: nothing */
    UNIT_CHECK(b1 == a1 || gg_objtab_resolve(&a, (uint64_t)b1, &err) == NULL);
    UNIT_CHECK(gg_objtab_resolve(&a, 12345, &err) == NULL);
    UNIT_EQ_INT(err, GG_OBJ_EUNKNOWN);
    /* the same upstream object handed to a client twice keeps its id */
    UNIT_EQ_INT(gg_objtab_give(&a, u1), a1);
    gg_objtab_free(&a);
    gg_objtab_free(&b);
    gg_objtab_free(&up);
}

static void test_counts_and_batched_releases(void)
{
    gg_objtab up, cl;
    int err = 0;
    gg_objrel rel[8];
    gg_objtab_init(&up, GG_OBJ_UPSTREAM, 100);
    gg_objtab_init(&cl, GG_OBJ_CLIENT, 100);
    gg_objent *u = gg_objtab_import(&up, 7, NULL, &err);
    int64_t id = gg_objtab_give(&cl, u);
    /* sent again while the client's release of the first is in flight */
    UNIT_CHECK(gg_objtab_import(&up, 7, NULL, &err) == u);
    UNIT_EQ_INT(gg_objtab_give(&cl, u), id);
    UNIT_EQ_INT(gg_objtab_release(&cl, (uint64_t)id, 1), 0);
    UNIT_CHECK(gg_objtab_resolve(&cl, (uint64_t)id, &err) == u); /* one reference is left */
    UNIT_EQ_INT(gg_objtab_take(&up, rel, 8), 0);                 /* nothing owed yet */
    UNIT_EQ_INT(gg_objtab_release(&cl, (uint64_t)id, 2), GG_OBJ_EOVER);
    UNIT_EQ_INT(gg_objtab_release(&cl, 999, 1), GG_OBJ_EUNKNOWN);
    UNIT_EQ_INT(gg_objtab_release(&cl, (uint64_t)id, 1), 0);
    UNIT_CHECK(gg_objtab_resolve(&cl, (uint64_t)id, &err) == NULL); /* stale now */
    UNIT_EQ_INT(err, GG_OBJ_EUNKNOWN);
    /* the upstream gets one release of everything it sent */
    UNIT_EQ_INT(gg_objtab_take(&up, rel, 8), 1);
    UNIT_EQ_INT(rel[0].id, 7);
    UNIT_EQ_INT(rel[0].count, 2);
    UNIT_EQ_INT(up.len, 0);
    UNIT_EQ_INT(cl.len, 0);
    gg_objtab_free(&cl);
    gg_objtab_free(&up);
}

static void test_client_gone_releases_everything(void)
{
    gg_objtab up, cl;
    int err = 0;
    gg_objtab_init(&up, GG_OBJ_UPSTREAM, 2000);
    gg_objtab_init(&cl, GG_OBJ_CLIENT, 2000);
    for (uint64_t i = 1; i <= 1000; i++) gg_objtab_give(&cl, gg_objtab_import(&up, i, NULL, &err));
    UNIT_EQ_INT(up.len, 1000);
    UNIT_EQ_INT(cl.len, 1000);
    gg_objtab_free(&cl);
    gg_objrel *rel = calloc(1000, sizeof *rel);
    UNIT_EQ_INT(gg_objtab_take(&up, rel, 1000), 1000);
    UNIT_EQ_INT(up.len, 0);
    free(rel);
    /* an answer carrying a reference whose client died: released by the gateway itself */
    gg_objent *u = gg_objtab_import(&up, 5, NULL, &err);
    gg_objtab_unused(u);
    gg_objrel one;
    UNIT_EQ_INT(gg_objtab_take(&up, &one, 1), 1);
    UNIT_EQ_INT(one.id, 5);
    UNIT_EQ_INT(up.len, 0);
    gg_objtab_free(&up);
}

static void test_upstream_gone(void)
{
    gg_objtab up, cl;
    int err = 0;
    gg_objtab_init(&up, GG_OBJ_UPSTREAM, 10);
    gg_objtab_init(&cl, GG_OBJ_CLIENT, 10);
    int64_t id = gg_objtab_give(&cl, gg_objtab_import(&up, 3, NULL, &err));
    gg_objtab_free(&up); /* the connection died */
    UNIT_CHECK(gg_objtab_resolve(&cl, (uint64_t)id, &err) == NULL);
    UNIT_EQ_INT(err, GG_OBJ_EGONE);
    UNIT_EQ_INT(gg_objtab_release(&cl, (uint64_t)id, 1), 0); /* frees the detached entry */
    gg_objtab_free(&cl);
}

static void test_limits(void)
{
    gg_objtab up, cl;
    int err = 0;
    gg_objtab_init(&up, GG_OBJ_UPSTREAM, 3);
    gg_objtab_init(&cl, GG_OBJ_CLIENT, 2);
    gg_objent *u[3];
    for (int i = 0; i < 3; i++) u[i] = gg_objtab_import(&up, (uint64_t)i + 1, NULL, &err);
    UNIT_CHECK(gg_objtab_import(&up, 9, NULL, &err) == NULL);
    UNIT_EQ_INT(err, GG_OBJ_ELIMIT);
    UNIT_CHECK(gg_objtab_give(&cl, u[0]) > 0);
    UNIT_CHECK(gg_objtab_give(&cl, u[1]) > 0);
    UNIT_EQ_INT(gg_objtab_give(&cl, u[2]), GG_OBJ_ELIMIT);
    gg_objtab_unused(u[2]);
    gg_objtab_free(&cl);
    gg_objtab_free(&up);
}

/* A client's exports and the references it holds share one limit (shares_limit); an owner
 * table keeps the first interface it was given and frees it with the entry (ASan: no leak,
 * no double free). */
static void test_shared_limit_and_interfaces(void)
{
    gg_objtab own, held, up, cl;
    int err = 0;
    gg_objtab_init(&own, GG_OBJ_UPSTREAM, 3);
    gg_objtab_init(&cl, GG_OBJ_CLIENT, 3);
    gg_objtab_init(&up, GG_OBJ_UPSTREAM, 100);
    gg_objtab_init(&held, GG_OBJ_CLIENT, 100);
    own.shares_limit = &cl;
    cl.shares_limit = &own;
    gg_objent *u = gg_objtab_import(&up, 1, NULL, &err);
    UNIT_CHECK(gg_objtab_give(&cl, u) > 0);
    gg_objent *e1 = gg_objtab_import(&own, 7, strdup("first"), &err);
    gg_objent *e2 = gg_objtab_import(&own, 8, NULL, &err);
    if (!UNIT_CHECK(e1 && e2)) return;
    UNIT_CHECK(gg_objtab_import(&own, 7, strdup("second"), &err) == e1); /* re-export: counted */
    UNIT_EQ_INT((int)e1->count, 2);
    UNIT_CHECK(strcmp(e1->iface, "first") == 0);
    UNIT_CHECK(gg_objtab_import(&own, 9, strdup("x"), &err) == NULL); /* 1 held + 2 exported */
    UNIT_EQ_INT(err, GG_OBJ_ELIMIT);
    gg_objent *u2 = gg_objtab_import(&up, 2, NULL, &err);
    UNIT_EQ_INT(gg_objtab_give(&cl, u2), GG_OBJ_ELIMIT);
    gg_objtab_unused(u2);
    /* given to an upstream connection, released by it: the whole count goes back */
    int64_t g = gg_objtab_give(&held, e1);
    UNIT_CHECK(g > 0 && g != 7);
    UNIT_EQ_INT(gg_objtab_release(&held, (uint64_t)g, 1), 0);
    gg_objrel rel[4];
    UNIT_EQ_INT((int)gg_objtab_take(&own, rel, 4), 1);
    UNIT_CHECK(rel[0].id == 7 && rel[0].count == 2);
    /* the owner goes while an upstream still holds its object: resolving says gone */
    int64_t g2 = gg_objtab_give(&held, e2);
    gg_objtab_free(&own);
    UNIT_CHECK(gg_objtab_resolve(&held, (uint64_t)g2, &err) == NULL);
    UNIT_EQ_INT(err, GG_OBJ_EGONE);
    cl.shares_limit = NULL;
    gg_objtab_free(&held);
    gg_objtab_free(&cl);
    gg_objtab_free(&up);
}

/* 100,000 references created and dropped: the tables return to empty (ASan: no leak). */
static void test_churn(void)
{
    gg_objtab up, cl;
    int err = 0;
    gg_objrel rel[64];
    gg_objtab_init(&up, GG_OBJ_UPSTREAM, 1000);
    gg_objtab_init(&cl, GG_OBJ_CLIENT, 1000);
    for (uint64_t i = 1; i <= 100000; i++) {
        int64_t id = gg_objtab_give(&cl, gg_objtab_import(&up, i, NULL, &err));
        if (!UNIT_CHECK(id > 0)) break;
        gg_objtab_release(&cl, (uint64_t)id, 1);
        if (i % 50 == 0)
            while (gg_objtab_take(&up, rel, 64)) {
            }
    }
    while (gg_objtab_take(&up, rel, 64)) {
    }
    UNIT_EQ_INT(up.len, 0);
    UNIT_EQ_INT(cl.len, 0);
    UNIT_EQ_INT(cl.by_id.used, 0);
    gg_objtab_free(&cl);
    gg_objtab_free(&up);
}

static void test_scan(void)
{
    gg_obj_ext ext;
    gg_obj_seen seen;
    gg_obj_ext_default(&ext);
    char err[100];
    UNIT_EQ_INT(gg_obj_ext_check(&ext, err, sizeof err), 0);
    gg_obj_ext bad = {1, 65, 66};
    UNIT_EQ_INT(gg_obj_ext_check(&bad, err, sizeof err), -1);
    bad = (gg_obj_ext){64, 64, 66};
    UNIT_EQ_INT(gg_obj_ext_check(&bad, err, sizeof err), -1);
    /* [<ext 65: 12>, "write", ["x", <ext 64: [1, []]>, <ext 66: [9, []]>, <ext 5: "ab">]] */
    static const char m2[] = "\x93\xd4\x41\x0c\xa5write\x94\xa1x"
                             "\xc7\x03\x40\x92\x01\x90"
                             "\xc7\x03\x42\x92\x09\x90"
                             "\xd5\x05"
                             "ab";
    UNIT_EQ_INT(gg_obj_scan(m2, sizeof m2 - 1, &ext, &seen), 3);
    UNIT_EQ_INT(seen.yours, 1);
    UNIT_EQ_INT(seen.objects, 1);
    UNIT_EQ_INT(seen.promises, 1);
    UNIT_EQ_INT(seen.bad, 0);
    /* truncated anywhere: never reads past the end */
    for (size_t n = 0; n < sizeof m2 - 1; n++) gg_obj_scan(m2, n, &ext, &seen);
    /* an OBJECT whose payload is not an array is counted as bad */
    static const char m3[] = "\x91\xd4\x40\x07";
    UNIT_EQ_INT(gg_obj_scan(m3, sizeof m3 - 1, &ext, &seen), 0);
    UNIT_EQ_INT(seen.bad, 1);
    /* plain params: nothing */
    static const char m4[] = "\x92\x2a\xa2hi";
    UNIT_EQ_INT(gg_obj_scan(m4, sizeof m4 - 1, &ext, &seen), 0);
}

int main(void)
{
    UNIT_RUN(test_ids_are_scoped_and_unguessable);
    UNIT_RUN(test_counts_and_batched_releases);
    UNIT_RUN(test_client_gone_releases_everything);
    UNIT_RUN(test_upstream_gone);
    UNIT_RUN(test_limits);
    UNIT_RUN(test_shared_limit_and_interfaces);
    UNIT_RUN(test_churn);
    UNIT_RUN(test_scan);
    return unit_summary();
}

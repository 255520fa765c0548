/* fuzz_objects.c -- libFuzzer target for remote objects on the gateway side: the ext scan
 * (objects.c) on any bytes, and the per-connection tables (objtable.c) driven by any sequence
 * of operations.
 *
 * Properties: gg_get_ext reads no byte past its input and finds the data inside the value;
 * gg_obj_params_split finds the target's data and the name inside the params;
 * gg_objtab_release_params reads a $release list of any bytes; the scan never
 * reads past its input and counts no more ext values than there are bytes; the rewriter
 * (gg_obj_rewrite) visits exactly the values the scan counts, and with a map that copies each
 * value back unchanged it reproduces its input byte for byte; the tables never misroute (an id
 * resolves only in the client table that got it, to the upstream entry it was given for),
 * their sizes match what is in them, and everything is freed at the end (ASan's leak check). */
#include "core/buf.h"
#include "core/codec.h"
#include "core/objects.h"
#include "core/objtable.h"

#include <stdlib.h>
#include <string.h>

/* A map that writes each value back as it came: the payload under the same ext type. */
typedef struct copy_back {
    const gg_obj_ext *ext;
    uint32_t visits;
} copy_back;

static int copy_value(void *ud, int kind, const char *payload, size_t plen, gg_buf *out)
{
    copy_back *cb = ud;
    cb->visits++;
    int8_t t = kind == 0 ? cb->ext->object : kind == 1 ? cb->ext->yours : cb->ext->promise;
    return gg_obj_put_ext(out, t, payload, plen);
}

#define NCLIENTS 2
#define NGIVEN   64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    gg_obj_ext ext;
    gg_obj_seen seen;
    gg_obj_ext_default(&ext);
    int8_t et;
    const char *ed;
    size_t edl, el = gg_get_ext(buf, size, &et, &ed, &edl); /* the ext reader on any bytes */
    if (el > size || (el && (ed < buf || ed + edl != buf + el))) abort();
    gg_obj_params op; /* the $call / $get params splitter on any bytes */
    gg_obj_params_split(buf, size, &op);
    if (op.tl && (op.payload < buf || op.payload + op.plen > buf + size)) abort();
    if (op.nh && (op.name < buf || op.rest + op.rest_len != buf + size || op.rest < op.name))
        abort();
    int64_t rel = gg_objtab_release_params(NULL, buf, size); /* $release params, any bytes */
    if (rel < -1 || rel > (int64_t)size) abort();
    uint32_t n = gg_obj_scan(buf, size, &ext, &seen);
    if (n + seen.bad > size) abort();
    copy_back cb = {&ext, 0};
    gg_buf out = {0};
    int rc = gg_obj_rewrite(buf, size, &ext, copy_value, &cb, &out);
    if (rc == 0) {
        if (seen.bad || cb.visits != n) abort();
        /* Same bytes, except that an ext header may come back in its canonical width. */
        if (out.len > size + 5 * (size_t)n) abort();
        gg_obj_seen again;
        if (out.len ? gg_obj_scan(out.data, out.len, &ext, &again) != n : n != 0) abort();
    } else if (rc != GG_OBJ_RW_BAD || !seen.bad) {
        abort();
    }
    gg_buf_release(&out, NULL);
    free(buf);

    /* The same bytes as a program: each byte is an operation on the tables. */
    gg_objtab up, cl[NCLIENTS];
    gg_objtab_init(&up, GG_OBJ_UPSTREAM, 32);
    for (int i = 0; i < NCLIENTS; i++) gg_objtab_init(&cl[i], GG_OBJ_CLIENT, 16);
    struct {
        int64_t id;
        int client;
        gg_objent *src;
    } given[NGIVEN];
    int ngiven = 0, up_alive = 1;
    for (size_t i = 0; i < size; i++) {
        uint8_t op = data[i] >> 5, arg = data[i] & 31;
        int c = arg & 1, err = 0;
        if (op <= 2 && up_alive) { /* import arg, give to client c */
            gg_objent *u = gg_objtab_import(&up, arg, NULL, &err);
            if (!u) continue;
            int64_t id = gg_objtab_give(&cl[c], u);
            if (id > 0 && ngiven < NGIVEN) {
                given[ngiven].id = id;
                given[ngiven].client = c;
                given[ngiven].src = u;
                ngiven++;
            } else if (id <= 0) {
                gg_objtab_unused(u);
            }
        } else if (op <= 4 && ngiven) { /* release one reference of a given id (maybe over) */
            int k = arg % ngiven;
            gg_objtab_release(&cl[given[k].client], (uint64_t)given[k].id, (arg & 2) ? 1 : 2);
            ngiven = 0;                 /* entries may be freed now: forget them */
        } else if (op == 5 && ngiven) { /* resolve: in its own table only */
            int k = arg % ngiven;
            gg_objent *s = gg_objtab_resolve(&cl[given[k].client], (uint64_t)given[k].id, &err);
            if (s && s != given[k].src) abort();
            gg_objent *o = gg_objtab_resolve(&cl[!given[k].client], (uint64_t)given[k].id, &err);
            if (o && o->users == 0) abort();
        } else if (op == 6) {
            gg_objrel rel[8];
            gg_objtab_take(&up, rel, 1 + arg % 8);
        } else if (op == 7) {
            if (arg < 16 && up_alive) {
                gg_objtab_owner_gone(&up);
                up_alive = 0;
            } else {
                gg_objtab_clear(&cl[c]);
            }
            ngiven = 0;
        }
        for (int k = 0; k < NCLIENTS; k++)
            if (cl[k].len != cl[k].by_id.used || cl[k].len != cl[k].by_src.used) abort();
        if (up.len != up.by_id.used) abort();
    }
    for (int i = 0; i < NCLIENTS; i++) gg_objtab_free(&cl[i]);
    gg_objtab_free(&up);
    return 0;
}

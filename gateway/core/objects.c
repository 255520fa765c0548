/* objects.c -- remote objects on the wire: ext type numbers and the allocation-free scan; see
 * objects.h. */
#include "core/objects.h"
#include "core/buf.h"
#include "core/codec.h"
#include "core/mphead.h"

#include <stdio.h>
#include <string.h>

void gg_obj_ext_default(gg_obj_ext *ext)
{
    ext->object = GG_OBJ_EXT_OBJECT;
    ext->yours = GG_OBJ_EXT_YOURS;
    ext->promise = GG_OBJ_EXT_PROMISE;
}

int gg_obj_ext_check(const gg_obj_ext *ext, char *err, size_t errlen)
{
    const int8_t t[3] = {ext->object, ext->yours, ext->promise};
    for (int i = 0; i < 3; i++) {
        if (t[i] >= 0 && t[i] <= 2) {
            snprintf(err, errlen, "ext type %d is reserved (0-2 are neovim's handles)", t[i]);
            return -1;
        }
        for (int j = 0; j < i; j++) {
            if (t[i] == t[j]) {
                snprintf(err, errlen, "ext types must be distinct (%d twice)", t[i]);
                return -1;
            }
        }
    }
    return 0;
}

/* A payload of a remote-object ext must itself be a small MessagePack value: an integer id
 * (yours) or an array (object, promise). Only its first byte is checked here; the owner of
 * the tables decodes the rest. */
static int payload_ok(int kind, const uint8_t *p, size_t n)
{
    if (n == 0) return 0;
    uint8_t c = p[0];
    if (kind == 1) return c <= 0x7f || (c >= 0xcc && c <= 0xcf);
    return (c & 0xf0) == 0x90 || c == 0xdc;
}

/* Walk the values of data[0..len), calling visit for each remote-object ext value (kind 0
 * object, 1 yours, 2 promise; ok: its payload looks usable) with where it starts and ends.
 * A non-zero return of visit stops the walk and is returned. */
typedef int (*obj_visit)(void *ud, int kind, int ok, const uint8_t *start, const uint8_t *end,
                         const uint8_t *payload, size_t plen);

static int walk(const char *data, size_t len, const gg_obj_ext *ext, obj_visit visit, void *ud)
{
    const uint8_t *p = (const uint8_t *)data, *end = p + len;
    while (p < end) {
        size_t avail = (size_t)(end - p);
        uint64_t n = gg_mp_extent(p, avail);
        if (n == 0 || n > avail) return 0; /* 0xc1, or cut short: nothing more to find */
        int8_t t;
        const char *pl;
        size_t plen;
        if (gg_mp_is_ext(p[0]) && gg_get_ext((const char *)p, (size_t)n, &t, &pl, &plen)) {
            int kind = t == ext->object ? 0 : t == ext->yours ? 1 : t == ext->promise ? 2 : -1;
            if (kind >= 0) {
                const uint8_t *u = (const uint8_t *)pl;
                int rc = visit(ud, kind, payload_ok(kind, u, plen), p, p + n, u, plen);
                if (rc) return rc;
            }
        }
        p += n;
    }
    return 0;
}

static int count_one(void *ud, int kind, int ok, const uint8_t *start, const uint8_t *end,
                     const uint8_t *payload, size_t plen)
{
    gg_obj_seen *seen = ud;
    if (!ok)
        seen->bad++;
    else if (kind == 0)
        seen->objects++;
    else if (kind == 1)
        seen->yours++;
    else
        seen->promises++;
    return 0;
}

uint32_t gg_obj_scan(const char *data, size_t len, const gg_obj_ext *ext, gg_obj_seen *seen)
{
    memset(seen, 0, sizeof *seen);
    walk(data, len, ext, count_one, seen);
    return seen->objects + seen->yours + seen->promises;
}

/* gg_buf_append, except that nothing is appended (and no pointer computed) for n == 0. */
static int append(gg_buf *out, const void *p, size_t n)
{
    return n ? gg_buf_append(out, NULL, p, n) : 0;
}

typedef struct rewriter {
    gg_obj_map_fn fn;
    void *ud;
    gg_buf *out;
    const uint8_t *copied; /* input copied to out up to here */
} rewriter;

static int rewrite_one(void *ud, int kind, int ok, const uint8_t *start, const uint8_t *end,
                       const uint8_t *payload, size_t plen)
{
    rewriter *r = ud;
    if (append(r->out, r->copied, (size_t)(start - r->copied))) return GG_OBJ_RW_NOMEM;
    r->copied = end;
    if (!ok) return GG_OBJ_RW_BAD;
    return r->fn(r->ud, kind, (const char *)payload, plen, r->out);
}

int gg_obj_rewrite(const char *data, size_t len, const gg_obj_ext *ext, gg_obj_map_fn fn,
                   void *ud, gg_buf *out)
{
    rewriter r = {fn, ud, out, (const uint8_t *)data};
    int rc = walk(data, len, ext, rewrite_one, &r);
    if (rc) return rc;
    const uint8_t *end = (const uint8_t *)data + len;
    return append(out, r.copied, (size_t)(end - r.copied)) ? GG_OBJ_RW_NOMEM : 0;
}

int gg_obj_put_ext_hdr(gg_buf *out, int8_t type, size_t n)
{
    uint8_t h[6];
    size_t hl;
    if (n == 1 || n == 2 || n == 4 || n == 8 || n == 16) {
        h[0] = (uint8_t)(n == 1 ? 0xd4 : n == 2 ? 0xd5 : n == 4 ? 0xd6 : n == 8 ? 0xd7 : 0xd8);
        h[1] = (uint8_t)type;
        hl = 2;
    } else if (n <= 0xff) {
        h[0] = 0xc7, h[1] = (uint8_t)n, h[2] = (uint8_t)type, hl = 3;
    } else if (n <= 0xffff) {
        h[0] = 0xc8, h[1] = (uint8_t)(n >> 8), h[2] = (uint8_t)n, h[3] = (uint8_t)type, hl = 4;
    } else {
        h[0] = 0xc9, h[1] = (uint8_t)(n >> 24), h[2] = (uint8_t)(n >> 16), h[3] = (uint8_t)(n >> 8);
        h[4] = (uint8_t)n, h[5] = (uint8_t)type, hl = 6;
    }
    return gg_buf_append(out, NULL, h, hl) ? GG_OBJ_RW_NOMEM : 0;
}

int gg_obj_put_ext(gg_buf *out, int8_t type, const void *p, size_t n)
{
    if (gg_obj_put_ext_hdr(out, type, n) || append(out, p, n)) return GG_OBJ_RW_NOMEM;
    return 0;
}

/* MessagePack unsigned integer v into p; returns its length. */
size_t gg_obj_put_uint(uint8_t *p, uint64_t v)
{
    if (v <= 0x7f) {
        p[0] = (uint8_t)v;
        return 1;
    }
    if (v <= 0xffffffffu) {
        p[0] = 0xce;
        for (int i = 0; i < 4; i++) p[1 + i] = (uint8_t)(v >> (24 - 8 * i));
        return 5;
    }
    p[0] = 0xcf;
    for (int i = 0; i < 8; i++) p[1 + i] = (uint8_t)(v >> (56 - 8 * i));
    return 9;
}

/* An unsigned integer at p[0..n): its length, or 0 when it is not one. */
size_t gg_obj_get_uint(const uint8_t *p, size_t n, uint64_t *v)
{
    if (n < 1) return 0;
    uint8_t c = p[0];
    if (c <= 0x7f) {
        *v = c;
        return 1;
    }
    size_t w = c == 0xcc ? 1 : c == 0xcd ? 2 : c == 0xce ? 4 : c == 0xcf ? 8 : 0;
    if (!w || n < 1 + w) return 0;
    uint64_t x = 0;
    for (size_t i = 0; i < w; i++) x = x << 8 | p[1 + i];
    *v = x;
    return 1 + w;
}

void gg_obj_params_split(const char *params, size_t len, gg_obj_params *op)
{
    const uint8_t *p = (const uint8_t *)params;
    memset(op, 0, sizeof *op);
    op->n = len && (p[0] & 0xf0) == 0x90 ? p[0] & 0x0f : 0;
    if (op->n < 2) return;
    op->tl = gg_get_ext(params + 1, len - 1, &op->type, &op->payload, &op->plen);
    if (!op->tl) return;
    size_t at = 1 + op->tl;
    op->nh = gg_get_str(params + at, len - at, &op->name_len);
    if (!op->nh || op->name_len > len - at - op->nh) {
        op->nh = 0, op->name_len = 0;
        return;
    }
    op->name = params + at + op->nh;
    op->rest = op->name + op->name_len;
    op->rest_len = len - (size_t)(op->rest - params);
}

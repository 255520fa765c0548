/* objects.c -- remote objects on the wire: ext type numbers and the allocation-free scan; see
 * objects.h. */
#include "core/objects.h"

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

static inline uint32_t rd(const uint8_t *p, size_t w)
{
    return w == 1   ? p[0]
           : w == 2 ? (uint32_t)(p[0] << 8 | p[1])
                    : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
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

uint32_t gg_obj_scan(const char *data, size_t len, const gg_obj_ext *ext, gg_obj_seen *seen)
{
    const uint8_t *p = (const uint8_t *)data, *end = p + len;
    memset(seen, 0, sizeof *seen);
    while (p < end) {
        uint8_t c = *p++;
        size_t avail = (size_t)(end - p);
        size_t skip = 0, plen = 0, lw = 0;
        int is_ext = 0;
        if (c <= 0x7f || c >= 0xe0 || (c & 0xe0) == 0x80 || c == 0xc0 || c == 0xc2 || c == 0xc3)
            continue; /* fixint, fixmap, fixarray, nil, bool: the elements follow as values */
        if ((c & 0xe0) == 0xa0) {
            skip = c & 0x1f;
        } else if (c >= 0xd4 && c <= 0xd8) {
            is_ext = 1;
            plen = (size_t)1 << (c - 0xd4);
        } else {
            switch (c) {
            case 0xc4:
            case 0xd9:
                lw = 1;
                break;
            case 0xc5:
            case 0xda:
                lw = 2;
                break;
            case 0xc6:
            case 0xdb:
                lw = 4;
                break;
            case 0xc7:
                lw = 1, is_ext = 1;
                break;
            case 0xc8:
                lw = 2, is_ext = 1;
                break;
            case 0xc9:
                lw = 4, is_ext = 1;
                break;
            case 0xca:
            case 0xce:
            case 0xd2:
                skip = 4;
                break;
            case 0xcb:
            case 0xcf:
            case 0xd3:
                skip = 8;
                break;
            case 0xcc:
            case 0xd0:
                skip = 1;
                break;
            case 0xcd:
            case 0xd1:
                skip = 2;
                break;
            case 0xdc:
            case 0xde:
                skip = 2;
                break; /* counts: the elements follow */
            case 0xdd:
            case 0xdf:
                skip = 4;
                break;
            default:
                return seen->objects + seen->yours + seen->promises; /* 0xc1: stop */
            }
            if (lw) {
                if (avail < lw) break;
                size_t v = rd(p, lw);
                p += lw, avail -= lw;
                if (is_ext)
                    plen = v;
                else
                    skip = v;
            }
        }
        if (is_ext) {
            if (avail < 1 + plen) break;
            int8_t t = (int8_t)p[0];
            const uint8_t *pl = p + 1;
            int kind = t == ext->object ? 0 : t == ext->yours ? 1 : t == ext->promise ? 2 : -1;
            if (kind >= 0) {
                if (!payload_ok(kind, pl, plen))
                    seen->bad++;
                else if (kind == 0)
                    seen->objects++;
                else if (kind == 1)
                    seen->yours++;
                else
                    seen->promises++;
            }
            skip = 1 + plen;
        }
        if (skip > avail) break;
        p += skip;
    }
    return seen->objects + seen->yours + seen->promises;
}

/* objiface.c -- interfaces recorded at export; see objiface.h. */
#include "core/objiface.h"

#include <stdlib.h>
#include <string.h>

/* The string at p[0..n): its header length and *len, or 0 when p is not one. */
static size_t get_str(const uint8_t *p, size_t n, uint32_t *len)
{
    if (n < 1) return 0;
    if ((p[0] & 0xe0) == 0xa0) {
        *len = p[0] & 0x1f;
        return 1;
    }
    if (p[0] == 0xd9 && n >= 2) {
        *len = p[1];
        return 2;
    }
    if (p[0] == 0xda && n >= 3) {
        *len = (uint32_t)p[1] << 8 | p[2];
        return 3;
    }
    if (p[0] == 0xdb && n >= 5) {
        *len = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
        return 5;
    }
    return 0;
}

/* Walk the array of strings at p[0..n): calls match(name) for each until it returns 1.
 * Returns 1 when matched, 0 when walked to the end, -1 when p is not exactly such an array. */
static int walk(const uint8_t *p, size_t n, const char *name, uint32_t name_len)
{
    uint32_t count;
    size_t h;
    if (n >= 1 && (p[0] & 0xf0) == 0x90) count = p[0] & 0x0f, h = 1;
    else if (n >= 3 && p[0] == 0xdc) count = (uint32_t)p[1] << 8 | p[2], h = 3;
    else return -1;
    if (count > GG_OBJIFACE_MAX) return -1;
    size_t pos = h;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t sl;
        size_t sh = get_str(p + pos, n - pos, &sl);
        if (!sh || sl > n - pos - sh) return -1;
        if (name && sl == name_len && memcmp(p + pos + sh, name, sl) == 0) return 1;
        pos += sh + sl;
    }
    return pos == n ? 0 : -1;
}

int gg_objiface_valid(const char *p, size_t n)
{
    return n <= UINT32_MAX && walk((const uint8_t *)p, n, NULL, 0) == 0;
}

gg_objiface *gg_objiface_new(const char *p, size_t n)
{
    if (!gg_objiface_valid(p, n)) return NULL;
    gg_objiface *f = malloc(sizeof *f + n);
    if (!f) return NULL;
    f->len = (uint32_t)n;
    memcpy(f->bytes, p, n);
    return f;
}

int gg_objiface_has(const gg_objiface *f, const char *name, uint32_t len)
{
    return f && walk((const uint8_t *)f->bytes, f->len, name, len) == 1;
}

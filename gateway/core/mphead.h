/* mphead.h -- what the first byte of a MessagePack value says follows it: the one table the
 * scanner (codec.c), the remote-object walker (objects.c) and the Lua codec's value count
 * (lua_msgpack.c) read. Inline: the scanner runs it for every value of every message. */
#ifndef GG_MPHEAD_H
#define GG_MPHEAD_H

#include <stddef.h>
#include <stdint.h>

static inline uint32_t gg_be16(const uint8_t *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static inline uint32_t gg_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t gg_be64(const uint8_t *p)
{
    return (uint64_t)gg_be32(p) << 32 | gg_be32(p + 4);
}

/* Whether c starts an ext value (fixext 1-16, ext 8/16/32). */
static inline int gg_mp_is_ext(uint8_t c)
{
    return (c >= 0xd4 && c <= 0xd8) || (c >= 0xc7 && c <= 0xc9);
}

#define GG_MP_SCALAR    0
#define GG_MP_CONTAINER 1
#define GG_MP_SHORT     2 /* the header is not all in avail yet */
#define GG_MP_BAD       3 /* 0xc1, never used */

/* The header of the value at p (avail >= 1 bytes there): *hdr its bytes (a fixext's type and
 * data included), *payload the raw bytes after it (str, bin, ext), *elems the values a
 * container holds (2n for a map of n). For a fixed-size scalar *hdr is set without reading
 * past p[0], so it may exceed avail. */
static inline int gg_mp_head(const uint8_t *p, size_t avail, size_t *hdr, uint64_t *payload,
                             uint64_t *elems)
{
    uint8_t b = p[0];
    *payload = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        *hdr = 1;
        return GG_MP_SCALAR;
    }
    if (b >= 0xa0 && b <= 0xbf) {
        *hdr = 1;
        *payload = b & 0x1f;
        return GG_MP_SCALAR;
    }
    if (b >= 0x90 && b <= 0x9f) {
        *hdr = 1;
        *elems = b & 0x0f;
        return GG_MP_CONTAINER;
    }
    if (b >= 0x80 && b <= 0x8f) {
        *hdr = 1;
        *elems = (uint64_t)(b & 0x0f) * 2;
        return GG_MP_CONTAINER;
    }
    /* clang-format off */
    switch (b) {
    case 0xc4: case 0xd9: *hdr = 2; break; /* bin8, str8 */
    case 0xc5: case 0xda: *hdr = 3; break; /* bin16, str16 */
    case 0xc6: case 0xdb: *hdr = 5; break; /* bin32, str32 */
    case 0xc7: *hdr = 3; break;            /* ext8: len, type */
    case 0xc8: *hdr = 4; break;
    case 0xc9: *hdr = 6; break;
    case 0xca: *hdr = 5; return GG_MP_SCALAR;
    case 0xcb: *hdr = 9; return GG_MP_SCALAR;
    case 0xcc: case 0xd0: *hdr = 2; return GG_MP_SCALAR;
    case 0xcd: case 0xd1: *hdr = 3; return GG_MP_SCALAR;
    case 0xce: case 0xd2: *hdr = 5; return GG_MP_SCALAR;
    case 0xcf: case 0xd3: *hdr = 9; return GG_MP_SCALAR;
    case 0xd4: *hdr = 3; return GG_MP_SCALAR;  /* fixext1: type, 1 byte */
    case 0xd5: *hdr = 4; return GG_MP_SCALAR;
    case 0xd6: *hdr = 6; return GG_MP_SCALAR;
    case 0xd7: *hdr = 10; return GG_MP_SCALAR;
    case 0xd8: *hdr = 18; return GG_MP_SCALAR;
    case 0xdc: case 0xde: *hdr = 3; break;
    case 0xdd: case 0xdf: *hdr = 5; break;
    default: return GG_MP_BAD;
    }
    if (avail < *hdr) return GG_MP_SHORT;
    switch (b) {
    case 0xc4: case 0xd9: case 0xc7: *payload = p[1]; return GG_MP_SCALAR;
    case 0xc5: case 0xda: case 0xc8: *payload = gg_be16(p + 1); return GG_MP_SCALAR;
    case 0xc6: case 0xdb: case 0xc9: *payload = gg_be32(p + 1); return GG_MP_SCALAR;
    case 0xdc: *elems = gg_be16(p + 1); return GG_MP_CONTAINER;
    case 0xdd: *elems = gg_be32(p + 1); return GG_MP_CONTAINER;
    case 0xde: *elems = (uint64_t)gg_be16(p + 1) * 2; return GG_MP_CONTAINER;
    default: *elems = (uint64_t)gg_be32(p + 1) * 2; return GG_MP_CONTAINER; /* 0xdf */
    }
    /* clang-format on */
}

/* The bytes of the value at p that are not values themselves: its header and payload (an
 * array's or a map's elements follow as values, with headers of their own). More than avail
 * when the value is cut short; 0 for 0xc1, which no value starts with. */
static inline uint64_t gg_mp_extent(const uint8_t *p, size_t avail)
{
    size_t hdr;
    uint64_t payload, elems;
    int t = gg_mp_head(p, avail, &hdr, &payload, &elems);
    if (t == GG_MP_BAD) return 0;
    return t == GG_MP_SHORT ? (uint64_t)avail + 1 : hdr + payload;
}

#endif

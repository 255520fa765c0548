/* utf8.h -- UTF-8 validation shared by the method-name check (codec.c) and the logger. */
#ifndef GG_UTF8_H
#define GG_UTF8_H

#include <stddef.h>

/* Bytes of the valid UTF-8 sequence at s (n > 0 bytes available), or 0: by RFC 3629, no
 * overlongs, no surrogates, nothing above U+10FFFF. ASCII is a sequence of 1. */
static inline size_t gg_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t len;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t k = 2; k < len; k++)
        if ((s[k] & 0xc0) != 0x80) return 0;
    return len;
}

/* Whether the valid sequence at s is a C1 control character (U+0080..U+009F). */
static inline int gg_utf8_is_c1(const unsigned char *s)
{
    return s[0] == 0xc2 && s[1] < 0xa0;
}

#endif

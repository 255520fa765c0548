/* codec.c -- bounded MessagePack-RPC scanner and envelope writers. See codec.h. */
#include "core/codec.h"
#include "core/mphead.h"
#include "core/utf8.h"

#include <string.h>

static inline size_t get_uint(const char *s, size_t len, uint64_t *out);
static inline size_t get_str(const char *s, size_t len, uint32_t *n);

void gg_scan_reset(gg_scan_state *st)
{
    st->pos = 0;
    st->need = 0;
    st->depth = 1;
    st->index = 0;
    st->left[0] = 1; /* one top-level object */
    memset(&st->msg, 0, sizeof st->msg);
    st->msg.type = -1;
}

/* Record what element `index` of the top-level array tells about the envelope. Only
 * complete scalars reach here, so every field is captured at most once. */
static void capture(gg_scan_state *st, size_t pos, const uint8_t *p, size_t n)
{
    gg_msg *m = &st->msg;
    uint64_t v;
    uint32_t slen;
    size_t h;
    switch (st->index) {
    case 0:
        if (get_uint((const char *)p, n, &v) && v <= 2) m->type = (int)v;
        break;
    case 1:
        if (m->type == GG_NOTIFY) goto method;
        if (get_uint((const char *)p, n, &v) && v <= UINT32_MAX) {
            m->has_id = 1;
            m->msgid = (uint32_t)v;
        }
        break;
    case 2:
        if (m->type == GG_NOTIFY) {
            m->body_off = (uint32_t)pos;
            m->body_first = p[0];
            break;
        }
        if (m->type == GG_RESPONSE) {
            m->body_off = (uint32_t)pos;
            break;
        }
    method:
        h = get_str((const char *)p, n, &slen);
        if (h && p[0] != 0xc7 && h + slen == n) {
            m->has_method = 1;
            m->method_off = (uint32_t)(pos + h);
            m->method_len = slen;
            m->method_flaw = (uint8_t)gg_method_check((const char *)p + h, slen, &m->method_dot);
        }
        break;
    case 3:
        if (m->type == GG_REQUEST) {
            m->body_off = (uint32_t)pos;
            m->body_first = p[0];
        }
        break;
    }
}

int gg_scan(gg_scan_state *st, const char *buf, size_t len, const gg_scan_limits *lim)
{
    const uint8_t *b = (const uint8_t *)buf;
    const size_t max = lim->max_message;
    const uint32_t max_depth = lim->max_depth > GG_DEPTH_CAP ? GG_DEPTH_CAP : lim->max_depth;
    /* The walk runs on locals and stores them back once: this loop is most of the cost of
     * reading a message. */
    size_t pos = st->pos;
    uint32_t depth = st->depth;
    uint32_t *left = st->left;
    int rc;

    /* Nearly every message starts [0, msgid, "method", or [1, msgid, : read that envelope in
     * straight-line code, then walk the rest (params, or error and result) as usual. Anything
     * else, or an envelope not all here yet, takes the general walk from the start. */
    if (pos == 0 && len >= 4 && b[0] == 0x94 && b[1] <= GG_RESPONSE) {
        uint64_t id;
        size_t p = 2, n = get_uint(buf + p, len - p, &id);
        if (n && id <= UINT32_MAX) {
            gg_msg *m = &st->msg;
            p += n;
            uint32_t slen = 0;
            size_t h = b[1] == GG_REQUEST && p < len ? get_str(buf + p, len - p, &slen) : 0;
            if (b[1] == GG_RESPONSE || (h && p + h + slen <= len)) {
                m->is_array = 1;
                m->count = 4;
                m->type = b[1];
                m->has_id = 1;
                m->msgid = (uint32_t)id;
                if (b[1] == GG_REQUEST) {
                    m->has_method = 1;
                    m->method_off = (uint32_t)(p + h);
                    m->method_len = slen;
                    m->method_flaw =
                        (uint8_t)gg_method_check(buf + p + h, slen, &m->method_dot);
                    p += h + slen;
                }
                /* the top-level array is open with what follows still to walk */
                left[0] = 0;
                left[1] = b[1] == GG_REQUEST ? 1 : 2;
                depth = 2;
                st->index = b[1] == GG_REQUEST ? 3 : 2;
                pos = p;
            }
        }
    }

    while (depth > 0) {
        if (left[depth - 1] == 0) {
            depth--;
            continue;
        }
        /* Past the limit nothing can be valid: say so whether or not the bytes are here yet, so
         * that the verdict does not depend on how the stream was split. */
        if (pos >= max) {
            rc = GG_ETOOBIG;
            goto out;
        }
        if (pos >= len) {
            st->need = pos + 1;
            goto more;
        }
        uint8_t c = b[pos];
        size_t hdr;
        uint64_t payload = 0, elems = 0;
        int kind;
        /* The common one-byte scalars and short strings, before the general decoder. */
        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
            hdr = 1;
            kind = GG_MP_SCALAR;
        } else if ((c & 0xe0) == 0xa0) {
            hdr = 1;
            payload = c & 0x1f;
            kind = GG_MP_SCALAR;
        } else {
            kind = gg_mp_head(b + pos, len - pos, &hdr, &payload, &elems);
            if (kind == GG_MP_BAD) {
                rc = GG_EMALFORMED;
                goto out;
            }
            if (kind == GG_MP_SHORT) {
                st->need = pos + hdr;
                goto more;
            }
        }
        /* The only place a claimed size is trusted, so check it against the limit first. */
        uint64_t end = (uint64_t)pos + hdr + payload;
        if (end > max) {
            rc = GG_ETOOBIG;
            goto out;
        }
        int top_elem = depth == 2 && st->index < 4 && st->msg.is_array;
        if (kind == GG_MP_CONTAINER) {
            if (pos + hdr > len) {
                st->need = pos + hdr;
                goto more;
            }
            /* Every element takes at least one byte, so a count larger than the room left
             * under the limit is a lie: refuse it before it is ever used. */
            if (elems > max - end) {
                rc = GG_ETOOBIG;
                goto out;
            }
            if (depth > max_depth) {
                rc = GG_ETOODEEP;
                goto out;
            }
            if (depth == 1) {
                st->msg.is_array = c <= 0x9f || c == 0xdc || c == 0xdd;
                st->msg.count = (uint32_t)elems;
            } else if (top_elem) {
                capture(st, pos, b + pos, hdr);
            }
            if (depth == 2) st->index++;
            left[depth - 1]--;
            left[depth++] = (uint32_t)elems;
            pos = (size_t)end;
            continue;
        }
        if (end > len) {
            st->need = (size_t)end;
            goto more;
        }
        if (top_elem) capture(st, pos, b + pos, (size_t)(end - pos));
        if (depth == 2) st->index++;
        left[depth - 1]--;
        pos = (size_t)end;
    }
    st->msg.size = pos;
    rc = GG_SCAN_DONE;
    goto out;
more:
    rc = st->need > max ? GG_ETOOBIG : GG_SCAN_MORE;
out:
    st->pos = pos;
    st->depth = depth;
    return rc;
}

const char *gg_msg_invalid(const gg_msg *m)
{
    if (!m->is_array) return "message is not an array";
    switch (m->type) {
    case GG_REQUEST:
        if (m->count != 4) return "request must have 4 elements";
        if (!m->has_id) return "msgid must be an unsigned 32-bit integer";
        if (!m->has_method) return "method must be a string";
        break;
    case GG_RESPONSE:
        if (m->count != 4) return "response must have 4 elements";
        if (!m->has_id) return "msgid must be an unsigned 32-bit integer";
        return NULL;
    case GG_NOTIFY:
        if (m->count != 3) return "notification must have 3 elements";
        if (!m->has_method) return "method must be a string";
        break;
    default:
        return "message type must be 0, 1 or 2";
    }
    if (m->method_len == 0) return "method is empty";
    if (m->method_len > GG_METHOD_MAX) return "method name is too long";
    uint8_t f = m->body_first;
    if (!((f >= 0x90 && f <= 0x9f) || f == 0xdc || f == 0xdd)) return "params must be an array";
    return NULL;
}

int gg_method_check(const char *s, uint32_t n, uint32_t *dot)
{
    const uint8_t *p = (const uint8_t *)s;
    int flaw = GG_NAME_OK;
    *dot = n;
    /* Longer names are refused by gg_msg_invalid anyway: do not walk a claimed megabyte. */
    if (n > GG_METHOD_MAX) return GG_NAME_OK;
    const char *d = memchr(s, '.', n);
    if (d) *dot = (uint32_t)(d - s);
    int seg_start = 1;
    uint32_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (seg_start) {
            if (c == '.') flaw = GG_NAME_EMPTY;
            else if (c == '_' && flaw < GG_NAME_PRIVATE) flaw = GG_NAME_PRIVATE;
        }
        seg_start = c == '.';
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f) return GG_NAME_CONTROL;
            i++;
            continue;
        }
        size_t len = gg_utf8_len(p + i, n - i);
        if (!len) return GG_NAME_UTF8;
        if (gg_utf8_is_c1(p + i)) return GG_NAME_CONTROL;
        i += (uint32_t)len;
    }
    if (seg_start) flaw = GG_NAME_EMPTY; /* "" or a trailing '.' */
    return flaw;
}

const char *gg_method_flaw_reason(int flaw)
{
    switch (flaw) {
    case GG_NAME_PRIVATE: return "method is not public (a name segment starts with '_')";
    case GG_NAME_EMPTY: return "method name has an empty segment";
    case GG_NAME_CONTROL: return "method name contains a control character";
    case GG_NAME_UTF8: return "method name is not valid UTF-8";
    default: return "";
    }
}

static inline size_t get_uint(const char *s, size_t len, uint64_t *out)
{
    const uint8_t *p = (const uint8_t *)s;
    if (len == 0) return 0;
    uint8_t b = p[0];
    if (b <= 0x7f) {
        *out = b;
        return 1;
    }
    size_t n;
    int sign = 0;
    switch (b) {
    case 0xcc: n = 1; break;
    case 0xcd: n = 2; break;
    case 0xce: n = 4; break;
    case 0xcf: n = 8; break;
    case 0xd0: n = 1; sign = 1; break;
    case 0xd1: n = 2; sign = 1; break;
    case 0xd2: n = 4; sign = 1; break;
    case 0xd3: n = 8; sign = 1; break;
    default: return 0;
    }
    if (len < 1 + n) return 0;
    uint64_t v;
    switch (n) {
    case 1: v = p[1]; break;
    case 2: v = gg_be16(p + 1); break;
    case 4: v = gg_be32(p + 1); break;
    default: v = gg_be64(p + 1); break;
    }
    if (sign && (v >> (n * 8 - 1)) & 1) return 0; /* negative */
    *out = v;
    return 1 + n;
}

static inline size_t get_str(const char *s, size_t len, uint32_t *n)
{
    const uint8_t *p = (const uint8_t *)s;
    if (len == 0) return 0;
    uint8_t b = p[0];
    if (b >= 0xa0 && b <= 0xbf) {
        *n = b & 0x1f;
        return 1;
    }
    switch (b) {
    case 0xc4: case 0xd9:
        if (len < 2) return 0;
        *n = p[1];
        return 2;
    case 0xc5: case 0xda:
        if (len < 3) return 0;
        *n = gg_be16(p + 1);
        return 3;
    case 0xc6: case 0xdb:
        if (len < 5) return 0;
        *n = gg_be32(p + 1);
        return 5;
    }
    return 0;
}

static inline void put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

size_t gg_put_uint(char *s, uint64_t v)
{
    uint8_t *p = (uint8_t *)s;
    if (v <= 0x7f) {
        p[0] = (uint8_t)v;
        return 1;
    }
    if (v <= 0xff) {
        p[0] = 0xcc;
        p[1] = (uint8_t)v;
        return 2;
    }
    if (v <= 0xffff) {
        p[0] = 0xcd;
        put16(p + 1, (uint32_t)v);
        return 3;
    }
    if (v <= 0xffffffffu) {
        p[0] = 0xce;
        put32(p + 1, (uint32_t)v);
        return 5;
    }
    p[0] = 0xcf;
    put32(p + 1, (uint32_t)(v >> 32));
    put32(p + 5, (uint32_t)v);
    return 9;
}

size_t gg_put_int(char *s, int64_t v)
{
    uint8_t *p = (uint8_t *)s;
    if (v >= 0) return gg_put_uint(s, (uint64_t)v);
    if (v >= -32) {
        p[0] = (uint8_t)(int8_t)v;
        return 1;
    }
    if (v >= INT8_MIN) {
        p[0] = 0xd0;
        p[1] = (uint8_t)(int8_t)v;
        return 2;
    }
    if (v >= INT16_MIN) {
        p[0] = 0xd1;
        put16(p + 1, (uint16_t)(int16_t)v);
        return 3;
    }
    if (v >= INT32_MIN) {
        p[0] = 0xd2;
        put32(p + 1, (uint32_t)(int32_t)v);
        return 5;
    }
    uint64_t u = (uint64_t)v;
    p[0] = 0xd3;
    put32(p + 1, (uint32_t)(u >> 32));
    put32(p + 5, (uint32_t)u);
    return 9;
}

static size_t put_len_hdr(uint8_t *p, uint32_t n, uint8_t fix, uint32_t fixmax, uint8_t c8,
                          uint8_t c16, uint8_t c32)
{
    if (n <= fixmax) {
        p[0] = (uint8_t)(fix | n);
        return 1;
    }
    if (c8 && n <= 0xff) {
        p[0] = c8;
        p[1] = (uint8_t)n;
        return 2;
    }
    if (n <= 0xffff) {
        p[0] = c16;
        put16(p + 1, n);
        return 3;
    }
    p[0] = c32;
    put32(p + 1, n);
    return 5;
}

size_t gg_put_str_hdr(char *p, uint32_t len)
{
    return put_len_hdr((uint8_t *)p, len, 0xa0, 31, 0xd9, 0xda, 0xdb);
}

size_t gg_put_bin_hdr(char *p, uint32_t len)
{
    /* bin has no fix form: fixmax 0 with fix 0xc4 would be wrong, so write bin8 for 0. */
    uint8_t *u = (uint8_t *)p;
    if (len <= 0xff) {
        u[0] = 0xc4;
        u[1] = (uint8_t)len;
        return 2;
    }
    return put_len_hdr(u, len, 0, 0, 0, 0xc5, 0xc6) ;
}

size_t gg_put_array_hdr(char *p, uint32_t n)
{
    return put_len_hdr((uint8_t *)p, n, 0x90, 15, 0, 0xdc, 0xdd);
}

size_t gg_put_map_hdr(char *p, uint32_t n)
{
    return put_len_hdr((uint8_t *)p, n, 0x80, 15, 0, 0xde, 0xdf);
}

size_t gg_put_request_hdr(char *s, uint32_t msgid, const char *method, uint32_t method_len)
{
    uint8_t *p = (uint8_t *)s;
    p[0] = 0x94;
    p[1] = 0x00;
    p[2] = 0xce;
    put32(p + 3, msgid);
    size_t n = 7 + gg_put_str_hdr(s + 7, method_len);
    memcpy(s + n, method, method_len);
    return n + method_len;
}

size_t gg_put_notify_hdr(char *s, const char *method, uint32_t method_len)
{
    s[0] = (char)0x93;
    s[1] = GG_NOTIFY;
    size_t n = 2 + gg_put_str_hdr(s + 2, method_len);
    memcpy(s + n, method, method_len);
    return n + method_len;
}

size_t gg_put_response_hdr(char *s, uint32_t msgid)
{
    s[0] = (char)0x94;
    s[1] = 0x01;
    return 2 + gg_put_uint(s + 2, msgid);
}

size_t gg_get_uint(const char *s, size_t len, uint64_t *out)
{
    return get_uint(s, len, out);
}

size_t gg_get_str(const char *s, size_t len, uint32_t *n)
{
    return get_str(s, len, n);
}

size_t gg_get_ext(const char *s, size_t len, int8_t *type, const char **data, size_t *dlen)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t hdr;
    uint64_t payload, elems;
    if (len < 2 || !gg_mp_is_ext(p[0])) return 0;
    if (gg_mp_head(p, len, &hdr, &payload, &elems) != GG_MP_SCALAR || hdr > len ||
        payload > len - hdr)
        return 0;
    if (p[0] >= 0xd4) { /* fixext: type and data are in the header */
        *type = (int8_t)p[1];
        *data = s + 2;
        *dlen = hdr - 2;
    } else {
        *type = (int8_t)p[hdr - 1];
        *data = s + hdr;
        *dlen = (size_t)payload;
    }
    return hdr + (size_t)payload;
}

size_t gg_get_array(const char *s, size_t len, uint32_t *n)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t hdr;
    uint64_t payload, elems;
    if (len == 0 || ((p[0] & 0xf0) != 0x90 && p[0] != 0xdc && p[0] != 0xdd)) return 0;
    if (gg_mp_head(p, len, &hdr, &payload, &elems) != GG_MP_CONTAINER) return 0;
    *n = (uint32_t)elems;
    return hdr;
}

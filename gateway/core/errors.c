/* errors.c -- error names and the error response writer. */
#include "core/errors.h"
#include "core/codec.h"
#include "core/stream.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *gg_error_type(int code)
{
    switch (code) {
#define GG_ERR_CASE_(name, c, type)                                                                \
    case c:                                                                                        \
        return type;
        GG_ERRORS(GG_ERR_CASE_)
#undef GG_ERR_CASE_
    default:
        return "internal";
    }
}

static size_t put_str(char *p, const char *s, size_t n)
{
    size_t h = gg_put_str_hdr(p, (uint32_t)n);
    memcpy(p + h, s, n);
    return h + n;
}

int gg_reply_error_full(gg_stream *s, uint32_t msgid, int code, double retry_after,
                        const char *message)
{
    return gg_reply_error_typed(s, msgid, code, gg_error_type(code), retry_after, message);
}

int gg_reply_error_typed(gg_stream *s, uint32_t msgid, int code, const char *type,
                         double retry_after, const char *message)
{
    size_t mn = strlen(message);
    if (mn > 1024) mn = 1024;
    char *p = gg_stream_reserve(s, GG_RESPONSE_HDR_MAX + 96 + strlen(type) + mn);
    if (!p) return -1;
    size_t n = gg_put_response_hdr(p, msgid);
    n += gg_put_map_hdr(p + n, retry_after >= 0 ? 4 : 3);
    n += put_str(p + n, "code", 4);
    n += gg_put_int(p + n, code);
    n += put_str(p + n, "type", 4);
    n += put_str(p + n, type, strlen(type));
    n += put_str(p + n, "message", 7);
    n += put_str(p + n, message, mn);
    if (retry_after >= 0) {
        n += put_str(p + n, "retry_after", 11);
        p[n++] = (char)0xcb; /* float64, big-endian */
        union {
            double d;
            uint64_t u;
        } v = {.d = retry_after};
        for (int i = 7; i >= 0; i--) p[n++] = (char)(v.u >> (i * 8));
    }
    p[n++] = (char)0xc0; /* result: nil */
    gg_stream_commit(s, n);
    return 0;
}

int gg_reply_error(gg_stream *s, uint32_t msgid, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int mn = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (mn < 0) msg[0] = 0;
    return gg_reply_error_full(s, msgid, code, -1, msg);
}

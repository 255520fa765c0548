/* log.c -- the one logger: a whole line per write(2), so concurrent writers never interleave.
 *
 * Every string a line carries is escaped here, so that no value (a client's method name, an
 * upstream's body, a policy's message) can end the line early or fake a key: see log.h for
 * the rules. The format is walked by hand for that; numbers still go through snprintf. */
#include "core/log.h"
#include "core/utf8.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 2048

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int gg_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0) return i;
    return -1;
}

typedef struct line_buf {
    char *p;
    size_t n, cap; /* cap leaves room for the newline */
} line_buf;

static void put(line_buf *b, const char *s, size_t n)
{
    if (n > b->cap - b->n) n = b->cap - b->n; /* truncated: still one line */
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void putc_(line_buf *b, char c)
{
    if (b->n < b->cap) b->p[b->n++] = c;
}

#define CTX_TEXT   0 /* free text: controls and backslashes escaped, quotes kept */
#define CTX_QUOTED 1 /* inside "...": quotes escaped too */
#define CTX_VALUE  2 /* after key=: quoted (and escaped) when it is not one plain word */

/* Whether a key=value value must be quoted to stay one value. */
static int needs_quotes(const unsigned char *s, size_t n)
{
    if (n == 0) return 1;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] == '"' || s[i] == '=' || s[i] == '\\' || s[i] >= 0x7f) return 1;
    return 0;
}

/* Append s[0..n) escaped for ctx: \" \\ \n \r \t, other control bytes and bytes that are not
 * UTF-8 as \xNN; valid UTF-8 stays readable. */
static void put_escaped(line_buf *b, const char *str, size_t n, int ctx)
{
    const unsigned char *s = (const unsigned char *)str;
    int quote = ctx == CTX_VALUE && needs_quotes(s, n);
    if (quote) putc_(b, '"');
    for (size_t i = 0; i < n && b->n < b->cap;) {
        unsigned char c = s[i];
        char esc[5] = {'\\', 0, 0, 0, 0};
        size_t en = 2;
        if (c >= 0x80) {
            size_t u = gg_utf8_len(s + i, n - i);
            if (u && !gg_utf8_is_c1(s + i)) { /* a C1 control is shown as \xc2\x85 */
                put(b, str + i, u);
                i += u;
                continue;
            }
        }
        if (c == '"' && (quote || ctx == CTX_QUOTED))
            esc[1] = '"';
        else if (c == '\\')
            esc[1] = '\\';
        else if (c == '\n')
            esc[1] = 'n';
        else if (c == '\r')
            esc[1] = 'r';
        else if (c == '\t')
            esc[1] = 't';
        else if (c < 0x20 || c >= 0x7f) {
            static const char hex[] = "0123456789abcdef";
            esc[1] = 'x', esc[2] = hex[c >> 4], esc[3] = hex[c & 15], en = 4;
        } else {
            putc_(b, (char)c);
            i++;
            continue;
        }
        put(b, esc, en);
        i++;
    }
    if (quote) putc_(b, '"');
}

/* Format fmt into b, escaping every %s argument by where it stands (log.h). Conversions other
 * than s are handed to snprintf one at a time with their own argument type. */
static void format_line(line_buf *b, const char *fmt, va_list ap)
{
    const char *f = fmt;
    while (*f && b->n < b->cap) {
        if (*f != '%') {
            const char *pct = strchr(f, '%');
            size_t n = pct ? (size_t)(pct - f) : strlen(f);
            put(b, f, n);
            f += n;
            continue;
        }
        const char *start = f++;
        if (*f == '%') {
            putc_(b, '%');
            f++;
            continue;
        }
        char spec[48];
        size_t sn = 0;
        spec[sn++] = '%';
        while (*f && strchr("-+ #0", *f) && sn < 8) spec[sn++] = *f++;
        int width = -1, prec = -1;
        if (*f == '*') {
            width = va_arg(ap, int);
            f++;
        } else if (*f >= '0' && *f <= '9') {
            for (width = 0; *f >= '0' && *f <= '9' && width < 10000; f++)
                width = width * 10 + (*f - '0');
        }
        if (*f == '.') {
            f++;
            if (*f == '*') {
                prec = va_arg(ap, int);
                f++;
            } else {
                for (prec = 0; *f >= '0' && *f <= '9' && prec < 10000; f++)
                    prec = prec * 10 + (*f - '0');
            }
        }
        int longs = 0, sz = 0;
        for (; *f == 'l' || *f == 'z' || *f == 'h'; f++) { /* h and hh: the argument is an int */
            if (*f == 'l') longs++;
            if (*f == 'z') sz = 1;
        }
        char conv = *f ? *f++ : 0;
        if (conv == 's') {
            const char *s = va_arg(ap, const char *);
            if (!s) s = "(null)";
            size_t n = prec >= 0 ? strnlen(s, (size_t)prec) : strlen(s);
            char before = start > fmt ? start[-1] : 0;
            put_escaped(b, s, n, before == '"' ? CTX_QUOTED : before == '=' ? CTX_VALUE : CTX_TEXT);
            continue;
        }
        if (width >= 0) sn += (size_t)snprintf(spec + sn, sizeof spec - sn, "%d", width);
        if (prec >= 0) sn += (size_t)snprintf(spec + sn, sizeof spec - sn, ".%d", prec);
        if (sz) spec[sn++] = 'z';
        for (int i = 0; i < longs && i < 2; i++) spec[sn++] = 'l';
        spec[sn++] = conv;
        spec[sn] = 0;
        char num[64];
        int m = 0;
        switch (conv) {
        case 'd':
        case 'i':
            if (sz)
                m = snprintf(num, sizeof num, spec, va_arg(ap, ssize_t));
            else if (longs >= 2)
                m = snprintf(num, sizeof num, spec, va_arg(ap, long long));
            else if (longs == 1)
                m = snprintf(num, sizeof num, spec, va_arg(ap, long));
            else
                m = snprintf(num, sizeof num, spec, va_arg(ap, int)); /* h, hh promote */
            break;
        case 'u':
        case 'x':
        case 'X':
        case 'o':
            if (sz)
                m = snprintf(num, sizeof num, spec, va_arg(ap, size_t));
            else if (longs >= 2)
                m = snprintf(num, sizeof num, spec, va_arg(ap, unsigned long long));
            else if (longs == 1)
                m = snprintf(num, sizeof num, spec, va_arg(ap, unsigned long));
            else
                m = snprintf(num, sizeof num, spec, va_arg(ap, unsigned));
            break;
        case 'f':
        case 'F':
        case 'e':
        case 'E':
        case 'g':
        case 'G':
            m = snprintf(num, sizeof num, spec, va_arg(ap, double));
            break;
        case 'c':
            m = snprintf(num, sizeof num, spec, va_arg(ap, int));
            break;
        case 'p':
            m = snprintf(num, sizeof num, spec, va_arg(ap, void *));
            break;
        default: /* not a conversion the gateway uses: show it, consume nothing */
            m = snprintf(num, sizeof num, "%.*s", (int)(f - start), start);
            break;
        }
        if (m > 0) put(b, num, (size_t)m < sizeof num ? (size_t)m : sizeof num - 1);
    }
}

void gg_log_write(const gg_logger *lg, int level, const char *event, const char *fmt, ...)
{
    char line[LINE_MAX_BYTES];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    line_buf b = {line, 0, sizeof line - 1};
    b.n = (size_t)snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s ",
                           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                           tm.tm_sec, (int)(tv.tv_usec / 1000), level_names[level]);
    put_escaped(&b, event, strlen(event), CTX_VALUE); /* a policy's host.log names its event */
    if (fmt) {
        putc_(&b, ' ');
        va_list ap;
        va_start(ap, fmt);
        format_line(&b, fmt, ap);
        va_end(ap);
    }
    line[b.n++] = '\n';
    ssize_t w = write(lg->fd, line, b.n);
    (void)w; /* nowhere to report a failed log write */
}

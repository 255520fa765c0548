/* buf.c -- byte buffers backed by a pool of chunks; see buf.h. */
#include "core/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The pool recycles chunks behind malloc's back, so AddressSanitizer cannot see a buffer used
 * after it went back: another connection's bytes would be read or overwritten in silence. In a
 * sanitizer build a spare chunk is poisoned while it waits in the pool, and a chunk given back
 * twice (two owners) stops the process. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POOL_POISON(c, n)   ASAN_POISON_MEMORY_REGION((c), (n))
#define POOL_UNPOISON(c, n) ASAN_UNPOISON_MEMORY_REGION((c), (n))
static void pool_check_once(const gg_bufpool *p, const char *c)
{
    for (size_t i = 0; i < p->nfree; i++)
        if (p->free[i] == c) {
            fprintf(stderr, "gg_bufpool: chunk %p given back twice\n", (const void *)c);
            abort();
        }
}
#else
#define POOL_POISON(c, n)   ((void)(c), (void)(n))
#define POOL_UNPOISON(c, n) ((void)(c), (void)(n))
#define pool_check_once(p, c) ((void)(p), (void)(c))
#endif

int gg_bufpool_init(gg_bufpool *p, size_t chunk, size_t max_free)
{
    p->chunk = chunk;
    p->nfree = 0;
    p->max_free = max_free;
    p->free = malloc(sizeof(char *) * (max_free ? max_free : 1));
    return p->free ? 0 : -1;
}

void gg_bufpool_free(gg_bufpool *p)
{
    while (p->nfree) {
        char *c = p->free[--p->nfree];
        POOL_UNPOISON(c, p->chunk);
        free(c);
    }
    free(p->free);
    p->free = NULL;
}

static char *pool_get(gg_bufpool *p)
{
    if (!p->nfree) return malloc(p->chunk);
    char *c = p->free[--p->nfree];
    POOL_UNPOISON(c, p->chunk);
    return c;
}

static void pool_put(gg_bufpool *p, char *c)
{
    pool_check_once(p, c);
    if (p->nfree < p->max_free) {
        POOL_POISON(c, p->chunk);
        p->free[p->nfree++] = c;
    } else
        free(c);
}

/* A heap buffer (pool NULL): never pooled, so realloc in place. */
static int heap_reserve(gg_buf *b, size_t n)
{
    if (n > SIZE_MAX - b->len) return -1;
    size_t want = b->len + n;
    if (want <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : GG_BUF_HEAP_MIN;
    while (cap < want) {
        if (cap > SIZE_MAX / 2) return -1;
        cap *= 2;
    }
    char *d = realloc(b->data, cap);
    if (!d) return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

int gg_buf_reserve(gg_buf *b, gg_bufpool *p, size_t n)
{
    if (!p) return heap_reserve(b, n);
    size_t want = b->len + n;
    if (want <= b->cap) return 0;
    if (!b->data && want <= p->chunk) {
        if (!(b->data = pool_get(p))) return -1;
        b->cap = p->chunk;
        return 0;
    }
    size_t cap = b->cap ? b->cap : p->chunk;
    while (cap < want) cap *= 2;
    char *d;
    if (b->cap == p->chunk) { /* leaving the pool: copy out, return the chunk */
        if (!(d = malloc(cap))) return -1;
        if (b->len) memcpy(d, b->data, b->len);
        pool_put(p, b->data);
    } else if (!(d = realloc(b->data, cap))) {
        return -1;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

int gg_buf_append(gg_buf *b, gg_bufpool *p, const void *data, size_t n)
{
    if (gg_buf_reserve(b, p, n)) return -1;
    memcpy(b->data + b->len, data, n);
    b->len += n;
    return 0;
}

int gg_buf_puts(gg_buf *b, gg_bufpool *p, const char *s)
{
    return gg_buf_append(b, p, s, strlen(s));
}

int gg_buf_vprintf(gg_buf *b, gg_bufpool *p, const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap); /* a second pass when the text did not fit */
    int n = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? b->cap - b->len : 0, fmt, ap);
    if (n < 0) goto fail;
    if (b->data && (size_t)n < b->cap - b->len) { /* it fitted */
        b->len += (size_t)n;
        va_end(again);
        return 0;
    }
    /* +1: vsnprintf writes a NUL after the text */
    if (gg_buf_reserve(b, p, (size_t)n + 1)) goto fail;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, again);
    va_end(again);
    b->len += (size_t)n;
    return 0;
fail:
    va_end(again);
    return -1;
}

int gg_buf_printf(gg_buf *b, gg_bufpool *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = gg_buf_vprintf(b, p, fmt, ap);
    va_end(ap);
    return rc;
}

void gg_buf_consume(gg_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void gg_buf_release(gg_buf *b, gg_bufpool *p)
{
    if (b->data) {
        if (p && b->cap == p->chunk)
            pool_put(p, b->data);
        else
            free(b->data);
    }
    b->data = NULL;
    b->len = b->cap = 0;
}

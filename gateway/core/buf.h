/* buf.h -- growable byte buffers and the loop's pool of fixed-size chunks.
 *
 * Connections hold a buffer only while they have bytes in flight: an idle connection owns
 * none, so its memory cost is its handle and a few pointers. */
#ifndef GG_BUF_H
#define GG_BUF_H

#include <stdarg.h>
#include <stddef.h>

#define GG_BUF_HEAP_MIN 256 /* first capacity of a heap (pool NULL) buffer */

typedef struct gg_buf {
    char *data; /* NULL when the buffer holds nothing */
    size_t len;
    size_t cap;
} gg_buf;

typedef struct gg_bufpool {
    size_t chunk;    /* size of every pooled chunk */
    char **free;     /* stack of spare chunks */
    size_t nfree;
    size_t max_free; /* spares kept beyond this are given back to malloc */
} gg_bufpool;

int gg_bufpool_init(gg_bufpool *p, size_t chunk, size_t max_free);
void gg_bufpool_free(gg_bufpool *p);

/* The one growable byte buffer of the gateway. Every function takes the pool the buffer draws
 * from; pool NULL means a heap buffer (malloc/realloc, doubling from GG_BUF_HEAP_MIN), for the
 * buffers that live outside a loop (request heads, the CLI's reads): gg_buf_release, or free()
 * on b->data, gives it back.
 *
 * Make room for n more bytes after b->len. Returns 0, or -1 when out of memory (b unchanged).
 * Small buffers come from the pool; larger ones from malloc. */
int gg_buf_reserve(gg_buf *b, gg_bufpool *p, size_t n);
int gg_buf_append(gg_buf *b, gg_bufpool *p, const void *data, size_t n);
/* Append a NUL-terminated string (without its NUL). 0 or -1 (out of memory, b unchanged). */
int gg_buf_puts(gg_buf *b, gg_bufpool *p, const char *s);
/* Append printf-style text, growing as needed (no line-length limit). 0 or -1 (out of memory
 * or a bad format; b unchanged). */
int gg_buf_printf(gg_buf *b, gg_bufpool *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* gg_buf_printf with a va_list; the caller va_ends ap. */
int gg_buf_vprintf(gg_buf *b, gg_bufpool *p, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* Drop the first n bytes (moves the rest to the front). */
void gg_buf_consume(gg_buf *b, size_t n);
/* Give the memory back (to the pool if it came from it). b is empty afterwards. */
void gg_buf_release(gg_buf *b, gg_bufpool *p);

#endif

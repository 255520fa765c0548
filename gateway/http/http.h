/* http.h -- HTTP/1.1 on the server side: requests read with libhttp-parser from a raw gg_stream
 * (gg_stream_ops.on_bytes), responses queued with the stream's batched writes.
 *
 * A gg_http_reader turns the bytes of one connection into whole requests: the request line, the
 * few headers the gateway reads (Content-Type, Authorization, Expect) and a Content-Length body.
 * It enforces the limits (GG_HTTP_MAX_HEAD bytes of request line and headers, checked once the
 * head is complete so that a request fails the same way however its bytes were split; max_body
 * bytes of body, checked before the body is read) and sets the stream's partial_since while a
 * request is incomplete, so the owner's sweep can close a connection that sends a request too
 * slowly. Chunked request bodies are refused
 * with 411: every client the gateway serves (curl, HTTP libraries) sends a length for a buffer.
 *
 * Pipelining: requests are handed to the owner one at a time. An owner that answers later (its
 * calls go upstream) returns GG_HTTP_BUSY; the reader then keeps the bytes that follow the
 * request, stops reading the socket, and goes on when the owner calls gg_http_reader_next. So
 * answers leave in request order and no answer ever waits in a buffer for an earlier one.
 * The reader also stops after a request whose answer left more than the stream's max_out
 * queued, until gg_http_reader_drained: pipelined requests cost no more than the limit.
 *
 * Memory: an idle connection holds no buffer. While a request is read, its URL and the header
 * values the gateway reads share one buffer from the loop's pool; a body that arrives in one
 * read is used where it lies, else it is gathered in a buffer of its own that grows with the
 * bytes as they come (pool-sized, then doubling), never ahead of them to what Content-Length
 * claims. All of it is given back when the request has been handed over.
 *
 * Strictness: a head line that ends in a bare LF (or a CR without LF), or a header name
 * followed by whitespace before its ':', fails the request with 400 (they let a proxy and the gateway disagree on
 * where requests begin and end). */
#ifndef GG_HTTP_H
#define GG_HTTP_H

#include "core/buf.h"
#include "core/stream.h"

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>

#define GG_HTTP_MAX_HEAD (16 * 1024) /* request line and headers */

/* What on_request returns. */
#define GG_HTTP_DONE 0 /* answered: go on with the next request */
#define GG_HTTP_BUSY 1 /* the answer comes later: wait for gg_http_reader_next */
#define GG_HTTP_STOP 2 /* the connection is closing: read nothing more */

/* One whole request. Every pointer is valid only during on_request. */
typedef struct gg_http_request {
    int method;       /* enum http_method (HTTP_GET, HTTP_POST, ...) */
    const char *path; /* the URL's path, without query or fragment; not NUL-terminated */
    size_t path_len;
    const char *content_type; /* NULL when absent */
    size_t content_type_len;
    const char *authorization; /* NULL when absent */
    size_t authorization_len;
    const char *body; /* "" when none */
    size_t body_len;
    int keep_alive; /* the client keeps the connection open after the answer */
} gg_http_request;

typedef struct gg_http_reader gg_http_reader;

typedef struct gg_http_reader_ops {
    /* A whole request: answer it (or start to) and return GG_HTTP_DONE, BUSY or STOP. When
     * req->keep_alive is 0 the reader reads nothing after it; the owner closes once answered. */
    int (*on_request)(gg_http_reader *r, const gg_http_request *req);
    /* The bytes are not a request the reader accepts: status is the 4xx/5xx to answer, why a
     * short reason. Nothing more is read; the owner answers and closes. */
    void (*on_error)(gg_http_reader *r, int status, const char *why);
} gg_http_reader_ops;

struct gg_http_reader {
    http_parser parser;
    gg_stream *st; /* the connection: its loop (pool, clock) and partial_since */
    const gg_http_reader_ops *ops;
    size_t max_body;      /* the owner may change it between requests */
    gg_buf scratch;       /* URL, then the values of the headers read, of the request being read */
    gg_buf body;          /* its body, when it came in pieces */
    gg_buf held;          /* bytes that followed a request still being answered */
    const char *body_ref; /* the body in place, when it came in one piece */
    size_t body_total;    /* Content-Length of the request being read */
    size_t head_bytes;    /* request line and headers so far */
    size_t url_seen;      /* URL bytes so far */
    const char *dup_header; /* a header we read came twice: why the request fails */
    uint32_t url_len;       /* scratch[0..url_len) */
    uint32_t ctype_off, ctype_len, auth_off, auth_len, expect_off, expect_len;
    char field[16]; /* lower-cased name of the header being read, if short */
    uint8_t field_len;
    uint8_t field_kind; /* which of the headers we read it is (http.c) */
    int fail_status;
    const char *fail_why;
    unsigned in_value : 1, has_ctype : 1, has_auth : 1, has_expect : 1;
    unsigned busy : 1;    /* the owner is answering a request */
    unsigned out_wait : 1; /* busy waiting for the connection's output to drain */
    /* Where the request being read is (http.c, scan_head): in its head, or in its body with
     * body_left bytes to come; and the head scanner's state. */
    unsigned in_body : 1, msg_done : 1;
    unsigned hs_first : 1, hs_any : 1, hs_cr : 1, hs_ws : 1, hs_name : 1;
    uint32_t hs_line; /* bytes of the current head line so far */
    const char *scan_err; /* what the scanner refused, once the parser has read up to it */
    size_t body_left;
    unsigned stopped : 1; /* read nothing more */
};

/* Set r up to read requests from s (a raw stream the owner reads into gg_http_reader_feed). */
void gg_http_reader_init(gg_http_reader *r, gg_stream *s, const gg_http_reader_ops *ops,
                         size_t max_body);
/* Bytes read from the connection (the stream's on_bytes). */
void gg_http_reader_feed(gg_http_reader *r, const char *data, size_t len);
/* The owner has answered the request it was busy with: go on with the bytes that followed it.
 * Call it from outside any other connection's callback. Returns 1 when the reader wants more
 * bytes from the socket (the owner resumes reading), 0 when it is busy again or stopped. */
int gg_http_reader_next(gg_http_reader *r);
/* The connection's output is all written (the stream's on_drain). A reader that stopped after
 * a request because more than the stream's max_out was queued goes on, as gg_http_reader_next.
 * Returns 1 when the owner should resume reading. */
int gg_http_reader_drained(gg_http_reader *r);
/* 1 while a request is being answered. */
static inline int gg_http_reader_busy(const gg_http_reader *r)
{
    return r->busy;
}
/* Give the buffers back (the connection is closed). */
void gg_http_reader_free(gg_http_reader *r);

/* "OK", "Not Found", ... */
const char *gg_http_reason(int status);

/* Queue a response head for a body of body_len bytes and return where the body goes (NULL when
 * out of memory): the caller writes body_len bytes there, then calls
 * gg_stream_commit(s, *head_len + body_len). content_type may be NULL; extra holds more header
 * lines, each ending in "\r\n", or is NULL. 204 gets neither Content-Type nor Content-Length. */
char *gg_http_begin(gg_stream *s, int status, const char *content_type, size_t body_len,
                    int keep_alive, const char *extra, size_t *head_len);
/* The same with the body at hand. Returns 0, or -1 when out of memory. */
int gg_http_respond(gg_stream *s, int status, const char *content_type, const char *body,
                    size_t body_len, int keep_alive, const char *extra);

#endif

/* http.c -- HTTP/1.1 requests in, responses out, on libhttp-parser; see http.h. */
#include "http/http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The headers the reader keeps. */
#define FIELD_OTHER  0
#define FIELD_CTYPE  1
#define FIELD_AUTH   2
#define FIELD_EXPECT 3

#define LINE_OVERHEAD 4 /* ": " and CRLF of a header line, counted against GG_HTTP_MAX_HEAD */
#define MAX_URL       (8 * 1024)

static gg_http_reader *reader_of(http_parser *p)
{
    return p->data;
}

static gg_bufpool *pool_of(gg_http_reader *r)
{
    return &r->st->loop->bufs;
}

/* Fail the request being parsed: the callback returns non-zero, the parser stops, and feed()
 * reports status once http_parser_execute has returned. */
static int fail(gg_http_reader *r, int status, const char *why)
{
    if (!r->fail_status) {
        r->fail_status = status;
        r->fail_why = why;
    }
    return -1;
}

/* Keep bytes of the URL or of a header value we read. Beyond GG_HTTP_MAX_HEAD nothing is kept:
 * such a request fails when its headers are complete (head_done). */
static int keep(gg_http_reader *r, const char *at, size_t n)
{
    if (r->scratch.len + n > GG_HTTP_MAX_HEAD) return 0;
    if (gg_buf_append(&r->scratch, pool_of(r), at, n)) return fail(r, 503, "out of memory");
    return 0;
}

/* The head of the request is complete and well-formed. Its limits are enforced here, where the
 * parser calls back however the bytes were split: the other callbacks come per piece of a read,
 * and a check there would make a request fail one way when it arrives in one read (a bad byte
 * further on: 400) and another way in many (431). Until here the parser's own cap on the head
 * (HTTP_MAX_HEADER_SIZE, 80 KiB) bounds the bytes read, and keep() what is stored. */
static int head_done(gg_http_reader *r)
{
    if (r->url_seen > MAX_URL) return fail(r, 414, "URL exceeds 8 KiB");
    if (r->head_bytes > GG_HTTP_MAX_HEAD)
        return fail(r, 431, "request line and headers exceed 16 KiB");
    if (r->dup_header) return fail(r, 400, r->dup_header);
    return 0;
}

static int on_message_begin(http_parser *p)
{
    gg_http_reader *r = reader_of(p);
    r->scratch.len = 0;
    r->body.len = 0;
    r->body_ref = NULL;
    r->body_total = 0;
    r->head_bytes = 0;
    r->url_len = 0;
    r->url_seen = 0;
    r->field_len = 0;
    r->field_kind = FIELD_OTHER;
    r->dup_header = NULL;
    r->in_value = 1; /* the first header name starts a new field */
    r->has_ctype = r->has_auth = r->has_expect = 0;
    if (!r->st->partial_since) r->st->partial_since = uv_now(r->st->loop->uv);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    gg_http_reader *r = reader_of(p);
    r->head_bytes += n;
    r->url_seen += n;
    if (r->url_seen > MAX_URL) return 0; /* fails in head_done */
    r->url_len += (uint32_t)n;
    return keep(r, at, n);
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    gg_http_reader *r = reader_of(p);
    if (r->in_value) { /* a new header line */
        r->in_value = 0;
        r->field_len = 0;
        r->head_bytes += LINE_OVERHEAD;
    }
    r->head_bytes += n;
    for (size_t i = 0; i < n; i++) {
        if (r->field_len >= sizeof r->field) { /* longer than any name we read */
            r->field_len = sizeof r->field;
            break;
        }
        char ch = at[i];
        r->field[r->field_len++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    return 0;
}

static int field_is(const gg_http_reader *r, const char *name)
{
    size_t n = strlen(name);
    return r->field_len == n && memcmp(r->field, name, n) == 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    gg_http_reader *r = reader_of(p);
    r->head_bytes += n;
    if (!r->in_value) { /* the first piece of this header's value (empty values come as one) */
        r->in_value = 1;
        r->field_kind = field_is(r, "content-type")    ? FIELD_CTYPE
                        : field_is(r, "authorization") ? FIELD_AUTH
                        : field_is(r, "expect")        ? FIELD_EXPECT
                                                       : FIELD_OTHER;
        uint32_t off = (uint32_t)r->scratch.len;
        /* Two of them leave the body's type, or who calls, ambiguous: refused (head_done). */
        switch (r->field_kind) {
        case FIELD_CTYPE:
            if (r->has_ctype) {
                r->dup_header = "more than one Content-Type header";
                break;
            }
            r->has_ctype = 1;
            r->ctype_off = off;
            r->ctype_len = 0;
            break;
        case FIELD_AUTH:
            if (r->has_auth) {
                r->dup_header = "more than one Authorization header";
                break;
            }
            r->has_auth = 1;
            r->auth_off = off;
            r->auth_len = 0;
            break;
        case FIELD_EXPECT:
            if (r->has_expect) {
                r->dup_header = "more than one Expect header";
                break;
            }
            r->has_expect = 1;
            r->expect_off = off;
            r->expect_len = 0;
            break;
        default:
            break;
        }
    }
    if (r->field_kind == FIELD_OTHER || r->dup_header) return 0;
    size_t before = r->scratch.len;
    if (keep(r, at, n)) return -1;
    uint32_t kept = (uint32_t)(r->scratch.len - before);
    if (r->field_kind == FIELD_CTYPE) r->ctype_len += kept;
    if (r->field_kind == FIELD_AUTH) r->auth_len += kept;
    if (r->field_kind == FIELD_EXPECT) r->expect_len += kept;
    return 0;
}

/* Header values without the spaces and tabs around them. */
static const char *trim(const char *s, uint32_t *n)
{
    while (*n && (*s == ' ' || *s == '\t')) s++, (*n)--;
    while (*n && (s[*n - 1] == ' ' || s[*n - 1] == '\t')) (*n)--;
    return s;
}

static int on_headers_complete(http_parser *p)
{
    gg_http_reader *r = reader_of(p);
    if (head_done(r)) return -1;
    if (p->flags & F_CHUNKED)
        return fail(r, 411, "chunked request bodies are not supported: send Content-Length");
    if (p->flags & F_CONTENTLENGTH) {
        if (p->content_length > r->max_body)
            return fail(r, 413, "request body exceeds the limit (http.max_body)");
        r->body_total = (size_t)p->content_length;
    }
    if (r->has_expect) {
        uint32_t n = r->expect_len;
        const char *v = trim(r->scratch.data + r->expect_off, &n);
        if (n != 12 || strncasecmp(v, "100-continue", 12) != 0)
            return fail(r, 417, "the only expectation understood is 100-continue");
        /* The client waits for this before it sends the body; the limits passed above. */
        if (r->body_total && gg_stream_write(r->st, "HTTP/1.1 100 Continue\r\n\r\n", 25))
            return fail(r, 503, "out of memory");
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    gg_http_reader *r = reader_of(p);
    /* The whole body in one piece of this read: use it where it lies (it stays valid until
     * on_message_complete, which the parser calls before returning). */
    if (!r->body_ref && !r->body.len && n == r->body_total) {
        r->body_ref = at;
        return 0;
    }
    if (r->body_ref) { /* cannot happen: the body was whole */
        return fail(r, 400, "more body than Content-Length");
    }
    /* The buffer grows with the bytes that came (doubling), never to what Content-Length
     * claims before they do: 50 connections claiming 8 MiB each must not reserve 400 MB. */
    if (gg_buf_append(&r->body, pool_of(r), at, n)) return fail(r, 503, "out of memory");
    return 0;
}

/* The URL's path: origin form "/a/b?q" gives "/a/b"; absolute form "http://h/a?q" gives "/a". */
static const char *url_path(const char *url, size_t n, size_t *len)
{
    if (n && url[0] != '/') {
        struct http_parser_url u;
        http_parser_url_init(&u);
        if (http_parser_parse_url(url, n, 0, &u) == 0 && (u.field_set & (1 << UF_PATH))) {
            *len = u.field_data[UF_PATH].len;
            return url + u.field_data[UF_PATH].off;
        }
        *len = n; /* "*" or something unroutable: matches no path */
        return url;
    }
    size_t k = 0;
    while (k < n && url[k] != '?' && url[k] != '#') k++;
    *len = k;
    return url;
}

static void release_request(gg_http_reader *r)
{
    gg_buf_release(&r->scratch, pool_of(r));
    gg_buf_release(&r->body, pool_of(r));
    r->body_ref = NULL;
}

static int on_message_complete(http_parser *p)
{
    gg_http_reader *r = reader_of(p);
    gg_http_request req;
    memset(&req, 0, sizeof req);
    r->st->partial_since = 0;
    req.method = (int)p->method;
    req.path = url_path(r->scratch.data ? r->scratch.data : "", r->url_len, &req.path_len);
    if (r->has_ctype) {
        uint32_t n = r->ctype_len;
        req.content_type = trim(r->scratch.data + r->ctype_off, &n);
        req.content_type_len = n;
    }
    if (r->has_auth) {
        uint32_t n = r->auth_len;
        req.authorization = trim(r->scratch.data + r->auth_off, &n);
        req.authorization_len = n;
    }
    req.body = r->body_ref ? r->body_ref : r->body.len ? r->body.data : "";
    req.body_len = r->body_ref ? r->body_total : r->body.len;
    /* After an Upgrade request the rest of the bytes are another protocol: answer, then close. */
    req.keep_alive = http_should_keep_alive(p) && !p->upgrade;
    r->msg_done = 1;
    int rc = r->ops->on_request(r, &req);
    release_request(r);
    if (rc == GG_HTTP_STOP || !req.keep_alive) {
        r->stopped = 1;
        http_parser_pause(p, 1);
    } else if (rc == GG_HTTP_BUSY) {
        r->busy = 1;
        http_parser_pause(p, 1);
    } else if (r->st->flags & GG_ST_OUT_FULL) {
        /* The peer is not reading its answers: the requests it pipelined wait with the rest
         * of its bytes until the output is written (gg_http_reader_drained). */
        r->busy = 1;
        r->out_wait = 1;
        http_parser_pause(p, 1);
    }
    return 0;
}

/* ---- the head's line ends and field names, checked before http_parser sees them ----------
 *
 * libhttp-parser takes a bare LF for CRLF and "Content-Length : 5" for a Content-Length. A
 * proxy in front that parses either differently sees other requests in the same bytes than the
 * gateway does (request smuggling), so both are refused with 400 (RFC 9112 2.2 and 5.1). The
 * scanner walks the head of each request byte by byte, in step with the parser: parse() hands
 * the parser a head exactly up to its end, then exactly the body's Content-Length, so the
 * scanner never looks at body bytes and both agree on where each request ends. */

/* Scan head bytes data[0..len). Returns how many belong to the head: all of them; or up to
 * and including the empty line that ends it (r->in_body is then set); or those before a byte
 * the head may not have (r->scan_err is then set: the parser still reads the bytes before it,
 * so that an error the parser finds earlier wins, the same way however the bytes were split). */
static size_t scan_head(gg_http_reader *r, const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char ch = data[i];
        if (r->hs_cr && ch != '\n') { /* the parser would take CR and any byte for a line end */
            r->scan_err = "CR without LF in the request head: lines end with CRLF";
            return i;
        }
        if (ch == '\n') {
            if (!r->hs_cr) {
                r->scan_err = "bare LF in the request head: lines end with CRLF";
                return i;
            }
            int empty = r->hs_line == 1;
            r->hs_line = 0;
            r->hs_cr = 0;
            if (!empty) {
                r->hs_any = 1;
                r->hs_first = 0;
                r->hs_name = 1;
            } else if (r->hs_any) { /* the end of the head (empty lines before it are skipped) */
                r->in_body = 1;
                return i + 1;
            }
            continue;
        }
        if (!r->hs_first && r->hs_name) {
            if (ch == ':') {
                if (r->hs_ws) {
                    r->scan_err = "whitespace between a header name and ':'";
                    return i;
                }
                r->hs_name = 0;
            } else if ((ch == ' ' || ch == '\t') && r->hs_line == 0) {
                r->hs_name = 0; /* a folded line: no name here (the parser decides) */
            }
        }
        r->hs_ws = ch == ' ' || ch == '\t';
        r->hs_cr = ch == '\r';
        r->hs_line++;
    }
    return len;
}

/* A new request starts: its head is scanned from its first byte. */
static void scan_reset(gg_http_reader *r)
{
    r->in_body = 0;
    r->msg_done = 0;
    r->scan_err = NULL;
    r->hs_any = r->hs_cr = r->hs_ws = 0;
    r->hs_first = 1;
    r->hs_name = 0;
    r->hs_line = 0;
    r->body_left = 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void gg_http_reader_init(gg_http_reader *r, gg_stream *s, const gg_http_reader_ops *ops,
                         size_t max_body)
{
    memset(r, 0, sizeof *r);
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
    r->st = s;
    r->ops = ops;
    r->max_body = max_body;
    scan_reset(r);
}

static void stop(gg_http_reader *r, int status, const char *why)
{
    r->stopped = 1;
    release_request(r);
    gg_buf_release(&r->held, pool_of(r));
    r->st->partial_since = 0;
    r->ops->on_error(r, status, why);
}

/* Hand the parser data[0..len): a head up to its end (checked by scan_head), then at most the
 * body's Content-Length, then the next head. Returns what the parser took and its state. */
static size_t execute(gg_http_reader *r, const char *data, size_t len)
{
    size_t off = 0;
    while (off < len) {
        size_t k;
        int head = !r->in_body;
        if (head) {
            k = scan_head(r, data + off, len - off);
        } else {
            k = len - off < r->body_left ? len - off : r->body_left;
            if (!k) { /* cannot happen: a request whose body is done is complete */
                fail(r, 400, "malformed request");
                return off;
            }
        }
        size_t n = k ? http_parser_execute(&r->parser, &settings, data + off, k) : 0;
        off += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
        if (r->fail_status || e != HPE_OK) {
            if (r->msg_done && e == HPE_PAUSED) scan_reset(r);
            return off;
        }
        if (r->scan_err) {
            fail(r, 400, r->scan_err);
            return off;
        }
        /* The parser and the scanner must agree on where a head ends. */
        if (n < k || (head && r->msg_done && !r->in_body)) {
            fail(r, 400, "malformed request head");
            return off;
        }
        if (head && r->in_body)
            r->body_left = r->body_total; /* the head is complete */
        else if (!head)
            r->body_left -= k;
        if (r->msg_done) scan_reset(r);
    }
    return off;
}

/* Parse data[0..len); whatever follows a request the owner is busy with is kept in r->held. */
static void parse(gg_http_reader *r, const char *data, size_t len)
{
    size_t n = execute(r, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
    if (r->fail_status) {
        stop(r, r->fail_status, r->fail_why);
        return;
    }
    if (e == HPE_PAUSED) {
        if (r->st->flags & GG_ST_CLOSING) return;
        if (r->stopped) { /* a last request (Connection: close) whose answer may still come */
            gg_stream_pause(r->st);
            return;
        }
        if (n < len && gg_buf_append(&r->held, pool_of(r), data + n, len - n)) {
            stop(r, 503, "out of memory");
            return;
        }
        gg_stream_pause(r->st); /* until gg_http_reader_next */
        return;
    }
    if (e != HPE_OK) {
        stop(r, e == HPE_HEADER_OVERFLOW ? 431 : 400, http_errno_description(e));
        return;
    }
}

void gg_http_reader_feed(gg_http_reader *r, const char *data, size_t len)
{
    if (r->stopped) return;
    if (r->busy) {
        /* Someone resumed the stream while a request is answered (the client's backpressure
         * bookkeeping does when its calls end): keep the bytes and stop reading again. */
        if (gg_buf_append(&r->held, pool_of(r), data, len)) {
            stop(r, 503, "out of memory");
            return;
        }
        gg_stream_pause(r->st);
        return;
    }
    parse(r, data, len);
}

int gg_http_reader_next(gg_http_reader *r)
{
    if (!r->busy || r->stopped) return 0;
    r->busy = 0;
    http_parser_pause(&r->parser, 0);
    if (r->held.len) {
        /* Parse from a buffer of our own: a new pause keeps its rest in a fresh r->held. */
        gg_buf h = r->held;
        memset(&r->held, 0, sizeof r->held);
        parse(r, h.data, h.len);
        gg_buf_release(&h, pool_of(r));
    }
    return !r->busy && !r->stopped;
}

int gg_http_reader_drained(gg_http_reader *r)
{
    if (!r->out_wait) return 0;
    r->out_wait = 0;
    return gg_http_reader_next(r);
}

void gg_http_reader_free(gg_http_reader *r)
{
    release_request(r);
    gg_buf_release(&r->held, pool_of(r));
}

const char *gg_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    default:
        return status < 500 ? "Bad Request" : "Internal Server Error";
    }
}

char *gg_http_begin(gg_stream *s, int status, const char *content_type, size_t body_len,
                    int keep_alive, const char *extra, size_t *head_len)
{
    int no_body = status == 204 || status == 304;
    size_t room = 160 + (content_type ? strlen(content_type) : 0) + (extra ? strlen(extra) : 0);
    char *p = gg_stream_reserve(s, room + body_len);
    if (!p) return NULL;
    int n = snprintf(p, room, "HTTP/1.1 %d %s\r\n", status, gg_http_reason(status));
    if (!no_body && content_type)
        n += snprintf(p + n, room - (size_t)n, "Content-Type: %s\r\n", content_type);
    if (!no_body) n += snprintf(p + n, room - (size_t)n, "Content-Length: %zu\r\n", body_len);
    n += snprintf(p + n, room - (size_t)n, "Connection: %s\r\n%s\r\n",
                  keep_alive ? "keep-alive" : "close", extra ? extra : "");
    *head_len = (size_t)n;
    return p + n;
}

int gg_http_respond(gg_stream *s, int status, const char *content_type, const char *body,
                    size_t body_len, int keep_alive, const char *extra)
{
    size_t head;
    if (status == 204 || status == 304) body_len = 0;
    char *p = gg_http_begin(s, status, content_type, body_len, keep_alive, extra, &head);
    if (!p) return -1;
    if (body_len) memcpy(p, body, body_len);
    gg_stream_commit(s, head + body_len);
    return 0;
}

/* httpc.c -- HTTP/1.1 client connections: gg_stream in raw mode for the bytes, http_parser for
 * the responses. See httpc.h. */
#include "http/httpc.h"
#include "core/tls.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static gg_bufpool *pool_of(gg_httpc *hc)
{
    return &hc->st.loop->bufs;
}

static void reset_response(gg_httpc *hc)
{
    http_parser_init(&hc->parser, HTTP_RESPONSE);
    hc->parser.data = hc;
    hc->got_bytes = hc->complete = hc->keep_alive = 0;
    hc->hdr_state = 0;
    hc->nheaders = 0;
    hc->why[0] = 0;
    hc->body.len = 0;
    hc->hdrs.len = 0;
}

static void release_buffers(gg_httpc *hc)
{
    gg_buf_release(&hc->body, pool_of(hc));
    gg_buf_release(&hc->hdrs, pool_of(hc));
}

/* --- http_parser callbacks (parser.data is the connection) ------------------------------- */

static int on_message_begin(http_parser *p)
{
    gg_httpc *hc = p->data;
    hc->hdr_state = 0;
    hc->nheaders = 0;
    hc->body.len = 0;
    hc->hdrs.len = 0;
    return 0;
}

static int fail_cb(gg_httpc *hc, const char *why)
{
    snprintf(hc->why, sizeof hc->why, "%s", why);
    return -1;
}

/* Header names and values may arrive in pieces: a name ends when its value starts, a value
 * when the next name (or the end of the headers) comes. Names are lowercased as they are
 * copied, so lookups need no case folding. */
static int on_header_field(http_parser *p, const char *at, size_t len)
{
    gg_httpc *hc = p->data;
    if (hc->hdr_state == 2) {
        if (gg_buf_append(&hc->hdrs, pool_of(hc), "", 1)) return fail_cb(hc, "out of memory");
        hc->nheaders++;
    }
    hc->hdr_state = 1;
    if (gg_buf_reserve(&hc->hdrs, pool_of(hc), len)) return fail_cb(hc, "out of memory");
    for (size_t i = 0; i < len; i++)
        hc->hdrs.data[hc->hdrs.len++] = (char)tolower((unsigned char)at[i]);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    gg_httpc *hc = p->data;
    if (hc->hdr_state != 2 && gg_buf_append(&hc->hdrs, pool_of(hc), "", 1))
        return fail_cb(hc, "out of memory");
    hc->hdr_state = 2;
    if (gg_buf_append(&hc->hdrs, pool_of(hc), at, len)) return fail_cb(hc, "out of memory");
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    gg_httpc *hc = p->data;
    if (hc->hdr_state == 2) {
        if (gg_buf_append(&hc->hdrs, pool_of(hc), "", 1)) return fail_cb(hc, "out of memory");
        hc->nheaders++;
    }
    hc->hdr_state = 0;
    /* 1: the response has no body (what HEAD asked for, whatever Content-Length says) */
    return hc->is_head ? 1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    gg_httpc *hc = p->data;
    if (hc->body.len + len > hc->max_body) {
        char why[96];
        snprintf(why, sizeof why, "response body larger than %zu bytes", hc->max_body);
        return fail_cb(hc, why);
    }
    if (gg_buf_append(&hc->body, pool_of(hc), at, len)) return fail_cb(hc, "out of memory");
    return 0;
}

static int on_message_complete(http_parser *p)
{
    gg_httpc *hc = p->data;
    /* 1xx interim responses (100 Continue, 103 Early Hints) come before the real one. */
    if (p->status_code >= 100 && p->status_code < 200 && p->status_code != 101) return 0;
    hc->complete = 1;
    hc->keep_alive = http_should_keep_alive(p) != 0;
    /* Stop here: bytes after the response belong to no request of ours. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* --- the connection ------------------------------------------------------------------------ */

/* The request failed: tell the owner (once), then close. */
static void fail(gg_httpc *hc, const char *err)
{
    int was = hc->state;
    hc->state = GG_HTTPC_CLOSING;
    if (was == GG_HTTPC_BUSY) hc->ops->on_response(hc, NULL, err);
    /* https: the TCP connection came up but the handshake did not finish */
    if (was == GG_HTTPC_CONNECTING) hc->ops->on_connect(hc, UV_EPROTO);
    gg_stream_close(&hc->st);
}

/* A whole response: hand it over, then keep the connection or close it. */
static void finish(gg_httpc *hc, int extra_bytes)
{
    int keep = hc->keep_alive && !extra_bytes;
    gg_httpc_resp r = {
        .status = hc->parser.status_code,
        .body = hc->body.data ? hc->body.data : "",
        .body_len = hc->body.len,
        .headers = hc->hdrs.data ? hc->hdrs.data : "",
        .headers_len = hc->hdrs.len,
        .nheaders = hc->nheaders,
    };
    hc->responses++;
    hc->state = keep ? GG_HTTPC_READY : GG_HTTPC_CLOSING;
    hc->ops->on_response(hc, &r, NULL);
    /* The owner may have sent the next request (its response cannot have arrived yet) or
     * closed the connection; either way these bytes are spent. */
    release_buffers(hc);
    if (!keep) gg_stream_close(&hc->st);
}

static void on_bytes(gg_stream *s, const char *data, size_t len)
{
    gg_httpc *hc = (gg_httpc *)s;
    if (hc->state != GG_HTTPC_BUSY) {
        /* Nothing was asked: a server talking out of turn cannot be trusted with the next
         * request either. */
        if (hc->state == GG_HTTPC_READY) fail(hc, "sent data with no request in flight");
        return;
    }
    hc->got_bytes = 1;
    size_t n = http_parser_execute(&hc->parser, &settings, data, len);
    if (hc->complete) {
        finish(hc, n < len);
        return;
    }
    enum http_errno e = HTTP_PARSER_ERRNO(&hc->parser);
    if (e != HPE_OK) {
        char msg[192];
        if (hc->why[0])
            snprintf(msg, sizeof msg, "%s", hc->why);
        else
            snprintf(msg, sizeof msg, "sent an invalid HTTP response (%s)",
                     http_errno_description(e));
        fail(hc, msg);
    }
}

static void on_eof(gg_stream *s, int status)
{
    gg_httpc *hc = (gg_httpc *)s;
    if (hc->state == GG_HTTPC_BUSY && hc->got_bytes && status == UV_EOF) {
        /* A body delimited by the end of the connection ends here. */
        http_parser_execute(&hc->parser, &settings, NULL, 0);
        if (hc->complete) {
            hc->keep_alive = 0;
            finish(hc, 0);
            return;
        }
    }
    char msg[200];
    const char *tls_why = s->tls ? gg_tls_error(s->tls) : ""; /* OpenSSL's text, no peer bytes */
    if (*tls_why)
        snprintf(msg, sizeof msg, "TLS failed: %s", tls_why);
    else if (status != UV_EOF)
        snprintf(msg, sizeof msg, "connection error: %s", uv_strerror(status));
    else if (hc->got_bytes)
        snprintf(msg, sizeof msg, "closed the connection mid-response");
    else
        snprintf(msg, sizeof msg, "closed the connection without responding");
    fail(hc, msg);
}

static void on_closed(gg_stream *s)
{
    gg_httpc *hc = (gg_httpc *)s;
    release_buffers(hc);
    hc->state = GG_HTTPC_IDLE;
    hc->ops->on_closed(hc);
}

static void on_message_unused(gg_stream *s, const char *msg, const gg_msg *m)
{
    (void)s, (void)msg, (void)m;
}

static void on_frame_error_unused(gg_stream *s, int code, const gg_msg *m)
{
    (void)s, (void)code, (void)m;
}

/* https: the handshake is done; the connection is the owner's from here (tls.c). */
static void on_handshake(gg_stream *s)
{
    gg_httpc *hc = (gg_httpc *)s;
    if (hc->state != GG_HTTPC_CONNECTING) return;
    hc->state = GG_HTTPC_READY;
    hc->ops->on_connect(hc, 0);
}

static const gg_stream_ops httpc_stream_ops = {
    .on_message = on_message_unused,
    .on_frame_error = on_frame_error_unused,
    .on_eof = on_eof,
    .on_drain = NULL,
    .on_closed = on_closed,
    .on_bytes = on_bytes,
    .on_handshake = on_handshake,
};

void gg_httpc_init(gg_httpc *hc, gg_loop *lp, const gg_httpc_ops *ops, void *data)
{
    memset(hc, 0, sizeof *hc);
    hc->st.loop = lp;
    hc->ops = ops;
    hc->data = data;
    hc->state = GG_HTTPC_IDLE;
}

static void on_connect(uv_connect_t *req, int status)
{
    gg_httpc *hc = req->data;
    if (status == UV_ECANCELED) return; /* closed while connecting: on_closed follows */
    if (status < 0) {
        hc->state = GG_HTTPC_CLOSING;
        hc->ops->on_connect(hc, status);
        gg_stream_close(&hc->st);
        return;
    }
    hc->st.flags |= GG_ST_READY; /* https: the handshake goes out */
    int rc = gg_stream_start(&hc->st);
    if (rc) {
        hc->state = GG_HTTPC_CLOSING;
        hc->ops->on_connect(hc, rc);
        gg_stream_close(&hc->st);
        return;
    }
    if (hc->st.tls) {
        gg_stream_flush(&hc->st);
        return; /* connected once the handshake is done: on_handshake */
    }
    hc->state = GG_HTTPC_READY;
    hc->ops->on_connect(hc, 0);
}

int gg_httpc_connect(gg_httpc *hc, const struct sockaddr *sa)
{
    gg_loop *lp = hc->st.loop;
    /* A fresh stream each time: the previous handle (if any) is closed. */
    gg_stream_init(&hc->st, lp, &httpc_stream_ops, 0);
    uv_tcp_init(lp->uv, &hc->st.io.tcp);
    hc->st.io.handle.data = &hc->st;
    uv_tcp_nodelay(&hc->st.io.tcp, 1);
    hc->creq.data = hc;
    hc->responses = 0;
    hc->state = GG_HTTPC_CONNECTING;
    reset_response(hc);
    /* https: requests queue as plaintext and are sealed once the handshake is done (tls.c). */
    int rc = hc->tls && (gg_tls_attach(&hc->st, hc->tls, hc->tls_name) ||
                         (hc->tls_peer && gg_tls_resume(&hc->st, hc->tls_peer)))
                 ? UV_ENOMEM
                 : 0;
    if (rc == 0) rc = uv_tcp_connect(&hc->creq, &hc->st.io.tcp, sa, on_connect);
    if (rc < 0) {
        hc->state = GG_HTTPC_CLOSING;
        gg_stream_close(&hc->st);
    }
    return rc;
}

int gg_httpc_send(gg_httpc *hc, const char *head, size_t head_len, const char *body,
                  size_t body_len, int is_head, size_t max_body)
{
    if (hc->state != GG_HTTPC_READY) return -1;
    char *p = gg_stream_reserve(&hc->st, head_len + body_len);
    if (!p) return -1;
    memcpy(p, head, head_len);
    if (body_len) memcpy(p + head_len, body, body_len);
    /* Flushed at the end of this loop turn, with everything else written in it. */
    gg_stream_commit(&hc->st, head_len + body_len);
    reset_response(hc);
    hc->is_head = is_head != 0;
    hc->max_body = max_body;
    hc->state = GG_HTTPC_BUSY;
    return 0;
}

void gg_httpc_close(gg_httpc *hc)
{
    if (hc->state == GG_HTTPC_IDLE || hc->state == GG_HTTPC_CLOSING) return;
    hc->state = GG_HTTPC_CLOSING;
    gg_stream_close(&hc->st);
}

int gg_httpc_header_ok(const char *name, size_t nlen, const char *value, size_t vlen)
{
    /* RFC 9110 token characters */
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    if (nlen == 0) return 0;
    for (size_t i = 0; i < nlen; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && !(c && strchr(tchar, c))) return 0;
    }
    for (size_t i = 0; i < vlen; i++)
        if (value[i] == '\r' || value[i] == '\n' || value[i] == 0) return 0;
    return 1;
}

/* --- request heads ------------------------------------------------------------------------ */

int gg_http_head_start(gg_buf *b, const char *method, const char *path, size_t plen,
                       const char *query, size_t qlen)
{
    int rc = gg_buf_puts(b, NULL, method);
    rc |= gg_buf_append(b, NULL, " ", 1);
    rc |= plen ? gg_buf_append(b, NULL, path, plen) : gg_buf_append(b, NULL, "/", 1);
    if (qlen) {
        rc |= gg_buf_append(b, NULL, "?", 1);
        rc |= gg_buf_append(b, NULL, query, qlen);
    }
    rc |= gg_buf_append(b, NULL, " HTTP/1.1\r\n", 11);
    return rc ? -1 : 0;
}

int gg_http_head_add(gg_buf *b, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (!gg_httpc_header_ok(name, nlen, value, vlen)) return -2;
    int rc = gg_buf_append(b, NULL, name, nlen);
    rc |= gg_buf_append(b, NULL, ": ", 2);
    rc |= gg_buf_append(b, NULL, value, vlen);
    rc |= gg_buf_append(b, NULL, "\r\n", 2);
    return rc ? -1 : 0;
}

int gg_http_head_has(const char *block, size_t len, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = block; p && p < block + len;) {
        if ((size_t)(block + len - p) > n && strncasecmp(p, name, n) == 0 && p[n] == ':') return 1;
        p = memchr(p, '\n', (size_t)(block + len - p));
        if (p) p++;
    }
    return 0;
}

int gg_http_head_end(gg_buf *b, long long content_length)
{
    if (content_length >= 0 && gg_buf_printf(b, NULL, "Content-Length: %lld\r\n", content_length))
        return -1;
    return gg_buf_append(b, NULL, "\r\n", 2);
}

/* httpc.h -- HTTP/1.1 client connections on the gateway's loop, shared by the jsonrpc-http
 * upstream pools (upstream_http.c) and the adapters' http.request (adapter.c).
 *
 * One request at a time per connection: no pipelining, which many servers get wrong. After a
 * response that allows it (HTTP/1.1 keep-alive) the connection stays open for the next
 * request. Responses are parsed by http_parser in HTTP_RESPONSE mode; nothing here parses
 * HTTP by hand. Timeouts belong to the owner: a request that takes too long is ended with
 * gg_httpc_close, since its response may still be coming and the connection cannot carry
 * another request.
 *
 * Life of a connection: gg_httpc_connect -> on_connect(0) -> READY; gg_httpc_send -> BUSY ->
 * on_response -> READY again (or closing); any failure, the peer closing, or gg_httpc_close
 * -> on_closed, once, after the handle is closed. The owner frees the memory or connects
 * again only from on_closed. */
#ifndef GG_HTTPC_H
#define GG_HTTPC_H

#include "core/buf.h"
#include "core/stream.h"

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define GG_HTTPC_IDLE       0 /* no handle */
#define GG_HTTPC_CONNECTING 1
#define GG_HTTPC_READY      2 /* connected, nothing in flight */
#define GG_HTTPC_BUSY       3 /* a request in flight */
#define GG_HTTPC_CLOSING    4

/* A response, valid only during on_response. Header names are lowercased; headers holds
 * nheaders pairs "name\0value\0". */
typedef struct gg_httpc_resp {
    int status;
    const char *body;
    size_t body_len;
    const char *headers;
    size_t headers_len;
    uint32_t nheaders;
} gg_httpc_resp;

typedef struct gg_httpc gg_httpc;

typedef struct gg_httpc_ops {
    /* Connected (status 0; with tls, once the handshake is done), or the connection failed
     * (a libuv error, UV_EPROTO for a failed handshake: gg_tls_error tells why; on_closed
     * follows). */
    void (*on_connect)(gg_httpc *hc, int status);
    /* The response to the request in flight, or (resp NULL) why none will come: err is a
     * sentence ("closed the connection mid-response"); the connection then closes. The owner
     * may send the next request from here when hc->state is READY. */
    void (*on_response)(gg_httpc *hc, const gg_httpc_resp *resp, const char *err);
    /* The handle is closed: free the memory or connect again. */
    void (*on_closed)(gg_httpc *hc);
} gg_httpc_ops;

struct gg_httpc {
    gg_stream st; /* first member */
    const gg_httpc_ops *ops;
    void *data; /* the owner's */
    int state;
    unsigned responses; /* complete responses on this connection since it connected */
    unsigned got_bytes : 1, complete : 1, keep_alive : 1, is_head : 1;
    int hdr_state; /* 0 none, 1 in a header name, 2 in a value */
    size_t max_body;
    http_parser parser;
    gg_buf body;
    gg_buf hdrs;
    uint32_t nheaders;
    char why[128]; /* why a callback stopped the parser */
    uv_connect_t creq;
    struct gg_tls_ctx *tls; /* https: set by the owner before connecting (not owned), else NULL */
    const char *tls_name;   /* and the name the server's certificate must hold */
    const char *tls_peer;   /* and the peer's name for session resumption (tls.h), NULL: none */
};

/* Set up the fields; no handle yet (state IDLE). */
void gg_httpc_init(gg_httpc *hc, gg_loop *lp, const gg_httpc_ops *ops, void *data);
/* Open a TCP connection to sa. Returns 0 (on_connect follows), or a libuv error: the handle
 * is then closing and on_closed follows. */
int gg_httpc_connect(gg_httpc *hc, const struct sockaddr *sa);
/* Send one request (hc READY): head is the request line and headers up to and including the
 * blank line, then body. is_head: the request is HEAD (its response has no body). Bodies
 * larger than max_body fail the request. Returns 0, or -1 when out of memory (nothing sent). */
int gg_httpc_send(gg_httpc *hc, const char *head, size_t head_len, const char *body,
                  size_t body_len, int is_head, size_t max_body);
/* Close now: no on_response comes after this; on_closed follows unless hc is IDLE. */
void gg_httpc_close(gg_httpc *hc);

/* Append "Name: value\r\n" checks: 1 when name is an HTTP token and value holds no CR, LF or
 * NUL (so a configured header cannot smuggle another header or a request). */
int gg_httpc_header_ok(const char *name, size_t nlen, const char *value, size_t vlen);

/* --- request heads: the one builder for every HTTP request the gateway sends ---------------
 * Each appends to a heap gg_buf (pool NULL) and returns 0, or -1 when out of memory; a
 * failed call may leave a partial line, so the caller drops the whole buffer. */

/* "METHOD path[?query] HTTP/1.1\r\n"; path "/" when plen is 0, no '?' when qlen is 0. */
int gg_http_head_start(gg_buf *b, const char *method, const char *path, size_t plen,
                       const char *query, size_t qlen);
/* "name: value\r\n". -2 (nothing written) when gg_httpc_header_ok refuses the pair. */
int gg_http_head_add(gg_buf *b, const char *name, size_t nlen, const char *value, size_t vlen);
/* 1 when a line of block starts with name (any case) followed by ':'. */
int gg_http_head_has(const char *block, size_t len, const char *name);
/* "Content-Length: N\r\n" when content_length >= 0, then the blank line ending the head. */
int gg_http_head_end(gg_buf *b, long long content_length);

#endif

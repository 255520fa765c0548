/* tls.h -- TLS on a gg_stream, with OpenSSL on memory BIOs: one loop, no threads.
 *
 * The stream keeps reading and writing ciphertext on its socket; this module sits between the
 * socket and the stream's framing. Reads: ciphertext -> rbio -> SSL_read -> the stream's
 * framing (gg_stream_input). Writes: the stream's queued plaintext is sealed at flush time
 * (SSL_write -> wbio) and the ciphertext is written instead; those bytes count as the stream's
 * pending output (gg_stream_pending), so max_write_buffer also bounds what TLS holds. */
#ifndef GG_TLS_H
#define GG_TLS_H

#include "core/buf.h"

#include <stddef.h>
#include <stdint.h>

struct gg_stream;

/* What a `tls = {...}` table says (config.c reads it; strings are owned by the caller). */
typedef struct gg_tls_conf {
    const char *cert;    /* PEM chain; required for a server */
    const char *key;     /* PEM private key */
    const char *ca;      /* PEM bundle to verify peers against; NULL: the system's (clients) */
    const char *server_name; /* clients: the name checked in the server's certificate and sent as SNI */
    int verify_client;   /* servers: a client certificate signed by ca is required */
    int tls12;           /* allow TLS 1.2 too (default: 1.3 only) */
    int http;            /* clients: offer ALPN http/1.1 (https://) instead of msgpack-rpc */
    uint64_t handshake_timeout_ms;
    uint32_t max_handshakes; /* handshakes in progress per process, over it new ones are refused */
} gg_tls_conf;

/* A context: certificates, verification and limits, shared by every connection made with it.
 * Reference counted: each connection holds one, so a reload may free the config's context
 * while established connections keep theirs. */
typedef struct gg_tls_ctx gg_tls_ctx;

#define GG_TLS_SERVER 0
#define GG_TLS_CLIENT 1

/* The ALPN protocol every MessagePack-RPC connection offers and accepts. */
#define GG_TLS_ALPN "msgpack-rpc"

/* Build a context. Files are read now: a missing or broken certificate or key, or a key that
 * does not match, fails here with the file and OpenSSL's reason in err. NULL on failure. */
gg_tls_ctx *gg_tls_ctx_new(const gg_tls_conf *conf, int role, char *err, size_t errlen);
void gg_tls_ctx_ref(gg_tls_ctx *ctx);
void gg_tls_ctx_unref(gg_tls_ctx *ctx); /* NULL is fine */
uint64_t gg_tls_ctx_handshake_timeout(const gg_tls_ctx *ctx);
/* Whether a new handshake may start (fewer than max_handshakes in progress). */
int gg_tls_ctx_may_accept(const gg_tls_ctx *ctx);
/* Call fn(arg) once, the next time a handshake ends while under the cap (a listener that
 * stopped accepting resumes). Up to 4 different fn/arg wait at once (asking twice is asking
 * once). It may run from inside a stream callback or a close callback. */
void gg_tls_ctx_on_room(gg_tls_ctx *ctx, void (*fn)(void *arg), void *arg);

/* A reload built `to` to replace `from`: keep what lets peers resume. Servers: `to` takes
 * from's session-ticket keys, so clients' tickets stay good. Clients: `to` takes from's kept
 * sessions. Only when both trust the same things (role, flags, server_name, CA bundle bytes,
 * a client's certificate): a session verified under other rules is not carried. Returns 1
 * when carried, 0 when not. */
int gg_tls_ctx_carry(gg_tls_ctx *to, gg_tls_ctx *from);

/* The OpenSSL SSL_CTX, for code that runs TLS on a plain socket (cli_tls.c). */
void *gg_tls_ctx_native(const gg_tls_ctx *ctx);
/* A client SSL (an SSL *): check the server's certificate against name and send it as SNI
 * (not for IP literals). NULL name: nothing. Returns 0 or -1. */
int gg_tls_client_name(void *ssl, const char *name);

/* One connection's TLS state; owned by its stream (s->tls), freed by gg_tls_free when the
 * stream's handle is closed. */
typedef struct gg_tls gg_tls;

/* Put TLS on s (before any byte is read or written). peer_name: clients, the name to check
 * in the server's certificate when the context has no server_name (NULL: none). Returns 0 or
 * -1 (out of memory). */
int gg_tls_attach(struct gg_stream *s, gg_tls_ctx *ctx, const char *peer_name);
void gg_tls_free(gg_tls *t);
/* Client connections to a peer named key (an address text) that may resume: offer the
 * session the context kept for key, and keep the tickets this connection gets for the next
 * one. Call right after gg_tls_attach. Returns 0, or -1 (out of memory: no resumption). */
int gg_tls_resume(struct gg_stream *s, const char *key);
/* The handshake resumed a session (no certificate exchanged). */
int gg_tls_resumed(const gg_tls *t);

/* A server connection that speaks HTTP/1.1 (the HTTPS front door, admin): ALPN http/1.1
 * instead of msgpack-rpc. Call right after gg_tls_attach. */
void gg_tls_http(gg_tls *t);

/* Stream hooks (stream.c). */
/* Ciphertext read from the socket; plaintext goes on through gg_stream_input. Returns 0, or a
 * negative libuv-style code when the connection must end (already logged). */
int gg_tls_read(struct gg_stream *s, const char *data, size_t len);
/* The peer closed the socket. */
void gg_tls_eof(gg_tls *t);
/* Seal the stream's queued plaintext (once the handshake is done) and return the buffer of
 * ciphertext to write (may be empty), or NULL on an error. */
gg_buf *gg_tls_seal(struct gg_stream *s);
/* Ciphertext not yet handed to the socket. */
size_t gg_tls_pending(const gg_tls *t);
/* Queue a close_notify after the output already queued (a clean close). */
void gg_tls_shutdown(struct gg_stream *s);

/* State for owners. */
int gg_tls_handshaking(const gg_tls *t);
/* Loop time (ms) the handshake started; 0 once done. */
uint64_t gg_tls_handshake_started(const gg_tls *t);
/* The handshake has run longer than its context's handshake_timeout. */
int gg_tls_handshake_expired(const gg_tls *t, uint64_t now);
/* The verified peer certificate's subject as "CN=...", or NULL (no client certificate). Valid
 * while the connection lives. */
const char *gg_tls_peer_identity(const gg_tls *t);
/* Why the last handshake failed (for logs); "" when it did not. */
const char *gg_tls_error(const gg_tls *t);

#endif

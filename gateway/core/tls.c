/* tls.c -- TLS 1.3 on memory BIOs under a gg_stream; see tls.h. */
#include "core/tls.h"
#include "core/addr.h"
#include "core/log.h"
#include "core/stream.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Ciphertext buffered towards the socket before SSL_write stops sealing more: one TLS record
 * plus its overhead at a time is plenty; the rest stays plaintext in the stream's queue. */
#define SEAL_CHUNK (16 * 1024)

/* Client sessions kept per context, one per peer (gg_tls_resume): a service has few upstream
 * endpoints; past this many the least recently used peer's session is dropped. */
#define SESSION_SLOTS 16

/* Who waits for room under max_handshakes: the MessagePack-RPC listeners and the HTTP ones. */
#define ROOM_WAITERS 4

typedef struct sess_slot {
    SSL_SESSION *sess; /* the newest resumable session of this peer, NULL: none yet */
    uint64_t used;     /* ctx->clock at the last lookup: the LRU order */
    uint32_t gen;      /* bumped when the slot changes peer: older connections' tickets go */
    char key[160];     /* the peer, as the caller names it (an address text) */
} sess_slot;

struct gg_tls_ctx {
    SSL_CTX *ssl;
    int role;
    int refs;
    uint32_t handshaking; /* connections of this context in their handshake */
    uint32_t max_handshakes;
    uint64_t handshake_timeout_ms;
    struct {
        void (*fn)(void *arg);
        void *arg;
    } room[ROOM_WAITERS]; /* each once, when a handshake ends below the cap */
    int nroom;
    sess_slot *sessions; /* clients that resume: SESSION_SLOTS of them, allocated on first use */
    uint64_t clock;
    /* What a session's trust rests on: role, flags, server_name, the CA bundle's bytes and a
     * client's own certificate. Equal digests: sessions made under one context are as good
     * under the other (gg_tls_ctx_carry). */
    unsigned char trust[32];
    int trust_ok;
    char server_name[256];
};

#define ST_HANDSHAKE 0
#define ST_OPEN      1
#define ST_CLOSING   2 /* close_notify sent or received, or a fatal error */

struct gg_tls {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    gg_tls_ctx *ctx;  /* one reference */
    gg_buf enc;       /* ciphertext on its way to the socket */
    gg_bufpool *pool;
    int state;
    int failed;
    uint64_t hs_started;
    int slot;          /* clients that resume: 1 + the ctx's session slot, 0: none */
    uint32_t slot_gen; /* that slot's gen when taken */
    char *identity; /* "CN=..." of a verified client certificate */
    char error[160];
};

static const unsigned char alpn_wire[] = "\x0b" GG_TLS_ALPN;
static const unsigned char alpn_http[] = "\x08http/1.1";

/* The server picks msgpack-rpc (http/1.1 on HTTPS listeners: gg_tls_http); a client that
 * offers ALPN without it is refused (RFC 7301). A client that offers no ALPN at all is let in:
 * s_client and older libraries do not send it. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned inlen, void *arg)
{
    unsigned char *sel;
    int http = SSL_get_app_data(ssl) != NULL;
    const unsigned char *want = http ? alpn_http : alpn_wire;
    unsigned wantlen = http ? sizeof alpn_http - 1 : sizeof alpn_wire - 1;
    if (SSL_select_next_proto(&sel, outlen, want, wantlen, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* OpenSSL's reason for the first queued error, "file: reason" style, and clear the queue. */
static void ssl_reason(char *out, size_t n, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char r[200];
    if (e) {
        const char *rs = ERR_reason_error_string(e);
        snprintf(r, sizeof r, "%s", rs ? rs : "unknown error");
    } else {
        snprintf(r, sizeof r, "unknown error");
    }
    snprintf(out, n, "%s: %s", what, r);
    ERR_clear_error();
}

/* Fold a file's bytes into md ("-" for none or unreadable: loading it reports why). */
static void digest_file(EVP_MD_CTX *md, const char *path)
{
    FILE *f = path ? fopen(path, "rb") : NULL;
    char buf[4096];
    size_t n;
    if (!f) {
        EVP_DigestUpdate(md, "-", 1);
        return;
    }
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) EVP_DigestUpdate(md, buf, n);
    fclose(f);
}

/* c->trust, see gg_tls_ctx. The server's own certificate is left out: replacing it is what a
 * reload is for, and it changes nothing a session vouches for. 0, or -1 (no digest: this
 * context's sessions stay its own). */
static int trust_digest(gg_tls_ctx *c, const gg_tls_conf *conf, int role)
{
    const int flags[4] = {role, conf->verify_client, conf->tls12, conf->http};
    const char *name = conf->server_name ? conf->server_name : "";
    unsigned n = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1) {
        EVP_DigestUpdate(md, flags, sizeof flags);
        EVP_DigestUpdate(md, name, strlen(name) + 1);
        digest_file(md, conf->ca);
        if (role == GG_TLS_CLIENT) digest_file(md, conf->cert);
        if (EVP_DigestFinal_ex(md, c->trust, &n) != 1) n = 0;
    }
    EVP_MD_CTX_free(md);
    return n == sizeof c->trust ? 0 : -1;
}

/* A client connection that resumes (gg_tls_resume) got a session ticket: a copy replaces the
 * one kept for its peer. A copy, because OpenSSL marks the connection's own session
 * unresumable when the connection ends without close_notify, as pooled ones often do.
 * Returns 0: OpenSSL keeps its reference to sess. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    gg_tls *t = SSL_get_app_data(ssl);
    if (!t || !t->slot || !t->ctx->sessions || !SSL_SESSION_is_resumable(sess)) return 0;
    sess_slot *sl = &t->ctx->sessions[t->slot - 1];
    if (sl->gen != t->slot_gen) return 0; /* the slot went to another peer meanwhile */
    SSL_SESSION *copy = SSL_SESSION_dup(sess);
    if (!copy) return 0;
    if (sl->sess) SSL_SESSION_free(sl->sess);
    sl->sess = copy;
    return 0;
}

gg_tls_ctx *gg_tls_ctx_new(const gg_tls_conf *conf, int role, char *err, size_t errlen)
{
    gg_tls_ctx *c = calloc(1, sizeof *c);
    char what[300];
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ERR_clear_error();
    c->ssl = SSL_CTX_new(role == GG_TLS_SERVER ? TLS_server_method() : TLS_client_method());
    if (!c->ssl) {
        ssl_reason(err, errlen, "TLS context");
        goto fail;
    }
    c->role = role;
    c->refs = 1;
    c->trust_ok = trust_digest(c, conf, role) == 0;
    c->max_handshakes = conf->max_handshakes ? conf->max_handshakes : 256;
    c->handshake_timeout_ms = conf->handshake_timeout_ms ? conf->handshake_timeout_ms : 10000;
    SSL_CTX_set_min_proto_version(c->ssl, conf->tls12 ? TLS1_2_VERSION : TLS1_3_VERSION);
    /* No renegotiation (TLS 1.3 has none); RELEASE_BUFFERS saves ~34 KiB per idle connection. */
    SSL_CTX_set_options(c->ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                                 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (conf->tls12 &&
        !SSL_CTX_set_cipher_list(c->ssl, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!MD5:!DSS")) {
        ssl_reason(err, errlen, "TLS 1.2 ciphers");
        goto fail;
    }
    if (conf->cert) {
        snprintf(what, sizeof what, "tls.cert %s", conf->cert);
        if (SSL_CTX_use_certificate_chain_file(c->ssl, conf->cert) != 1) {
            ssl_reason(err, errlen, what);
            goto fail;
        }
        snprintf(what, sizeof what, "tls.key %s", conf->key ? conf->key : conf->cert);
        if (SSL_CTX_use_PrivateKey_file(c->ssl, conf->key ? conf->key : conf->cert, SSL_FILETYPE_PEM) != 1) {
            ssl_reason(err, errlen, what);
            goto fail;
        }
        if (SSL_CTX_check_private_key(c->ssl) != 1) {
            ssl_reason(err, errlen, what);
            goto fail;
        }
    } else if (role == GG_TLS_SERVER) {
        snprintf(err, errlen, "tls.cert is required to serve TLS");
        goto fail;
    }
    if (conf->ca) {
        snprintf(what, sizeof what, "tls.ca %s", conf->ca);
        if (SSL_CTX_load_verify_locations(c->ssl, conf->ca, NULL) != 1) {
            ssl_reason(err, errlen, what);
            goto fail;
        }
    } else if (role == GG_TLS_CLIENT && SSL_CTX_set_default_verify_paths(c->ssl) != 1) {
        ssl_reason(err, errlen, "system CA bundle");
        goto fail;
    }
    if (role == GG_TLS_SERVER) {
        SSL_CTX_set_alpn_select_cb(c->ssl, on_alpn, NULL);
        /* Each TLS 1.3 ticket carries the client certificate: one is enough. */
        SSL_CTX_set_num_tickets(c->ssl, 1);
        static const unsigned char sid[] = "ghostgate";
        SSL_CTX_set_session_id_context(c->ssl, sid, sizeof sid - 1);
        if (conf->verify_client) {
            if (!conf->ca) {
                snprintf(err, errlen, "tls.verify_client needs tls.ca (the clients' CA)");
                goto fail;
            }
            SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        }
    } else {
        SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
        if (conf->http ? SSL_CTX_set_alpn_protos(c->ssl, alpn_http, sizeof alpn_http - 1)
                       : SSL_CTX_set_alpn_protos(c->ssl, alpn_wire, sizeof alpn_wire - 1)) {
            ssl_reason(err, errlen, "ALPN");
            goto fail;
        }
        if (conf->server_name) snprintf(c->server_name, sizeof c->server_name, "%s", conf->server_name);
        /* Sessions are kept per peer by on_new_session, never in OpenSSL's own cache. */
        SSL_CTX_set_session_cache_mode(c->ssl, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(c->ssl, on_new_session);
    }
    return c;
fail:
    if (c->ssl) SSL_CTX_free(c->ssl);
    free(c);
    return NULL;
}

static void free_sessions(sess_slot *sl)
{
    if (!sl) return;
    for (int i = 0; i < SESSION_SLOTS; i++)
        if (sl[i].sess) SSL_SESSION_free(sl[i].sess);
    free(sl);
}

void gg_tls_ctx_ref(gg_tls_ctx *c)
{
    c->refs++;
}

void gg_tls_ctx_unref(gg_tls_ctx *c)
{
    if (!c || --c->refs > 0) return;
    free_sessions(c->sessions);
    SSL_CTX_free(c->ssl);
    free(c);
}

int gg_tls_ctx_carry(gg_tls_ctx *to, gg_tls_ctx *from)
{
    if (!to || !from || to->role != from->role || !to->trust_ok || !from->trust_ok ||
        memcmp(to->trust, from->trust, sizeof to->trust) != 0)
        return 0;
    if (to->role == GG_TLS_SERVER) {
        unsigned char keys[80]; /* name, HMAC and AES keys of the session tickets */
        int ok = SSL_CTX_get_tlsext_ticket_keys(from->ssl, keys, sizeof keys) == 1 &&
                 SSL_CTX_set_tlsext_ticket_keys(to->ssl, keys, sizeof keys) == 1;
        OPENSSL_cleanse(keys, sizeof keys);
        return ok;
    }
    if (!from->sessions || to->sessions) return 0;
    to->sessions = from->sessions; /* from's connections keep no new ticket from here on */
    from->sessions = NULL;
    to->clock = from->clock;
    return 1;
}

uint64_t gg_tls_ctx_handshake_timeout(const gg_tls_ctx *c)
{
    return c->handshake_timeout_ms;
}

int gg_tls_ctx_may_accept(const gg_tls_ctx *c)
{
    return c->handshaking < c->max_handshakes;
}

void gg_tls_ctx_on_room(gg_tls_ctx *c, void (*fn)(void *arg), void *arg)
{
    for (int i = 0; i < c->nroom; i++)
        if (c->room[i].fn == fn && c->room[i].arg == arg) return;
    if (c->nroom == ROOM_WAITERS) return; /* not reached: one waiter per kind of listener */
    c->room[c->nroom].fn = fn;
    c->room[c->nroom].arg = arg;
    c->nroom++;
}

int gg_tls_resume(gg_stream *s, const char *key)
{
    gg_tls *t = s->tls;
    gg_tls_ctx *c = t->ctx;
    if (c->role != GG_TLS_CLIENT) return 0;
    if (!c->sessions && !(c->sessions = calloc(SESSION_SLOTS, sizeof *c->sessions))) return -1;
    sess_slot *sl = NULL, *lru = &c->sessions[0];
    for (int i = 0; i < SESSION_SLOTS && !sl; i++) {
        sess_slot *x = &c->sessions[i];
        if (x->key[0] && strncmp(x->key, key, sizeof x->key - 1) == 0)
            sl = x;
        else if (x->used < lru->used)
            lru = x;
    }
    if (!sl) { /* a new peer takes the least recently used slot (an empty one first) */
        sl = lru;
        if (sl->sess) SSL_SESSION_free(sl->sess);
        sl->sess = NULL;
        sl->gen++;
        snprintf(sl->key, sizeof sl->key, "%s", key);
    }
    sl->used = ++c->clock;
    t->slot = (int)(sl - c->sessions) + 1;
    t->slot_gen = sl->gen;
    SSL_set_app_data(t->ssl, t);
    /* An expired session is not offered: OpenSSL falls back to a full handshake. */
    if (sl->sess && SSL_SESSION_is_resumable(sl->sess)) SSL_set_session(t->ssl, sl->sess);
    ERR_clear_error();
    return 0;
}

int gg_tls_resumed(const gg_tls *t)
{
    return SSL_session_reused(t->ssl);
}

static int is_ip_literal(const char *name)
{
    unsigned char b[16];
    return inet_pton(AF_INET, name, b) == 1 || inet_pton(AF_INET6, name, b) == 1;
}

void *gg_tls_ctx_native(const gg_tls_ctx *c)
{
    return c->ssl;
}

int gg_tls_client_name(void *ssl, const char *name)
{
    if (!name) return 0;
    /* SNI is for host names only (RFC 6066); the check also matches IP SANs. */
    if (!is_ip_literal(name)) SSL_set_tlsext_host_name((SSL *)ssl, name);
    return SSL_set1_host((SSL *)ssl, name) == 1 ? 0 : -1;
}

int gg_tls_attach(gg_stream *s, gg_tls_ctx *ctx, const char *peer_name)
{
    gg_tls *t = calloc(1, sizeof *t);
    if (!t) return -1;
    ERR_clear_error();
    t->ssl = SSL_new(ctx->ssl);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) goto fail;
    /* An empty rbio means "more later" until the socket reports EOF (gg_tls_eof). */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* ssl owns both from here */
    if (ctx->role == GG_TLS_SERVER) {
        SSL_set_accept_state(t->ssl);
    } else {
        /* The configured server_name wins over the host of the address. */
        const char *name = ctx->server_name[0] ? ctx->server_name : peer_name;
        if (gg_tls_client_name(t->ssl, name)) goto fail_ssl;
        SSL_set_connect_state(t->ssl);
    }
    t->ctx = ctx;
    gg_tls_ctx_ref(ctx);
    ctx->handshaking++;
    t->pool = &s->loop->bufs;
    t->state = ST_HANDSHAKE;
    t->hs_started = uv_now(s->loop->uv);
    if (!t->hs_started) t->hs_started = 1;
    s->tls = t;
    return 0;
fail:
    if (t->rbio) BIO_free(t->rbio);
    if (t->wbio) BIO_free(t->wbio);
fail_ssl:
    if (t->ssl) SSL_free(t->ssl);
    free(t);
    ERR_clear_error();
    return -1;
}

static void handshake_over(gg_tls *t)
{
    gg_tls_ctx *c = t->ctx;
    if (!t->hs_started) return;
    t->hs_started = 0;
    c->handshaking--;
    while (c->nroom > 0 && c->handshaking < c->max_handshakes) {
        c->nroom--; /* before the call: fn may wait again */
        c->room[c->nroom].fn(c->room[c->nroom].arg);
    }
}

void gg_tls_free(gg_tls *t)
{
    if (!t) return;
    handshake_over(t);
    gg_buf_release(&t->enc, t->pool);
    SSL_free(t->ssl);
    free(t->identity);
    gg_tls_ctx_unref(t->ctx);
    free(t);
}

/* Move what OpenSSL wrote into the wbio to enc. Returns 0 or -1 (out of memory). */
static int drain_wbio(gg_tls *t)
{
    size_t n;
    while ((n = (size_t)BIO_ctrl_pending(t->wbio)) > 0) {
        if (gg_buf_reserve(&t->enc, t->pool, n)) return -1;
        int got = BIO_read(t->wbio, t->enc.data + t->enc.len, (int)n);
        if (got <= 0) break;
        t->enc.len += (size_t)got;
    }
    return 0;
}

static void peer_text(gg_stream *s, char *out, size_t n)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (s->io.handle.type == UV_TCP && uv_tcp_getpeername(&s->io.tcp, (struct sockaddr *)&ss, &len) == 0)
        gg_addr_format_sa((struct sockaddr *)&ss, out, n);
    else
        snprintf(out, n, "unix");
}

/* A handshake or record failed: remember why (fixed OpenSSL texts, never peer bytes), log it,
 * and let the alert OpenSSL queued go out before the close. */
static void fail(gg_stream *s, int sslerr)
{
    gg_tls *t = s->tls;
    const char *why = NULL;
    char buf[140];
    long vr = SSL_get_verify_result(t->ssl);
    unsigned long e = ERR_peek_error();
    if (vr != X509_V_OK) {
        why = X509_verify_cert_error_string(vr);
    } else if (e) {
        why = ERR_reason_error_string(e);
    } else if (sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_ZERO_RETURN) {
        why = "connection closed during the handshake";
    }
    snprintf(buf, sizeof buf, "%s", why ? why : "unknown error");
    for (char *p = buf; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) *p = '\'';
    snprintf(t->error, sizeof t->error, "%s", buf);
    ERR_clear_error();
    t->failed = 1;
    /* A server logs it; a client's owner reports it to whoever connected (gg_tls_error). */
    if (SSL_is_server(t->ssl)) {
        char peer[160];
        peer_text(s, peer, sizeof peer);
        gg_log(&s->loop->log, GG_LOG_WARN, t->state == ST_HANDSHAKE ? "tls_handshake_failed" : "tls_error",
               "peer=%s reason=\"%s\"", peer, t->error);
    }
    t->state = ST_CLOSING;
    handshake_over(t);
}

static void verified(gg_tls *t)
{
    X509 *cert = SSL_get_peer_certificate(t->ssl);
    if (!cert) return;
    if (SSL_get_verify_result(t->ssl) == X509_V_OK) {
        char cn[256];
        int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
        /* The identity reaches logs and error messages: a CN of other bytes gives none. */
        int ok = n > 0 && (size_t)n < sizeof cn - 4;
        for (int i = 0; ok && i < n; i++)
            ok = (cn[i] >= 'a' && cn[i] <= 'z') || (cn[i] >= 'A' && cn[i] <= 'Z') ||
                 (cn[i] >= '0' && cn[i] <= '9') || strchr("_.@:+-", cn[i]);
        if (ok) {
            t->identity = malloc((size_t)n + 4);
            if (t->identity) {
                memcpy(t->identity, "CN=", 3);
                memcpy(t->identity + 3, cn, (size_t)n + 1);
            }
        }
    }
    X509_free(cert);
}

/* Run the handshake, then decrypt everything the rbio holds into the stream. */
static int pump(gg_stream *s)
{
    gg_tls *t = s->tls;
    gg_loop *lp = s->loop;
    if (t->state == ST_HANDSHAKE) {
        ERR_clear_error();
        int rc = SSL_do_handshake(t->ssl);
        if (rc != 1) {
            int e = SSL_get_error(t->ssl, rc);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                fail(s, e);
                return UV_EPROTO;
            }
            return 0;
        }
        t->state = ST_OPEN;
        handshake_over(t);
        verified(t);
        /* Plaintext queued before the handshake ended (a client's first calls) may go now. */
        if (s->out.len) gg_stream_commit(s, 0);
        if (s->ops->on_handshake) s->ops->on_handshake(s);
    }
    while (t->state == ST_OPEN && !(s->flags & GG_ST_CLOSING)) {
        size_t got = 0;
        ERR_clear_error();
        /* The loop's read buffer is free again: its ciphertext was copied into the rbio. */
        if (SSL_read_ex(t->ssl, lp->rbuf, lp->rbuf_size, &got) != 1) {
            int e = SSL_get_error(t->ssl, 0);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
            if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: a clean end of stream */
                t->state = ST_CLOSING;
                return UV_EOF;
            }
            fail(s, e);
            return UV_EPROTO;
        }
        gg_stream_input(s, lp->rbuf, got);
    }
    return 0;
}

int gg_tls_read(gg_stream *s, const char *data, size_t len)
{
    gg_tls *t = s->tls;
    if (t->state == ST_CLOSING) return 0; /* after a close_notify: ignore the rest */
    if (BIO_write(t->rbio, data, (int)len) != (int)len) return UV_ENOBUFS;
    int rc = pump(s);
    /* Handshake messages, tickets and alerts: out they go, also after an error. */
    if (drain_wbio(t)) return UV_ENOBUFS;
    if (t->enc.len) gg_stream_commit(s, 0);
    return rc;
}

void gg_tls_eof(gg_tls *t)
{
    BIO_set_mem_eof_return(t->rbio, 0);
}

/* Seal queued plaintext into enc until enc holds `limit` bytes. Returns 0 or -1. */
static int seal_out(gg_stream *s, size_t limit)
{
    gg_tls *t = s->tls;
    size_t off = 0;
    while (off < s->out.len && t->enc.len < limit) {
        size_t n = s->out.len - off, done = 0;
        if (n > SEAL_CHUNK) n = SEAL_CHUNK;
        ERR_clear_error();
        if (SSL_write_ex(t->ssl, s->out.data + off, n, &done) != 1) {
            fail(s, SSL_get_error(t->ssl, 0));
            return -1;
        }
        off += done;
        if (drain_wbio(t)) return -1;
    }
    if (off == s->out.len)
        gg_buf_release(&s->out, t->pool);
    else
        gg_buf_consume(&s->out, off);
    return 0;
}

gg_buf *gg_tls_seal(gg_stream *s)
{
    gg_tls *t = s->tls;
    if (t->state == ST_HANDSHAKE && SSL_is_server(t->ssl) == 0 && !t->enc.len &&
        !BIO_ctrl_pending(t->wbio)) {
        /* A client speaks first: the ClientHello goes out on the first flush. */
        ERR_clear_error();
        int rc = SSL_do_handshake(t->ssl);
        if (rc != 1) {
            int e = SSL_get_error(t->ssl, rc);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                fail(s, e);
                drain_wbio(t);
                return NULL;
            }
        }
    }
    /* Seal a chunk's worth at a time: the rest waits as plaintext, so enc never grows
     * beyond what one write takes. */
    if (t->state == ST_OPEN && seal_out(s, SEAL_CHUNK)) return NULL;
    if (drain_wbio(t)) return NULL;
    return &t->enc;
}

size_t gg_tls_pending(const gg_tls *t)
{
    return t->enc.len + (size_t)BIO_ctrl_pending(t->wbio);
}

void gg_tls_shutdown(gg_stream *s)
{
    gg_tls *t = s->tls;
    /* Never during a handshake or after a fatal error (the session is unusable then). */
    if (t->state != ST_OPEN || t->failed) return;
    /* Seal what is queued first: close_notify must come after the last answer. */
    if (seal_out(s, (size_t)-1)) return;
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
    t->state = ST_CLOSING;
    drain_wbio(t);
}

void gg_tls_http(gg_tls *t)
{
    SSL_set_app_data(t->ssl, (void *)alpn_http);
}

int gg_tls_handshaking(const gg_tls *t)
{
    return t->state == ST_HANDSHAKE;
}

uint64_t gg_tls_handshake_started(const gg_tls *t)
{
    return t->hs_started;
}

int gg_tls_handshake_expired(const gg_tls *t, uint64_t now)
{
    return t->hs_started && now - t->hs_started > t->ctx->handshake_timeout_ms;
}

const char *gg_tls_peer_identity(const gg_tls *t)
{
    return t->identity;
}

const char *gg_tls_error(const gg_tls *t)
{
    return t->error;
}

/* cli_tls.c -- TLS on a plain socket for the one-shot commands; see cli_tls.h. */
#include "cli/cli_tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

struct gg_cli_tls {
    gg_tls_ctx *ctx;
    SSL *ssl;
};

gg_cli_tls *gg_cli_tls_new(int fd, const gg_tls_conf *conf, char *err, size_t errlen)
{
    gg_cli_tls *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!(t->ctx = gg_tls_ctx_new(conf, GG_TLS_CLIENT, err, errlen))) goto fail;
    ERR_clear_error();
    t->ssl = SSL_new(gg_tls_ctx_native(t->ctx));
    if (!t->ssl || SSL_set_fd(t->ssl, fd) != 1) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (gg_tls_client_name(t->ssl, conf->server_name)) {
        snprintf(err, errlen, "bad server name");
        goto fail;
    }
    SSL_set_connect_state(t->ssl);
    return t;
fail:
    gg_cli_tls_free(t);
    return NULL;
}

void gg_cli_tls_free(gg_cli_tls *t)
{
    if (!t) return;
    if (t->ssl) SSL_free(t->ssl);
    gg_tls_ctx_unref(t->ctx);
    free(t);
}

/* After a failed SSL call: what to wait for, or the reason. */
static ssize_t failed(gg_cli_tls *t, int rc, short *want, char *err, size_t errlen)
{
    int e = SSL_get_error(t->ssl, rc);
    *want = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (*want) return -1;
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    long vr = SSL_get_verify_result(t->ssl);
    unsigned long q = ERR_peek_error();
    const char *why = vr != X509_V_OK ? X509_verify_cert_error_string(vr)
                      : q                ? ERR_reason_error_string(q)
                                         : "connection closed during the TLS session";
    snprintf(err, errlen, "TLS failed: %s", why ? why : "unknown error");
    ERR_clear_error();
    return -1;
}

ssize_t gg_cli_tls_send(gg_cli_tls *t, const void *p, size_t n, short *want, char *err, size_t errlen)
{
    size_t done = 0;
    ERR_clear_error();
    int rc = SSL_write_ex(t->ssl, p, n, &done);
    if (rc == 1) return (ssize_t)done;
    ssize_t r = failed(t, rc, want, err, errlen);
    return r == 0 ? -1 : r;
}

ssize_t gg_cli_tls_recv(gg_cli_tls *t, void *p, size_t n, short *want, char *err, size_t errlen)
{
    size_t done = 0;
    ERR_clear_error();
    int rc = SSL_read_ex(t->ssl, p, n, &done);
    if (rc == 1) return (ssize_t)done;
    return failed(t, rc, want, err, errlen);
}

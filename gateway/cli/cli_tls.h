/* cli_tls.h -- TLS for the one-shot commands (ghostgate call): OpenSSL straight on a
 * non-blocking socket. The commands poll(2) their one socket; the loop is not involved. */
#ifndef GG_CLI_TLS_H
#define GG_CLI_TLS_H

#include "core/tls.h"

#include <sys/types.h>

typedef struct gg_cli_tls gg_cli_tls;

/* TLS client on the connected socket fd (not owned: the caller closes it after
 * gg_cli_tls_free). conf: ca (NULL: the system's), cert/key, server_name (checked and sent as
 * SNI). NULL with the reason in err. */
gg_cli_tls *gg_cli_tls_new(int fd, const gg_tls_conf *conf, char *err, size_t errlen);
void gg_cli_tls_free(gg_cli_tls *t);

/* One step of I/O, like send(2)/recv(2) on a non-blocking socket: bytes moved (> 0), 0 at the
 * end of the stream (recv), or -1. With -1, *want is POLLIN or POLLOUT when the call must be
 * repeated once the socket is ready, else 0 and the reason is in err. The handshake runs
 * inside the first calls. */
ssize_t gg_cli_tls_send(gg_cli_tls *t, const void *p, size_t n, short *want, char *err, size_t errlen);
ssize_t gg_cli_tls_recv(gg_cli_tls *t, void *p, size_t n, short *want, char *err, size_t errlen);

#endif

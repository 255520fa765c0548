/* addr.h -- addresses as users write them: "tcp://host:port", "host:port", "unix:/path", and
 * for HTTP upstreams "http://host:port/path". */
#ifndef GG_ADDR_H
#define GG_ADDR_H

#include <sys/socket.h>
#include <sys/un.h>

#define GG_ADDR_TCP  1
#define GG_ADDR_UNIX 2

typedef struct gg_addr {
    int kind;
    struct sockaddr_storage sa; /* TCP */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* UNIX */
    char text[160]; /* canonical form, for logs and the admin endpoint: no query string */
    char http_path[256]; /* http://host:port/path upstreams: the path ("/" when none); else "" */
    char http_host[140]; /* and the Host header: host[:port] as written */
    int tls; /* tls://host:port: TCP with TLS (tls.c) */
    char tls_name[128]; /* and its host as written: the name a server's certificate must hold */
} gg_addr;

/* Returns 0, or -1 with a reason in err. Host names are resolved here (blocking). */
int gg_addr_parse(const char *s, gg_addr *a, char *err, size_t errlen);

/* Before binding a Unix socket at path: a file left by a dead process is removed; one that
 * still answers is in use. Returns 0, or -1 with a reason in err. */
int gg_addr_clear_stale(const char *path, char *err, size_t errlen);

/* What a URL's query string is shown as, wherever an address is shown. */
#define GG_ADDR_REDACTED "?<redacted>"

/* An address as written, for showing: an http:// URL's query string is replaced by
 * GG_ADDR_REDACTED. out gets at most n bytes, NUL included. */
void gg_addr_redact(const char *url, char *out, size_t n);

/* Canonical text of a bound socket address (tcp://ip:port). */
void gg_addr_format_sa(const struct sockaddr *sa, char *out, size_t n);

#endif

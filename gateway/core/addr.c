/* addr.c -- parse and print the address forms of addr.h. */
#include "core/addr.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

int gg_addr_parse(const char *s, gg_addr *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    if (strncmp(s, "unix:", 5) == 0) {
        const char *path = s + 5;
        if (strncmp(path, "//", 2) == 0) path += 2;
        if (!*path) {
            snprintf(err, errlen, "empty unix socket path in '%s'", s);
            return -1;
        }
        if (strlen(path) >= sizeof a->path) {
            snprintf(err, errlen, "unix socket path too long in '%s'", s);
            return -1;
        }
        a->kind = GG_ADDR_UNIX;
        strcpy(a->path, path);
        snprintf(a->text, sizeof a->text, "unix:%s", path);
        return 0;
    }
    int https = strncmp(s, "https://", 8) == 0;
    if (strncmp(s, "http://", 7) == 0 || https) {
        char hostport[sizeof a->http_host];
        const char *rest = s + 7 + https, *slash = strchr(rest, '/');
        size_t hl = slash ? (size_t)(slash - rest) : strlen(rest);
        if (hl == 0 || hl >= sizeof hostport || hl >= sizeof a->http_host ||
            (slash && strlen(slash) >= sizeof a->http_path)) {
            snprintf(err, errlen, "bad URL '%s'", s);
            return -1;
        }
        memcpy(hostport, rest, hl);
        hostport[hl] = 0;
        char path[sizeof a->http_path];
        snprintf(path, sizeof path, "%s", slash ? slash : "/");
        if (gg_addr_parse(hostport, a, err, errlen)) return -1;
        memcpy(a->http_host, hostport, hl + 1);
        memcpy(a->http_path, path, sizeof path);
        /* the text is for logs, /routes and /metrics: a long path is cut, and a query string
         * (often a credential: ?api_key=...) is never shown */
        char *q = strchr(path, '?');
        int plen = q ? (int)(q - path) : (int)strlen(path);
        snprintf(a->text, sizeof a->text, "http%s://%.60s%.*s%s", https ? "s" : "", hostport,
                 plen > 90 ? 90 : plen, path, q ? GG_ADDR_REDACTED : "");
        if (https) { /* TLS (tls.c); the certificate must hold the host as written */
            const char *colon = strrchr(hostport, ':');
            size_t n = colon ? (size_t)(colon - hostport) : strlen(hostport);
            const char *h = hostport;
            if (n >= 2 && h[0] == '[') h++, n -= 2;
            a->tls = 1;
            snprintf(a->tls_name, sizeof a->tls_name, "%.*s", (int)n, h);
        }
        return 0;
    }
    if (strncmp(s, "tls://", 6) == 0) {
        if (gg_addr_parse(s + 6, a, err, errlen)) return -1;
        if (a->kind != GG_ADDR_TCP) {
            snprintf(err, errlen, "address '%s' is not tls://host:port", s);
            return -1;
        }
        a->tls = 1;
        memcpy(a->text, "tls", 3); /* tcp://... -> tls://... */
        const char *h = s + 6, *colon = strrchr(h, ':');
        size_t hl = (size_t)(colon - h); /* parsed above: there is a colon */
        if (hl >= 2 && h[0] == '[') h++, hl -= 2;
        snprintf(a->tls_name, sizeof a->tls_name, "%.*s", (int)hl, h);
        return 0;
    }
    const char *given = s; /* errors quote the address as written, scheme included */
    if (strncmp(s, "tcp://", 6) == 0) s += 6;
    char host[128];
    const char *colon = strrchr(s, ':');
    size_t hl = colon ? (size_t)(colon - s) : 0;
    if (!colon || hl == 0 || hl >= sizeof host) {
        snprintf(err, errlen, "address '%s' is not tcp://host:port or unix:/path", given);
        return -1;
    }
    memcpy(host, s, hl);
    host[hl] = 0;
    if (host[0] == '[' && host[hl - 1] == ']') { /* [::1]:port */
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = 0;
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535) {
        snprintf(err, errlen, "bad port in address '%s'", given);
        return -1;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc || !res) {
        snprintf(err, errlen, "cannot resolve '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    memcpy(&a->sa, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (a->sa.ss_family == AF_INET)
        ((struct sockaddr_in *)&a->sa)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&a->sa)->sin6_port = htons((uint16_t)port);
    a->kind = GG_ADDR_TCP;
    gg_addr_format_sa((struct sockaddr *)&a->sa, a->text, sizeof a->text);
    return 0;
}

void gg_addr_redact(const char *url, char *out, size_t n)
{
    const char *q = strncmp(url, "http://", 7) == 0 ? strchr(url, '?') : NULL;
    if (q)
        snprintf(out, n, "%.*s%s", (int)(q - url), url, GG_ADDR_REDACTED);
    else
        snprintf(out, n, "%s", url);
}

void gg_addr_format_sa(const struct sockaddr *sa, char *out, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(out, n, "tcp://%s:%u", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(out, n, "tcp://[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(out, n, "unknown");
    }
}

/* A socket file left by a dead process is removed; one that still answers is in use. */
int gg_addr_clear_stale(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "unix:%s exists and is not a socket", path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    int alive = fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0;
    if (fd >= 0) close(fd);
    if (alive) {
        snprintf(err, errlen, "unix:%s is in use by another process", path);
        return -1;
    }
    unlink(path);
    return 0;
}

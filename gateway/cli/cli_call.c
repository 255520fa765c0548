/* cli_call.c -- `ghostgate call`: send one MessagePack-RPC request, print the result as JSON.
 *
 * Blocking-style I/O on one non-blocking socket: every wait is a poll() bounded by the one
 * deadline of the whole call (-t), so connect, send and receive share the timeout. The
 * response is framed with gg_scan() and converted with the json.h mapping. */
#include "cli/cli.h"
#include "core/addr.h"
#include "core/buf.h"
#include "core/codec.h"
#include "core/json.h"
#include "cli/cli_tls.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#define CALL_DEFAULT_ADDR    "tcp://127.0.0.1:7420"
#define CALL_DEFAULT_TIMEOUT 30.0
#define CALL_TIMEOUT_MAX     1e6 /* seconds; keeps the deadline far inside int64 ns */
#define CALL_MSGID           1
#define AUTH_MSGID           0
#define CALL_MAX_MESSAGE     ((size_t)64 << 20)
#define CALL_MAX_DEPTH       64 /* the envelope array counts as 1 */
#define CALL_READ_CHUNK      65536

static const char call_usage[] =
    "usage: ghostgate call [-a ADDR] [-t SECONDS] [-T TOKEN] [--ca FILE] [--cert FILE --key FILE]\n"
    "                      [--server-name NAME] service.method [ARG...]\n"
    "Send one request and print its result as JSON on stdout.\n"
    "  -a ADDR     gateway: tcp://HOST:PORT, HOST:PORT, unix:/path or tls://HOST:PORT\n"
    "              (default " CALL_DEFAULT_ADDR ")\n"
    "  --ca FILE   tls://: the CAs to check the gateway's certificate against (default: the\n"
    "              system's); the certificate must name HOST (or --server-name NAME)\n"
    "  --cert FILE, --key FILE  tls://: a client certificate and its key (mutual TLS)\n"
    "  --server-name NAME  tls://: the name the certificate must hold (default: HOST)\n"
    "  -t SECONDS  give up after this long, connecting included (default 30)\n"
    "  -T TOKEN    authenticate first with ghost.auth(TOKEN) (or set GHOSTGATE_TOKEN)\n"
    "  -h, --help  print this help\n"
    "Each ARG is a JSON value (42, true, null, '\"text\"', '[1,2]', '{\"k\":1}'); an ARG that is\n"
    "not JSON is sent as a string. bin, ext and unsigned integers above 2^63-1 are written\n"
    "{\"$bin\":\"BASE64\"}, {\"$ext\":TYPE,\"data\":\"BASE64\"} and {\"$uint\":\"DIGITS\"}.\n"
    "Exit status: 0 result printed; 1 error response, printed on stderr as\n"
    "`error CODE TYPE: MESSAGE`; 2 cannot connect, timeout or bad response; 64 bad usage.\n";

/* The command line, parsed. Strings point into argv. */
typedef struct call_opts {
    const char *addr;
    const char *token;
    gg_tls_conf tls; /* tls:// addresses: ca, cert, key, server_name (strings in argv) */
    double timeout;
    const char *method;
    int nargs;
    char **args;
} call_opts;

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ghostgate call: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", call_usage);
    return GG_CALL_USAGE;
}

/* Returns -1 to go on with the call, else the exit status (help printed, usage error). */
static int parse_opts(int argc, char **argv, call_opts *o)
{
    int i;
    o->addr = CALL_DEFAULT_ADDR;
    o->token = getenv("GHOSTGATE_TOKEN");
    o->timeout = CALL_DEFAULT_TIMEOUT;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *val;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-' || a[1] == '\0') break;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(call_usage, stdout);
            return GG_CALL_OK;
        }
        const char **tls_opt = strcmp(a, "--ca") == 0            ? &o->tls.ca
                               : strcmp(a, "--cert") == 0        ? &o->tls.cert
                               : strcmp(a, "--key") == 0         ? &o->tls.key
                               : strcmp(a, "--server-name") == 0 ? &o->tls.server_name
                                                                 : NULL;
        if (tls_opt) {
            if (i + 1 >= argc) return usage_error("option %s needs a value", a);
            *tls_opt = argv[++i];
            continue;
        }
        if (a[1] != 'a' && a[1] != 't' && a[1] != 'T') return usage_error("unknown option %s", a);
        if (a[2] != '\0') {
            val = a + 2;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            return usage_error("option %s needs a value", a);
        }
        if (a[1] == 'a') {
            o->addr = val;
        } else if (a[1] == 'T') {
            o->token = val;
        } else {
            char *end;
            errno = 0;
            double t = strtod(val, &end);
            if (end == val || *end || errno || !isfinite(t) || t <= 0 || t > CALL_TIMEOUT_MAX)
                return usage_error("bad timeout '%s' (seconds, more than 0, at most 1e6)", val);
            o->timeout = t;
        }
    }
    if (i >= argc) return usage_error("missing service.method");
    o->method = argv[i++];
    size_t mlen = strlen(o->method);
    if (mlen == 0 || mlen > GG_METHOD_MAX)
        return usage_error("method name must be 1 to %d bytes", GG_METHOD_MAX);
    /* The gateway would answer "no such service 'demo'" for `call demo`, although demo
     * exists: what is missing is the method. */
    const char *dot = strchr(o->method, '.');
    if (!dot || dot == o->method || !dot[1])
        return usage_error("'%s' names no %s: write service.method (e.g. demo.echo)", o->method,
                           !dot || !dot[1] ? "method" : "service");
    if (!o->tls.cert != !o->tls.key) return usage_error("--cert and --key go together");
    if ((o->tls.ca || o->tls.cert || o->tls.server_name) && strncmp(o->addr, "tls://", 6) != 0)
        return usage_error("--ca, --cert, --key and --server-name are for tls:// addresses");
    o->nargs = argc - i;
    o->args = argv + i;
    return -1;
}

/* One ARG as JSON: parsed as JSON, else taken as a bare string. New reference, or NULL
 * with a reason in err. */
static json_t *parse_arg(const char *s, char *err, size_t errlen)
{
    json_error_t je;
    json_t *v = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (v) return v;
    if (json_error_code(&je) == json_error_numeric_overflow) {
        /* jansson stops at int64; a plain decimal up to UINT64_MAX is still exact. */
        size_t n = strlen(s);
        if (n > 0 && strspn(s, "0123456789") == n) {
            errno = 0;
            (void)strtoull(s, NULL, 10);
            if (errno == 0) {
                v = json_pack("{s:s}", "$uint", s);
                if (!v) snprintf(err, errlen, "out of memory");
                return v;
            }
        }
        snprintf(err, errlen, "number '%s' is out of range (integers must fit in 64 bits)", s);
        return NULL;
    }
    v = json_string(s);
    if (!v) snprintf(err, errlen, "'%s' is neither JSON nor a UTF-8 string", s);
    return v;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Wait until fd is ready for ev or the deadline passes. Returns 1 when ready (or in error:
 * the next call on fd says which), 0 on timeout, -1 when poll() failed (errno). */
static int wait_fd(int fd, short ev, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ns();
        if (left <= 0) return 0;
        int64_t ms = (left + 999999) / 1000000;
        struct pollfd p = {.fd = fd, .events = ev};
        int r = poll(&p, 1, ms > INT_MAX ? INT_MAX : (int)ms);
        if (r > 0) return 1;
        if (r < 0 && errno != EINTR) return -1;
    }
}

/* Connected non-blocking socket to a, or -1 with a reason in err. Caller closes it. */
static int call_connect(const gg_addr *a, int64_t deadline, char *err, size_t errlen)
{
    struct sockaddr_un sun;
    const struct sockaddr *sa;
    socklen_t salen;
    int family;

    if (a->kind == GG_ADDR_UNIX) {
        memset(&sun, 0, sizeof sun);
        sun.sun_family = AF_UNIX;
        memcpy(sun.sun_path, a->path, sizeof sun.sun_path - 1); /* addr.c bounds the path */
        family = AF_UNIX;
        sa = (const struct sockaddr *)&sun;
        salen = sizeof sun;
    } else {
        family = a->sa.ss_family;
        sa = (const struct sockaddr *)&a->sa;
        salen = family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    }
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, sa, salen) == 0) return fd;
    if (errno != EINPROGRESS && errno != EINTR) goto fail;
    int r = wait_fd(fd, POLLOUT, deadline);
    if (r == 0) {
        snprintf(err, errlen, "cannot connect: timed out");
        close(fd);
        return -1;
    }
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) goto fail;
    if (soerr == 0) return fd;
    errno = soerr;
fail:
    snprintf(err, errlen, "cannot connect: %s", strerror(errno));
    close(fd);
    return -1;
}

/* Write all of p[0..n). 0, or -1 with a reason in err. */
static int send_all(int fd, gg_cli_tls *tls, const char *p, size_t n, int64_t deadline, char *err,
                    size_t errlen)
{
    while (n > 0) {
        short want = POLLOUT;
        ssize_t w = tls ? gg_cli_tls_send(tls, p, n, &want, err, errlen) : send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (tls && !want) return -1; /* err holds the TLS reason */
        if (!tls && w < 0 && errno == EINTR) continue;
        if (tls || (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) {
            int r = wait_fd(fd, want, deadline);
            if (r > 0) continue;
            if (r == 0) {
                snprintf(err, errlen, "timed out sending the request");
                return -1;
            }
        }
        snprintf(err, errlen, "sending the request: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* The first bytes of p[0..n) for a message, quoted, non-printable bytes as \xNN, so that
 * whatever a peer sent cannot forge lines on the terminal. */
static void quote_bytes(char *out, size_t outlen, const char *p, size_t n)
{
    size_t o = 0, max = n < 40 ? n : 40;
    o += (size_t)snprintf(out, outlen, "\"");
    for (size_t i = 0; i < max && o + 8 < outlen; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
            out[o++] = (char)ch;
        else
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", ch);
    }
    snprintf(out + o, outlen - o, "\"%s", n > max ? "..." : "");
}

/* The reason a peer that sent p[0..n) is not a MessagePack-RPC server, into err. */
static void not_rpc(char *err, size_t errlen, const char *why, const char *p, size_t n)
{
    char sent[200];
    quote_bytes(sent, sizeof sent, p, n);
    snprintf(err, errlen, "the peer does not speak MessagePack-RPC (%s): it sent %s", why, sent);
}

/* Read until in->data starts with one whole message that is not a notification
 * (notifications are skipped); *msg describes it. 0, or -1 with a reason in err. */
static int read_message(int fd, gg_cli_tls *tls, gg_buf *in, gg_msg *msg, int64_t deadline,
                        char *err, size_t errlen)
{
    const gg_scan_limits lim = {.max_message = CALL_MAX_MESSAGE, .max_depth = CALL_MAX_DEPTH};
    gg_scan_state st;
    gg_scan_reset(&st);
    for (;;) {
        if (in->len > 0 && in->len >= st.need) {
            int r = gg_scan(&st, in->data, in->len, &lim);
            if (r == GG_SCAN_DONE && st.msg.is_array && st.msg.type == GG_NOTIFY) {
                gg_buf_consume(in, st.msg.size);
                gg_scan_reset(&st);
                continue;
            }
            if (r == GG_SCAN_DONE) {
                *msg = st.msg;
                return 0;
            }
            if (r < 0 && r != GG_ETOOBIG && r != GG_ETOODEEP) {
                not_rpc(err, errlen, "not MessagePack", in->data, in->len);
                return -1;
            }
            if (r < 0) {
                snprintf(err, errlen, "bad response: %s",
                         r == GG_ETOOBIG ? "larger than 64 MiB" : "nested deeper than 64 levels");
                return -1;
            }
        }
        if (gg_buf_reserve(in, NULL, CALL_READ_CHUNK / 2)) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        short want = POLLIN;
        ssize_t n = tls ? gg_cli_tls_recv(tls, in->data + in->len, in->cap - in->len, &want, err, errlen)
                        : recv(fd, in->data + in->len, in->cap - in->len, 0);
        if (n > 0) {
            in->len += (size_t)n;
            continue;
        }
        if (n == 0) {
            snprintf(err, errlen, "connection closed before the response arrived");
            return -1;
        }
        if (tls && !want) return -1; /* err holds the TLS reason */
        if (!tls && errno == EINTR) continue;
        if (!tls && errno != EAGAIN && errno != EWOULDBLOCK) {
            snprintf(err, errlen, "reading the response: %s", strerror(errno));
            return -1;
        }
        int r = wait_fd(fd, want, deadline);
        if (r == 0) {
            snprintf(err, errlen, "timed out waiting for the response");
            return -1;
        }
        if (r < 0) {
            snprintf(err, errlen, "poll: %s", strerror(errno));
            return -1;
        }
    }
}

/* Print the error element e[0..n) of a response on stderr, always as
 * `error CODE TYPE: MESSAGE`: the gateway's and ghost.serve's {code, type, message} maps as
 * they are; any other error (a JSON-RPC upstream's {code, message}, a bare string) the way
 * the Lua client reads it (ghost.errors.from_remote): type remote_error, code 500 unless it
 * has one, and what is left over as ` data: JSON`. */
static void print_error(const char *e, size_t n)
{
    char jerr[256];
    json_t *j = gg_json_from_msgpack(e, n, GG_JSON_DEPTH_MAX, jerr, sizeof jerr);
    if (!j) {
        fprintf(stderr, "error 500 remote_error: (the error cannot be shown as JSON: %s)\n", jerr);
        return;
    }
    json_t *code = json_object_get(j, "code"), *type = json_object_get(j, "type"),
           *message = json_object_get(j, "message");
    json_int_t c = json_is_integer(code) ? json_integer_value(code) : 500;
    const char *t = json_is_string(type) ? json_string_value(type) : "remote_error";
    if (json_is_object(j) && json_is_string(message)) {
        json_t *data = json_object_get(j, "data");
        char *d = data ? json_dumps(data, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
        fprintf(stderr, "error %" JSON_INTEGER_FORMAT " %s: %s%s%s\n", c, t, json_string_value(message),
                d ? " data: " : "", d ? d : "");
        free(d);
    } else if (json_is_string(j)) {
        fprintf(stderr, "error 500 remote_error: %s\n", json_string_value(j));
    } else {
        char *s = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
        fprintf(stderr, "error %" JSON_INTEGER_FORMAT " %s: the upstream returned an error without a "
                        "message data: %s\n", c, t, s ? s : "(out of memory)");
        free(s);
    }
    json_decref(j);
}

/* Handle the response m (described by msg, already walked by gg_scan; len bytes received)
 * from peer: print the result on stdout or the error on stderr. Returns the exit status. */
static int print_response(const char *m, size_t len, const gg_msg *msg, const char *peer)
{
    char jerr[256];
    const char *why = gg_msg_invalid(msg);
    if (why) { /* MessagePack, but not an RPC envelope: some other protocol's bytes */
        char err[512];
        not_rpc(err, sizeof err, why, m, len);
        fprintf(stderr, "ghostgate call: %s (%s)\n", err, peer);
        return GG_CALL_FAIL;
    }
    if (msg->type != GG_RESPONSE) why = "the server sent a request";
    if (!why && msg->msgid != CALL_MSGID) why = "response to an unknown msgid";
    if (why) {
        fprintf(stderr, "ghostgate call: bad response: %s (%s)\n", why, peer);
        return GG_CALL_FAIL;
    }

    /* [1, msgid, error, result]: walk error to find where result starts. */
    const char *e = m + msg->body_off;
    size_t rest = msg->size - msg->body_off;
    const gg_scan_limits lim = {.max_message = rest, .max_depth = CALL_MAX_DEPTH};
    gg_scan_state st;
    gg_scan_reset(&st);
    if (gg_scan(&st, e, rest, &lim) != GG_SCAN_DONE || st.msg.size >= rest) {
        fprintf(stderr, "ghostgate call: bad response: cannot split error and result\n");
        return GG_CALL_FAIL;
    }
    if ((unsigned char)e[0] != 0xc0) { /* error is not nil */
        print_error(e, st.msg.size);
        return GG_CALL_ERROR;
    }

    json_t *j = gg_json_from_msgpack(e + st.msg.size, rest - st.msg.size, GG_JSON_DEPTH_MAX, jerr,
                                     sizeof jerr);
    if (!j) {
        fprintf(stderr, "ghostgate call: the result cannot be shown as JSON: %s\n", jerr);
        return GG_CALL_ERROR;
    }
    int rc = json_dumpf(j, stdout, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(j);
    if (rc != 0 || putchar('\n') == EOF || fflush(stdout) != 0) {
        fprintf(stderr, "ghostgate call: cannot write the result: %s\n", strerror(errno));
        return GG_CALL_FAIL;
    }
    return GG_CALL_OK;
}

/* Pack [0, CALL_MSGID, method, params] into req (initialised by the caller, who owns it).
 * Returns 0, or -1 with a reason in err. */
static int pack_request(msgpack_sbuffer *req, const char *method, const json_t *params, char *err,
                        size_t errlen)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, req, msgpack_sbuffer_write);
    if (msgpack_pack_array(&pk, 4) != 0 || msgpack_pack_uint8(&pk, GG_REQUEST) != 0 ||
        msgpack_pack_uint32(&pk, CALL_MSGID) != 0 ||
        msgpack_pack_str_with_body(&pk, method, strlen(method)) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* params sits at depth 2 of the envelope. */
    return gg_json_pack(&pk, params, CALL_MAX_DEPTH - 1, err, errlen);
}

int gg_cmd_call(int argc, char **argv)
{
    call_opts o = {0};
    char err[512];
    int status = parse_opts(argc, argv, &o);
    if (status >= 0) return status;

    int64_t deadline = now_ns() + (int64_t)(o.timeout * 1e9);
    json_t *params = NULL;
    msgpack_sbuffer req;
    gg_buf in = {0}; /* bytes received and not yet consumed; heap (pool NULL) */
    gg_addr addr;
    gg_msg msg;
    int fd = -1;
    gg_cli_tls *tls = NULL;
    char host[128];
    msgpack_sbuffer_init(&req);

    status = GG_CALL_USAGE;
    if (!(params = json_array())) goto oom;
    for (int i = 0; i < o.nargs; i++) {
        json_t *v = parse_arg(o.args[i], err, sizeof err);
        if (!v) {
            fprintf(stderr, "ghostgate call: argument %d: %s\n", i + 1, err);
            goto cleanup;
        }
        if (json_array_append_new(params, v) != 0) goto oom;
    }
    if (o.token) { /* [0, 0, "ghost.auth", [token]], answered before the call */
        msgpack_packer pk;
        msgpack_packer_init(&pk, &req, msgpack_sbuffer_write);
        if (msgpack_pack_array(&pk, 4) || msgpack_pack_uint8(&pk, GG_REQUEST) ||
            msgpack_pack_uint32(&pk, AUTH_MSGID) || msgpack_pack_str_with_body(&pk, "ghost.auth", 10) ||
            msgpack_pack_array(&pk, 1) || msgpack_pack_str_with_body(&pk, o.token, strlen(o.token)))
            goto oom;
    }
    if (pack_request(&req, o.method, params, err, sizeof err) != 0) {
        fprintf(stderr, "ghostgate call: params: %s\n", err);
        goto cleanup;
    }

    status = GG_CALL_FAIL;
    if (gg_addr_parse(o.addr, &addr, err, sizeof err) != 0) {
        fprintf(stderr, "ghostgate call: %s\n", err);
        goto cleanup;
    }
    if (addr.tls && !o.tls.server_name) { /* the host as written: tls://HOST:PORT */
        const char *h = o.addr + 6, *colon = strrchr(h, ':');
        size_t hl = colon ? (size_t)(colon - h) : 0;
        if (hl >= 2 && h[0] == '[') h++, hl -= 2;
        snprintf(host, sizeof host, "%.*s", (int)hl, h);
        o.tls.server_name = host;
    }
    if ((fd = call_connect(&addr, deadline, err, sizeof err)) < 0 ||
        (addr.tls && !(tls = gg_cli_tls_new(fd, &o.tls, err, sizeof err))) ||
        send_all(fd, tls, req.data, req.size, deadline, err, sizeof err) != 0 ||
        read_message(fd, tls, &in, &msg, deadline, err, sizeof err) != 0) {
        fprintf(stderr, "ghostgate call: %s (%s)\n", err, addr.text);
        goto cleanup;
    }
    if (o.token && !gg_msg_invalid(&msg) && msg.type == GG_RESPONSE && msg.msgid == AUTH_MSGID) {
        const char *e = in.data + msg.body_off;
        if ((unsigned char)e[0] != 0xc0) { /* authentication refused */
            size_t rest = msg.size - msg.body_off;
            const gg_scan_limits lim = {.max_message = rest, .max_depth = CALL_MAX_DEPTH};
            gg_scan_state st;
            gg_scan_reset(&st);
            print_error(e, gg_scan(&st, e, rest, &lim) == GG_SCAN_DONE ? st.msg.size : rest);
            status = GG_CALL_ERROR;
            goto cleanup;
        }
        gg_buf_consume(&in, msg.size);
        if (read_message(fd, tls, &in, &msg, deadline, err, sizeof err) != 0) {
            fprintf(stderr, "ghostgate call: %s (%s)\n", err, addr.text);
            goto cleanup;
        }
    }
    status = print_response(in.data, in.len, &msg, addr.text);
    goto cleanup;

oom:
    fprintf(stderr, "ghostgate call: out of memory\n");
    status = GG_CALL_FAIL;
cleanup:
    gg_cli_tls_free(tls);
    if (fd >= 0) close(fd);
    gg_buf_release(&in, NULL);
    msgpack_sbuffer_destroy(&req);
    json_decref(params);
    return status;
}

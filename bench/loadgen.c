/* loadgen.c -- ghost-bench: closed-loop MessagePack-RPC load generator that checks every answer
 * and reports throughput, a latency histogram and its own CPU per call.
 *
 * Modes:
 *   load (default)  -c conns x -d calls in flight, -w seconds warm-up, -t seconds measured;
 *   --idle N        N idle connections, `ready` once all are up, then wait for SIGTERM;
 *   --park N        N calls left in flight over -c connections, `ready` once all are written,
 *                   then wait for SIGTERM (with --wait-usr1: connect, print `connected`, and
 *                   send only after SIGUSR1, so a caller can sample memory in between).
 * With --ref METHOD each connection first calls METHOD, which must answer a remote object
 * (OBJECT ext, docs/protocol.md#remote-objects), and then every call is
 * [0, msgid, "$call", [<YOURS id>, -m, [payload]]] on that reference: the cost of calls on
 * references through a gateway, against plain calls of the same payload.
 * With --callback METHOD every call is [0, msgid, METHOD, [<OBJECT [1, [""]]>, payload]]: it
 * passes a function this connection owns (id 1 on every connection, sent again with each
 * call), and every $call [<YOURS 1>, "", [x]] request that arrives is answered with x; a call
 * is done when its own answer (the payload, as the callee got it back from the function)
 * arrives: the cost of a callback round trip (callee -> this client -> callee).
 * With --watch-pid PID the CPU time (utime + stime from /proc/PID/stat) that process used
 * during exactly the measured window is reported per answered call.
 * -a tls://HOST:PORT speaks TLS 1.3 (ALPN msgpack-rpc, no certificate check: a benchmark) on
 * memory BIOs, so the loop stays the same; the handshakes happen during the warm-up. */
#include "../gateway/core/codec.h"
#include "../gateway/core/objects.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#define LG_MAX_MESSAGE    (64u << 20)
#define LG_MAX_PAYLOAD    (LG_MAX_MESSAGE - 512)
#define LG_READ_MIN       (64 * 1024)
#define LG_CONNECTS_AHEAD 256  /* connects in progress at once: stay under accept backlogs */
#define LG_GRACE_MS       1000 /* after the window: time given to outstanding calls */

/* ---- latency histogram: log-linear, 64 linear sub-buckets per power of two ------------- */

#define LG_SUB_BITS 6
#define LG_SUB      (1u << LG_SUB_BITS)
#define LG_BUCKETS  ((64 - LG_SUB_BITS + 1) * LG_SUB)

typedef struct lg_hist {
    uint64_t count[LG_BUCKETS];
    uint64_t total;
    uint64_t max;
} lg_hist;

/* Values below 64 get a bucket each; above, the top 7 significant bits pick the bucket, so a
 * bucket is at most 1/64 (1.6 %) of its value wide. */
static unsigned lg_hist_index(uint64_t v)
{
    if (v < LG_SUB) return (unsigned)v;
    unsigned shift = (unsigned)(63 - __builtin_clzll(v)) - LG_SUB_BITS;
    return (shift + 1) * LG_SUB + (unsigned)((v >> shift) - LG_SUB);
}

/* Highest value that falls in bucket i (what HDR histograms report). */
static uint64_t lg_hist_top(unsigned i)
{
    if (i < LG_SUB) return i;
    unsigned shift = i / LG_SUB - 1;
    uint64_t sub = i % LG_SUB + LG_SUB;
    return ((sub + 1) << shift) - 1;
}

static void lg_hist_add(lg_hist *h, uint64_t v)
{
    h->count[lg_hist_index(v)]++;
    h->total++;
    if (v > h->max) h->max = v;
}

static uint64_t lg_hist_quantile(const lg_hist *h, double q)
{
    if (h->total == 0) return 0;
    uint64_t want = (uint64_t)(q * (double)h->total + 0.999999);
    if (want == 0) want = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < LG_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= want) {
            uint64_t top = lg_hist_top(i);
            return top < h->max ? top : h->max;
        }
    }
    return h->max;
}

/* ---- state ------------------------------------------------------------------------------ */

typedef struct lg_buf {
    char *base; /* owned; NULL until first needed */
    size_t len;
    size_t cap;
} lg_buf;

typedef struct lg_conn {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } h;
    uv_connect_t creq;
    uv_write_t wreq;
    uint32_t index;
    unsigned connected : 1;
    unsigned closed : 1;
    unsigned writing : 1;
    unsigned dirty : 1;
    struct lg_conn *next_dirty;
    uint32_t first_slot; /* slots [first_slot, first_slot + nslots) belong to this connection */
    uint32_t nslots;
    lg_buf in;   /* unprocessed input, from the first byte of a message */
    lg_buf out;  /* requests of this loop turn */
    lg_buf wout; /* under uv_write until write_cb */
    gg_scan_state scan;
    SSL *ssl; /* tls://: owns rbio and wbio; NULL for plaintext */
    BIO *rbio, *wbio;
    lg_buf enc; /* tls://: ciphertext to write */
    lg_buf req; /* --ref: this connection's request template (its reference's id inside) */
} lg_conn;

/* One call in flight (or free). msgid = generation << lg_slot_bits | slot index, so an answer
 * finds its call in O(1) and a stale or duplicated msgid does not match. */
typedef struct lg_slot {
    uint32_t msgid;
    uint32_t busy;
    uint64_t sent_ns;
} lg_slot;

enum { LG_LOAD, LG_IDLE, LG_PARK };
enum { LG_CONNECTING, LG_WARMUP, LG_MEASURE, LG_DRAIN, LG_DONE };

static struct {
    /* options */
    const char *addr;
    int mode;
    uint32_t conns;
    uint32_t depth;
    double seconds;
    double warmup;
    size_t size;
    int bin;
    const char *method;
    uint32_t count; /* --idle N / --park N */
    int wait_usr1;
    int watch_pid;
    const char *token; /* --token: ghost.auth(token) first on every connection */
    const char *ref;   /* --ref: the method handing out the object the calls target */
    const char *callback; /* --callback: the method called; calls pass a function */
} lg_opt = {"tcp://127.0.0.1:7420", LG_LOAD, 8, 1, 5, 1, 64, 0, "echo", 0, 0, 0, NULL, NULL, NULL};

/* The msgids of ghost.auth and of the --ref call: outside the slot ids' range (slot bits are
 * at most 24), and answered before any load call is sent. */
#define LG_AUTH_ID 0xffffffffu
#define LG_REF_ID  0xfffffffeu

static uv_loop_t *lg_loop;
static int lg_is_unix;
static SSL_CTX *lg_tls; /* tls:// addresses */
static struct sockaddr_storage lg_sa;
static char lg_path[108];

static lg_conn *lg_conns;
static uint32_t lg_nconns, lg_next_connect, lg_connecting, lg_nconnected, lg_nrefs;
static lg_slot *lg_slots;
static uint32_t lg_nslots, lg_slot_bits, lg_slot_mask;
static lg_conn *lg_dirty;
static int lg_phase = LG_CONNECTING;
static int lg_sending; /* new calls are issued as answers come back */
static int lg_parked_sent, lg_ready_printed;

static char *lg_req;        /* the request template; msgid patched per call */
static size_t lg_req_len;   /* bytes of one request */
static const char *lg_want; /* expected result: the encoded payload inside lg_req */
static size_t lg_want_len;

static lg_hist lg_lat;
static uint64_t lg_calls;       /* answered in the measured window */
static uint64_t lg_answers;     /* answered at all */
static uint64_t lg_outstanding; /* sent and not answered */
static uint64_t lg_err_resp, lg_err_mismatch, lg_err_id, lg_err_proto, lg_err_closed;
static uint64_t lg_callbacks; /* --callback: $call requests answered (at any time) */
static uint64_t lg_win_start_ns, lg_win_end_ns;
static struct rusage lg_ru_start, lg_ru_end;
static int64_t lg_watch_start = -1, lg_watch_end = -1; /* utime + stime, clock ticks */

static uv_timer_t lg_timer;
static uv_check_t lg_check;
static uv_signal_t lg_sigterm, lg_sigint, lg_sigusr1;

static const gg_scan_limits lg_limits = {LG_MAX_MESSAGE, GG_DEPTH_CAP};

static void lg_finish(void);

/* ---- helpers ---------------------------------------------------------------------------- */

static char *lg_buf_reserve(lg_buf *b, size_t n)
{
    if (b->cap - b->len >= n) return b->base + b->len;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n) cap *= 2;
    char *p = realloc(b->base, cap);
    if (!p) {
        fprintf(stderr, "ghost-bench: out of memory\n");
        exit(1);
    }
    b->base = p;
    b->cap = cap;
    return p + b->len;
}

/* utime + stime of a process (all its threads), in clock ticks, or -1. The kernel samples the
 * user/system split per tick but scales the pair to the task's exact runtime, so the sum is
 * exact to the reporting unit (agrees with /proc/PID/task/N/schedstat within 1 %). */
static int64_t lg_proc_cpu(int pid)
{
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    /* The command name may hold spaces and parentheses: fields count from the last ')'. */
    char *p = strrchr(text, ')');
    if (!p) return -1;
    unsigned long utime, stime;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (int64_t)(utime + stime);
}

static double lg_ru_us(const struct rusage *r)
{
    return (double)r->ru_utime.tv_sec * 1e6 + (double)r->ru_utime.tv_usec +
           (double)r->ru_stime.tv_sec * 1e6 + (double)r->ru_stime.tv_usec;
}

/* tcp://HOST:PORT, HOST:PORT ([v6]:PORT) or unix:/path into lg_sa / lg_path. */
static int lg_parse_addr(const char *spec)
{
    if (strncmp(spec, "unix:", 5) == 0) {
        const char *p = spec + 5;
        if (strncmp(p, "//", 2) == 0) p += 2;
        if (!*p || strlen(p) >= sizeof lg_path) return -1;
        strcpy(lg_path, p);
        lg_is_unix = 1;
        return 0;
    }
    if (strncmp(spec, "tcp://", 6) == 0) spec += 6;
    if (strncmp(spec, "tls://", 6) == 0) {
        static const unsigned char alpn[] = "\x0bmsgpack-rpc";
        spec += 6;
        lg_tls = SSL_CTX_new(TLS_client_method());
        if (!lg_tls) return -1;
        SSL_CTX_set_min_proto_version(lg_tls, TLS1_3_VERSION);
        SSL_CTX_set_alpn_protos(lg_tls, alpn, sizeof alpn - 1);
        SSL_CTX_set_mode(lg_tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof host) return -1;
    const char *h = spec;
    size_t hl = (size_t)(colon - spec);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    memcpy(host, h, hl);
    host[hl] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port <= 0 || port > 65535) return -1;
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&lg_sa) == 0) return 0;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&lg_sa) == 0) return 0;
    uv_getaddrinfo_t req; /* no callback: resolves synchronously, once, at start-up */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    if (uv_getaddrinfo(lg_loop, &req, NULL, host, NULL, &hints)) return -1;
    memcpy(&lg_sa, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
    ((struct sockaddr_in *)&lg_sa)->sin_port = htons((uint16_t)port); /* same offset in v6 */
    uv_freeaddrinfo(req.addrinfo);
    return 0;
}

/* ---- output ----------------------------------------------------------------------------- */

static void lg_mark_dirty(lg_conn *c)
{
    if (c->dirty) return;
    c->dirty = 1;
    c->next_dirty = lg_dirty;
    lg_dirty = c;
}

static void lg_conn_lost(lg_conn *c, const char *why);

static void lg_flush(lg_conn *c);

static void lg_write_cb(uv_write_t *req, int status)
{
    lg_conn *c = req->data;
    c->writing = 0;
    c->wout.len = 0;
    if (status < 0) {
        lg_conn_lost(c, uv_strerror(status));
        return;
    }
    if (c->out.len || c->enc.len) lg_flush(c);
}

/* tls://: move what OpenSSL wrote (handshake, records) to c->enc. */
static void lg_tls_drain(lg_conn *c)
{
    size_t n;
    while ((n = (size_t)BIO_ctrl_pending(c->wbio)) > 0) {
        char *p = lg_buf_reserve(&c->enc, n);
        int got = BIO_read(c->wbio, p, (int)n);
        if (got <= 0) break;
        c->enc.len += (size_t)got;
    }
}

/* tls://: seal the requests queued in c->out once the handshake is done; what goes on the
 * wire is then c->enc. Returns 0 or -1 (the connection failed). */
static int lg_tls_seal(lg_conn *c)
{
    if (SSL_is_init_finished(c->ssl)) {
        size_t off = 0, done = 0;
        while (off < c->out.len) {
            if (SSL_write_ex(c->ssl, c->out.base + off, c->out.len - off, &done) != 1) return -1;
            off += done;
        }
        c->out.len = 0;
    }
    lg_tls_drain(c);
    return 0;
}

/* Everything queued this turn in one write: try_write, then uv_write for the rest. With TLS
 * the bytes written are the ciphertext in c->enc. */
static void lg_flush(lg_conn *c)
{
    if (c->closed || c->writing) return;
    if (c->ssl && lg_tls_seal(c)) {
        lg_conn_lost(c, "TLS write failed");
        return;
    }
    lg_buf *src = c->ssl ? &c->enc : &c->out;
    if (src->len == 0) return;
    uv_buf_t b = uv_buf_init(src->base, (unsigned)src->len);
    int n = uv_try_write(&c->h.stream, &b, 1);
    if (n == UV_EAGAIN) n = 0;
    if (n < 0) {
        lg_conn_lost(c, uv_strerror(n));
        return;
    }
    if ((size_t)n == src->len) {
        src->len = 0;
        return;
    }
    lg_buf t = c->wout; /* uv_write needs the bytes until write_cb: swap buffers */
    c->wout = *src;
    *src = t;
    src->len = 0;
    b = uv_buf_init(c->wout.base + n, (unsigned)(c->wout.len - (size_t)n));
    c->wreq.data = c;
    int r = uv_write(&c->wreq, &c->h.stream, &b, 1, lg_write_cb);
    if (r) {
        lg_conn_lost(c, uv_strerror(r));
        return;
    }
    c->writing = 1;
}

static int lg_all_written(void)
{
    for (uint32_t i = 0; i < lg_nconns; i++)
        if (!lg_conns[i].closed && (lg_conns[i].writing || lg_conns[i].out.len)) return 0;
    return 1;
}

static void lg_check_cb(uv_check_t *h)
{
    while (lg_dirty) {
        lg_conn *c = lg_dirty;
        lg_dirty = c->next_dirty;
        c->dirty = 0;
        lg_flush(c);
    }
    if (lg_opt.mode == LG_PARK && lg_parked_sent && !lg_ready_printed && lg_all_written()) {
        lg_ready_printed = 1;
        printf("ready\n");
        fflush(stdout);
    }
    if (lg_phase == LG_DRAIN && lg_outstanding == 0) lg_finish();
}

/* Queue one call on slot s of connection c. */
static void lg_send(lg_conn *c, uint32_t s, uint64_t now)
{
    lg_slot *sl = &lg_slots[s];
    uint32_t gen = (sl->msgid >> lg_slot_bits) + 1;
    uint32_t id = (uint32_t)(((uint64_t)gen << lg_slot_bits) & 0xffffffffu) | s;
    sl->msgid = id;
    sl->busy = 1;
    sl->sent_ns = now;
    lg_outstanding++;
    const char *req = c->req.len ? c->req.base : lg_req;
    size_t len = c->req.len ? c->req.len : lg_req_len;
    char *p = lg_buf_reserve(&c->out, len);
    memcpy(p, req, len);
    /* gg_put_request_hdr writes the msgid as a fixed uint32 (0xce) at bytes 3..6. */
    p[3] = (char)(id >> 24);
    p[4] = (char)(id >> 16);
    p[5] = (char)(id >> 8);
    p[6] = (char)id;
    c->out.len += len;
    lg_mark_dirty(c);
}

/* ---- input ------------------------------------------------------------------------------ */

static void lg_all_connected(void);

/* --ref: the answer to the METHOD call must be OBJECT [id, interface]; this connection's
 * template becomes [0, msgid, "$call", [<YOURS id>, -m, [payload]]], the payload the one of
 * lg_req. Exits when the answer is anything else. */
static void lg_got_ref(lg_conn *c, const char *msg, const gg_msg *m)
{
    const char *v = msg + m->body_off + 1; /* after error: nil */
    size_t n = m->size - m->body_off - 1, plen = 0;
    const char *data = NULL;
    int8_t type = 0;
    uint64_t id;
    size_t il = 0;
    if ((uint8_t)msg[m->body_off] != 0xc0) {
        fprintf(stderr, "ghost-bench: %s answered an error\n", lg_opt.ref);
        exit(1);
    }
    if (!gg_get_ext(v, n, &type, &data, &plen) || type != GG_OBJ_EXT_OBJECT || plen < 2 ||
        (uint8_t)data[0] != 0x92 || !(il = gg_get_uint(data + 1, plen - 1, &id))) {
        fprintf(stderr, "ghost-bench: %s did not answer an object [id, interface]\n", lg_opt.ref);
        exit(1);
    }
    const char *idb = data + 1; /* the id's bytes, as the peer encoded them */
    size_t mlen = strlen(lg_opt.method);
    char *p = lg_buf_reserve(&c->req, 32 + il + mlen + lg_want_len);
    size_t k = gg_put_request_hdr(p, 0, "$call", 5);
    p[k++] = (char)0x93;
    p[k++] = (char)0xc7; /* ext 8: YOURS id */
    p[k++] = (char)il;
    p[k++] = GG_OBJ_EXT_YOURS;
    memcpy(p + k, idb, il);
    k += il;
    k += gg_put_str_hdr(p + k, (uint32_t)mlen);
    memcpy(p + k, lg_opt.method, mlen);
    k += mlen;
    p[k++] = (char)0x91;
    memcpy(p + k, lg_want, lg_want_len);
    c->req.len = k + lg_want_len;
    if (++lg_nrefs == lg_nconns) lg_all_connected();
}

/* --callback: the function every call passes, OBJECT [1, [""]], as raw MessagePack. */
static const char lg_fn[] = {(char)0xc7, 4, GG_OBJ_EXT_OBJECT, (char)0x92, 1, (char)0x91,
                             (char)0xa0};

/* --callback: answer a request from the peer. $call [<YOURS 1>, "", [x]] (the function of
 * lg_fn, called with one argument) is answered x; anything else gets an error string and
 * counts as a protocol error, so a wrong callback never hangs the call waiting on it. */
static void lg_callback(lg_conn *c, const char *msg, const gg_msg *m)
{
    const uint8_t *p = (const uint8_t *)msg + m->body_off, *end = (const uint8_t *)msg + m->size;
    int ok = m->method_len == 5 && memcmp(msg + m->method_off, "$call", 5) == 0 && end - p >= 7 &&
             p[0] == 0x93;
    if (ok) { /* YOURS 1 in any ext form whose payload is the uint 1 */
        const char *d;
        size_t dl;
        int8_t t;
        size_t el = gg_get_ext((const char *)p + 1, (size_t)(end - p - 1), &t, &d, &dl);
        ok = el && t == GG_OBJ_EXT_YOURS && dl == 1 && d[0] == 1;
        p += 1 + el;
    }
    ok = ok && end - p >= 3 && p[0] == 0xa0 && p[1] == 0x91; /* "", [x]: x runs to the end */
    char *out;
    size_t k;
    if (ok) {
        p += 2;
        out = lg_buf_reserve(&c->out, GG_RESPONSE_HDR_MAX + 1 + (size_t)(end - p));
        k = gg_put_response_hdr(out, m->msgid);
        out[k++] = (char)0xc0;
        memcpy(out + k, p, (size_t)(end - p));
        k += (size_t)(end - p);
        lg_callbacks++;
    } else {
        static const char why[] = "ghost-bench: unexpected request";
        out = lg_buf_reserve(&c->out, GG_RESPONSE_HDR_MAX + 6 + sizeof why);
        k = gg_put_response_hdr(out, m->msgid);
        k += gg_put_str_hdr(out + k, sizeof why - 1);
        memcpy(out + k, why, sizeof why - 1);
        k += sizeof why - 1;
        out[k++] = (char)0xc0;
        lg_err_proto++;
    }
    c->out.len += k;
    lg_mark_dirty(c);
}

static void lg_answer(lg_conn *c, const char *msg, const gg_msg *m, uint64_t now)
{
    if (m->type == GG_REQUEST && lg_opt.callback && !gg_msg_invalid(m)) {
        lg_callback(c, msg, m);
        return;
    }
    if (m->type == GG_NOTIFY && !gg_msg_invalid(m)) return; /* not an answer: ignore */
    if (m->type != GG_RESPONSE || gg_msg_invalid(m)) {
        lg_err_proto++;
        return;
    }
    if (m->msgid == LG_AUTH_ID) {
        if ((unsigned char)msg[m->body_off] != 0xc0) {
            fprintf(stderr, "ghost-bench: ghost.auth(token) was refused\n");
            exit(1);
        }
        return;
    }
    if (m->msgid == LG_REF_ID && lg_opt.ref && !c->req.len) {
        lg_got_ref(c, msg, m);
        return;
    }
    uint32_t s = m->msgid & lg_slot_mask;
    if (s < c->first_slot || s >= c->first_slot + c->nslots || !lg_slots[s].busy ||
        lg_slots[s].msgid != m->msgid) {
        lg_err_id++;
        return;
    }
    lg_slot *sl = &lg_slots[s];
    sl->busy = 0;
    lg_outstanding--;
    lg_answers++;
    const char *err = msg + m->body_off;
    if ((uint8_t)err[0] != 0xc0) {
        if (lg_err_resp == 0)
            fprintf(stderr, "ghost-bench: first error response for msgid %" PRIu32 "\n", m->msgid);
        lg_err_resp++;
    } else if (m->size - m->body_off - 1 != lg_want_len ||
               memcmp(err + 1, lg_want, lg_want_len) != 0) {
        lg_err_mismatch++;
    }
    if (lg_phase == LG_MEASURE) {
        lg_hist_add(&lg_lat, now - sl->sent_ns);
        lg_calls++;
    }
    if (lg_sending) lg_send(c, s, now);
}

static void lg_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    lg_conn *c = h->data;
    size_t want = LG_READ_MIN;
    if (c->scan.need > c->in.len && c->scan.need - c->in.len > want)
        want = c->scan.need - c->in.len;
    char *p = lg_buf_reserve(&c->in, want);
    *buf = uv_buf_init(p, (unsigned)(c->in.cap - c->in.len));
}

/* tls://: ciphertext read into a scratch buffer, plaintext into c->in. */
static char lg_tls_rbuf[64 * 1024];

static void lg_tls_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    *buf = uv_buf_init(lg_tls_rbuf, sizeof lg_tls_rbuf);
}

/* Returns 0, or -1 when the connection failed. */
static int lg_tls_read(lg_conn *c, const char *data, size_t len)
{
    if (BIO_write(c->rbio, data, (int)len) != (int)len) return -1;
    if (!SSL_is_init_finished(c->ssl)) {
        int rc = SSL_do_handshake(c->ssl);
        if (rc != 1) {
            int e = SSL_get_error(c->ssl, rc);
            lg_tls_drain(c);
            lg_mark_dirty(c);
            return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
        }
        lg_mark_dirty(c); /* the requests queued meanwhile go now */
    }
    for (;;) {
        size_t got = 0;
        char *p = lg_buf_reserve(&c->in, LG_READ_MIN);
        if (SSL_read_ex(c->ssl, p, c->in.cap - c->in.len, &got) != 1) {
            int e = SSL_get_error(c->ssl, 0);
            lg_tls_drain(c); /* e.g. key updates */
            return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
        }
        c->in.len += got;
    }
}

static void lg_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    lg_conn *c = st->data;
    if (nread < 0) {
        lg_conn_lost(c, nread == UV_EOF ? "closed by peer" : uv_strerror((int)nread));
        return;
    }
    if (nread == 0) return;
    if (c->ssl) {
        if (lg_tls_read(c, buf->base, (size_t)nread)) {
            ERR_clear_error();
            lg_conn_lost(c, "TLS failed");
            return;
        }
    } else {
        c->in.len += (size_t)nread;
    }
    uint64_t now = uv_hrtime(); /* one clock read per read: every answer in it arrived now */
    size_t off = 0;
    while (off < c->in.len) {
        if (c->scan.need > c->in.len - off) break;
        int r = gg_scan(&c->scan, c->in.base + off, c->in.len - off, &lg_limits);
        if (r == GG_SCAN_MORE) break;
        if (r < 0) {
            lg_err_proto++;
            lg_conn_lost(c, "malformed answer");
            return;
        }
        gg_msg m = c->scan.msg;
        gg_scan_reset(&c->scan);
        lg_answer(c, c->in.base + off, &m, now);
        off += m.size;
    }
    c->in.len -= off;
    if (c->in.len) memmove(c->in.base, c->in.base + off, c->in.len);
}

/* ---- connections ------------------------------------------------------------------------ */

static void lg_conn_lost(lg_conn *c, const char *why)
{
    if (c->closed) return;
    c->closed = 1;
    if (lg_err_closed == 0)
        fprintf(stderr, "ghost-bench: connection %" PRIu32 " lost: %s\n", c->index, why);
    lg_err_closed++;
    if (c->connected) uv_read_stop(&c->h.stream);
    uv_close(&c->h.handle, NULL);
    /* Its outstanding calls stay busy and are reported as unanswered. */
}

static void lg_start_connects(void);

static void lg_connect_cb(uv_connect_t *req, int status)
{
    lg_conn *c = req->data;
    lg_connecting--;
    if (status < 0) {
        fprintf(stderr, "ghost-bench: cannot connect to %s: %s\n", lg_opt.addr,
                uv_strerror(status));
        exit(1);
    }
    c->connected = 1;
    if (!lg_is_unix) uv_tcp_nodelay(&c->h.tcp, 1);
    if (lg_tls) { /* the ClientHello goes out with the first flush */
        c->ssl = SSL_new(lg_tls);
        c->rbio = BIO_new(BIO_s_mem());
        c->wbio = BIO_new(BIO_s_mem());
        if (!c->ssl || !c->rbio || !c->wbio) {
            fprintf(stderr, "ghost-bench: out of memory\n");
            exit(1);
        }
        BIO_set_mem_eof_return(c->rbio, -1);
        SSL_set_bio(c->ssl, c->rbio, c->wbio);
        SSL_set_connect_state(c->ssl);
        SSL_do_handshake(c->ssl);
        lg_tls_drain(c);
        lg_mark_dirty(c);
    }
    if (uv_read_start(&c->h.stream, lg_tls ? lg_tls_alloc_cb : lg_alloc_cb, lg_read_cb)) {
        lg_conn_lost(c, "read_start failed");
        return;
    }
    if (lg_opt.token) { /* authenticate first: calls queued after it run as that identity */
        size_t tl = strlen(lg_opt.token);
        char *p = lg_buf_reserve(&c->out, 32 + tl);
        size_t n = gg_put_request_hdr(p, LG_AUTH_ID, "ghost.auth", 10);
        n += gg_put_array_hdr(p + n, 1);
        n += gg_put_str_hdr(p + n, (uint32_t)tl);
        memcpy(p + n, lg_opt.token, tl);
        c->out.len += n + tl;
        lg_mark_dirty(c);
    }
    if (lg_opt.ref) { /* the reference first; the load starts once every connection has one */
        size_t rl = strlen(lg_opt.ref);
        char *p = lg_buf_reserve(&c->out, 16 + rl);
        size_t n = gg_put_request_hdr(p, LG_REF_ID, lg_opt.ref, (uint32_t)rl);
        p[n++] = (char)0x90;
        c->out.len += n;
        lg_mark_dirty(c);
    }
    if (++lg_nconnected == lg_nconns) {
        if (!lg_opt.ref) lg_all_connected();
    } else {
        lg_start_connects();
    }
}

static void lg_start_connects(void)
{
    while (lg_connecting < LG_CONNECTS_AHEAD && lg_next_connect < lg_nconns) {
        lg_conn *c = &lg_conns[lg_next_connect++];
        int r;
        c->h.handle.data = c;
        c->creq.data = c;
        if (lg_is_unix) {
            uv_pipe_init(lg_loop, &c->h.pipe, 0);
            uv_pipe_connect(&c->creq, &c->h.pipe, lg_path, lg_connect_cb);
            r = 0;
        } else {
            uv_tcp_init(lg_loop, &c->h.tcp);
            r = uv_tcp_connect(&c->creq, &c->h.tcp, (struct sockaddr *)&lg_sa, lg_connect_cb);
        }
        if (r) {
            fprintf(stderr, "ghost-bench: connect: %s\n", uv_strerror(r));
            exit(1);
        }
        lg_connecting++;
    }
}

/* ---- phases ----------------------------------------------------------------------------- */

static void lg_measure_end(uv_timer_t *t);

static void lg_measure_start(uv_timer_t *t)
{
    lg_phase = LG_MEASURE;
    if (lg_opt.watch_pid) lg_watch_start = lg_proc_cpu(lg_opt.watch_pid);
    getrusage(RUSAGE_SELF, &lg_ru_start);
    lg_win_start_ns = uv_hrtime();
    uv_update_time(lg_loop);
    uv_timer_start(&lg_timer, lg_measure_end, (uint64_t)(lg_opt.seconds * 1000), 0);
}

static void lg_grace_over(uv_timer_t *t)
{
    lg_finish();
}

static void lg_measure_end(uv_timer_t *t)
{
    lg_win_end_ns = uv_hrtime();
    getrusage(RUSAGE_SELF, &lg_ru_end);
    if (lg_opt.watch_pid) lg_watch_end = lg_proc_cpu(lg_opt.watch_pid);
    lg_phase = LG_DRAIN;
    lg_sending = 0;
    uv_update_time(lg_loop);
    uv_timer_start(&lg_timer, lg_grace_over, LG_GRACE_MS, 0);
}

static void lg_send_parked(void)
{
    uint64_t now = uv_hrtime();
    for (uint32_t i = 0; i < lg_nconns; i++) {
        lg_conn *c = &lg_conns[i];
        for (uint32_t s = 0; s < c->nslots && !c->closed; s++) lg_send(c, c->first_slot + s, now);
    }
    lg_parked_sent = 1;
}

static void lg_all_connected(void)
{
    if (lg_opt.mode == LG_IDLE) {
        printf("ready\n");
        fflush(stdout);
        return;
    }
    if (lg_opt.mode == LG_PARK) {
        if (lg_opt.wait_usr1) {
            printf("connected\n");
            fflush(stdout);
        } else {
            lg_send_parked();
        }
        return;
    }
    uint64_t now = uv_hrtime();
    lg_sending = 1;
    for (uint32_t i = 0; i < lg_nconns; i++) {
        lg_conn *c = &lg_conns[i];
        for (uint32_t s = 0; s < c->nslots; s++) lg_send(c, c->first_slot + s, now);
    }
    lg_phase = LG_WARMUP;
    uv_update_time(lg_loop);
    if (lg_opt.warmup > 0)
        uv_timer_start(&lg_timer, lg_measure_start, (uint64_t)(lg_opt.warmup * 1000), 0);
    else
        lg_measure_start(&lg_timer);
}

/* ---- report ----------------------------------------------------------------------------- */

static uint64_t lg_unanswered(void)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < lg_nslots; i++) n += lg_slots[i].busy;
    return n;
}

static void lg_finish(void)
{
    if (lg_phase == LG_DONE) return;
    lg_phase = LG_DONE;
    double secs = (double)(lg_win_end_ns - lg_win_start_ns) / 1e9;
    uint64_t errors = lg_err_resp + lg_err_mismatch + lg_err_id + lg_err_proto + lg_err_closed;
    uint64_t unanswered = lg_unanswered();
    double calls = (double)lg_calls;
    double cpu = calls > 0 ? (lg_ru_us(&lg_ru_end) - lg_ru_us(&lg_ru_start)) / calls : 0;
    printf("calls/s=%.0f calls=%" PRIu64 " errors=%" PRIu64 " unanswered=%" PRIu64
           " p50=%.1fus p90=%.1fus p99=%.1fus p99.9=%.1fus max=%.1fus cpu_us_per_call=%.3f",
           secs > 0 ? calls / secs : 0, lg_calls, errors, unanswered,
           (double)lg_hist_quantile(&lg_lat, 0.50) / 1e3,
           (double)lg_hist_quantile(&lg_lat, 0.90) / 1e3,
           (double)lg_hist_quantile(&lg_lat, 0.99) / 1e3,
           (double)lg_hist_quantile(&lg_lat, 0.999) / 1e3, (double)lg_lat.max / 1e3, cpu);
    if (lg_opt.callback) printf(" callbacks=%" PRIu64, lg_callbacks);
    if (lg_opt.watch_pid) {
        if (lg_watch_start >= 0 && lg_watch_end >= 0 && calls > 0)
            printf(" watch_cpu_us_per_call=%.3f", (double)(lg_watch_end - lg_watch_start) * 1e6 /
                                                      (double)sysconf(_SC_CLK_TCK) / calls);
        else
            printf(" watch_cpu_us_per_call=n/a");
    }
    printf("\n");
    fflush(stdout);
    if (errors)
        fprintf(stderr,
                "ghost-bench: errors: error_responses=%" PRIu64 " mismatches=%" PRIu64
                " unknown_msgid=%" PRIu64 " protocol=%" PRIu64 " connections_lost=%" PRIu64 "\n",
                lg_err_resp, lg_err_mismatch, lg_err_id, lg_err_proto, lg_err_closed);
    exit(errors || unanswered || lg_calls == 0 ? 1 : 0);
}

static void lg_on_signal(uv_signal_t *sig, int signum)
{
    if (signum == SIGUSR1) {
        if (lg_opt.mode == LG_PARK && lg_nconnected == lg_nconns && !lg_parked_sent)
            lg_send_parked();
        return;
    }
    if (lg_opt.mode == LG_LOAD) {
        fprintf(stderr, "ghost-bench: interrupted\n");
        exit(1);
    }
    uint32_t open = 0;
    for (uint32_t i = 0; i < lg_nconns; i++) open += lg_conns[i].connected && !lg_conns[i].closed;
    fprintf(stderr,
            "ghost-bench: %s: connections_open=%" PRIu32 " answered=%" PRIu64
            " outstanding=%" PRIu64 "\n",
            lg_opt.mode == LG_IDLE ? "idle" : "park", open, lg_answers, lg_outstanding);
    exit(0);
}

/* ---- main ------------------------------------------------------------------------------- */

/* The request template [0, msgid, method, [payload]] (--callback: [fn, payload]) and where
 * its payload sits. */
static int lg_build_request(void)
{
    size_t mlen = strlen(lg_opt.method);
    if (mlen == 0 || mlen > GG_METHOD_MAX) return -1;
    lg_req = malloc(11 + mlen + 1 + sizeof lg_fn + 5 + lg_opt.size);
    if (!lg_req) return -1;
    size_t k = gg_put_request_hdr(lg_req, 0, lg_opt.method, (uint32_t)mlen);
    if (lg_opt.callback) {
        lg_req[k++] = (char)0x92;
        memcpy(lg_req + k, lg_fn, sizeof lg_fn);
        k += sizeof lg_fn;
    } else {
        lg_req[k++] = (char)0x91;
    }
    lg_want = lg_req + k;
    k += lg_opt.bin ? gg_put_bin_hdr(lg_req + k, (uint32_t)lg_opt.size)
                    : gg_put_str_hdr(lg_req + k, (uint32_t)lg_opt.size);
    for (size_t i = 0; i < lg_opt.size; i++)
        lg_req[k + i] = lg_opt.bin ? (char)(i * 31 + 7) : (char)('a' + i % 26);
    k += lg_opt.size;
    lg_req_len = k;
    lg_want_len = (size_t)(lg_req + k - lg_want);
    return 0;
}

static void lg_usage(void)
{
    fprintf(stderr,
            "usage: ghost-bench -a ADDR [-c CONNS=8] [-d DEPTH=1] [-t SECONDS=5] [-w WARMUP=1]\n"
            "                   [-s SIZE=64] [--bin] [-m METHOD=echo] [--watch-pid PID]\n"
            "                   [--token TOKEN]  (ghost.auth(TOKEN) first on each connection)\n"
            "                   [--ref METHOD]   (METHOD's object first; -m is then its method)\n"
            "                   [--callback METHOD]  (METHOD(fn, payload) calls fn(payload) back)\n"
            "       ghost-bench -a ADDR --idle N\n"
            "       ghost-bench -a ADDR --park N [-c CONNS] [-m METHOD] [-s SIZE] [--wait-usr1]\n");
}

static int lg_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    double v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--bin")) {
            lg_opt.bin = 1;
            continue;
        }
        if (!strcmp(a, "--wait-usr1")) {
            lg_opt.wait_usr1 = 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            lg_usage();
            return 0;
        }
        if (!val) goto usage;
        i++;
        if (!strcmp(a, "-a"))
            lg_opt.addr = val;
        else if (!strcmp(a, "-m"))
            lg_opt.method = val;
        else if (!strcmp(a, "--token"))
            lg_opt.token = val;
        else if (!strcmp(a, "--ref"))
            lg_opt.ref = val;
        else if (!strcmp(a, "--callback"))
            lg_opt.callback = val;
        else if (!strcmp(a, "-c") && !lg_num(val, 1, 1e6, &v))
            lg_opt.conns = (uint32_t)v;
        else if (!strcmp(a, "-d") && !lg_num(val, 1, 1e6, &v))
            lg_opt.depth = (uint32_t)v;
        else if (!strcmp(a, "-t") && !lg_num(val, 0.001, 1e6, &v))
            lg_opt.seconds = v;
        else if (!strcmp(a, "-w") && !lg_num(val, 0, 1e6, &v))
            lg_opt.warmup = v;
        else if (!strcmp(a, "-s") && !lg_num(val, 0, LG_MAX_PAYLOAD, &v))
            lg_opt.size = (size_t)v;
        else if (!strcmp(a, "--watch-pid") && !lg_num(val, 1, 1e9, &v))
            lg_opt.watch_pid = (int)v;
        else if (!strcmp(a, "--idle") && !lg_num(val, 1, 1e6, &v)) {
            lg_opt.mode = LG_IDLE;
            lg_opt.count = (uint32_t)v;
        } else if (!strcmp(a, "--park") && !lg_num(val, 1, 1e7, &v)) {
            lg_opt.mode = LG_PARK;
            lg_opt.count = (uint32_t)v;
        } else
            goto usage;
    }

    if ((lg_opt.ref || lg_opt.callback) && lg_opt.mode != LG_LOAD) goto usage;
    if (lg_opt.ref && lg_opt.callback) goto usage;
    if (lg_opt.callback) lg_opt.method = lg_opt.callback;
    signal(SIGPIPE, SIG_IGN);
    lg_loop = uv_default_loop();
    if (lg_parse_addr(lg_opt.addr)) {
        fprintf(stderr, "ghost-bench: bad address '%s'\n", lg_opt.addr);
        return 2;
    }
    if (lg_build_request()) {
        fprintf(stderr, "ghost-bench: bad method name or out of memory\n");
        return 2;
    }

    /* Connections and their call slots. */
    if (lg_opt.mode == LG_IDLE) {
        lg_nconns = lg_opt.count;
        lg_nslots = 0;
    } else if (lg_opt.mode == LG_PARK) {
        lg_nconns = lg_opt.conns < lg_opt.count ? lg_opt.conns : lg_opt.count;
        lg_nslots = lg_opt.count;
    } else {
        lg_nconns = lg_opt.conns;
        if ((uint64_t)lg_opt.conns * lg_opt.depth > (1u << 24)) goto usage;
        lg_nslots = lg_opt.conns * lg_opt.depth;
    }
    while (lg_slot_bits < 31 && (1u << lg_slot_bits) < lg_nslots) lg_slot_bits++;
    lg_slot_mask = (1u << lg_slot_bits) - 1;
    lg_conns = calloc(lg_nconns, sizeof *lg_conns);
    lg_slots = calloc(lg_nslots ? lg_nslots : 1, sizeof *lg_slots);
    if (!lg_conns || !lg_slots) {
        fprintf(stderr, "ghost-bench: out of memory\n");
        return 1;
    }
    for (uint32_t i = 0, s = 0; i < lg_nconns; i++) {
        lg_conn *c = &lg_conns[i];
        c->index = i;
        gg_scan_reset(&c->scan);
        /* Spread the slots evenly: the first (nslots % nconns) connections take one more. */
        c->nslots = lg_nslots / lg_nconns + (i < lg_nslots % lg_nconns);
        c->first_slot = s;
        s += c->nslots;
    }

    uv_timer_init(lg_loop, &lg_timer);
    uv_check_init(lg_loop, &lg_check);
    uv_check_start(&lg_check, lg_check_cb);
    uv_signal_init(lg_loop, &lg_sigterm);
    uv_signal_start(&lg_sigterm, lg_on_signal, SIGTERM);
    uv_signal_init(lg_loop, &lg_sigint);
    uv_signal_start(&lg_sigint, lg_on_signal, SIGINT);
    uv_signal_init(lg_loop, &lg_sigusr1);
    uv_signal_start(&lg_sigusr1, lg_on_signal, SIGUSR1);

    lg_start_connects();
    uv_run(lg_loop, UV_RUN_DEFAULT);
    return 1; /* not reached: lg_finish and the signal handler exit */

usage:
    lg_usage();
    return 2;
}

/* codec.h -- MessagePack-RPC framing: a bounded, allocation-free scanner that finds where
 * one message ends and reads its envelope, and writers for envelope headers.
 *
 * Why not msgpack-c's unpacker on the hot path: it builds an object tree per message in a
 * zone and sizes allocations from the counts a frame claims (msgpack-c #1013, no limit in
 * its C API: #985). The gateway forwards params and results as raw bytes, so it only
 * needs to know where a message ends; this scanner never allocates and checks every
 * claimed length against the configured limits before trusting it. msgpack-c is used
 * where a whole value must be decoded (CLI output, Lua), always after this scan. */
#ifndef GG_CODEC_H
#define GG_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define GG_REQUEST  0
#define GG_RESPONSE 1
#define GG_NOTIFY   2

/* Hard ceiling for max_depth; the scan stack is this many 32-bit counters. */
#define GG_DEPTH_CAP   128
#define GG_METHOD_MAX  255

/* What gg_method_check() finds wrong with a method name, worst first. Each name is split into
 * '.'-separated segments: "users.get_profile" has two. */
#define GG_NAME_OK       0
#define GG_NAME_PRIVATE  1 /* a segment starts with '_' (private by convention: _x, __gc) */
#define GG_NAME_EMPTY    2 /* an empty segment: "a..b", "a.", ".a" */
#define GG_NAME_CONTROL  3 /* a control character (C0, DEL, C1): NUL, newline, ... */
#define GG_NAME_UTF8     4 /* not valid UTF-8 */

/* gg_scan() results. */
#define GG_SCAN_DONE   1  /* one whole message walked; see st->msg */
#define GG_SCAN_MORE   0  /* need more bytes: call again with the same st and more data */
#define GG_ETOOBIG    -1  /* message is, or claims to be, larger than max_message */
#define GG_ETOODEEP   -2  /* nesting deeper than max_depth */
#define GG_EMALFORMED -3  /* not MessagePack (0xc1, ...) */

typedef struct gg_msg {
    /* Captured from the top-level array while walking; flags say what was seen. */
    int is_array;         /* top-level object is an array */
    uint32_t count;       /* its element count */
    int type;             /* element 0 if an integer 0..2, else -1 */
    int has_id;           /* element 1 is an unsigned integer <= UINT32_MAX */
    uint32_t msgid;
    int has_method;       /* element 2 (1 for a notification) is a str or bin */
    uint32_t method_off;  /* offset from the start of the message */
    uint32_t method_len;
    uint32_t method_dot;  /* offset of the first '.' in the method, or method_len: none */
    uint8_t method_flaw;  /* GG_NAME_*: what gg_method_check found (0: a public name) */
    uint32_t body_off;    /* where params (request/notify) or error (response) start */
    uint8_t body_first;   /* first byte of the params object (request/notify) */
    size_t size;          /* bytes of the whole message (valid when DONE) */
} gg_msg;

/* Resumable scan state of one stream. gg_scan_reset() before each message. Positions are
 * offsets from the message's first byte, so the caller may move its buffer between calls. */
typedef struct gg_scan_state {
    size_t pos;   /* bytes walked so far */
    size_t need;  /* after MORE: do not call again before this many bytes are buffered */
    uint32_t depth;
    uint32_t index; /* index of the next element of the top-level array */
    gg_msg msg;
    uint32_t left[GG_DEPTH_CAP + 1];
} gg_scan_state;

typedef struct gg_scan_limits {
    size_t max_message;   /* bytes; must be < 4 GiB */
    uint32_t max_depth;   /* 1..GG_DEPTH_CAP; the envelope array counts as depth 1 */
} gg_scan_limits;

void gg_scan_reset(gg_scan_state *st);

/* Walk the message that starts at buf[0]; len bytes are available. Never reads past len,
 * never allocates. Returns GG_SCAN_DONE, GG_SCAN_MORE or a negative GG_E* code. After an
 * error, st->msg still holds whatever envelope fields were read (has_id tells whether the
 * caller can answer it). */
int gg_scan(gg_scan_state *st, const char *buf, size_t len, const gg_scan_limits *lim);

/* After DONE: NULL if msg is a well-formed MessagePack-RPC envelope, else a reason. */
const char *gg_msg_invalid(const gg_msg *m);

/* Check a method name once, where it is parsed: returns GG_NAME_OK or the worst flaw found,
 * and stores the offset of the first '.' (or n when there is none) in *dot. O(n), no
 * allocation; gg_scan() calls it for every method it captures. */
int gg_method_check(const char *s, uint32_t n, uint32_t *dot);

/* A method name split once, where it is parsed: "svc.rest" with its first '.' at `dot` (len
 * when there is none). The gg_msg's method_dot and gg_method_check give `dot`; nothing
 * searches the name for it again. */
typedef struct gg_method {
    const char *name;
    uint32_t len;
    uint32_t dot;
} gg_method;

static inline const char *gg_method_rest(const gg_method *m)
{
    return m->name + m->dot + 1;
}

static inline uint32_t gg_method_rest_len(const gg_method *m)
{
    return m->len - m->dot - 1;
}

/* A short reason for a GG_NAME_* flaw, for error messages ("" for GG_NAME_OK). */
const char *gg_method_flaw_reason(int flaw);

/* Writers. Each writes at most the stated bytes at p and returns the bytes written. */
size_t gg_put_uint(char *p, uint64_t v);             /* <= 9 */
size_t gg_put_int(char *p, int64_t v);               /* <= 9 */
size_t gg_put_str_hdr(char *p, uint32_t len);        /* <= 5 */
size_t gg_put_bin_hdr(char *p, uint32_t len);        /* <= 5 */
size_t gg_put_array_hdr(char *p, uint32_t n);        /* <= 5 */
size_t gg_put_map_hdr(char *p, uint32_t n);          /* <= 5 */
/* [0, msgid, method: the header up to where params go. Fixed 4-byte msgid encoding so the
 * caller may patch it later. <= 11 + method_len */
size_t gg_put_request_hdr(char *p, uint32_t msgid, const char *method, uint32_t method_len);
/* [2, method, : a notification's header up to where params go. <= 7 + method_len */
size_t gg_put_notify_hdr(char *p, const char *method, uint32_t method_len);
/* [1, msgid, : the header up to where error and result go. <= 7 */
size_t gg_put_response_hdr(char *p, uint32_t msgid);
#define GG_RESPONSE_HDR_MAX 7

/* Read the unsigned integer at p (any MessagePack integer encoding). Returns bytes read, or 0
 * when p[0..len) does not hold a non-negative integer. */
size_t gg_get_uint(const char *p, size_t len, uint64_t *out);
/* Read a str or bin header at p. Returns header bytes, or 0; *n is the payload length. */
size_t gg_get_str(const char *p, size_t len, uint32_t *n);
/* Read an array header at p. Returns header bytes, or 0; *n is the element count. */
size_t gg_get_array(const char *p, size_t len, uint32_t *n);
/* Read the ext value at p: its type, and where its data is (inside p). Returns the value's
 * bytes, or 0 when p[0..len) does not start with a whole ext value. */
size_t gg_get_ext(const char *p, size_t len, int8_t *type, const char **data, size_t *dlen);

#endif

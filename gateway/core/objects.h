/* objects.h -- remote objects on the wire: the three MessagePack ext types (an object owned by
 * the sender, one owned by the receiver, a promise) and an allocation-free scan that tells
 * whether a message carries any of them (docs/protocol.md#remote-objects).
 *
 * The numbers are the defaults of both the gateway (objects.ext in the config) and the Lua
 * library (ghost.core exports them): one source of truth. 0-2 are avoided (neovim uses them). */
#ifndef GG_OBJECTS_H
#define GG_OBJECTS_H

#include <stddef.h>
#include <stdint.h>

#define GG_OBJ_EXT_OBJECT  64 /* [id, interface]: an object the sender exports */
#define GG_OBJ_EXT_YOURS   65 /* id: an object the receiver exported, handed back */
#define GG_OBJ_EXT_PROMISE 66 /* [msgid, path]: the future result of a call in flight */

/* What a gateway config may choose for each (objects.ext; ghostgate check refuses others). */
#define GG_OBJ_EXT_MIN 3
#define GG_OBJ_EXT_MAX 127

/* The ext type numbers in use on one side (configurable, distinct, never 0-2). */
typedef struct gg_obj_ext {
    int8_t object, yours, promise;
} gg_obj_ext;

/* What gg_obj_scan found. */
typedef struct gg_obj_seen {
    uint32_t objects, yours, promises; /* how many of each kind */
    uint32_t bad;                      /* ext values of these types with an unusable payload */
} gg_obj_seen;

/* Set *ext to the defaults. */
void gg_obj_ext_default(gg_obj_ext *ext);

/* Check a configured triple: 0, or -1 with a reason in err (not distinct, or 0-2). */
int gg_obj_ext_check(const gg_obj_ext *ext, char *err, size_t errlen);

/* Count the remote-object ext values in the MessagePack bytes data[0..len) (one value or
 * several one after another). One pass over the headers, no allocation, never reads past
 * len; a message without any ext value costs only the walk. The gateway calls it on params
 * and results only when a connection has objects enabled, so plain calls stay pass-through.
 * Returns the total number found (objects + yours + promises). */
uint32_t gg_obj_scan(const char *data, size_t len, const gg_obj_ext *ext, gg_obj_seen *seen);

struct gg_buf;

enum { GG_OBJ_RW_NOMEM = -1, GG_OBJ_RW_BAD = -2 /* an ext payload that cannot be one */ };

/* Called by gg_obj_rewrite for each remote-object ext value (kind 0 object, 1 yours, 2
 * promise) with its payload: appends what replaces the whole ext value to out, or returns
 * non-zero to stop (returned by gg_obj_rewrite). */
typedef int (*gg_obj_map_fn)(void *ud, int kind, const char *payload, size_t plen,
                             struct gg_buf *out);

/* Copy data[0..len) to out (a heap buffer), each remote-object ext value replaced by what fn
 * appends. Used only for messages gg_obj_scan found ext values in. 0, or fn's non-zero
 * return, GG_OBJ_RW_NOMEM or GG_OBJ_RW_BAD. */
int gg_obj_rewrite(const char *data, size_t len, const gg_obj_ext *ext, gg_obj_map_fn fn,
                   void *ud, struct gg_buf *out);

/* The params of $call and $get, [target, name, ...]: what a reader needs of them. Nothing is
 * checked beyond the forms; each reader says which it accepts. */
typedef struct gg_obj_params {
    uint32_t n;          /* elements: 0 when params is not a fixarray */
    size_t tl;           /* bytes of the target when it is an ext value, else 0 */
    int8_t type;         /* the target's ext type, its data (tl > 0) */
    const char *payload;
    size_t plen;
    size_t nh;           /* bytes of the name's str header when tl > 0 and it is a str, else 0 */
    const char *name;    /* the name (nh > 0) */
    uint32_t name_len;
    const char *rest;    /* after the name, to the end of params (nh > 0) */
    size_t rest_len;
} gg_obj_params;
void gg_obj_params_split(const char *params, size_t len, gg_obj_params *op);

/* Helpers of map functions: append an ext value (or only the header of one whose payload has
 * n bytes: fixext or ext 8/16/32); write / read a MessagePack unsigned integer
 * (gg_obj_put_uint needs 9 bytes; gg_obj_get_uint returns the bytes read, 0: not one). */
int gg_obj_put_ext(struct gg_buf *out, int8_t type, const void *p, size_t n);
int gg_obj_put_ext_hdr(struct gg_buf *out, int8_t type, size_t n);
size_t gg_obj_put_uint(uint8_t *p, uint64_t v);
size_t gg_obj_get_uint(const uint8_t *p, size_t n, uint64_t *v);

#endif

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

#endif

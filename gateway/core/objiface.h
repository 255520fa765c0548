/* objiface.h -- the interface an owner recorded when it handed out an object: the array of
 * method names in ext 64 [id, interface] (docs/protocol.md#ext-types). The gateway keeps it
 * beside the object (objtable's owner-side entry, `iface`) and checks calls against it: what
 * the owner said when it exported the object, never what a caller claims. The one parser for
 * both owners: an upstream's objects (upstreams/mprpc_objects.c) and a client's own
 * (proxy/callbacks.c).
 *
 * Memory: one allocation per object the gateway imports (not per reference, not per call),
 * the interface's own bytes; freed with the object's entry. */
#ifndef GG_OBJIFACE_H
#define GG_OBJIFACE_H

#include <stddef.h>
#include <stdint.h>

#define GG_OBJIFACE_MAX 1024 /* method names an interface may list */

typedef struct gg_objiface {
    uint32_t len;
    char bytes[]; /* a MessagePack array of strings, checked when made */
} gg_objiface;

/* Whether p[0..n) is a MessagePack array of at most GG_OBJIFACE_MAX strings and nothing else:
 * the interfaces gg_objiface_new accepts. It allocates nothing: a caller that must tell a
 * malformed interface from an out-of-memory gg_objiface_new asks this first. */
int gg_objiface_valid(const char *p, size_t n);

/* A copy of the interface at p[0..n) when gg_objiface_valid accepts it; NULL otherwise (or
 * out of memory). The caller frees it with free(). */
gg_objiface *gg_objiface_new(const char *p, size_t n);

/* Whether the interface lists name[0..len). NULL lists nothing. O(methods listed). */
int gg_objiface_has(const gg_objiface *f, const char *name, uint32_t len);

#endif

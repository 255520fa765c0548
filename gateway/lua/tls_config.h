/* tls_config.h -- read a config's `tls` table (validated by ghost.config) into a context. */
#ifndef GG_TLS_CONFIG_H
#define GG_TLS_CONFIG_H

#include "core/addr.h"
#include "core/tls.h"

#include <lua.h>

/* A context from the TLS options table at index t (fields of gg_tls_conf: cert, key, ca,
 * server_name, verify_client, tls12, handshake_timeout in seconds, max_handshakes); strings
 * are copied by OpenSSL, so the table may go. NULL with the reason in err. */
gg_tls_ctx *gg_tls_ctx_from_lua(lua_State *L, int t, int role, char *err, size_t errlen);

/* The `tls` field of the table at idx: *out is a new server context, or NULL when the field is
 * absent. Certificate and key files are read now, so a broken one fails the (re)load: returns
 * -1 with "SOURCE: tls.cert FILE: reason" in err. */
int gg_tls_config_read(lua_State *L, int idx, const char *source, gg_tls_ctx **out, char *err,
                       size_t errlen);

/* A service's client context when one of its n upstreams is tls://, from the service table's
 * `tls` field at idx (absent: the system's CAs); *out NULL otherwise. -1 with "where: reason"
 * in err when a file cannot be used. */
int gg_tls_service_read(lua_State *L, int idx, const gg_addr *ups, int n, const char *where,
                        gg_tls_ctx **out, char *err, size_t errlen);

/* An adapter service's context for http.request to https:// URLs: ALPN http/1.1, the `tls`
 * field of the service table at idx for ca, cert and key (absent: the system's CAs, no client
 * certificate); server_name does not apply, each URL's host is checked. -1 with "where:
 * reason" in err when a file cannot be used. */
int gg_tls_https_read(lua_State *L, int idx, const char *where, gg_tls_ctx **out, char *err,
                      size_t errlen);

/* mTLS identity: the client table on top of L gets certificate = "CN=..." from the verified
 * client certificate, and the authenticator (auth_ref, LUA_NOREF when none) maps it to an
 * identity and scopes (ghost.auth certificate()). Nothing when t is NULL or has no verified
 * certificate. Raises Lua errors: call it in a protected call. */
void gg_tls_push_identity(lua_State *L, int auth_ref, const gg_tls *t);

#endif

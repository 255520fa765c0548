/* jsonrpc_msg.h -- the JSON-RPC 2.0 mapping of the jsonrpc-http upstream (jsonrpc_http.c),
 * with no I/O. */
#ifndef GG_JSONRPC_MSG_H
#define GG_JSONRPC_MSG_H

#include <stddef.h>
#include <stdint.h>

/* The JSON-RPC request body {"jsonrpc":"2.0","id":id,"method":..,"params":[..]} for a call
 * whose params are the MessagePack array params[0..plen), as a malloc'd string (free()), or
 * NULL with why in err. bin, ext and integers beyond 2^53 are refused: a JSON-RPC peer would
 * not read them back as they were sent. */
char *gg_jsonrpc_request(uint32_t id, const char *method, uint32_t mlen, const char *params,
                         size_t plen, int max_depth, char *err, size_t errlen);
/* The first line of a body, at most 80 bytes, into out (NUL-terminated), for the log. */
void gg_jsonrpc_excerpt(const char *body, size_t len, char *out, size_t cap);

#endif

/* config.h -- the gateway's configuration, read from a Lua file validated by ghost.config. */
#ifndef GG_CONFIG_H
#define GG_CONFIG_H

#include "core/addr.h"
#include "core/redis.h"
#include "core/objects.h"

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gg_limits {
    size_t max_message_size;
    uint32_t max_depth;
    uint32_t max_decode_values; /* values a Lua adapter decodes from one params or result */
    uint32_t max_inflight_per_client;
    uint32_t max_refs_per_client; /* remote-object references a client may hold */
    uint32_t max_kept_per_client; /* calls a client keeps for promise pipelining */
    uint32_t max_callback_depth;      /* callbacks into one client nested in one another */
    uint32_t max_callbacks_in_flight; /* callbacks into one client at once */
    uint32_t max_clients;
    uint32_t max_calls;
    size_t max_write_buffer;
    uint64_t idle_timeout_ms;
    uint64_t message_timeout_ms;
    uint64_t write_timeout_ms; /* a peer whose queued output sees no progress this long is closed */
} gg_limits;

#define GG_PROTO_MSGPACK      0
#define GG_PROTO_JSONRPC_HTTP 1
#define GG_PROTO_ADAPTER      2 /* implemented by a Lua file in the gateway */
#define GG_PROTO_COUNT        3 /* entries of gg_run_opts.upstreams (upstreams/upstreams.c) */

typedef struct gg_service_conf {
    char *name;
    int protocol;  /* GG_PROTO_* */
    char *adapter; /* GG_PROTO_ADAPTER: the Lua file */
    gg_addr *upstreams;
    int nupstreams;
    uint64_t deadline_ms;
    int connections;
    int keep_prefix;
    int error_details;   /* error_details = true: tracebacks and adapter messages reach clients */
    int any_method_name; /* method_names = "any": forward names gg_method_check flags */
    struct gg_tls_ctx *tls; /* tls:// upstreams: a client context (lua/tls_config.c), else NULL */
    struct gg_tls_ctx *https; /* adapters: http.request to https:// URLs (ALPN http/1.1) */
    int objects;         /* objects = true: remote objects in results are routed (objtable.h) */
    int discover;        /* discover = true: endpoints come from the registry (proxy/discover.h),
                          * upstreams is empty */
} gg_service_conf;

typedef struct gg_config {
    char *source; /* file name, or "<default>" */
    gg_addr *listen;
    int nlisten;
    int log_level;
    uint64_t drain_timeout_ms;
    int workers;
    uint64_t watchdog_ms; /* 0: off */
    size_t lua_memory;    /* each Lua state's budget in bytes; 0: none */
    gg_limits limits;
    gg_obj_ext obj_ext; /* objects.ext: the remote-object ext types (restart only) */
    gg_service_conf *services;
    int nservices;
    gg_addr *http_listen; /* the JSON-RPC over HTTP front door, if configured */
    int nhttp;
    char *http_path;
    size_t http_max_body;
    gg_addr *admin_listen; /* the admin endpoint (/metrics, /health...), if configured */
    int nadmin;
    char *redis; /* the top-level redis URL as written (validated into redis_url), or NULL */
    gg_redis_url redis_url;
    uint64_t discover_resync_ms; /* full re-read of the registry (discover = true services) */
    struct gg_tls_ctx *tls; /* the tls:// listeners' context (tls_config.c), NULL when none */
    lua_State *L;  /* the Lua side of the config (policies); closed with it if owns_L */
    int owns_L;
    int table_ref; /* the normalised config table, in L's registry */
} gg_config;

/* Load and validate a config file; path NULL means the embedded default. Returns a config the
 * caller frees with gg_config_free, or NULL with the reason (file, option, why) in err. */
gg_config *gg_config_load(const char *path, char *err, size_t errlen);
/* The same, in an existing Lua state the caller keeps owning (a reload keeps policy state). */
gg_config *gg_config_load_in(lua_State *L, const char *path, char *err, size_t errlen);
/* The same from a table on top of L (a state made by gg_lua_new). Takes ownership of L, also
 * on failure. Used by tests and fuzzers to validate configs without running code. */
gg_config *gg_config_from_table(lua_State *L, const char *source, char *err, size_t errlen);
void gg_config_free(gg_config *c);

#endif

/* cli_admin.c -- operator commands: `ghostgate reload` and `ghostgate token`. */
#include "cli/cli.h"
#include "proxy/config.h"
#include "lua/lua_bridge.h"
#include "proxy/policy.h"

#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The config's pid_file, or NULL. Returns a malloc'd string the caller frees. */
static char *config_pid_file(const char *path, char *err, size_t errlen)
{
    gg_config *cfg = gg_config_load(path, err, errlen);
    if (!cfg) return NULL;
    lua_State *L = cfg->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, cfg->table_ref);
    lua_getfield(L, -1, "pid_file");
    char *out = lua_isstring(L, -1) ? strdup(lua_tostring(L, -1)) : NULL;
    if (!out) snprintf(err, errlen, "%s sets no pid_file", path);
    gg_config_free(cfg);
    return out;
}

static const char reload_usage[] =
    "usage: ghostgate reload (-p PIDFILE | -c FILE)\n"
    "Ask the running gateway to re-read its config (SIGHUP). Calls in flight finish under the\n"
    "old config; a config that fails to load is refused and the old one stays.\n"
    "  -p PIDFILE  the file holding the gateway's pid\n"
    "  -c FILE     the gateway's config: its pid_file is used\n"
    "  -h, --help  print this help\n"
    "Exit status: 0 signal sent (the gateway logs reloaded or reload_failed), 1 the gateway is\n"
    "not running or its pid cannot be read, 64 bad usage.\n";

static const char token_usage[] =
    "usage: ghostgate token -c FILE -i IDENTITY [-t TTL] [-s SCOPES]\n"
    "Mint an HMAC token signed with the config's auth.hmac_secret and print it on stdout.\n"
    "Clients present it with ghost.auth(TOKEN) (ghostgate call -T TOKEN).\n"
    "  -c FILE      the gateway's config (needs auth.hmac_secret)\n"
    "  -i IDENTITY  who the token is for: letters, digits, _ . @ -\n"
    "  -t TTL       lifetime in seconds (default 3600, at most the config's auth.max_ttl,\n"
    "               default 86400)\n"
    "  -s SCOPES    comma-separated globs over service.method, e.g. 'demo.*,users.get_*'\n"
    "               (default '**', every method, as for API keys)\n"
    "  -h, --help   print this help\n"
    "Exit status: 0 token printed, 1 the config cannot mint it, 64 bad usage.\n";

__attribute__((format(printf, 3, 4))) static int usage_error(const char *cmd, const char *usage,
                                                            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ghostgate %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", usage);
    return 64;
}

static int is_help(const char *a)
{
    return !strcmp(a, "-h") || !strcmp(a, "--help");
}

int gg_cmd_reload(int argc, char **argv)
{
    const char *pidfile = NULL, *config = NULL;
    char err[1024], *owned = NULL;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(reload_usage, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "-p") && i + 1 < argc)
            pidfile = argv[++i];
        else if (!strcmp(argv[i], "-c") && i + 1 < argc)
            config = argv[++i];
        else
            return usage_error("reload", reload_usage, "unexpected argument '%s'", argv[i]);
    }
    if (!pidfile && config) {
        if (!(owned = config_pid_file(config, err, sizeof err))) {
            fprintf(stderr, "ghostgate reload: %s\n", err);
            return 1;
        }
        pidfile = owned;
    }
    if (!pidfile) return usage_error("reload", reload_usage, "-p PIDFILE or -c FILE is required");
    FILE *f = fopen(pidfile, "r");
    long pid = 0;
    int status = 1;
    if (!f && errno == ENOENT) {
        /* the gateway writes its pid_file once serving and removes it at exit */
        fprintf(stderr, "ghostgate reload: the gateway is not running (%s does not exist); start "
                        "it with: ghostgate serve -c FILE\n", pidfile);
        goto out;
    }
    if (!f || fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
        fprintf(stderr, "ghostgate reload: cannot read a pid from %s%s%s\n", pidfile, f ? "" : ": ",
                f ? "" : strerror(errno));
        goto out;
    }
    if (kill((pid_t)pid, SIGHUP)) {
        if (errno == ESRCH)
            fprintf(stderr, "ghostgate reload: the gateway is not running (no process has pid %ld, "
                            "read from %s, a file left by a gateway that did not exit cleanly); "
                            "start it with: ghostgate serve -c FILE\n", pid, pidfile);
        else
            fprintf(stderr, "ghostgate reload: cannot signal pid %ld (from %s): %s%s\n", pid, pidfile,
                    strerror(errno), errno == EPERM ? "; run as the gateway's user" : "");
        goto out;
    }
    status = 0;
out:
    if (f) fclose(f);
    free(owned);
    if (status) return status;
    printf("sent SIGHUP to ghostgate (pid %ld); the gateway logs reloaded or reload_failed\n", pid);
    return 0;
}

int gg_cmd_token(int argc, char **argv)
{
    /* '**' like an API key without scopes: a token without scopes is refused (403) by every
     * service with the auth policy, which is rarely what whoever mints it wants. */
    const char *config = NULL, *identity = NULL, *scopes = "**", *ttl_arg = NULL;
    double ttl = 3600;
    char err[1024];
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(token_usage, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "-c") && i + 1 < argc)
            config = argv[++i];
        else if (!strcmp(argv[i], "-i") && i + 1 < argc)
            identity = argv[++i];
        else if (!strcmp(argv[i], "-s") && i + 1 < argc)
            scopes = argv[++i];
        else if (!strcmp(argv[i], "-t") && i + 1 < argc)
            ttl_arg = argv[++i];
        else
            return usage_error("token", token_usage, "unexpected argument '%s'", argv[i]);
    }
    if (!config || !identity) return usage_error("token", token_usage, "-c FILE and -i IDENTITY are required");
    if (ttl_arg) {
        char *end;
        errno = 0;
        ttl = strtod(ttl_arg, &end);
        if (end == ttl_arg || *end || errno || !isfinite(ttl) || ttl < 1)
            return usage_error("token", token_usage, "bad TTL '%s' (seconds, at least 1)", ttl_arg);
    }
    gg_config *cfg = gg_config_load(config, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "ghostgate token: %s\n", err);
        return 1;
    }
    lua_State *L = cfg->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, cfg->table_ref);
    lua_getfield(L, -1, "auth");
    lua_getfield(L, -1, "hmac_secret");
    if (!lua_isstring(L, -1)) {
        fprintf(stderr, "ghostgate token: %s sets no auth.hmac_secret\n", config);
        gg_config_free(cfg);
        return 1;
    }
    int secret = lua_gettop(L);
    lua_getfield(L, -2, "max_ttl"); /* ghost.config fills in the default */
    double max_ttl = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (ttl > max_ttl) {
        fprintf(stderr,
                "ghostgate token: TTL %g s exceeds auth.max_ttl (%g s) in %s: the gateway would "
                "refuse the token; use -t %g or less, or raise max_ttl\n",
                ttl, max_ttl, config, max_ttl);
        gg_config_free(cfg);
        return 1;
    }
    if (!*scopes)
        fprintf(stderr, "ghostgate token: warning: the token has no scopes: every service with "
                        "the auth policy will refuse its calls (403)\n");
    gg_policy_push_host(L, NULL);
    lua_pushvalue(L, secret);
    lua_pushstring(L, identity);
    lua_pushnumber(L, ttl);
    lua_pushstring(L, scopes);
    /* mint returns nil, reason for an identity or scopes a token cannot carry. */
    int rc = gg_lua_call(L, "ghost.auth", "mint", 5, 2, err, sizeof err);
    if (rc == 0 && lua_isstring(L, -2)) {
        printf("%s\n", lua_tostring(L, -2));
    } else {
        if (rc == 0) snprintf(err, sizeof err, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "cannot mint");
        fprintf(stderr, "ghostgate token: %s\n", err);
        rc = 1;
    }
    gg_config_free(cfg);
    return rc ? 1 : 0;
}

/* cli_admin.c -- operator commands: `ghostgate reload` and `ghostgate token`. */
#include "cli.h"
#include "config.h"
#include "lua_bridge.h"
#include "policy.h"

#include <errno.h>
#include <lauxlib.h>
#include <signal.h>
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

int gg_cmd_reload(int argc, char **argv)
{
    const char *pidfile = NULL, *config = NULL;
    char err[1024], *owned = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-p") && i + 1 < argc)
            pidfile = argv[++i];
        else if (!strcmp(argv[i], "-c") && i + 1 < argc)
            config = argv[++i];
        else {
            fprintf(stderr, "usage: ghostgate reload (-p PIDFILE | -c CONFIG)\n");
            return 64;
        }
    }
    if (!pidfile && config) {
        if (!(owned = config_pid_file(config, err, sizeof err))) {
            fprintf(stderr, "ghostgate reload: %s\n", err);
            return 1;
        }
        pidfile = owned;
    }
    if (!pidfile) {
        fprintf(stderr, "usage: ghostgate reload (-p PIDFILE | -c CONFIG)\n");
        return 64;
    }
    FILE *f = fopen(pidfile, "r");
    long pid = 0;
    if (!f || fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
        fprintf(stderr, "ghostgate reload: cannot read a pid from %s\n", pidfile);
        if (f) fclose(f);
        free(owned);
        return 1;
    }
    fclose(f);
    free(owned);
    if (kill((pid_t)pid, SIGHUP)) {
        fprintf(stderr, "ghostgate reload: pid %ld: %s\n", pid, strerror(errno));
        return 1;
    }
    printf("sent SIGHUP to ghostgate (pid %ld); the gateway logs reloaded or reload_failed\n", pid);
    return 0;
}

int gg_cmd_token(int argc, char **argv)
{
    const char *config = NULL, *identity = NULL, *scopes = "";
    double ttl = 3600;
    char err[1024];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc)
            config = argv[++i];
        else if (!strcmp(argv[i], "-i") && i + 1 < argc)
            identity = argv[++i];
        else if (!strcmp(argv[i], "-s") && i + 1 < argc)
            scopes = argv[++i];
        else if (!strcmp(argv[i], "-t") && i + 1 < argc)
            ttl = atof(argv[++i]);
        else
            goto usage;
    }
    if (!config || !identity || ttl <= 0) goto usage;
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
usage:
    fprintf(stderr, "usage: ghostgate token -c CONFIG -i IDENTITY [-t TTL_SECONDS] [-s SCOPES]\n"
                    "  SCOPES: comma-separated globs over service.method, e.g. 'demo.*,users.get_*'\n");
    return 64;
}

/* main.c -- the ghostgate command: serve, check, call, version. */
#include "cli.h"
#include "config.h"
#include "log.h"
#include "server.h"
#include "workers.h"

#include <stdio.h>
#include <string.h>

#define GG_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f, "usage: ghostgate serve [-c FILE] [--log-level error|warn|info|debug]\n"
               "       ghostgate check -c FILE\n"
               "       ghostgate call [-a ADDR] [-t SECONDS] [-T TOKEN] service.method [ARG...]\n"
               "       ghostgate reload (-p PIDFILE | -c FILE)\n"
               "       ghostgate token -c FILE -i IDENTITY [-t TTL] [-s SCOPES]\n"
               "       ghostgate version\n");
}

/* Options shared by serve and check. Returns 0, or 64 on a usage error. */
static int parse_opts(int argc, char **argv, const char **path, const char **level)
{
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc)
            *path = argv[++i];
        else if ((!strcmp(argv[i], "-l") || !strcmp(argv[i], "--log-level")) && i + 1 < argc && level)
            *level = argv[++i];
        else
            return 64;
    }
    return 0;
}

static int cmd_serve(int argc, char **argv)
{
    const char *path = NULL, *level = NULL;
    char err[1024];
    if (parse_opts(argc, argv, &path, &level)) {
        usage(stderr);
        return 64;
    }
    int lvl = level ? gg_log_level_parse(level) : 0;
    if (lvl < 0) {
        fprintf(stderr, "ghostgate: unknown log level '%s'\n", level);
        return 64;
    }
    gg_config *cfg = gg_config_load(path, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "ghostgate: %s\n", err);
        return 1;
    }
    gg_run_opts opts = {.config_path = path, .log_level = level ? lvl : -1, .ready_fd = -1,
                        .listen_fds = NULL, .reuseport = 0, .worker = -1};
    if (cfg->workers > 1) return gg_master_run(cfg, &opts);
    return gg_server_run(cfg, &opts);
}

static int cmd_check(int argc, char **argv)
{
    const char *path = NULL;
    char err[1024];
    if (parse_opts(argc, argv, &path, NULL) || !path) {
        usage(stderr);
        return 64;
    }
    gg_config *cfg = gg_config_load(path, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "ghostgate: %s\n", err);
        return 1;
    }
    printf("%s: ok (%d listener%s, %d service%s)\n", path, cfg->nlisten, cfg->nlisten == 1 ? "" : "s",
           cfg->nservices, cfg->nservices == 1 ? "" : "s");
    gg_config_free(cfg);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 64;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "check")) return cmd_check(argc - 1, argv + 1);
    if (!strcmp(cmd, "call")) return gg_cmd_call(argc - 1, argv + 1);
    if (!strcmp(cmd, "run")) return gg_cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "stubs")) return gg_cmd_stubs(argc - 1, argv + 1);
    if (!strcmp(cmd, "reload")) return gg_cmd_reload(argc - 1, argv + 1);
    if (!strcmp(cmd, "token")) return gg_cmd_token(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("ghostgate %s\n", GG_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "ghostgate: unknown command '%s'\n", cmd);
    usage(stderr);
    return 64;
}

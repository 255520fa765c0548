/* main.c -- the ghostgate command: serve, check and version here, the others in cli_*.c. */
#include "cli/cli.h"
#include "proxy/config.h"
#include "core/log.h"
#include "proxy/server.h"
#include "cli/workers.h"
#include "http/http_front.h"
#include "upstreams/upstreams.h"

#include <stdio.h>
#include <string.h>

#define GG_VERSION "0.1.0"

/* Keep in step with README.md's command list (the cli spec compares them). */
static const char usage_text[] =
    "usage: ghostgate serve [-c FILE] [-l LEVEL]\n"
    "       ghostgate check -c FILE\n"
    "       ghostgate call [-a ADDR] [-t SECONDS] [-T TOKEN] [--ca FILE] [--cert FILE --key FILE]\n"
    "                      [--server-name NAME] service.method [ARG...]\n"
    "       ghostgate reload (-p PIDFILE | -c FILE)\n"
    "       ghostgate token -c FILE -i IDENTITY [-t TTL] [-s SCOPES]\n"
    "       ghostgate run SCRIPT.lua [ARG...]\n"
    "       ghostgate stubs [-a ADDR] [-t SECONDS] -o DIR\n"
    "       ghostgate register -r URL -s SERVICE -a ADDR [--ttl SECONDS]\n"
    "       ghostgate version\n"
    "       ghostgate help\n"
    "`ghostgate COMMAND --help` describes a command and all its options.\n";

static const char serve_usage[] =
    "usage: ghostgate serve [-c FILE] [-l LEVEL]\n"
    "Run the gateway in the foreground until SIGTERM or SIGINT (drain, then exit 0); SIGHUP\n"
    "reloads the config.\n"
    "  -c, --config FILE     the config (default: the embedded demo config, deploy/default.lua)\n"
    "  -l, --log-level LEVEL error, warn, info or debug (default: the config's log_level)\n"
    "  -h, --help            print this help\n"
    "Exit status: 0 after a drain, 1 the config or a listener cannot be set up, 64 bad usage.\n";

static const char check_usage[] =
    "usage: ghostgate check -c FILE\n"
    "Load and validate a config without serving: prints `FILE: ok (...)`, or what is wrong.\n"
    "  -c, --config FILE  the config to check\n"
    "  -h, --help         print this help\n"
    "Exit status: 0 valid, 1 invalid, 64 bad usage.\n";

static const char version_usage[] =
    "usage: ghostgate version\n"
    "Print the version (also: ghostgate --version).\n";

static int is_help(const char *a)
{
    return !strcmp(a, "-h") || !strcmp(a, "--help");
}

/* A usage error of cmd: what is wrong, then cmd's usage, on stderr. Returns 64 (EX_USAGE). */
static int usage_error(const char *cmd, const char *usage, const char *what, const char *arg)
{
    fprintf(stderr, "ghostgate %s: %s%s%s%s\n%s", cmd, what, arg ? " '" : "", arg ? arg : "",
            arg ? "'" : "", usage);
    return 64;
}

/* Options shared by serve and check (level is NULL for check). Returns -1 to go on, else
 * the exit status: 0 after printing the help, 64 after a usage error. */
static int parse_opts(const char *cmd, const char *usage, int argc, char **argv, const char **path,
                      const char **level)
{
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(usage, stdout);
            return 0;
        }
        int has_value = i + 1 < argc;
        if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
            if (!has_value) return usage_error(cmd, usage, "missing value for", argv[i]);
            *path = argv[++i];
        } else if (level && (!strcmp(argv[i], "-l") || !strcmp(argv[i], "--log-level"))) {
            if (!has_value) return usage_error(cmd, usage, "missing value for", argv[i]);
            *level = argv[++i];
        } else {
            return usage_error(cmd, usage, "unexpected argument", argv[i]);
        }
    }
    return -1;
}

static int cmd_serve(int argc, char **argv)
{
    const char *path = NULL, *level = NULL;
    char err[1024];
    int rc = parse_opts("serve", serve_usage, argc, argv, &path, &level);
    if (rc >= 0) return rc;
    int lvl = level ? gg_log_level_parse(level) : 0;
    if (lvl < 0) {
        fprintf(stderr, "ghostgate: unknown log level '%s' (levels: error, warn, info, debug)\n",
                level);
        return 64;
    }
    gg_config *cfg = gg_config_load(path, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "ghostgate: %s\n", err);
        return 1;
    }
    gg_run_opts opts = {.config_path = path, .log_level = level ? lvl : -1, .ready_fd = -1,
                        .listen_fds = NULL, .reuseport = 0, .worker = -1,
                        .front = &gg_http_front_ops, .upstreams = gg_upstream_protocols};
    if (cfg->workers > 1) return gg_master_run(cfg, &opts);
    return gg_server_run(cfg, &opts);
}

static int cmd_check(int argc, char **argv)
{
    const char *path = NULL;
    char err[1024];
    int rc = parse_opts("check", check_usage, argc, argv, &path, NULL);
    if (rc >= 0) return rc;
    if (!path) return usage_error("check", check_usage, "-c FILE is required", NULL);
    gg_config *cfg = gg_config_load(path, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "ghostgate: %s\n", err);
        return 1;
    }
    /* Every listener a serve would open: MessagePack-RPC, the HTTP front door and admin. */
    int nl = cfg->nlisten + cfg->nhttp + cfg->nadmin;
    printf("%s: ok (%d listener%s, %d service%s)\n", path, nl, nl == 1 ? "" : "s", cfg->nservices,
           cfg->nservices == 1 ? "" : "s");
    gg_config_free(cfg);
    return 0;
}

static int cmd_version(int argc, char **argv)
{
    if (argc > 1 && is_help(argv[1])) {
        fputs(version_usage, stdout);
        return 0;
    }
    if (argc > 1) return usage_error("version", version_usage, "unexpected argument", argv[1]);
    printf("ghostgate %s\n", GG_VERSION);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_text, stderr);
        return 64;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "check")) return cmd_check(argc - 1, argv + 1);
    if (!strcmp(cmd, "call")) return gg_cmd_call(argc - 1, argv + 1);
    if (!strcmp(cmd, "run")) return gg_cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "stubs")) return gg_cmd_stubs(argc - 1, argv + 1);
    if (!strcmp(cmd, "register")) return gg_cmd_register(argc - 1, argv + 1);
    if (!strcmp(cmd, "reload")) return gg_cmd_reload(argc - 1, argv + 1);
    if (!strcmp(cmd, "token")) return gg_cmd_token(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) return cmd_version(argc - 1, argv + 1);
    if (!strcmp(cmd, "help") || is_help(cmd)) {
        fputs(usage_text, stdout);
        return 0;
    }
    fprintf(stderr, "ghostgate: unknown command '%s'\n%s", cmd, usage_text);
    return 64;
}

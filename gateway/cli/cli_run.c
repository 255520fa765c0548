/* cli_run.c -- `ghostgate run script.lua [args]` and `ghostgate stubs [-a ADDR] -o DIR`: the
 * Lua client library (require "ghost", lua/ghost/) with everything built into the binary. */
#include "cli/cli.h"
#include "lua/lua_bridge.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char run_usage[] =
    "usage: ghostgate run SCRIPT.lua [ARG...]\n"
    "Run a Lua script with the ghost library built in (require \"ghost\").\n"
    "The script sees its arguments in `arg` (arg[0] is the script) and in `...`. Once it\n"
    "returns, tasks it spawned run to their end. Exit status: os.exit's, 0 at the end, 1 on an\n"
    "uncaught error (printed with its traceback on stderr), 64 on bad usage.\n"
    "  -h, --help  print this help (as the first argument)\n";

static const char stubs_usage[] =
    "usage: ghostgate stubs [-a ADDR] [-t SECONDS] -o DIR\n"
    "Write lua-language-server annotations of the gateway's services (sys.describe) into DIR:\n"
    "DIR/ghost_services.lua and DIR/ghost_api.lua. Add DIR to the editor's workspace.library.\n"
    "  -a ADDR     gateway (default tcp://127.0.0.1:7420)\n"
    "  -t SECONDS  give up after this long (default 10)\n"
    "  -o DIR      where to write the files (created if missing)\n"
    "  -h, --help  print this help\n"
    "Exit status: 0 written, 1 the gateway cannot be asked or DIR cannot be written, 64 usage.\n";

/* Call the function below nargs arguments on top of L, with tracebacks. 0, or 1 after
 * printing the error. */
static int protected_call(lua_State *L, int nargs)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, gg_lua_traceback);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, 0, base);
    lua_remove(L, base);
    if (rc) {
        fprintf(stderr, "ghostgate run: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return 1;
    }
    return 0;
}

int gg_cmd_run(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(run_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 64 : 0;
    }
    const char *script = argv[1];
    lua_State *L = gg_lua_new();
    if (!L) {
        fprintf(stderr, "ghostgate run: out of memory\n");
        return 1;
    }
    /* arg as luajit makes it: arg[0] the script, arg[1..] its arguments, negative indices the
     * command that ran it. */
    lua_createtable(L, argc, 2);
    lua_pushstring(L, "ghostgate");
    lua_rawseti(L, -2, -2);
    lua_pushstring(L, "run");
    lua_rawseti(L, -2, -1);
    for (int i = 1; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - 1);
    }
    lua_setglobal(L, "arg");

    int status = 0;
    if (luaL_loadfile(L, script)) {
        fprintf(stderr, "ghostgate run: %s\n", lua_tostring(L, -1));
        gg_lua_close(L);
        return 1;
    }
    for (int i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
    status = protected_call(L, argc - 2);
    if (status == 0) {
        /* What the script started (ghost.spawn, servers) runs to its end. */
        lua_getglobal(L, "package");
        lua_getfield(L, -1, "loaded");
        lua_getfield(L, -1, "ghost.sched");
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "run");
            lua_insert(L, -4);
            lua_pop(L, 3);
            status = protected_call(L, 0);
        } else {
            lua_pop(L, 3);
        }
    }
    gg_lua_close(L);
    return status;
}

int gg_cmd_stubs(int argc, char **argv)
{
    const char *addr = "tcp://127.0.0.1:7420", *dir = NULL;
    double timeout = 10;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(stubs_usage, stdout);
            return 0;
        }
        if ((!strcmp(a, "-a") || !strcmp(a, "-o") || !strcmp(a, "-t")) && i + 1 < argc) {
            const char *v = argv[++i];
            if (a[1] == 'a')
                addr = v;
            else if (a[1] == 'o')
                dir = v;
            else if ((timeout = strtod(v, NULL)) <= 0)
                break;
            continue;
        }
        fprintf(stderr, "ghostgate stubs: unexpected argument '%s'\n%s", a, stubs_usage);
        return 64;
    }
    if (!dir || timeout <= 0) {
        fputs(stubs_usage, stderr);
        return 64;
    }
    if (mkdir(dir, 0777) && errno != EEXIST) {
        fprintf(stderr, "ghostgate stubs: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
    }
    lua_State *L = gg_lua_new();
    if (!L) {
        fprintf(stderr, "ghostgate stubs: out of memory\n");
        return 1;
    }
    char err[1024];
    int status = 1;
    lua_pushstring(L, addr);
    lua_pushstring(L, dir);
    lua_pushnumber(L, timeout);
    if (gg_lua_call(L, "ghost.stubs", "run", 3, 2, err, sizeof err)) {
        fprintf(stderr, "ghostgate stubs: %s\n", err);
    } else if (lua_isnil(L, -2)) {
        fprintf(stderr, "ghostgate stubs: %s\n", lua_tostring(L, -1));
    } else {
        printf("ghostgate stubs: %s\n", lua_tostring(L, -2));
        status = 0;
    }
    gg_lua_close(L);
    return status;
}

/* cli.h -- subcommands of the ghostgate binary other than serve (main.c dispatches). */
#ifndef GG_CLI_H
#define GG_CLI_H

/* Exit statuses of `ghostgate call`. */
#define GG_CALL_OK    0  /* result printed as JSON on stdout */
#define GG_CALL_ERROR 1  /* error response (or a result JSON cannot show), on stderr */
#define GG_CALL_FAIL  2  /* cannot connect, timeout, connection lost, malformed response */
#define GG_CALL_USAGE 64 /* bad command line (EX_USAGE) */

/* `ghostgate call [-a ADDR] [-t SECONDS] service.method ARG...`; argv[0] is "call".
 * Each ARG is a JSON value, or a bare string when it does not parse as JSON. Sends one
 * request, prints its result and returns one of the GG_CALL_* statuses above. */
int gg_cmd_call(int argc, char **argv);

/* `ghostgate reload (-p PIDFILE | -c CONFIG)`: SIGHUP to the running gateway. */
int gg_cmd_reload(int argc, char **argv);
/* `ghostgate token -c CONFIG -i IDENTITY [-t TTL] [-s SCOPES]`: mint an HMAC token. */
int gg_cmd_token(int argc, char **argv);

/* `ghostgate run SCRIPT.lua [ARG...]`: run a Lua script with the ghost library built in
 * (cli_run.c). Returns the exit status (1 on an uncaught error, 64 on bad usage). */
int gg_cmd_run(int argc, char **argv);
/* `ghostgate register -r URL -s SERVICE -a ADDR [--ttl SECONDS]`: an endpoint in the Redis
 * registry until SIGTERM (cli_register.c). */
int gg_cmd_register(int argc, char **argv);
/* `ghostgate stubs [-a ADDR] [-t SECONDS] -o DIR`: editor annotations from sys.describe. */
int gg_cmd_stubs(int argc, char **argv);

#endif

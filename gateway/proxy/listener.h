/* listener.h -- the sockets clients connect to (TCP and Unix). */
#ifndef GG_LISTENER_H
#define GG_LISTENER_H

#include "core/addr.h"

#include <uv.h>

struct gg_server;

typedef struct gg_listener {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } io;
    struct gg_server *srv;
    gg_addr addr;    /* a copy: the config it came from is freed when a reload retires it */
    char bound[160]; /* the real address, with the port the kernel gave */
    int open;
    int owns_path; /* unix: remove the socket file when closing */
    int blocked;   /* tls: a connection waits in the backlog until a handshake ends */
} gg_listener;

/* A listening socket for a (TCP: SO_REUSEADDR, and SO_REUSEPORT when reuseport; unix: a stale
 * socket file is replaced). listen() is skipped when do_listen is 0 (the master only reserves
 * a port for its workers). Returns the fd, or -1 with a reason in err. */
int gg_listen_socket(const gg_addr *a, int reuseport, int do_listen, char *err, size_t errlen);

/* Bind and listen on every configured address (or take srv's inherited sockets). Returns 0,
 * or -1 with a reason in err. */
int gg_listeners_start(struct gg_server *srv, char *err, size_t errlen);
/* Stop accepting (close the sockets; unix socket files are removed). */
void gg_listeners_stop(struct gg_server *srv);

#endif

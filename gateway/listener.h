/* listener.h -- the sockets clients connect to (TCP and Unix). */
#ifndef GG_LISTENER_H
#define GG_LISTENER_H

#include "addr.h"

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
    const gg_addr *addr;
    char bound[160]; /* the real address, with the port the kernel gave */
    int open;
} gg_listener;

/* Bind and listen on every configured address. Returns 0, or -1 with a reason in err. */
int gg_listeners_start(struct gg_server *srv, char *err, size_t errlen);
/* Stop accepting (close the sockets; unix socket files are removed). */
void gg_listeners_stop(struct gg_server *srv);

#endif

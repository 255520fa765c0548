/* http_front.c -- HTTP listeners (not implemented yet). */
#include "http_front.h"

int gg_http_front_start(struct gg_server *srv, char *err, size_t errlen)
{
    (void)srv, (void)err, (void)errlen;
    return 0;
}

void gg_http_front_stop(struct gg_server *srv)
{
    (void)srv;
}

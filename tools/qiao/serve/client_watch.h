/* The client's socket, seen from beside the HTTP server: whether the
 * client has gone away (a client that disconnects while its request is
 * generating should free its slot and KV blocks at once, not when
 * generation ends), and closing gently after an early answer. */
#ifndef QIAO_SERVE_CLIENT_WATCH_H
#define QIAO_SERVE_CLIENT_WATCH_H

#include <stdbool.h>

/* True when the peer closed (or reset) the socket `fd`; false while it is
 * open or when fd is negative (unknown). Does not block. */
bool serve_client_gone(int fd);

/* After an answer sent before the request body was read (413, 401, ...):
 * stop sending, then read and drop what the client still sends, for a
 * moment, so that closing does not reset the connection (a reset can
 * destroy the answer before the client reads it). */
void serve_client_linger(int fd);

#endif

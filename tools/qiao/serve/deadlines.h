/* Request deadlines: a request must arrive whole, headers and body, within
 * --timeout seconds. libmicrohttpd's own timeout only drops connections
 * that go quiet; a client that trickles a byte every second (slowloris)
 * would hold its connection forever. A watchdog thread shuts down the
 * socket of a connection whose request is late; the HTTP server then
 * closes it as if the client had left.
 *
 * The deadline of a connection's first request starts when it connects;
 * that of each next request on a kept-alive connection when the previous
 * response is sent. While a request generates or its response is sent,
 * no deadline applies (the idle timeout still does). */
#ifndef QIAO_SERVE_DEADLINES_H
#define QIAO_SERVE_DEADLINES_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

#include "qiao/status.h"

typedef struct serve_deadlines serve_deadlines;

qiao_status *serve_deadlines_start(uint32_t timeout_s, serve_deadlines **out);
/* Call after the HTTP server has stopped (every connection is closed). */
void serve_deadlines_stop(serve_deadlines *d);

/* The MHD_OPTION_NOTIFY_CONNECTION callback; cls is the serve_deadlines. */
void serve_deadlines_on_connection(void *cls, struct MHD_Connection *connection,
                                   void **socket_context, enum MHD_ConnectionNotificationCode toe);

/* The request of the connection is in (or was answered early). */
void serve_deadlines_received(struct MHD_Connection *connection);
/* Whether the watchdog cut the connection (for the log). */
bool serve_deadlines_expired(struct MHD_Connection *connection);
/* The response was sent: the next request gets a fresh deadline. */
void serve_deadlines_rearm(struct MHD_Connection *connection);

#endif

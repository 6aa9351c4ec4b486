/* The HTTP server of `qiao serve` on libmicrohttpd: one thread per
 * connection (a request may block its thread while it generates), a
 * connection limit, an idle timeout, and routing to routes.h.
 *
 * Every route except GET /health needs an API key when keys are
 * configured; routes that need the model answer 503 while it loads. */
#ifndef QIAO_SERVE_SERVER_H
#define QIAO_SERVE_SERVER_H

#include <stdint.h>

#include "app.h"
#include "qiao/status.h"

typedef struct serve_server serve_server;

/* Listens on config->host:config->port (port 0: any free port). */
qiao_status *serve_server_start(serve_app *app, serve_server **out);
/* The port listened on (the real one when 0 was asked for). */
uint16_t serve_server_port(const serve_server *server);

/* Stops accepting connections; requests in flight go on. */
void serve_server_quiesce(serve_server *server);
/* Waits until no request is in flight, or timeout_ms have passed. */
void serve_server_wait_idle(serve_server *server, uint32_t timeout_ms);
/* Closes every connection and joins the threads. Accepts NULL. */
void serve_server_stop(serve_server *server);

#endif

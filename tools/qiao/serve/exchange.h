/* One HTTP request and its response, from the first header to the last
 * byte sent: what the routes work on, and what the request log reports.
 * Created on MHD's first call for a request, freed by its
 * request-completed callback in every case (done, error, disconnect). */
#ifndef QIAO_SERVE_EXCHANGE_H
#define QIAO_SERVE_EXCHANGE_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

#include "affinity.h"
#include "app.h"
#include "buf.h"
#include "generation.h"

typedef struct serve_exchange {
  serve_app *app;
  struct MHD_Connection *connection;
  int client_fd; /* the socket, watched for the client leaving; -1 unknown */
  char id[32];   /* random hex: the log's id and the completion id's suffix */
  double t_start;
  char method[16];
  char route[128];                     /* the URL path (sanitized, for the log) */
  char tenant[64];                     /* from the API key, else "default" */
  char session[SERVE_SESSION_MAX + 1]; /* X-Qiao-Session, "" for none */
  serve_buf body;                      /* the request body, at most --max-body bytes */
  bool body_too_large;
  uint64_t discarded; /* body bytes dropped after the limit */
  bool responded;     /* a response is queued */
  bool body_unread;   /* answered before a body that may still be coming */

  /* For the log. */
  unsigned status;
  char error[512];

  bool has_generation;
  serve_generation generation;
} serve_exchange;

#endif

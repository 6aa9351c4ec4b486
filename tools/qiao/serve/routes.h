/* The routes of `qiao serve`: path, method and handler. A handler runs on
 * the connection's thread once the whole body is in x->body and must queue
 * a response (serve_reply_*) or return MHD_NO to drop the connection. */
#ifndef QIAO_SERVE_ROUTES_H
#define QIAO_SERVE_ROUTES_H

#include <microhttpd.h>
#include <stdbool.h>

#include "exchange.h"

typedef enum MHD_Result (*serve_route_fn)(serve_exchange *x);

typedef struct serve_route {
  const char *path;
  const char *method; /* "GET" routes also answer HEAD */
  serve_route_fn run;
  bool needs_model; /* answers 503 while the model is loading */
} serve_route;

/* The route of a path, or NULL (404). */
const serve_route *serve_route_find(const char *path);

/* routes_info.c */
enum MHD_Result serve_route_health(serve_exchange *x);
enum MHD_Result serve_route_models(serve_exchange *x);
enum MHD_Result serve_route_metrics(serve_exchange *x);
enum MHD_Result serve_route_tokenize(serve_exchange *x);
enum MHD_Result serve_route_detokenize(serve_exchange *x);
/* routes_generate.c */
enum MHD_Result serve_route_completions(serve_exchange *x);
enum MHD_Result serve_route_chat(serve_exchange *x);

#endif

/* POST /v1/completions and /v1/chat/completions: parse, queue the
 * choices, then wait for the whole response or stream it. */
#include <stdio.h>

#include "json_in.h"
#include "reply.h"
#include "request_parse.h"
#include "routes.h"

static enum MHD_Result generate(serve_exchange *x, serve_api api) {
  serve_error e;
  json_object *body = serve_json_parse_object(x->body.data, x->body.len, &e);
  if (body == NULL) return serve_reply_error(x, &e);
  serve_gen_request req;
  bool ok = api == SERVE_API_CHAT ? serve_parse_chat(x->app, body, &req, &e)
                                  : serve_parse_completion(x->app, body, &req, &e);
  json_object_put(body);
  if (!ok) {
    serve_gen_request_free(&req);
    return serve_reply_error(x, &e);
  }
  x->has_generation = true;
  serve_generation *g = &x->generation;
  if (!serve_generation_start(g, x->app, &req, x->tenant, x->id, x->client_fd, &e))
    return serve_reply_error(x, &e);
  serve_reply_pause_timeout(x);
  serve_wait w;
  if (g->stream) {
    w = serve_generation_stream_begin(g, &e);
    if (w == SERVE_WAIT_OK) return serve_reply_stream(x);
  } else {
    json_object *response = NULL;
    w = serve_generation_wait(g, &response, &e);
    if (w == SERVE_WAIT_OK) return serve_reply_json(x, 200, response);
  }
  if (w == SERVE_WAIT_FAILED) return serve_reply_error(x, &e);
  x->status = 499; /* the client went away: nobody to answer */
  snprintf(x->error, sizeof(x->error), "the client went away");
  return MHD_NO;
}

enum MHD_Result serve_route_completions(serve_exchange *x) {
  return generate(x, SERVE_API_COMPLETIONS);
}

enum MHD_Result serve_route_chat(serve_exchange *x) {
  return generate(x, SERVE_API_CHAT);
}

/* Building MHD responses. */
#include "reply.h"

#include <stdio.h>

/* MHD calls this from the connection's thread whenever it can send more of
 * a stream. It blocks until there is something to send (or the end). */
static ssize_t read_stream(void *cls, uint64_t pos, char *buf, size_t max) {
  serve_exchange *x = cls;
  (void)pos;
  MHD_set_connection_option(x->connection, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
  ssize_t n = serve_generation_stream_read(&x->generation, buf, max);
  /* Re-arming the timeout restarts it: a client that stops reading is
   * dropped after --timeout seconds. */
  MHD_set_connection_option(x->connection, MHD_CONNECTION_OPTION_TIMEOUT,
                            (unsigned)x->app->config->timeout_s);
  if (n == SERVE_STREAM_END) {
    if (x->generation.stream_error) /* the stream ended with an error event */
      snprintf(x->error, sizeof(x->error), "%s", x->generation.error.message);
    return MHD_CONTENT_READER_END_OF_STREAM;
  }
  if (n == SERVE_STREAM_ABORT) {
    x->status = 499; /* nginx's "client closed request", for the log only */
    snprintf(x->error, sizeof(x->error), "the client went away");
    return MHD_CONTENT_READER_END_WITH_ERROR;
  }
  return n;
}

void serve_reply_pause_timeout(serve_exchange *x) {
  MHD_set_connection_option(x->connection, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
}

static enum MHD_Result queue(serve_exchange *x, unsigned status, struct MHD_Response *r,
                             const char *content_type) {
  if (r == NULL) return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  MHD_add_response_header(r, "X-Request-Id", x->id);
  const char *replica = atomic_load_explicit(&x->app->replica_name, memory_order_acquire);
  if (replica != NULL) MHD_add_response_header(r, SERVE_REPLICA_HEADER, replica);
  if (serve_app_phase(x->app) == SERVE_DRAINING) /* clients should reconnect elsewhere */
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
  enum MHD_Result ok = MHD_queue_response(x->connection, status, r);
  MHD_destroy_response(r);
  if (ok == MHD_YES) {
    x->responded = true;
    if (x->status == 0) x->status = status;
    MHD_set_connection_option(x->connection, MHD_CONNECTION_OPTION_TIMEOUT,
                              (unsigned)x->app->config->timeout_s);
  }
  return ok;
}

enum MHD_Result serve_reply_text(serve_exchange *x, unsigned status, const char *content_type,
                                 const char *text, size_t len) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
  return queue(x, status, r, content_type);
}

enum MHD_Result serve_reply_json(serve_exchange *x, unsigned status, json_object *obj) {
  size_t len = 0;
  const char *text = json_object_to_json_string_length(
      obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
  enum MHD_Result ok = serve_reply_text(x, status, "application/json", text, len);
  json_object_put(obj);
  return ok;
}

enum MHD_Result serve_reply_error(serve_exchange *x, const serve_error *e) {
  x->status = e->status;
  snprintf(x->error, sizeof(x->error), "%s", e->message);
  size_t len = 0;
  json_object *obj = serve_error_json(e);
  const char *text = json_object_to_json_string_length(
      obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
  if (r != NULL && e->retry_after_s > 0) {
    char retry[16];
    snprintf(retry, sizeof(retry), "%u", e->retry_after_s);
    MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, retry);
  }
  if (r != NULL && e->allow != NULL) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, e->allow);
  if (r != NULL && e->status == 401)
    MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
  json_object_put(obj);
  return queue(x, e->status, r, "application/json");
}

enum MHD_Result serve_reply_stream(serve_exchange *x) {
  struct MHD_Response *r =
      MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, read_stream, x, NULL);
  if (r == NULL) return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
  MHD_add_response_header(r, "X-Accel-Buffering", "no");
  return queue(x, 200, r, "text/event-stream");
}

/* One completion or chat request in flight: its n choices as scheduler
 * requests, waited for whole or streamed as Server-Sent Events.
 *
 * Waiting never blocks for long: every ~100 ms it checks whether the client
 * is gone (client_fd) and, if so, cancels the choices so that their slots
 * and KV blocks are freed at the next step.
 *
 * Errors before any byte of the response is sent become an HTTP error
 * (500 when a device failed, 503 when no device is left or the server is
 * shutting down); in a stream that has started they become an error event
 * `data: {"error": {...}}` that ends the stream. */
#ifndef QIAO_SERVE_GENERATION_H
#define QIAO_SERVE_GENERATION_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "app.h"
#include "buf.h"
#include "errors.h"
#include "reasoning.h"
#include "request_parse.h"
#include "responses.h"
#include "tool_stream.h"

typedef struct serve_choice {
  qiao_request *request;
  bool got_event; /* the first event came */
  bool done;      /* the DONE event came */
  qiao_finish finish;
  char error[256];           /* FINISH_ERROR: what failed */
  serve_buf text;            /* the whole text (whole responses, and streams with tools);
                                with reasoning, the text after the thinking */
  serve_reasoning reasoning; /* with reasoning: thinking and answer told apart */
  serve_buf thinking;        /* whole responses with reasoning: the reasoning_content */
  serve_buf content;         /* with tools: the text outside the tool calls */
  serve_tool_call *calls;    /* (n_calls) the tool calls parsed at the end */
  size_t n_calls;
  serve_tool_stream tool_stream; /* streams with tools: content and call deltas sent so far */
  serve_logprobs logprobs;
  uint32_t prompt_tokens, cached_tokens, completion_tokens;
  double queue_s, ttft_s;
  char replica[160];
} serve_choice;

typedef struct serve_generation {
  serve_app *app;
  serve_gen_request req;
  char id[48];
  serve_resp_head head;
  serve_choice choices[SERVE_MAX_CHOICES];
  uint32_t n_submitted;
  int client_fd; /* the connection's socket, watched for the client leaving */
  bool stream;
  /* Streams: SSE text not yet handed to the HTTP server. */
  serve_buf out;
  size_t out_sent;
  bool stream_error; /* an error event was (or will be) the last event */
  bool stream_ended; /* everything, [DONE] included, is in `out` */
  serve_error error; /* the error of a failed request */
} serve_generation;

/* Takes over *req (moved; the caller must not free it) and queues its n
 * choices for `tenant`. On refusal fills *e (400, 429 or 503 with
 * Retry-After). `g` must be zeroed first; release it with
 * serve_generation_free in every case. */
bool serve_generation_start(serve_generation *g, serve_app *app, serve_gen_request *req,
                            const char *tenant, const char *request_id, int client_fd,
                            serve_error *e);

typedef enum serve_wait {
  SERVE_WAIT_OK,          /* the response can be sent */
  SERVE_WAIT_FAILED,      /* *e holds the HTTP error to send instead */
  SERVE_WAIT_CLIENT_GONE, /* nobody to answer: close the connection */
} serve_wait;

/* Whole responses: waits for every choice, then *out_json is the
 * response. */
serve_wait serve_generation_wait(serve_generation *g, json_object **out_json, serve_error *e);

/* Streams: waits for the first event of every choice (so that an error
 * found at once can still be an HTTP error), and prepares the first events. */
serve_wait serve_generation_stream_begin(serve_generation *g, serve_error *e);

/* The next bytes of the stream into buf (at most max), blocking until
 * there are some. Returns the count, SERVE_STREAM_END after the last byte,
 * or SERVE_STREAM_ABORT when the client is gone (close the connection). */
#define SERVE_STREAM_END ((ssize_t)-1)
#define SERVE_STREAM_ABORT ((ssize_t)-2)
ssize_t serve_generation_stream_read(serve_generation *g, char *buf, size_t max);

/* Cancels what still runs and releases everything. Accepts a zeroed g. */
void serve_generation_free(serve_generation *g);

/* A summary for the request log. */
typedef struct serve_gen_summary {
  uint32_t prompt_tokens, cached_tokens, completion_tokens;
  double queue_s, ttft_s;
  const char *finish; /* "stop", "length", "cancelled", "error" or "" */
  const char *replica;
} serve_gen_summary;
void serve_generation_summary(const serve_generation *g, serve_gen_summary *out);

#endif

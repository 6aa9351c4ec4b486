/* The body of POST /v1/completions and /v1/chat/completions, checked field
 * by field and turned into what the scheduler needs (token ids, sampling
 * parameters, stop strings) plus what the response needs (n, stream,
 * logprobs). No HTTP or JSON type leaves this layer: serve_gen_request
 * holds plain C values. */
#ifndef QIAO_SERVE_REQUEST_PARSE_H
#define QIAO_SERVE_REQUEST_PARSE_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app.h"
#include "errors.h"
#include "qiao/sampler.h"
#include "qiao/scheduler.h"
#include "tools.h"

#define SERVE_MAX_CHOICES 8 /* n */
#define SERVE_MAX_STOPS 4

typedef enum serve_api {
  SERVE_API_COMPLETIONS, /* /v1/completions: text in, text out */
  SERVE_API_CHAT,        /* /v1/chat/completions: messages in, a message out */
} serve_api;

typedef struct serve_gen_request {
  serve_api api;
  int32_t *prompt; /* (n_prompt) token ids, malloc'd */
  size_t n_prompt;
  uint32_t max_tokens; /* 0: as many as fit the context */
  qiao_sampler_params sampling;
  bool seed_given;              /* choice i then uses seed + i */
  char *stops[SERVE_MAX_STOPS]; /* malloc'd */
  size_t n_stops;
  qiao_logit_bias *logit_bias; /* malloc'd */
  size_t n_logit_bias;
  bool ignore_eos;
  bool logprobs;         /* report logprobs of the chosen tokens */
  uint32_t top_logprobs; /* and this many alternatives */
  uint32_t n;            /* choices */
  bool stream, include_usage;
  qiao_grammar *grammar; /* response_format, grammar or forced tool calls: constrained decoding */
  bool reasoning;        /* chat: the reply's <think> part goes to reasoning_content */
  bool think_open;       /* and the prompt ended inside it (reasoning.h) */
  serve_tools tools;     /* tools and tool_choice (chat) */
  char user[128];        /* the `user` field, for the log only */
  char *prompt_log;      /* the prompt text for --log-prompts, else NULL */
} serve_gen_request;

/* Each fills *req (free it with serve_gen_request_free even on failure) or
 * fills *e with a 400 naming the field. The app must be loaded. */
bool serve_parse_completion(serve_app *app, json_object *body, serve_gen_request *req,
                            serve_error *e);
bool serve_parse_chat(serve_app *app, json_object *body, serve_gen_request *req, serve_error *e);

void serve_gen_request_free(serve_gen_request *req);

#endif

/* Running the choices of a request on the scheduler and turning their
 * events into a whole response or an SSE stream. */
#include "generation.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "client_watch.h"
#include "text.h"

/* How long one wait for events lasts before the client is checked again. */
#define WAIT_MS 100
/* A stream stops collecting events once this much output waits to be sent. */
#define OUT_HIGH (64u << 10)

bool serve_generation_start(serve_generation *g, serve_app *app, serve_gen_request *req,
                            const char *tenant, const char *request_id, int client_fd,
                            serve_error *e) {
  g->app = app;
  g->req = *req;
  memset(req, 0, sizeof(*req)); /* moved */
  g->client_fd = client_fd;
  g->stream = g->req.stream;
  snprintf(g->id, sizeof(g->id), "%s%s", g->req.api == SERVE_API_CHAT ? "chatcmpl-" : "cmpl-",
           request_id);
  g->head = (serve_resp_head){g->req.api, g->id, (int64_t)time(NULL), app->model_name};
  for (uint32_t i = 0; i < g->req.n; i++) {
    serve_logprobs_init(&g->choices[i].logprobs, g->req.api);
    serve_reasoning_begin(&g->choices[i].reasoning, g->req.think_open);
  }

  qiao_request_params p = {.struct_size = sizeof(p)};
  p.tenant = tenant;
  p.prompt = g->req.prompt;
  p.n_prompt = g->req.n_prompt;
  p.max_tokens = g->req.max_tokens;
  p.sampling = g->req.sampling;
  p.sampling.n_logprobs = g->req.logprobs ? g->req.top_logprobs : 0;
  p.stops = (const char *const *)g->req.stops;
  p.n_stops = g->req.n_stops;
  p.ignore_eos = g->req.ignore_eos;
  p.logit_bias = g->req.logit_bias;
  p.n_logit_bias = g->req.n_logit_bias;
  p.logprobs = g->req.logprobs;
  p.grammar = g->req.grammar;
  for (uint32_t i = 0; i < g->req.n; i++) {
    /* With a seed, choice i uses seed + i (reproducible, yet distinct). */
    p.sampling.seed = g->req.seed_given ? g->req.sampling.seed + i : serve_random_u64();
    qiao_submit_result result = {QIAO_REJECT_NONE, 0};
    qiao_status *st = qiao_scheduler_submit(app->scheduler, &p, &result, &g->choices[i].request);
    if (st != NULL) {
      if (result.reject == QIAO_REJECT_NONE) result.reject = QIAO_REJECT_INVALID;
      serve_error_from_reject(e, &result, qiao_status_message(st),
                              g->req.api == SERVE_API_CHAT ? "messages" : "prompt");
      qiao_status_free(st);
      return false;
    }
    g->n_submitted++;
  }
  return true;
}

void serve_generation_free(serve_generation *g) {
  for (uint32_t i = 0; i < g->n_submitted; i++)
    qiao_request_destroy(g->choices[i].request);
  for (uint32_t i = 0; i < SERVE_MAX_CHOICES; i++) {
    serve_buf_free(&g->choices[i].text);
    serve_buf_free(&g->choices[i].content);
    serve_buf_free(&g->choices[i].thinking);
    serve_reasoning_free(&g->choices[i].reasoning);
    serve_tool_calls_free(g->choices[i].calls, g->choices[i].n_calls);
    serve_tool_stream_free(&g->choices[i].tool_stream);
    serve_logprobs_free(&g->choices[i].logprobs);
  }
  serve_gen_request_free(&g->req);
  serve_buf_free(&g->out);
  memset(g, 0, sizeof(*g));
}

static void cancel_all(serve_generation *g) {
  for (uint32_t i = 0; i < g->n_submitted; i++)
    if (!g->choices[i].done) qiao_request_cancel(g->choices[i].request);
}

static bool all_done(const serve_generation *g) {
  for (uint32_t i = 0; i < g->n_submitted; i++)
    if (!g->choices[i].done) return false;
  return true;
}

/* The request's error from a choice that ended badly (the first one wins). */
static void fail_from_choice(serve_generation *g, const serve_choice *c) {
  if (g->error.status != 0) return;
  if (c->finish == QIAO_FINISH_ERROR) {
    qiao_scheduler_health h;
    qiao_scheduler_health_get(g->app->scheduler, &h);
    if (h.replicas_ok == 0) {
      serve_fail(&g->error, 503, NULL, "no device is left to serve requests: %s", c->error);
      g->error.code = "no_device";
      g->error.retry_after_s = 30;
    } else {
      serve_fail(&g->error, 500, NULL, "generation failed: %s", c->error);
      g->error.code = "device_error";
    }
  } else { /* cancelled by the scheduler: it is shutting down */
    serve_fail(&g->error, 503, NULL, "the server is shutting down");
    g->error.code = "shutting_down";
    g->error.retry_after_s = 1;
  }
}

/* Appends a chunk with one choice to the stream. */
static void emit(serve_generation *g, json_object *choice) {
  json_object *r = serve_resp_new(&g->head, true);
  json_object_array_add(serve_resp_choices(r), choice);
  if (g->req.include_usage) json_object_object_add(r, "usage", NULL); /* as OpenAI does */
  serve_sse_event(&g->out, r);
}

/* Tool calls may come: the text is kept whole and parsed at the end. */
static bool tools_on(const serve_generation *g) {
  return g->req.api == SERVE_API_CHAT && g->req.tools.choice != SERVE_TOOL_CHOICE_NONE;
}

/* Streams with tools: the deltas of the tool-call stream as chunks; the
 * token's logprobs go with its first content chunk (or an empty one). */
typedef struct delta_sink {
  serve_generation *g;
  uint32_t i;
  json_object *logprobs;
} delta_sink;

static void on_tool_delta(void *ctx, const serve_tool_delta *d) {
  delta_sink *k = ctx;
  serve_api api = k->g->req.api;
  if (d->kind == SERVE_TOOL_DELTA_CONTENT) {
    emit(k->g, serve_resp_chunk_choice(api, k->i, false, d->text, d->len, k->logprobs, NULL));
    k->logprobs = NULL;
    return;
  }
  json_object *chunk = serve_resp_chunk_choice(api, k->i, false, NULL, 0, NULL, NULL);
  json_object *delta = NULL, *list = json_object_new_array();
  json_object_array_add(list, serve_tool_delta_json(d));
  if (json_object_object_get_ex(chunk, "delta", &delta))
    json_object_object_add(delta, "tool_calls", list);
  else
    json_object_put(list);
  emit(k->g, chunk);
}

static void stream_tools(serve_generation *g, uint32_t i, bool final, json_object *logprobs) {
  serve_choice *c = &g->choices[i];
  delta_sink sink = {g, i, logprobs};
  serve_tool_stream_feed(&c->tool_stream, &g->req.tools, c->text.data, c->text.len, final,
                         on_tool_delta, &sink);
  if (sink.logprobs != NULL)
    emit(g, serve_resp_chunk_choice(g->req.api, i, false, "", 0, sink.logprobs, NULL));
}

/* The reply's <think> part goes to reasoning_content (chat only). */
static bool reasoning_on(const serve_generation *g) {
  return g->req.api == SERVE_API_CHAT && g->req.reasoning;
}

/* With reasoning: the pieces of the splitter. Thinking is kept (whole
 * responses) or sent as reasoning_content deltas; the answer is kept in
 * `text` (whole responses, and tool calls, which are parsed from the answer
 * only) or sent as content deltas. The token's logprobs go with its first
 * chunk. */
typedef struct split_sink {
  serve_generation *g;
  uint32_t i;
  json_object *logprobs;
  bool answer_grew;
} split_sink;

static void on_split(void *ctx, bool reasoning, const char *text, size_t len) {
  split_sink *k = ctx;
  serve_generation *g = k->g;
  serve_choice *c = &g->choices[k->i];
  if (!g->stream || (!reasoning && tools_on(g))) {
    serve_buf_append(reasoning ? &c->thinking : &c->text, text, len);
    k->answer_grew = k->answer_grew || !reasoning;
    return;
  }
  json_object *chunk = serve_resp_chunk_choice(g->req.api, k->i, false, reasoning ? NULL : text,
                                               reasoning ? 0 : len, k->logprobs, NULL);
  k->logprobs = NULL;
  json_object *delta = NULL;
  if (reasoning && json_object_object_get_ex(chunk, "delta", &delta))
    json_object_object_add(delta, "reasoning_content", json_object_new_string_len(text, (int)len));
  emit(g, chunk);
}

/* Feeds the splitter; then streams what the answer gave to the tool calls
 * and sends logprobs no chunk took (in an empty chunk). */
static void split(serve_generation *g, uint32_t i, const char *text, size_t len, bool final,
                  json_object *logprobs) {
  serve_choice *c = &g->choices[i];
  split_sink k = {g, i, logprobs, false};
  serve_reasoning_feed(&c->reasoning, text, len, final, on_split, &k);
  if (!g->stream) return;
  if (tools_on(g) && (k.answer_grew || k.logprobs != NULL || final)) {
    stream_tools(g, i, final, k.logprobs);
    k.logprobs = NULL;
  }
  if (k.logprobs != NULL)
    emit(g, serve_resp_chunk_choice(g->req.api, i, false, "", 0, k.logprobs, NULL));
}

static void on_token(serve_generation *g, uint32_t i, const qiao_request_event *ev) {
  serve_choice *c = &g->choices[i];
  if (g->req.logprobs) serve_logprobs_add(&c->logprobs, g->app->tokenizer, ev);
  if (reasoning_on(g)) {
    if (!g->stream)
      split(g, i, ev->text, ev->text_len, false, NULL);
    else if (ev->text_len > 0 || g->req.logprobs)
      split(g, i, ev->text, ev->text_len, false, serve_logprobs_take(&c->logprobs));
  } else if (tools_on(g)) {
    serve_buf_append(&c->text, ev->text, ev->text_len);
    if (g->stream && (ev->text_len > 0 || g->req.logprobs))
      stream_tools(g, i, false, serve_logprobs_take(&c->logprobs));
  } else if (!g->stream) {
    serve_buf_append(&c->text, ev->text, ev->text_len);
  } else if (ev->text_len > 0 || g->req.logprobs) {
    /* Tokens whose text is held back (half a character, maybe a stop
     * string) send nothing, unless their logprobs are wanted. */
    emit(g, serve_resp_chunk_choice(g->req.api, i, false, ev->text, ev->text_len,
                                    serve_logprobs_take(&c->logprobs), NULL));
  }
}

static void on_done(serve_generation *g, uint32_t i, const qiao_request_event *ev) {
  serve_choice *c = &g->choices[i];
  c->done = true;
  c->finish = ev->finish;
  c->prompt_tokens = ev->prompt_tokens;
  c->cached_tokens = ev->cached_tokens;
  c->completion_tokens = ev->completion_tokens;
  c->queue_s = ev->queue_s;
  c->ttft_s = ev->ttft_s;
  snprintf(c->replica, sizeof(c->replica), "%s", ev->replica);
  if (ev->finish == QIAO_FINISH_ERROR) {
    snprintf(c->error, sizeof(c->error), "%s", ev->error ? ev->error : "unknown error");
    serve_text_sanitize(c->error);
  }
  if (ev->finish != QIAO_FINISH_STOP && ev->finish != QIAO_FINISH_LENGTH) {
    fail_from_choice(g, c);
    g->stream_error = g->stream;
    cancel_all(g); /* one choice failed: the request failed */
    return;
  }
  const char *reason = serve_finish_reason(ev->finish);
  if (reasoning_on(g)) { /* what was held back settles; tool calls are streamed there */
    split(g, i, ev->text, ev->text_len, true, NULL);
    if (!g->stream && tools_on(g))
      c->n_calls =
          serve_tools_extract(&g->req.tools, c->text.data, c->text.len, &c->content, &c->calls);
    if (!g->stream) return;
    if (tools_on(g) && c->tool_stream.n_calls > 0 && ev->finish == QIAO_FINISH_STOP)
      reason = "tool_calls";
    emit(g, serve_resp_chunk_choice(g->req.api, i, false, NULL, 0, NULL, reason));
    return;
  }
  if (tools_on(g)) {
    serve_buf_append(&c->text, ev->text, ev->text_len);
    if (!g->stream) {
      c->n_calls =
          serve_tools_extract(&g->req.tools, c->text.data, c->text.len, &c->content, &c->calls);
      return;
    }
    /* What was held back settles; the calls are those the stream sent.
     * Cut by max_tokens, "length" stays the reason (a call may be cut). */
    stream_tools(g, i, true, NULL);
    if (c->tool_stream.n_calls > 0 && ev->finish == QIAO_FINISH_STOP) reason = "tool_calls";
    emit(g, serve_resp_chunk_choice(g->req.api, i, false, NULL, 0, NULL, reason));
    return;
  }
  if (!g->stream) {
    serve_buf_append(&c->text, ev->text, ev->text_len);
    return;
  }
  if (ev->text_len > 0) /* the text that was held back */
    emit(g, serve_resp_chunk_choice(g->req.api, i, false, ev->text, ev->text_len, NULL, NULL));
  emit(g, serve_resp_chunk_choice(g->req.api, i, false, g->req.api == SERVE_API_CHAT ? NULL : "", 0,
                                  NULL, reason));
}

static void on_event(serve_generation *g, uint32_t i, const qiao_request_event *ev) {
  g->choices[i].got_event = true;
  if (ev->kind == QIAO_EVENT_TOKEN)
    on_token(g, i, ev);
  else
    on_done(g, i, ev);
}

/* The client is gone: cancel, and wait briefly for the choices' last
 * events so that the log says how far they got. */
static void cancel_and_collect(serve_generation *g) {
  cancel_all(g);
  qiao_request_event ev;
  for (uint32_t i = 0, waits = 0; i < g->n_submitted && waits < 10; i++)
    while (!g->choices[i].done && waits < 10) {
      if (qiao_request_next(g->choices[i].request, WAIT_MS, &ev))
        on_event(g, i, &ev);
      else
        waits++;
    }
}

/* Handles the events that have come for unfinished choices, waiting up to
 * WAIT_MS when none had. Returns false when the client is gone (the choices
 * are then cancelled). */
static bool pump(serve_generation *g) {
  size_t handled = 0, undone = 0;
  uint32_t first_undone = 0;
  qiao_request_event ev;
  for (uint32_t i = 0; i < g->n_submitted; i++) {
    serve_choice *c = &g->choices[i];
    while (!c->done && g->out.len - g->out_sent < OUT_HIGH &&
           qiao_request_next(c->request, 0, &ev)) {
      on_event(g, i, &ev);
      handled++;
    }
    if (!c->done && undone++ == 0) first_undone = i;
  }
  if (handled == 0 && undone > 0 &&
      qiao_request_next(g->choices[first_undone].request, undone == 1 ? WAIT_MS : WAIT_MS / 4, &ev))
    on_event(g, first_undone, &ev);
  if (serve_client_gone(g->client_fd)) {
    cancel_and_collect(g);
    return false;
  }
  return true;
}

/* A whole reply with thinking: message.reasoning_content, and content null
 * when there is no answer (cut by max_tokens inside the thinking). */
static void add_reasoning(json_object *choice, const serve_choice *c) {
  json_object *message = NULL, *content = NULL;
  if (!c->reasoning.thought || !json_object_object_get_ex(choice, "message", &message)) return;
  json_object_object_add(
      message, "reasoning_content",
      json_object_new_string_len(c->thinking.data ? c->thinking.data : "", (int)c->thinking.len));
  if (json_object_object_get_ex(message, "content", &content) &&
      json_object_get_string_len(content) == 0)
    json_object_object_add(message, "content", NULL);
}

serve_wait serve_generation_wait(serve_generation *g, json_object **out_json, serve_error *e) {
  while (!all_done(g))
    if (!pump(g)) return SERVE_WAIT_CLIENT_GONE;
  if (g->error.status != 0) {
    *e = g->error;
    return SERVE_WAIT_FAILED;
  }
  json_object *r = serve_resp_new(&g->head, false);
  uint32_t completion = 0;
  for (uint32_t i = 0; i < g->n_submitted; i++) {
    serve_choice *c = &g->choices[i];
    if (!tools_on(g)) {
      json_object *choice =
          serve_resp_choice(g->req.api, i, c->text.data, c->text.len,
                            serve_logprobs_take(&c->logprobs), serve_finish_reason(c->finish));
      add_reasoning(choice, c);
      json_object_array_add(serve_resp_choices(r), choice);
    } else { /* content outside the calls (null when there is none), and the calls */
      json_object *choice = serve_resp_choice(
          g->req.api, i, c->content.data, c->content.len, serve_logprobs_take(&c->logprobs),
          c->n_calls > 0 && c->finish == QIAO_FINISH_STOP ? "tool_calls"
                                                          : serve_finish_reason(c->finish));
      json_object *message = NULL;
      if (c->n_calls > 0 && json_object_object_get_ex(choice, "message", &message)) {
        if (c->content.len == 0) json_object_object_add(message, "content", NULL);
        json_object_object_add(message, "tool_calls", serve_tool_calls_json(c->calls, c->n_calls));
      }
      add_reasoning(choice, c);
      json_object_array_add(serve_resp_choices(r), choice);
    }
    completion += c->completion_tokens;
  }
  const serve_choice *c0 = &g->choices[0];
  json_object_object_add(r, "usage",
                         serve_resp_usage(c0->prompt_tokens, completion, c0->cached_tokens));
  *out_json = r;
  return SERVE_WAIT_OK;
}

/* After the last choice: the error event, or the usage chunk and [DONE]. */
static void finish_stream(serve_generation *g) {
  if (g->stream_error) {
    serve_sse_event(&g->out, serve_error_json(&g->error));
  } else {
    if (g->req.include_usage) {
      uint32_t completion = 0;
      for (uint32_t i = 0; i < g->n_submitted; i++)
        completion += g->choices[i].completion_tokens;
      json_object *r = serve_resp_new(&g->head, true);
      json_object_object_add(
          r, "usage",
          serve_resp_usage(g->choices[0].prompt_tokens, completion, g->choices[0].cached_tokens));
      serve_sse_event(&g->out, r);
    }
    serve_sse_done(&g->out);
  }
  g->stream_ended = true;
}

serve_wait serve_generation_stream_begin(serve_generation *g, serve_error *e) {
  if (g->req.api == SERVE_API_CHAT) /* the role comes first, as OpenAI sends it */
    for (uint32_t i = 0; i < g->n_submitted; i++)
      emit(g, serve_resp_chunk_choice(SERVE_API_CHAT, i, true, "", 0, NULL, NULL));
  /* Until something has come, an error can still be an HTTP status. */
  bool any = false;
  while (!any) {
    if (!pump(g)) return SERVE_WAIT_CLIENT_GONE;
    for (uint32_t i = 0; i < g->n_submitted; i++)
      any = any || g->choices[i].got_event;
  }
  if (g->error.status != 0) {
    *e = g->error;
    return SERVE_WAIT_FAILED;
  }
  return SERVE_WAIT_OK;
}

ssize_t serve_generation_stream_read(serve_generation *g, char *buf, size_t max) {
  for (;;) {
    size_t pending = g->out.len - g->out_sent;
    if (pending > 0) {
      size_t n = pending < max ? pending : max;
      memcpy(buf, g->out.data + g->out_sent, n);
      g->out_sent += n;
      if (g->out_sent == g->out.len) g->out.len = g->out_sent = 0; /* reuse the buffer */
      return (ssize_t)n;
    }
    if (g->stream_ended) return SERVE_STREAM_END;
    if (all_done(g)) {
      finish_stream(g);
      continue;
    }
    if (!pump(g)) return SERVE_STREAM_ABORT;
  }
}

void serve_generation_summary(const serve_generation *g, serve_gen_summary *s) {
  memset(s, 0, sizeof(*s));
  s->finish = "";
  s->replica = "";
  if (g->n_submitted == 0) return;
  const serve_choice *c0 = &g->choices[0];
  s->prompt_tokens = c0->prompt_tokens;
  s->cached_tokens = c0->cached_tokens;
  s->queue_s = c0->queue_s;
  s->ttft_s = c0->ttft_s;
  s->replica = c0->replica;
  for (uint32_t i = 0; i < g->n_submitted; i++)
    s->completion_tokens += g->choices[i].completion_tokens;
  bool device_error = false;
  for (uint32_t i = 0; i < g->n_submitted; i++)
    device_error = device_error || g->choices[i].finish == QIAO_FINISH_ERROR;
  if (device_error)
    s->finish = "error";
  else if (!all_done(g) || g->error.status != 0)
    s->finish = "cancelled"; /* the client left, or the server is shutting down */
  else
    s->finish = serve_finish_reason(c0->finish);
}

/* The JSON the generation endpoints send, in OpenAI's shapes:
 *   /v1/completions         object "text_completion" (also for stream chunks),
 *                           choices[i] {index, text, logprobs, finish_reason}
 *   /v1/chat/completions    object "chat.completion", choices[i] {index,
 *                           message {role, content}, logprobs, finish_reason};
 *                           stream chunks "chat.completion.chunk" with
 *                           choices[i].delta instead of message
 * and Server-Sent Events framing ("data: {json}\n\n", "data: [DONE]\n\n"). */
#ifndef QIAO_SERVE_RESPONSES_H
#define QIAO_SERVE_RESPONSES_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "qiao/scheduler.h"
#include "qiao/tokenizer.h"
#include "request_parse.h"

/* Logprobs of a choice's tokens, collected in the shape of its API:
 * completions: {tokens, token_logprobs, top_logprobs, text_offset};
 * chat: {content: [{token, logprob, bytes, top_logprobs}]}. */
typedef struct serve_logprobs {
  serve_api api;
  json_object *tokens, *token_logprobs, *top_logprobs, *text_offset; /* completions */
  json_object *content;                                              /* chat */
  uint64_t text_offset_now; /* completions: bytes of text before the next token */
} serve_logprobs;

void serve_logprobs_init(serve_logprobs *lp, serve_api api);
/* Adds the token of a TOKEN event that carries logprobs. */
void serve_logprobs_add(serve_logprobs *lp, const qiao_tokenizer *tok,
                        const qiao_request_event *ev);
/* The logprobs object so far (NULL when none were added), and starts over. */
json_object *serve_logprobs_take(serve_logprobs *lp);
void serve_logprobs_free(serve_logprobs *lp);

/* What every response and chunk of one request shares. */
typedef struct serve_resp_head {
  serve_api api;
  const char *id; /* "cmpl-..." or "chatcmpl-..." */
  int64_t created;
  const char *model;
} serve_resp_head;

/* {id, object, created, model, choices: []}; `chunk` picks the stream
 * object name. Add choices to the "choices" array. */
json_object *serve_resp_new(const serve_resp_head *h, bool chunk);
json_object *serve_resp_choices(json_object *resp);

/* A choice of a whole (non-streamed) response. `logprobs` is taken (NULL:
 * null). */
json_object *serve_resp_choice(serve_api api, uint32_t index, const char *text, size_t len,
                               json_object *logprobs, const char *finish_reason);
/* A choice of a stream chunk: chat sends a delta (with the role when
 * `with_role`; no content when text is NULL), completions the text.
 * finish_reason NULL is null. `logprobs` is taken. */
json_object *serve_resp_chunk_choice(serve_api api, uint32_t index, bool with_role,
                                     const char *text, size_t len, json_object *logprobs,
                                     const char *finish_reason);

json_object *serve_resp_usage(uint32_t prompt_tokens, uint32_t completion_tokens,
                              uint32_t cached_tokens);

/* "stop" / "length" for a finished choice. */
const char *serve_finish_reason(qiao_finish finish);

/* Appends "data: <json>\n\n" (and puts `obj`); false when out of memory. */
bool serve_sse_event(serve_buf *out, json_object *obj);
bool serve_sse_done(serve_buf *out);

#endif

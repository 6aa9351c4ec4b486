/* Building the response objects and SSE frames of the generation routes. */
#include "responses.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* JSON has no infinities: a banned token's logprob (-inf) is sent as
 * -9999, as OpenAI does. */
static json_object *logprob_value(float lp) {
  return json_object_new_double(isfinite(lp) ? (double)lp : -9999.0);
}

/* The text a token stands for in the middle of a text. Decoding it alone
 * would drop SentencePiece's leading space ("▁the" -> "the"), which only
 * goes at the very start of a text; put it back. */
static json_object *token_piece(const qiao_tokenizer *tok, int32_t id) {
  char *text = NULL;
  size_t len = 0;
  qiao_status *st = qiao_tokenizer_decode(tok, &id, 1, &text, &len);
  if (st != NULL) {
    qiao_status_free(st);
    return json_object_new_string("");
  }
  const char *raw = qiao_tokenizer_token_text(tok, id);
  json_object *piece = NULL;
  if (raw != NULL && strncmp(raw, "\xE2\x96\x81", 3) == 0 && text[0] != ' ') {
    char *spaced = malloc(len + 2);
    if (spaced != NULL) {
      spaced[0] = ' ';
      memcpy(spaced + 1, text, len + 1);
      piece = json_object_new_string_len(spaced, (int)len + 1);
      free(spaced);
    }
  }
  if (piece == NULL) piece = json_object_new_string_len(text, (int)len);
  free(text);
  return piece;
}

/* Chat logprobs give each token's UTF-8 bytes as numbers. */
static json_object *piece_bytes(json_object *piece) {
  json_object *bytes = json_object_new_array();
  const unsigned char *s = (const unsigned char *)json_object_get_string(piece);
  size_t len = (size_t)json_object_get_string_len(piece);
  for (size_t i = 0; i < len; i++)
    json_object_array_add(bytes, json_object_new_int(s[i]));
  return bytes;
}

void serve_logprobs_init(serve_logprobs *lp, serve_api api) {
  memset(lp, 0, sizeof(*lp));
  lp->api = api;
}

void serve_logprobs_free(serve_logprobs *lp) {
  json_object_put(lp->tokens);
  json_object_put(lp->token_logprobs);
  json_object_put(lp->top_logprobs);
  json_object_put(lp->text_offset);
  json_object_put(lp->content);
  serve_logprobs_init(lp, lp->api);
}

static void add_chat(serve_logprobs *lp, const qiao_tokenizer *tok, const qiao_request_event *ev) {
  if (lp->content == NULL) lp->content = json_object_new_array();
  json_object *entry = json_object_new_object(), *top = json_object_new_array();
  json_object *piece = token_piece(tok, ev->token);
  json_object_object_add(entry, "token", piece);
  json_object_object_add(entry, "logprob", logprob_value(ev->logprob));
  json_object_object_add(entry, "bytes", piece_bytes(piece));
  for (uint32_t k = 0; k < ev->n_top; k++) {
    json_object *alt = json_object_new_object(), *alt_piece = token_piece(tok, ev->top_ids[k]);
    json_object_object_add(alt, "token", alt_piece);
    json_object_object_add(alt, "logprob", logprob_value(ev->top_logprobs[k]));
    json_object_object_add(alt, "bytes", piece_bytes(alt_piece));
    json_object_array_add(top, alt);
  }
  json_object_object_add(entry, "top_logprobs", top);
  json_object_array_add(lp->content, entry);
}

static void add_completion(serve_logprobs *lp, const qiao_tokenizer *tok,
                           const qiao_request_event *ev) {
  if (lp->tokens == NULL) {
    lp->tokens = json_object_new_array();
    lp->token_logprobs = json_object_new_array();
    lp->top_logprobs = json_object_new_array();
    lp->text_offset = json_object_new_array();
  }
  json_object *piece = token_piece(tok, ev->token);
  json_object_array_add(lp->text_offset, json_object_new_int64((int64_t)lp->text_offset_now));
  lp->text_offset_now += (uint64_t)json_object_get_string_len(piece);
  json_object_array_add(lp->tokens, piece);
  json_object_array_add(lp->token_logprobs, logprob_value(ev->logprob));
  json_object *top = json_object_new_object();
  for (uint32_t k = 0; k < ev->n_top; k++) {
    json_object *alt = token_piece(tok, ev->top_ids[k]);
    json_object_object_add(top, json_object_get_string(alt), logprob_value(ev->top_logprobs[k]));
    json_object_put(alt);
  }
  json_object_array_add(lp->top_logprobs, top);
}

void serve_logprobs_add(serve_logprobs *lp, const qiao_tokenizer *tok,
                        const qiao_request_event *ev) {
  if (lp->api == SERVE_API_CHAT)
    add_chat(lp, tok, ev);
  else
    add_completion(lp, tok, ev);
}

json_object *serve_logprobs_take(serve_logprobs *lp) {
  json_object *out = NULL;
  if (lp->api == SERVE_API_CHAT && lp->content != NULL) {
    out = json_object_new_object();
    json_object_object_add(out, "content", lp->content);
    lp->content = NULL;
  } else if (lp->api == SERVE_API_COMPLETIONS && lp->tokens != NULL) {
    out = json_object_new_object();
    json_object_object_add(out, "tokens", lp->tokens);
    json_object_object_add(out, "token_logprobs", lp->token_logprobs);
    json_object_object_add(out, "top_logprobs", lp->top_logprobs);
    json_object_object_add(out, "text_offset", lp->text_offset);
    lp->tokens = lp->token_logprobs = lp->top_logprobs = lp->text_offset = NULL;
  }
  return out;
}

json_object *serve_resp_new(const serve_resp_head *h, bool chunk) {
  const char *object = h->api == SERVE_API_COMPLETIONS ? "text_completion"
                       : chunk                         ? "chat.completion.chunk"
                                                       : "chat.completion";
  json_object *r = json_object_new_object();
  json_object_object_add(r, "id", json_object_new_string(h->id));
  json_object_object_add(r, "object", json_object_new_string(object));
  json_object_object_add(r, "created", json_object_new_int64(h->created));
  json_object_object_add(r, "model", json_object_new_string(h->model));
  json_object_object_add(r, "choices", json_object_new_array());
  return r;
}

json_object *serve_resp_choices(json_object *resp) {
  json_object *choices = NULL;
  json_object_object_get_ex(resp, "choices", &choices);
  return choices;
}

json_object *serve_resp_choice(serve_api api, uint32_t index, const char *text, size_t len,
                               json_object *logprobs, const char *finish_reason) {
  json_object *c = json_object_new_object();
  json_object_object_add(c, "index", json_object_new_int((int)index));
  json_object *content = json_object_new_string_len(text ? text : "", (int)len);
  if (api == SERVE_API_CHAT) {
    json_object *message = json_object_new_object();
    json_object_object_add(message, "role", json_object_new_string("assistant"));
    json_object_object_add(message, "content", content);
    json_object_object_add(c, "message", message);
  } else {
    json_object_object_add(c, "text", content);
  }
  json_object_object_add(c, "logprobs", logprobs);
  json_object_object_add(c, "finish_reason",
                         finish_reason ? json_object_new_string(finish_reason) : NULL);
  return c;
}

json_object *serve_resp_chunk_choice(serve_api api, uint32_t index, bool with_role,
                                     const char *text, size_t len, json_object *logprobs,
                                     const char *finish_reason) {
  json_object *c = json_object_new_object();
  json_object_object_add(c, "index", json_object_new_int((int)index));
  if (api == SERVE_API_CHAT) {
    json_object *delta = json_object_new_object();
    if (with_role) json_object_object_add(delta, "role", json_object_new_string("assistant"));
    if (text != NULL)
      json_object_object_add(delta, "content", json_object_new_string_len(text, (int)len));
    json_object_object_add(c, "delta", delta);
  } else {
    json_object_object_add(c, "text", json_object_new_string_len(text ? text : "", (int)len));
  }
  json_object_object_add(c, "logprobs", logprobs);
  json_object_object_add(c, "finish_reason",
                         finish_reason ? json_object_new_string(finish_reason) : NULL);
  return c;
}

json_object *serve_resp_usage(uint32_t prompt_tokens, uint32_t completion_tokens,
                              uint32_t cached_tokens) {
  json_object *u = json_object_new_object(), *details = json_object_new_object();
  json_object_object_add(u, "prompt_tokens", json_object_new_int64(prompt_tokens));
  json_object_object_add(u, "completion_tokens", json_object_new_int64(completion_tokens));
  json_object_object_add(u, "total_tokens",
                         json_object_new_int64((int64_t)prompt_tokens + completion_tokens));
  json_object_object_add(details, "cached_tokens", json_object_new_int64(cached_tokens));
  json_object_object_add(u, "prompt_tokens_details", details);
  return u;
}

const char *serve_finish_reason(qiao_finish finish) {
  return finish == QIAO_FINISH_LENGTH ? "length" : "stop";
}

bool serve_sse_event(serve_buf *out, json_object *obj) {
  size_t len = 0;
  const char *json = json_object_to_json_string_length(
      obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
  bool ok = serve_buf_append(out, "data: ", 6) && serve_buf_append(out, json, len) &&
            serve_buf_append(out, "\n\n", 2);
  json_object_put(obj);
  return ok;
}

bool serve_sse_done(serve_buf *out) {
  return serve_buf_append(out, "data: [DONE]\n\n", 14);
}

/* Completion and chat request bodies -> serve_gen_request. Every field is
 * checked for type and range; the error names the field. */
#include "request_parse.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_prompt.h"
#include "grammar_cache.h"
#include "json_in.h"
#include "reasoning.h"
#include "text.h"

void serve_gen_request_free(serve_gen_request *r) {
  free(r->prompt);
  for (size_t i = 0; i < r->n_stops; i++)
    free(r->stops[i]);
  free(r->logit_bias);
  free(r->prompt_log);
  qiao_grammar_destroy(r->grammar);
  serve_tools_free(&r->tools);
  memset(r, 0, sizeof(*r));
}

/* OpenAI's sampling defaults (not the CLI's): temperature 1, no top-k,
 * top-p or min-p, no penalties. */
static void init(serve_gen_request *r, serve_api api) {
  memset(r, 0, sizeof(*r));
  r->api = api;
  r->n = 1;
  r->max_tokens = api == SERVE_API_COMPLETIONS ? 16 : 0;
  r->sampling = qiao_sampler_default_params();
  r->sampling.temperature = 1.0f;
  r->sampling.top_k = 0;
  r->sampling.top_p = 1.0f;
  r->sampling.min_p = 0.0f;
  r->sampling.repeat_penalty = 1.0f;
  r->sampling.presence_penalty = 0.0f;
  r->sampling.frequency_penalty = 0.0f;
  r->sampling.penalty_window = 0;
}

/* max_tokens and friends: a positive integer; values beyond what the
 * context holds are capped later, not refused. */
static bool parse_max_tokens(json_object *body, const char *key, uint32_t *out, serve_error *e) {
  json_object *v = serve_json_get(body, key);
  int64_t n = 0;
  if (v == NULL) return true;
  double d = json_object_get_double(v);
  if (json_object_is_type(v, json_type_double) && isfinite(d) && d >= 1 && d == floor(d)) {
    *out = d > (double)UINT32_MAX ? UINT32_MAX : (uint32_t)d; /* 1e30 is "a lot" too */
    return true;
  }
  if (!serve_json_as_int(v, key, INT64_MIN, INT64_MAX, &n, e) || n < 1)
    return serve_bad_request(e, key, "%s must be a positive integer", key);
  *out = n > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)n;
  return true;
}

static bool parse_stop(json_object *body, serve_gen_request *r, serve_error *e) {
  json_object *v = serve_json_get(body, "stop");
  if (v == NULL) return true;
  json_object *one[1] = {v};
  size_t n = 1;
  if (json_object_is_type(v, json_type_array)) {
    n = json_object_array_length(v);
    if (n > SERVE_MAX_STOPS)
      return serve_bad_request(e, "stop", "stop may hold at most %d strings", SERVE_MAX_STOPS);
  } else if (!json_object_is_type(v, json_type_string)) {
    return serve_bad_request(e, "stop", "stop must be a string or an array of strings");
  }
  for (size_t i = 0; i < n; i++) {
    json_object *s =
        json_object_is_type(v, json_type_array) ? json_object_array_get_idx(v, i) : one[0];
    const char *text = NULL;
    size_t len = 0;
    if (s == NULL || !json_object_is_type(s, json_type_string))
      return serve_bad_request(e, "stop", "stop must be a string or an array of strings");
    if (!serve_json_as_string(s, "stop", &text, &len, e)) return false;
    if (strlen(text) != len)
      return serve_bad_request(e, "stop", "stop strings must not contain NUL characters");
    if (len == 0) continue; /* an empty stop string would stop nothing */
    if ((r->stops[r->n_stops] = strdup(text)) == NULL)
      return serve_fail(e, 500, NULL, "out of memory");
    r->n_stops++;
  }
  return true;
}

/* {"token id": bias, ...} with ids in the vocabulary and biases in
 * [-100, 100] (-100 bans the token). */
static bool parse_logit_bias(serve_app *app, json_object *body, serve_gen_request *r,
                             serve_error *e) {
  json_object *v = serve_json_get(body, "logit_bias");
  if (v == NULL) return true;
  if (!json_object_is_type(v, json_type_object))
    return serve_bad_request(e, "logit_bias", "logit_bias must be an object of token id -> bias");
  size_t n = (size_t)json_object_object_length(v);
  if (n == 0) return true;
  if ((r->logit_bias = calloc(n, sizeof(*r->logit_bias))) == NULL)
    return serve_fail(e, 500, NULL, "out of memory");
  json_object_object_foreach(v, key, value) {
    uint64_t id = 0;
    size_t len = strlen(key);
    bool ok = len > 0 && len <= 10;
    for (size_t i = 0; ok && i < len; i++) {
      ok = key[i] >= '0' && key[i] <= '9';
      id = id * 10 + (uint64_t)(key[i] - '0');
    }
    if (!ok || id >= app->vocab_size)
      return serve_bad_request(e, "logit_bias", "logit_bias key '%.32s' is not a token id below %u",
                               key, app->vocab_size);
    double bias = 0;
    if (!serve_json_as_number(value, "logit_bias", -100, 100, &bias, e)) return false;
    if (value == NULL) continue; /* null: no bias */
    r->logit_bias[r->n_logit_bias].token = (int32_t)id;
    r->logit_bias[r->n_logit_bias].bias = (float)bias;
    r->n_logit_bias++;
  }
  return true;
}

/* The fields both APIs share. */
static bool parse_common(serve_app *app, json_object *body, serve_gen_request *r, serve_error *e) {
  const char *model = NULL;
  /* Any model name is accepted (one model is served), as llama-server does. */
  if (!serve_json_string(body, "model", &model, NULL, e)) return false;
  double temperature = r->sampling.temperature, top_p = r->sampling.top_p,
         min_p = r->sampling.min_p, presence = 0, frequency = 0;
  int64_t top_k = 0, seed = 0, n = 1;
  if (!serve_json_number(body, "temperature", 0, 2, &temperature, e) ||
      !serve_json_number(body, "top_p", 0, 1, &top_p, e) ||
      !serve_json_number(body, "min_p", 0, 1, &min_p, e) ||
      !serve_json_int(body, "top_k", 0, INT64_MAX, &top_k, e) ||
      !serve_json_number(body, "presence_penalty", -2, 2, &presence, e) ||
      !serve_json_number(body, "frequency_penalty", -2, 2, &frequency, e) ||
      !serve_json_int(body, "seed", INT64_MIN, INT64_MAX, &seed, e) ||
      !serve_json_int(body, "n", 1, SERVE_MAX_CHOICES, &n, e) ||
      !serve_json_bool(body, "stream", &r->stream, e) ||
      !serve_json_bool(body, "ignore_eos", &r->ignore_eos, e) ||
      !parse_max_tokens(body, "max_tokens", &r->max_tokens, e) || !parse_stop(body, r, e) ||
      !parse_logit_bias(app, body, r, e))
    return false;
  r->sampling.temperature = (float)temperature;
  r->sampling.top_p = (float)top_p;
  r->sampling.min_p = (float)min_p;
  r->sampling.top_k = top_k > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)top_k;
  r->sampling.presence_penalty = (float)presence;
  r->sampling.frequency_penalty = (float)frequency;
  r->seed_given = serve_json_get(body, "seed") != NULL;
  r->sampling.seed = (uint64_t)seed;
  r->n = (uint32_t)n;

  json_object *so = serve_json_get(body, "stream_options");
  if (so != NULL && !json_object_is_type(so, json_type_object))
    return serve_bad_request(e, "stream_options", "stream_options must be an object");
  json_object *iu = serve_json_get(so, "include_usage");
  if (!serve_json_as_bool(iu, "stream_options.include_usage", &r->include_usage, e)) return false;

  const char *user = NULL;
  if (!serve_json_string(body, "user", &user, NULL, e)) return false;
  if (user != NULL) {
    snprintf(r->user, sizeof(r->user), "%s", user);
    serve_text_sanitize(r->user);
  }
  return true;
}

/* A prompt longer than the context: OpenAI's code for it. */
static bool too_long(serve_app *app, const char *param, size_t n, serve_error *e) {
  serve_fail(e, 400, param, "%s is %zu tokens; the context holds %u", param, n, app->max_context);
  e->code = "context_length_exceeded";
  return false;
}

/* An array of token ids (each below the vocabulary size), or false. */
static bool parse_ids(serve_app *app, json_object *arr, const char *label, serve_gen_request *r,
                      serve_error *e) {
  size_t n = json_object_array_length(arr);
  if (n == 0) return serve_bad_request(e, label, "%s must not be empty", label);
  if (n > app->max_context) return too_long(app, label, n, e);
  if ((r->prompt = malloc(n * sizeof(int32_t))) == NULL)
    return serve_fail(e, 500, NULL, "out of memory");
  for (size_t i = 0; i < n; i++) {
    json_object *v = json_object_array_get_idx(arr, i);
    int64_t id = -1;
    if (v == NULL || !json_object_is_type(v, json_type_int) ||
        (id = json_object_get_int64(v)) < 0 || id >= (int64_t)app->vocab_size)
      return serve_bad_request(e, label, "%s[%zu] must be a token id between 0 and %u", label, i,
                               app->vocab_size - 1);
    r->prompt[i] = (int32_t)id;
  }
  r->n_prompt = n;
  return true;
}

static bool encode_text(serve_app *app, const char *text, size_t len, serve_gen_request *r,
                        serve_error *e) {
  /* BOS as the model's tokenizer says; special-token text (<|im_start|>) is
   * matched, as for a raw prompt written for the model's own format. */
  qiao_encode_options enc = {sizeof(enc), qiao_tokenizer_adds_bos(app->tokenizer), true};
  qiao_status *st =
      qiao_tokenizer_encode(app->tokenizer, text, len, &enc, &r->prompt, &r->n_prompt);
  if (st != NULL) {
    serve_fail(e, 500, NULL, "tokenizing the prompt: %s", qiao_status_message(st));
    qiao_status_free(st);
    return false;
  }
  if (r->n_prompt == 0) return serve_bad_request(e, "prompt", "prompt is empty");
  if (r->n_prompt > app->max_context) return too_long(app, "prompt", r->n_prompt, e);
  if (app->config->log_prompts && (r->prompt_log = strndup(text, len)) == NULL)
    return serve_fail(e, 500, NULL, "out of memory");
  return true;
}

/* prompt: a string, an array of token ids, or an array holding one of
 * those (several prompts in one request are not supported). */
static bool parse_prompt(serve_app *app, json_object *body, serve_gen_request *r, serve_error *e) {
  json_object *p = serve_json_get(body, "prompt");
  const char *text = NULL;
  size_t len = 0;
  if (p == NULL) return serve_bad_request(e, "prompt", "prompt is required");
  if (json_object_is_type(p, json_type_string)) {
    if (!serve_json_as_string(p, "prompt", &text, &len, e)) return false;
    return encode_text(app, text, len, r, e);
  }
  if (!json_object_is_type(p, json_type_array))
    return serve_bad_request(e, "prompt", "prompt must be a string or an array of token ids");
  size_t n = json_object_array_length(p);
  json_object *first = n > 0 ? json_object_array_get_idx(p, 0) : NULL;
  if (first != NULL && (json_object_is_type(first, json_type_string) ||
                        json_object_is_type(first, json_type_array))) {
    if (n > 1)
      return serve_bad_request(e, "prompt",
                               "prompt holds %zu prompts; one per request is supported", n);
    if (json_object_is_type(first, json_type_array))
      return parse_ids(app, first, "prompt[0]", r, e);
    if (!serve_json_as_string(first, "prompt[0]", &text, &len, e)) return false;
    return encode_text(app, text, len, r, e);
  }
  return parse_ids(app, p, "prompt", r, e);
}

/* The GBNF rules of the thinking before a constrained answer, when the
 * request's reply has one (reasoning.h), else NULL. */
static const char *thought_rules(const serve_gen_request *r) {
  return r->reasoning ? serve_reasoning_gbnf(r->think_open) : NULL;
}

/* Compiles a JSON schema given as a JSON value into r->grammar (after the
 * thinking of a reasoning model's reply: the schema constrains the answer);
 * the error (400) names `field` and says what the compiler refused. */
static bool compile_schema(json_object *schema, const char *field, serve_gen_request *r,
                           serve_error *e) {
  const char *text = json_object_to_json_string_ext(schema, JSON_C_TO_STRING_PLAIN);
  if (text == NULL) return serve_fail(e, 500, NULL, "out of memory");
  qiao_status *st = NULL;
  const char *thought = thought_rules(r);
  if (thought == NULL) {
    st = serve_grammar_json_schema(text, strlen(text), &r->grammar);
  } else {
    serve_buf g = {0};
    qiao_grammar_schema_rule answer = {"answer", text, strlen(text)};
    if (!serve_buf_append(&g, thought, strlen(thought)) ||
        !serve_buf_append(&g, "root ::= thought answer\n", 24)) {
      serve_buf_free(&g);
      return serve_fail(e, 500, NULL, "out of memory");
    }
    st = serve_grammar_gbnf(g.data, g.len, &answer, 1, &r->grammar);
    serve_buf_free(&g);
  }
  if (st == NULL) return true;
  serve_bad_request(e, field, "%s: %s", field, qiao_status_message(st));
  qiao_status_free(st);
  return false;
}

/* response_format: {"type": "text"}, {"type": "json_object"} (any JSON
 * object) or {"type": "json_schema", "json_schema": {"name": ...,
 * "schema": {...}, "strict": bool}}. The output is constrained in every
 * case but text (strict false is constrained too: valid output is valid). */
static bool parse_response_format(json_object *body, serve_gen_request *r, serve_error *e) {
  json_object *rf = serve_json_get(body, "response_format");
  if (rf == NULL) return true;
  json_object *t = serve_json_get(rf, "type");
  if (!json_object_is_type(rf, json_type_object) || t == NULL ||
      !json_object_is_type(t, json_type_string))
    return serve_bad_request(e, "response_format",
                             "response_format must be an object with a string 'type'");
  const char *type = json_object_get_string(t);
  if (strcmp(type, "text") == 0) return true;
  if (strcmp(type, "json_object") == 0) {
    json_object *obj = json_tokener_parse("{\"type\":\"object\"}");
    bool ok = obj != NULL && compile_schema(obj, "response_format", r, e);
    json_object_put(obj);
    return obj != NULL ? ok : serve_fail(e, 500, NULL, "out of memory");
  }
  if (strcmp(type, "json_schema") != 0)
    return serve_bad_request(e, "response_format.type",
                             "response_format.type must be text, json_object or json_schema");
  json_object *js = serve_json_get(rf, "json_schema");
  if (js == NULL || !json_object_is_type(js, json_type_object))
    return serve_bad_request(e, "response_format.json_schema",
                             "response_format.json_schema must be an object");
  bool strict = false;
  if (!serve_json_bool(js, "strict", &strict, e)) return false;
  json_object *schema = serve_json_get(js, "schema");
  if (schema == NULL) { /* no schema: any JSON value */
    json_object *any = json_object_new_object();
    bool ok = any != NULL && compile_schema(any, "response_format.json_schema.schema", r, e);
    json_object_put(any);
    return any != NULL ? ok : serve_fail(e, 500, NULL, "out of memory");
  }
  return compile_schema(schema, "response_format.json_schema.schema", r, e);
}

/* grammar: a GBNF grammar (as llama-server takes it) that constrains the
 * raw output, a reasoning model's <think> part included; not with
 * response_format. */
static bool parse_grammar(json_object *body, serve_gen_request *r, serve_error *e) {
  const char *text = NULL;
  size_t len = 0;
  if (!serve_json_string(body, "grammar", &text, &len, e)) return false;
  if (text == NULL) return true;
  if (r->grammar != NULL)
    return serve_bad_request(e, "grammar", "grammar cannot be combined with response_format");
  qiao_status *st = serve_grammar_gbnf(text, len, NULL, 0, &r->grammar);
  if (st == NULL) return true;
  serve_bad_request(e, "grammar", "grammar: %s", qiao_status_message(st));
  qiao_status_free(st);
  return false;
}

bool serve_parse_completion(serve_app *app, json_object *body, serve_gen_request *r,
                            serve_error *e) {
  init(r, SERVE_API_COMPLETIONS);
  bool echo = false;
  int64_t logprobs = -1;
  if (!parse_common(app, body, r, e) || !serve_json_bool(body, "echo", &echo, e) ||
      !serve_json_int(body, "logprobs", 0, 5, &logprobs, e))
    return false;
  if (echo) return serve_bad_request(e, "echo", "echo is not supported yet");
  if (!parse_response_format(body, r, e) || !parse_grammar(body, r, e)) return false;
  if (logprobs >= 0) {
    r->logprobs = true;
    r->top_logprobs = (uint32_t)logprobs;
  }
  return parse_prompt(app, body, r, e);
}

/* reasoning_format (as llama-server takes it per request): the server's
 * setting unless "none" or "deepseek" is asked for. */
static bool parse_reasoning(serve_app *app, json_object *body, serve_gen_request *r,
                            serve_error *e) {
  const char *name = NULL;
  serve_reasoning_format f = SERVE_REASONING_AUTO;
  if (!serve_json_string(body, "reasoning_format", &name, NULL, e)) return false;
  if (name != NULL && !serve_reasoning_format_parse(name, &f))
    return serve_bad_request(e, "reasoning_format",
                             "reasoning_format must be auto, deepseek or none");
  r->reasoning = f == SERVE_REASONING_DEEPSEEK || (f == SERVE_REASONING_AUTO && app->reasoning);
  return true;
}

bool serve_parse_chat(serve_app *app, json_object *body, serve_gen_request *r, serve_error *e) {
  init(r, SERVE_API_CHAT);
  int64_t top = -1;
  if (!parse_common(app, body, r, e) || !serve_tools_parse(body, app->tokenizer, &r->tools, e) ||
      !parse_max_tokens(body, "max_completion_tokens", &r->max_tokens, e) ||
      !serve_json_bool(body, "logprobs", &r->logprobs, e) ||
      !serve_json_int(body, "top_logprobs", 0, 20, &top, e) || !parse_reasoning(app, body, r, e))
    return false;
  if (top >= 0) {
    if (!r->logprobs)
      return serve_bad_request(e, "top_logprobs", "top_logprobs needs logprobs set to true");
    r->top_logprobs = (uint32_t)top;
  }
  char *rendered = NULL;
  if (!serve_chat_prompt(app, serve_json_get(body, "messages"), r->tools.json,
                         serve_json_get(body, "chat_template_kwargs"),
                         r->tools.family != SERVE_TOOLS_DEEPSEEK, &r->prompt, &r->n_prompt,
                         &rendered, e))
    return false;
  /* The template may have opened the thinking (DeepSeek-R1, QwQ). */
  r->think_open = r->reasoning && serve_reasoning_prompt_open(rendered, strlen(rendered));
  if (app->config->log_prompts)
    r->prompt_log = rendered;
  else
    free(rendered);
  if (r->n_prompt > app->max_context) return too_long(app, "messages", r->n_prompt, e);
  /* Grammars come after the prompt: with thinking, they constrain the
   * answer after it. */
  if (!parse_response_format(body, r, e) || !parse_grammar(body, r, e)) return false;
  /* A forced call: decoding is constrained to a valid call of the allowed
   * function(s). */
  if (r->tools.choice == SERVE_TOOL_CHOICE_REQUIRED || r->tools.choice == SERVE_TOOL_CHOICE_NAMED) {
    if (r->grammar != NULL) {
      const char *field = serve_json_get(body, "grammar") ? "grammar" : "response_format";
      return serve_bad_request(e, field, "%s cannot be combined with a forced tool_choice", field);
    }
    if (!serve_tools_grammar_after(&r->tools, thought_rules(r), &r->grammar, e)) return false;
  }
  return true;
}

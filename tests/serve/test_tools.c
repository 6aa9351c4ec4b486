/* Tool calls per model family, on each family's real tokenizer (Qwen3 for
 * Hermes-style <tool_call>, Llama 3, DeepSeek-V3): the family is found;
 * the forced-call grammar accepts the call exactly as the family's chat
 * template writes it and refuses arguments that break the schema; calls
 * generated with random logits under that grammar parse back (extract)
 * into calls whose arguments validate; model-like text with content around
 * calls splits into content and calls; the real chat templates render the
 * tools. Links the serve edge's tools.c directly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../constrain/validate.h"
#include "qiao/grammar.h"
#include "qiao/sampler.h"
#include "qiao/template.h"
#include "qiao/tokenizer.h"
#include "test_util.h"
#include "tool_stream.h"
#include "tools.h"

#define PARAMS                                                                                     \
  "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":10},"          \
  "\"days\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":7}},\"required\":[\"city\",\"days\"]," \
  "\"additionalProperties\":false}"

static const char *BODY =
    "{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"forecast\",\"parameters\":" PARAMS
    "}},{\"type\":\"function\",\"function\":{\"name\":\"noop\"}}],\"tool_choice\":"
    "{\"type\":\"function\",\"function\":{\"name\":\"forecast\"}}}";

#define DS_CALLS                                                                                   \
  "<\xef\xbd\x9ctool\xe2\x96\x81"                                                                  \
  "calls\xe2\x96\x81"                                                                              \
  "begin\xef\xbd\x9c>"
#define DS_CALLS_END                                                                               \
  "<\xef\xbd\x9ctool\xe2\x96\x81"                                                                  \
  "calls\xe2\x96\x81"                                                                              \
  "end\xef\xbd\x9c>"
#define DS_CALL                                                                                    \
  "<\xef\xbd\x9ctool\xe2\x96\x81"                                                                  \
  "call\xe2\x96\x81"                                                                               \
  "begin\xef\xbd\x9c>"
#define DS_CALL_END                                                                                \
  "<\xef\xbd\x9ctool\xe2\x96\x81"                                                                  \
  "call\xe2\x96\x81"                                                                               \
  "end\xef\xbd\x9c>"
#define DS_SEP "<\xef\xbd\x9ctool\xe2\x96\x81sep\xef\xbd\x9c>"

typedef struct family_case {
  const char *tokenizer;     /* the family's own, for its detection */
  const char *gen_tokenizer; /* the vocabulary generated with (NULL: the same) */
  serve_tool_family family;
  const char *canonical;      /* a call as the family's template writes it */
  const char *bad;            /* a call whose arguments break the schema */
  const char *with_content;   /* model text: content and a call */
  const char *content_expect; /* the content part of it */
} family_case;

static const family_case CASES[] = {
    {"tokenizers/qwen3/tokenizer.json", NULL, SERVE_TOOLS_HERMES,
     "<tool_call>\n{\"name\": \"forecast\", \"arguments\": {\"city\": \"Oslo\", \"days\": "
     "3}}\n</tool_call>",
     "<tool_call>\n{\"name\": \"forecast\", \"arguments\": {\"city\": \"Oslo\", \"days\": "
     "9}}\n</tool_call>",
     "Let me check.\n<tool_call>\n{\"name\": \"forecast\", \"arguments\": {\"city\": \"Rome\", "
     "\"days\": 2}}\n</tool_call>",
     "Let me check."},
    {"tokenizers/llama3/tokenizer.json", NULL, SERVE_TOOLS_LLAMA3,
     "{\"name\": \"forecast\", \"parameters\": {\"city\": \"Oslo\", \"days\": 3}}",
     "{\"name\": \"forecast\", \"parameters\": {\"city\": \"Oslo\"}}",
     "<|python_tag|>{\"name\": \"forecast\", \"parameters\": {\"city\": \"Rome\", \"days\": 2}}",
     ""},
    {"tokenizers/deepseek_v3/tokenizer.json", NULL, SERVE_TOOLS_DEEPSEEK,
     DS_CALLS DS_CALL
     "function" DS_SEP
     "forecast\n```json\n{\"city\": \"Oslo\", \"days\": 3}\n```" DS_CALL_END DS_CALLS_END,
     DS_CALLS DS_CALL "function" DS_SEP
                      "forecast\n```json\n{\"city\": 3, \"days\": 3}\n```" DS_CALL_END DS_CALLS_END,
     "Sure." DS_CALLS DS_CALL "function" DS_SEP
     "forecast\n```json\n{\"city\":\"Rome\",\"days\":2}\n```" DS_CALL_END DS_CALLS_END,
     "Sure."},
};

static bool accepts(qiao_grammar *g, const char *text) {
  qiao_grammar_matcher *m = NULL;
  qiao_status *st = qiao_grammar_matcher_create(g, NULL, &m);
  if (st == NULL) st = qiao_grammar_matcher_accept_bytes(m, text, strlen(text));
  bool ok = st == NULL && qiao_grammar_matcher_can_end(m);
  qiao_status_free(st);
  qiao_grammar_matcher_destroy(m);
  return ok;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float rnd(void) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return (float)((rng * 2685821657736338717ull) >> 40) / (float)(1u << 24);
}

static void check_calls(const serve_tool_call *calls, size_t n, const char *what) {
  CHECK(n >= 1);
  for (size_t k = 0; k < n; k++) {
    CHECK(strcmp(calls[k].name, "forecast") == 0);
    CHECK(strncmp(calls[k].id, "call_", 5) == 0);
    char why[256] = "";
    if (!v_check(PARAMS, calls[k].arguments, strlen(calls[k].arguments), why, sizeof(why))) {
      fprintf(stderr, "%s: arguments %s invalid: %s\n", what, calls[k].arguments, why);
      test_failures++;
    }
  }
}

/* ---- Streaming: the deltas, joined, give what serve_tools_extract gives ---- */

#define ACC_CALLS 16
typedef struct stream_acc {
  serve_buf content;
  serve_buf args[ACC_CALLS];
  char names[ACC_CALLS][72];
  size_t n_calls, arg_deltas[ACC_CALLS];
  const char *what;
} stream_acc;

static void acc_delta(void *ctx, const serve_tool_delta *d) {
  stream_acc *a = ctx;
  if (d->kind == SERVE_TOOL_DELTA_CONTENT) {
    CHECK(d->len > 0);
    serve_buf_append(&a->content, d->text, d->len);
  } else if (d->kind == SERVE_TOOL_DELTA_CALL) {
    /* a call begins with its index, id and name, after the previous one */
    CHECK(d->index == a->n_calls && d->index < ACC_CALLS);
    CHECK(strncmp(d->id, "call_", 5) == 0 && d->name[0] != '\0');
    if (d->index < ACC_CALLS) snprintf(a->names[d->index], sizeof(a->names[0]), "%s", d->name);
    a->n_calls++;
  } else {
    /* arguments only for the call that is open */
    CHECK(a->n_calls > 0 && d->index == a->n_calls - 1 && d->len > 0);
    if (d->index < ACC_CALLS) {
      serve_buf_append(&a->args[d->index], d->text, d->len);
      a->arg_deltas[d->index]++;
    }
  }
}

/* JSON text in json-c's plain form (as extract writes arguments). */
static char *plain_json(const char *s, size_t len) {
  json_tokener *tok = json_tokener_new();
  json_object *v = json_tokener_parse_ex(tok, s, (int)len);
  bool whole = v != NULL && json_tokener_get_error(tok) == json_tokener_success &&
               json_tokener_get_parse_end(tok) == len;
  json_tokener_free(tok);
  char *out = whole ? strdup(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN)) : NULL;
  json_object_put(v);
  return out;
}

/* Feeds `text` as it would be generated, cut after each of cuts[] (or
 * every `step` bytes), then final; the joined deltas must equal the whole
 * text's content and calls. Returns the fewest argument deltas of a call. */
static size_t check_stream(const serve_tools *t, const char *text, size_t len, const size_t *cuts,
                           size_t n_cuts, size_t step, const char *what) {
  stream_acc a;
  memset(&a, 0, sizeof(a));
  a.what = what;
  serve_tool_stream s;
  memset(&s, 0, sizeof(s));
  size_t at = 0;
  for (size_t k = 0; at < len; k++) {
    at = cuts ? (k < n_cuts ? cuts[k] : len) : (at + step < len ? at + step : len);
    serve_tool_stream_feed(&s, t, text, at, false, acc_delta, &a);
  }
  serve_tool_stream_feed(&s, t, text, len, true, acc_delta, &a);
  serve_buf content = {0};
  serve_tool_call *calls = NULL;
  size_t n = serve_tools_extract(t, text, len, &content, &calls);
  const char *got = a.content.data ? a.content.data : "", *want = content.data ? content.data : "";
  if (strcmp(got, want) != 0 || a.n_calls != n || s.n_calls != n) {
    fprintf(stderr, "%s (step %zu): streamed content '%s' and %zu calls, whole '%s' and %zu\n",
            what, step, got, a.n_calls, want, n);
    test_failures++;
  }
  size_t fewest = (size_t)-1;
  for (size_t k = 0; k < n && k < a.n_calls && k < ACC_CALLS; k++) {
    char *joined = plain_json(a.args[k].data ? a.args[k].data : "", a.args[k].len);
    if (joined == NULL || strcmp(joined, calls[k].arguments) != 0 ||
        strcmp(a.names[k], calls[k].name) != 0) {
      fprintf(stderr, "%s (step %zu): call %zu streamed %s(%s), whole %s(%s)\n", what, step, k,
              a.names[k], a.args[k].data ? a.args[k].data : "", calls[k].name, calls[k].arguments);
      test_failures++;
    }
    free(joined);
    if (a.arg_deltas[k] < fewest) fewest = a.arg_deltas[k];
  }
  serve_tool_calls_free(calls, n);
  serve_buf_free(&content);
  serve_buf_free(&a.content);
  for (size_t k = 0; k < ACC_CALLS; k++)
    serve_buf_free(&a.args[k]);
  serve_tool_stream_free(&s);
  return fewest;
}

/* Byte by byte and in a few chunk sizes. */
static void check_stream_steps(const serve_tools *t, const char *text, const char *what) {
  static const size_t steps[] = {1, 2, 3, 5, 8, 64, 4096};
  for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
    check_stream(t, text, strlen(text), NULL, 0, steps[i], what);
}

static void run_family(const family_case *fc) {
  qiao_tokenizer *tok = NULL;
  const char *path = fc->gen_tokenizer ? fc->gen_tokenizer : fc->tokenizer;
  CHECK_OK(qiao_tokenizer_open(test_shared_path(path), &tok));
  if (tok == NULL) return;
  json_object *body = json_tokener_parse(BODY);
  serve_tools t;
  serve_error e;
  memset(&e, 0, sizeof(e));
  CHECK(serve_tools_parse(body, fc->tokenizer ? tok : NULL, &t, &e));
  if (fc->tokenizer == NULL) t.family = fc->family;
  CHECK(t.family == fc->family && t.choice == SERVE_TOOL_CHOICE_NAMED && t.named == 0);
  qiao_grammar *g = NULL;
  CHECK(serve_tools_grammar(&t, &g, &e));
  if (g == NULL) {
    fprintf(stderr, "%s: %s\n", path, e.message);
    test_failures++;
  } else {
    if (!accepts(g, fc->canonical)) {
      fprintf(stderr, "%s: the grammar refuses the template's call %s\n", path, fc->canonical);
      test_failures++;
    }
    CHECK(!accepts(g, fc->bad));
  }
  /* Streamed: byte by byte, a long-enough call's arguments come in many
   * fragments, and the joined deltas equal the whole text's calls. */
  check_stream_steps(&t, fc->canonical, path);
  check_stream_steps(&t, fc->with_content, path);
  CHECK(check_stream(&t, fc->canonical, strlen(fc->canonical), NULL, 0, 1, path) > 10);
  /* Model-like text with content. */
  serve_buf content = {0};
  serve_tool_call *calls = NULL;
  size_t n = serve_tools_extract(&t, fc->with_content, strlen(fc->with_content), &content, &calls);
  check_calls(calls, n, path);
  if (strcmp(content.data ? content.data : "", fc->content_expect) != 0) {
    fprintf(stderr, "%s: content '%s', expected '%s'\n", path, content.data ? content.data : "",
            fc->content_expect);
    test_failures++;
  }
  serve_tool_calls_free(calls, n);
  serve_buf_free(&content);
  /* Random generation under the grammar on the real vocabulary. */
  qiao_token_trie *trie = NULL;
  CHECK_OK(qiao_token_trie_from_tokenizer(tok, &trie));
  uint32_t vocab = qiao_tokenizer_vocab_size(tok);
  float *logits = malloc(vocab * sizeof(float));
  qiao_sampler_params sp = qiao_sampler_default_params();
  sp.temperature = 1.0f;
  sp.top_k = 0;
  sp.top_p = 1.0f;
  sp.min_p = 0.0f;
  qiao_sampler *sampler = NULL;
  CHECK_OK(qiao_sampler_create(&sp, vocab, &sampler));
  qiao_grammar_matcher *m = NULL;
  if (g != NULL && trie != NULL) CHECK_OK(qiao_grammar_matcher_create(g, trie, &m));
  for (int run = 0; run < 3 && m != NULL && sampler != NULL; run++) {
    qiao_grammar_matcher_reset(m);
    static char out[1 << 15];
    static size_t cuts[1024];
    size_t len = 0, n_cuts = 0;
    for (int step = 0; step < 400 && !qiao_grammar_matcher_ended(m); step++) {
      const uint32_t *mask = NULL;
      int32_t tk = -1;
      CHECK_OK(qiao_grammar_matcher_mask(m, &mask));
      for (uint32_t i = 0; i < vocab; i++)
        logits[i] = rnd() * 8;
      /* EOS is made likely once allowed, as a model that is done would. */
      const int32_t *eos = NULL;
      size_t ne = qiao_tokenizer_eos_ids(tok, &eos);
      for (size_t k = 0; k < ne; k++)
        logits[eos[k]] = 100;
      qiao_status *st = qiao_sampler_sample_masked(sampler, logits, mask, &tk, NULL);
      if (st != NULL) {
        fprintf(stderr, "%s: %s after '%.*s'\n", path, qiao_status_message(st), (int)len, out);
        qiao_status_free(st);
        test_failures++;
        break;
      }
      CHECK_OK(qiao_grammar_matcher_accept_token(m, tk));
      if (qiao_grammar_matcher_ended(m)) break;
      size_t l = 0;
      CHECK_OK(qiao_tokenizer_token_bytes(tok, tk, out + len, sizeof(out) - 1 - len, &l));
      len += l;
      if (n_cuts < 1024) cuts[n_cuts++] = len;
    }
    out[len] = '\0';
    CHECK(qiao_grammar_matcher_ended(m));
    /* streamed token by token, as the server streams it */
    CHECK(check_stream(&t, out, len, cuts, n_cuts, 0, out) > 1);
    serve_buf c2 = {0};
    serve_tool_call *calls2 = NULL;
    size_t n2 = serve_tools_extract(&t, out, len, &c2, &calls2);
    check_calls(calls2, n2, out);
    CHECK(c2.len == 0);
    if (run == 0) printf("family %d: %s\n", (int)fc->family, out);
    serve_tool_calls_free(calls2, n2);
    serve_buf_free(&c2);
  }
  qiao_grammar_matcher_destroy(m);
  qiao_sampler_destroy(sampler);
  free(logits);
  qiao_token_trie_destroy(trie);
  qiao_grammar_destroy(g);
  serve_tools_free(&t);
  json_object_put(body);
  qiao_tokenizer_destroy(tok);
}

/* The published chat templates render the tools and an earlier call. */
static void render_templates(void) {
  static const char *const files[][2] = {
      {"chat_templates/Qwen-Qwen2.5-7B-Instruct.jinja", "\"forecast\""},
      {"chat_templates/Qwen-Qwen3-0.6B.jinja", "\"forecast\""},
      {"chat_templates/meta-llama-Llama-3.1-8B-Instruct.jinja", "\"forecast\""}};
  const char *vars =
      "{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"}],\"add_generation_prompt\":true,"
      "\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"tools\":[{\"type\":\"function\",\"function\":"
      "{\"name\":\"forecast\",\"description\":\"d\",\"parameters\":" PARAMS "}}]}";
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    size_t len = 0;
    char *src = test_read_file(test_shared_path(files[i][0]), &len);
    qiao_template *tm = NULL;
    CHECK_OK(qiao_template_compile(src, len, &tm));
    char *text = NULL;
    size_t tl = 0;
    if (tm != NULL) CHECK_OK(qiao_template_render(tm, vars, strlen(vars), NULL, &text, &tl));
    if (text != NULL && strstr(text, files[i][1]) == NULL) {
      fprintf(stderr, "%s: the tools are not in the prompt:\n%s\n", files[i][0], text);
      test_failures++;
    }
    free(text);
    qiao_template_destroy(tm);
    free(src);
  }
}

/* DeepSeek-V3's template writes earlier calls in the markup that the
 * parser reads back (two calls, as the model writes them), and its prompt
 * encodes each tool-call marker as one token of the real vocabulary. */
static void deepseek_template(void) {
  size_t len = 0;
  char *src =
      test_read_file(test_shared_path("chat_templates/deepseek-ai-DeepSeek-V3.jinja"), &len);
  qiao_template *tm = NULL;
  CHECK_OK(qiao_template_compile(src, len, &tm));
  const char *vars =
      "{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"},{\"role\":\"assistant\","
      "\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{"
      "\"name\":\"forecast\",\"arguments\":\"{\\\"city\\\": \\\"Oslo\\\", \\\"days\\\": 3}\"}},"
      "{\"id\":\"c2\",\"type\":\"function\",\"function\":{\"name\":\"forecast\",\"arguments\":"
      "\"{\\\"city\\\": \\\"Rome\\\", \\\"days\\\": 1}\"}}]},{\"role\":\"tool\",\"content\":"
      "\"sunny\"}],\"add_generation_prompt\":true,\"bos_token\":\"<\xef\xbd\x9c"
      "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>\",\"eos_token\":\"<\xef\xbd\x9c"
      "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>\"}";
  char *text = NULL;
  size_t tl = 0;
  if (tm != NULL) CHECK_OK(qiao_template_render(tm, vars, strlen(vars), NULL, &text, &tl));
  /* The assistant's turn: from the calls' opening marker to its end. */
  const char *from = text ? strstr(text, DS_CALLS) : NULL;
  CHECK(from != NULL);
  if (from != NULL) {
    const char *to = strstr(from, DS_CALLS_END);
    CHECK(to != NULL);
    size_t n_turn = to ? (size_t)(to - from) + strlen(DS_CALLS_END) : strlen(from);
    json_object *body = json_tokener_parse(BODY);
    serve_tools t;
    serve_error e;
    memset(&e, 0, sizeof(e));
    CHECK(serve_tools_parse(body, NULL, &t, &e));
    t.family = SERVE_TOOLS_DEEPSEEK;
    serve_buf content = {0};
    serve_tool_call *calls = NULL;
    size_t n = serve_tools_extract(&t, from, n_turn, &content, &calls);
    CHECK(n == 2 && content.len == 0);
    check_calls(calls, n, "deepseek template");
    if (n == 2) {
      CHECK(strcmp(calls[0].arguments, "{\"city\":\"Oslo\",\"days\":3}") == 0);
      CHECK(strcmp(calls[1].arguments, "{\"city\":\"Rome\",\"days\":1}") == 0);
    }
    serve_tool_calls_free(calls, n);
    serve_buf_free(&content);
    serve_tools_free(&t);
    json_object_put(body);
  }
  qiao_tokenizer *tok = NULL;
  CHECK_OK(qiao_tokenizer_open(test_shared_path("tokenizers/deepseek_v3/tokenizer.json"), &tok));
  if (tok != NULL && text != NULL) {
    qiao_encode_options o = {sizeof(o), false, true};
    int32_t *ids = NULL;
    size_t n_ids = 0;
    CHECK_OK(qiao_tokenizer_encode(tok, text, tl, &o, &ids, &n_ids));
    /* bos, begin of calls, 2 x begin of call, sep, end of call, end of calls, outputs */
    static const int32_t want[] = {0, 128806, 128808, 128814, 128809, 128807, 128810, 128812};
    for (size_t w = 0; w < sizeof(want) / sizeof(want[0]); w++) {
      bool found = false;
      for (size_t k = 0; k < n_ids && !found; k++)
        found = ids[k] == want[w];
      if (!found) {
        fprintf(stderr, "deepseek template: token %d is not in the encoded prompt\n", want[w]);
        test_failures++;
      }
    }
    free(ids);
  }
  qiao_tokenizer_destroy(tok);
  free(text);
  qiao_template_destroy(tm);
  free(src);
}

/* Streaming edge cases, each family: content around and between calls,
 * held-back tags that turn out to be text, text that is not a call, keys
 * in another order, arguments as a JSON string, and markup inside the
 * arguments' strings. */
static void stream_edge_cases(void) {
  static const struct {
    serve_tool_family family;
    const char *text;
  } cases[] = {
      {SERVE_TOOLS_HERMES, "Hi <tool_call"},
      {SERVE_TOOLS_HERMES, "a < b and <tool_ca ll> </tool_call>"},
      {SERVE_TOOLS_HERMES, "Look: <tool_call>\nnot json\n</tool_call> done"},
      {SERVE_TOOLS_HERMES, "<tool_call>\n{\"arguments\": {\"city\": \"X\", \"days\": 2}, \"name\": "
                           "\"forecast\"}\n</tool_call>"},
      {SERVE_TOOLS_HERMES, "<tool_call>\n{\"name\": \"forecast\", \"arguments\": \"{\\\"city\\\": "
                           "\\\"X\\\", \\\"days\\\": 2}\"}\n</tool_call>"},
      {SERVE_TOOLS_HERMES, "A \n<tool_call>\n{\"name\": \"forecast\", \"arguments\": {\"city\": "
                           "\"P\", \"days\": 1}}\n</tool_call>\n<tool_call>\n{\"name\": \"noop\"}\n"
                           "</tool_call>\nB\n"},
      {SERVE_TOOLS_HERMES,
       "<tool_call>\n{\"name\": \"forecast\", \"arguments\": {\"n\": [1, {\"x\": "
       "-2.5e3}], \"s\": \"a}b]\\\"c\\\\\"}}\n</tool_call>"},
      {SERVE_TOOLS_LLAMA3,
       "{\"name\": \"forecast\", \"parameters\": {\"city\": \"Oslo\", \"days\": "
       "3}}"},
      {SERVE_TOOLS_LLAMA3, "  {\"answer\": 42}"},
      {SERVE_TOOLS_LLAMA3, "Plain text with a { brace"},
      {SERVE_TOOLS_LLAMA3, "<|python_tag|>{\"name\": \"forecast\", \"parameters\": {\"days\": 1}}"},
      {SERVE_TOOLS_DEEPSEEK,
       "Sure. " DS_CALLS DS_CALL "function" DS_SEP
       "forecast\n{\"city\": \"Oslo\", \"days\": 3}" DS_CALL_END DS_CALLS_END},
      {SERVE_TOOLS_DEEPSEEK,
       DS_CALLS DS_CALL "function" DS_SEP "forecast\n```json\n{\"city\": "
                        "\"A\", \"days\": 1}\n```" DS_CALL_END "\n" DS_CALL "function" DS_SEP
                        "noop\n```json\n{}\n```" DS_CALL_END DS_CALLS_END},
      {SERVE_TOOLS_DEEPSEEK, "text " DS_CALL "function" DS_SEP "forecast\n```json\nnot json"},
  };
  json_object *body = json_tokener_parse(BODY);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    serve_tools t;
    serve_error e;
    memset(&e, 0, sizeof(e));
    CHECK(serve_tools_parse(body, NULL, &t, &e));
    t.family = cases[i].family;
    t.choice = SERVE_TOOL_CHOICE_AUTO;
    check_stream_steps(&t, cases[i].text, cases[i].text);
    serve_tools_free(&t);
  }
  /* A closing tag inside an argument's string: the whole-text parser cuts
   * the call there, the stream reads the JSON and keeps the string whole. */
  serve_tools t;
  serve_error e;
  memset(&e, 0, sizeof(e));
  CHECK(serve_tools_parse(body, NULL, &t, &e));
  t.choice = SERVE_TOOL_CHOICE_AUTO;
  const char *tricky = "<tool_call>\n{\"name\": \"forecast\", \"arguments\": {\"s\": \"}\\n"
                       "</tool_call>\"}}\n</tool_call>";
  stream_acc a;
  memset(&a, 0, sizeof(a));
  serve_tool_stream s;
  memset(&s, 0, sizeof(s));
  for (size_t k = 1; k <= strlen(tricky); k++)
    serve_tool_stream_feed(&s, &t, tricky, k, k == strlen(tricky), acc_delta, &a);
  CHECK(a.n_calls == 1 && a.content.len == 0);
  CHECK(a.args[0].data != NULL && strcmp(a.args[0].data, "{\"s\": \"}\\n</tool_call>\"}") == 0);
  serve_buf_free(&a.content);
  serve_buf_free(&a.args[0]);
  serve_tool_stream_free(&s);
  /* A call cut by max_tokens: its head and the arguments so far were sent
   * (as OpenAI does; the finish reason says "length"), never the rest. */
  const char *cut = "Ok <tool_call>\n{\"name\": \"forecast\", \"arguments\": {\"city\": \"X\", ";
  memset(&a, 0, sizeof(a));
  memset(&s, 0, sizeof(s));
  for (size_t k = 1; k <= strlen(cut); k++)
    serve_tool_stream_feed(&s, &t, cut, k, k == strlen(cut), acc_delta, &a);
  CHECK(a.n_calls == 1 && a.content.data != NULL && strcmp(a.content.data, "Ok") == 0);
  CHECK(a.args[0].data != NULL && strcmp(a.args[0].data, "{\"city\": \"X\", ") == 0);
  serve_buf_free(&a.content);
  serve_buf_free(&a.args[0]);
  serve_tool_stream_free(&s);
  serve_tools_free(&t);
  json_object_put(body);
}

int main(void) {
  stream_edge_cases();
  deepseek_template();
  for (size_t i = 0; i < sizeof(CASES) / sizeof(CASES[0]); i++)
    run_family(&CASES[i]);
  render_templates();
  TEST_END();
}

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
    /* qiao's tokenizer does not open DeepSeek-V3's tokenizer.json yet (its
     * pre-tokenizer): the family is detected from a vocabulary stand-in
     * (below) and calls are generated over Qwen3's vocabulary. */
    {NULL, "tokenizers/qwen3/tokenizer.json", SERVE_TOOLS_DEEPSEEK,
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
    size_t len = 0;
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
    }
    out[len] = '\0';
    CHECK(qiao_grammar_matcher_ended(m));
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

int main(void) {
  for (size_t i = 0; i < sizeof(CASES) / sizeof(CASES[0]); i++)
    run_family(&CASES[i]);
  render_templates();
  TEST_END();
}

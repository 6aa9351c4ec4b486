/* The reasoning splitter of the serve edge (tools/qiao/serve/reasoning.c):
 * thinking and answer told apart for every case of its rules (tags, no
 * tags, the opening tag in the prompt, nested and unclosed tags, tags in the
 * answer, whitespace, near-miss tags, multi-byte text), fed whole, byte by
 * byte, cut at every point and token by token as the real Qwen3, DeepSeek-V3
 * and DeepSeek-R1 vocabularies write the text; nothing that may still be a
 * tag is sent early, nothing settled is held back. Also: which vocabularies
 * have the tags, when a rendered prompt (the real Qwen3 template) ends inside
 * the thinking, and the grammar of a thinking part before a constrained
 * answer, checked against the splitter on random texts. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qiao/grammar.h"
#include "qiao/template.h"
#include "qiao/tokenizer.h"
#include "reasoning.h"
#include "test_util.h"

typedef struct split_case {
  bool open; /* the prompt ended inside the thinking */
  const char *out;
  bool thought;
  const char *reasoning, *content;
} split_case;

static const split_case CASES[] = {
    /* no tags at all: content as it is */
    {false, "Hello world", false, "", "Hello world"},
    {false, "\n Hi there \n", false, "", "\n Hi there \n"},
    {false, "", false, "", ""},
    {false, "  \n", false, "", "  \n"},
    /* Qwen3 / QwQ writing the tags */
    {false, "<think>\nLet me think.\n</think>\n\nThe answer is 4.", true, "Let me think.",
     "The answer is 4."},
    {false, "\n\n<think>x</think>y", true, "x", "y"},
    {false, "<think>\n\n</think>\n\nOK", true, "", "OK"},
    {false, "<think> a \n\n b \n</think>c \n", true, "a \n\n b", "c \n"},
    /* the opening tag was in the prompt (DeepSeek-R1, QwQ templates) */
    {true, "\nreason a\n</think>\n\nanswer", true, "reason a", "answer"},
    {true, "</think>answer", true, "", "answer"},
    {true, "", true, "", ""},
    {true, "still thinking\n", true, "still thinking", ""}, /* cut by max_tokens */
    {true, "<think>\nx</think>y", true, "x", "y"},          /* the opening tag again: dropped */
    {true, " <thin", true, "<thin", ""},
    {true, "<thinking>x</think>y", true, "<thinking>x", "y"},
    {true, "a<think>b</think>c", true, "a<think>b", "c"},
    /* unclosed, nested, and tags inside the answer */
    {false, "<think>abc </thi", true, "abc </thi", ""},
    {false, "<think>a<think>b</think>c</think>d", true, "a<think>b", "c</think>d"},
    {false, "<think></think>x <think>y</think>", true, "", "x <think>y</think>"},
    {false, "Hi <think>x</think>", false, "", "Hi <think>x</think>"},
    {false, "</think>plain", false, "", "</think>plain"},
    /* near misses */
    {false, "<thinking>x", false, "", "<thinking>x"},
    {false, "<thin", false, "", "<thin"},
    {false, "<think>a</thinkx>b</think>c", true, "a</thinkx>b", "c"},
    {false, "<think>a<</think>b", true, "a<", "b"},
    {false, "<think>a</th</think>b", true, "a</th", "b"},
    {false, "<think>a</think</think>b", true, "a</think", "b"},
    /* multi-byte text */
    {false, "<think>\xe6\x80\x9d\xe8\x80\x83\xe2\x80\xa6</think>\xe7\xad\x94\xe6\xa1\x88", true,
     "\xe6\x80\x9d\xe8\x80\x83\xe2\x80\xa6", "\xe7\xad\x94\xe6\xa1\x88"},
};

typedef struct acc {
  serve_buf reasoning, content;
  bool content_seen, order_broken, empty_piece;
} acc;

static void on_piece(void *ctx, bool reasoning, const char *text, size_t len) {
  acc *a = ctx;
  if (len == 0) a->empty_piece = true;
  if (reasoning && a->content_seen) a->order_broken = true; /* thinking comes first */
  if (!reasoning) a->content_seen = true;
  serve_buf_append(reasoning ? &a->reasoning : &a->content, text, len);
}

static void acc_free(acc *a) {
  serve_buf_free(&a->reasoning);
  serve_buf_free(&a->content);
}

/* Feeds pieces[0..n) then the end; compares with the case. */
static void check_pieces(const split_case *c, const char *const *pieces, const size_t *lens,
                         size_t n, const char *how) {
  serve_reasoning r;
  memset(&r, 0, sizeof(r));
  serve_reasoning_begin(&r, c->open);
  acc a;
  memset(&a, 0, sizeof(a));
  for (size_t i = 0; i < n; i++)
    CHECK(serve_reasoning_feed(&r, pieces[i], lens[i], false, on_piece, &a));
  CHECK(serve_reasoning_feed(&r, "", 0, true, on_piece, &a));
  const char *gr = a.reasoning.data ? a.reasoning.data : "";
  const char *gc = a.content.data ? a.content.data : "";
  if (strcmp(gr, c->reasoning) != 0 || strcmp(gc, c->content) != 0 || r.thought != c->thought ||
      a.order_broken || a.empty_piece) {
    fprintf(stderr,
            "FAIL %s, output '%s' (open %d): reasoning '%s' content '%s' thought %d (want '%s' "
            "'%s' %d)%s%s\n",
            how, c->out, c->open, gr, gc, r.thought, c->reasoning, c->content, c->thought,
            a.order_broken ? ", thinking after content" : "",
            a.empty_piece ? ", an empty piece" : "");
    test_failures++;
  }
  acc_free(&a);
  serve_reasoning_free(&r);
}

static void check_cuts(const split_case *c) {
  size_t len = strlen(c->out);
  const char *p[2048];
  size_t l[2048];
  /* whole */
  p[0] = c->out;
  l[0] = len;
  check_pieces(c, p, l, 1, "whole");
  /* byte by byte */
  for (size_t i = 0; i < len && i < 2048; i++) {
    p[i] = c->out + i;
    l[i] = 1;
  }
  check_pieces(c, p, l, len, "byte by byte");
  /* in two at every point, and in three */
  for (size_t i = 0; i <= len; i++) {
    p[0] = c->out, l[0] = i, p[1] = c->out + i, l[1] = len - i;
    check_pieces(c, p, l, 2, "in two");
    for (size_t j = i; j <= len; j++) {
      p[1] = c->out + i, l[1] = j - i, p[2] = c->out + j, l[2] = len - j;
      check_pieces(c, p, l, 3, "in three");
    }
  }
}

/* Token by token, as the vocabulary writes the text: each token's text
 * from a streaming detokenizer is one piece. */
static void check_tokens(const qiao_tokenizer *tok, const split_case *c, const char *name) {
  int32_t *ids = NULL;
  size_t n = 0;
  qiao_encode_options enc = {sizeof(enc), false, true};
  CHECK_OK(qiao_tokenizer_encode(tok, c->out, strlen(c->out), &enc, &ids, &n));
  qiao_detokenizer *d = NULL;
  CHECK_OK(qiao_detokenizer_create(tok, &d));
  char *store = malloc(strlen(c->out) + 64);
  const char **p = calloc(n + 2, sizeof(char *));
  size_t *l = calloc(n + 2, sizeof(size_t)), used = 0, k = 0;
  for (size_t i = 0; d && store && p && l && i <= n; i++) {
    const char *text = NULL;
    size_t len = 0;
    if (i < n)
      CHECK_OK(qiao_detokenizer_push(d, ids[i], &text, &len));
    else
      CHECK_OK(qiao_detokenizer_flush(d, &text, &len));
    if (len > 0 && used + len <= strlen(c->out) + 64) {
      memcpy(store + used, text, len);
      p[k] = store + used, l[k++] = len;
      used += len;
    }
  }
  char how[96];
  snprintf(how, sizeof(how), "token by token (%s, %zu tokens)", name, n);
  if (store && p && l) check_pieces(c, p, l, k, how);
  free(store);
  free(p);
  free(l);
  free(ids);
  qiao_detokenizer_destroy(d);
}

/* Nothing settled is held back, nothing that may be a tag is sent. */
static void check_holding(void) {
  static const struct {
    bool open;
    const char *fed;
    const char *reasoning, *content; /* what must have come out already */
  } steps[] = {
      {false, "Hello", "", "Hello"},
      {false, "  ", "", ""},
      {false, "<thi", "", ""},
      {false, "<think>ab ", "ab", ""},
      {false, "<think>ab</th", "ab", ""},
      {false, "<think>ab</tho", "ab</tho", ""},
      {false, "<think>ab</think>", "ab", ""},
      {false, "<think>ab</think>\n\nC", "ab", "C"},
      {true, "x\n", "x", ""},
      {true, "<thi", "", ""},
      {true, "<think>x", "x", ""},
      {true, "x</think>y", "x", "y"},
  };
  for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
    serve_reasoning r;
    memset(&r, 0, sizeof(r));
    serve_reasoning_begin(&r, steps[i].open);
    acc a;
    memset(&a, 0, sizeof(a));
    CHECK(serve_reasoning_feed(&r, steps[i].fed, strlen(steps[i].fed), false, on_piece, &a));
    const char *gr = a.reasoning.data ? a.reasoning.data : "";
    const char *gc = a.content.data ? a.content.data : "";
    if (strcmp(gr, steps[i].reasoning) != 0 || strcmp(gc, steps[i].content) != 0) {
      fprintf(stderr, "FAIL holding: after '%s' sent '%s' / '%s', want '%s' / '%s'\n", steps[i].fed,
              gr, gc, steps[i].reasoning, steps[i].content);
      test_failures++;
    }
    acc_free(&a);
    serve_reasoning_free(&r);
  }
}

/* DeepSeek-R1's vocabulary is DeepSeek-V3's with two placeholder tokens
 * renamed <think> and </think> (ids 128798, 128799): written to a temporary
 * folder from the shared V3 file. */
static qiao_tokenizer *open_r1_tokenizer(char *dir, size_t cap) {
  json_object *t = json_object_from_file(test_shared_path("tokenizers/deepseek_v3/tokenizer.json"));
  CHECK(t != NULL);
  if (t == NULL) return NULL;
  json_object *added = NULL;
  CHECK(json_object_object_get_ex(t, "added_tokens", &added));
  int renamed = 0;
  for (size_t i = 0; added && i < json_object_array_length(added); i++) {
    json_object *a = json_object_array_get_idx(added, i), *id = NULL;
    if (!json_object_object_get_ex(a, "id", &id)) continue;
    int64_t v = json_object_get_int64(id);
    if (v == 128798 || v == 128799) {
      json_object_object_add(a, "content",
                             json_object_new_string(v == 128798 ? "<think>" : "</think>"));
      json_object_object_add(a, "special", json_object_new_boolean(0));
      renamed++;
    }
  }
  CHECK(renamed == 2);
  snprintf(dir, cap, "/tmp/qiao_reasoning_r1_%d", (int)getpid());
  char path[512];
  snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
  qiao_tokenizer *tok = NULL;
  CHECK(mkdir(dir, 0700) == 0);
  CHECK(json_object_to_file_ext(path, t, JSON_C_TO_STRING_PLAIN) == 0);
  json_object_put(t);
  CHECK_OK(qiao_tokenizer_open(path, &tok));
  return tok;
}

static void check_prompts(void) {
  /* Ends inside the thinking: R1 and QwQ templates' generation prompts. */
  static const char *open_ones[] = {"<\xef\xbd\x9c"
                                    "Assistant\xef\xbd\x9c><think>\n",
                                    "<|im_start|>assistant\n<think>\n", "x<think>"};
  static const char *closed_ones[] = {"<|im_start|>assistant\n",
                                      "<|im_start|>assistant\n<think>\n\n</think>\n\n",
                                      "<think> user text </think> then <think", ""};
  for (size_t i = 0; i < 3; i++)
    CHECK(serve_reasoning_prompt_open(open_ones[i], strlen(open_ones[i])));
  for (size_t i = 0; i < 4; i++)
    CHECK(!serve_reasoning_prompt_open(closed_ones[i], strlen(closed_ones[i])));
  /* The real Qwen3 template: thinking on by default (the model writes
   * <think>), enable_thinking false closes an empty one in the prompt. */
  size_t len = 0;
  char *text = test_read_file(test_shared_path("chat_templates/Qwen-Qwen3-0.6B.jinja"), &len);
  qiao_template *t = NULL;
  if (text) CHECK_OK(qiao_template_compile(text, len, &t));
  free(text);
  static const char *vars[] = {
      "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"add_generation_prompt\":true}",
      "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"add_generation_prompt\":true,"
      "\"enable_thinking\":false}"};
  for (int i = 0; t && i < 2; i++) {
    char *out = NULL;
    size_t n = 0;
    CHECK_OK(qiao_template_render(t, vars[i], strlen(vars[i]), NULL, &out, &n));
    if (out == NULL) continue;
    CHECK(!serve_reasoning_prompt_open(out, n));
    if (i == 1) CHECK(strstr(out, "<think>\n\n</think>\n\n") != NULL);
    free(out);
  }
  qiao_template_destroy(t);
}

static bool grammar_accepts(qiao_grammar *g, const char *text, size_t len) {
  qiao_grammar_matcher *m = NULL;
  qiao_status *st = qiao_grammar_matcher_create(g, NULL, &m);
  if (st == NULL) st = qiao_grammar_matcher_accept_bytes(m, text, len);
  bool ok = st == NULL && qiao_grammar_matcher_can_end(m);
  qiao_status_free(st);
  qiao_grammar_matcher_destroy(m);
  return ok;
}

static qiao_grammar *answer_grammar(bool open) {
  char text[4096];
  snprintf(text, sizeof(text), "%sroot ::= thought \"ok\"\n", serve_reasoning_gbnf(open));
  qiao_grammar *g = NULL;
  CHECK_OK(qiao_grammar_compile_gbnf(text, strlen(text), NULL, &g));
  return g;
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t rnd(uint32_t n) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return (uint32_t)(((rng * 0x2545f4914f6cdd1dull) >> 33) % n);
}

/* The thinking grammar: before a constrained answer, any thinking without
 * </think>; what it accepts splits into that thinking and the answer. */
static void check_grammar(void) {
  qiao_grammar *closed = answer_grammar(false), *open = answer_grammar(true);
  if (closed == NULL || open == NULL) {
    qiao_grammar_destroy(closed);
    qiao_grammar_destroy(open);
    return;
  }
  static const char *yes_closed[] = {"ok", "<think>\nhm </thi</think>\n\nok", "<think></think>ok",
                                     "<think>a<think>b</think>ok",
                                     "<think>\xe6\x80\x9d</think>\nok"};
  static const char *no_closed[] = {"<think>a</think>b</think>ok", "x<think>a</think>ok",
                                    "<think>a</think>", "<think>a", "ok!"};
  static const char *yes_open[] = {"x</think>ok", "</think>ok", "a</think</think>\n\nok"};
  static const char *no_open[] = {"ok", "<think>a", "a</think>b</think>ok"};
  for (size_t i = 0; i < 5; i++) {
    CHECK(grammar_accepts(closed, yes_closed[i], strlen(yes_closed[i])));
    CHECK(!grammar_accepts(closed, no_closed[i], strlen(no_closed[i])));
  }
  for (size_t i = 0; i < 3; i++) {
    CHECK(grammar_accepts(open, yes_open[i], strlen(yes_open[i])));
    CHECK(!grammar_accepts(open, no_open[i], strlen(no_open[i])));
  }
  /* Random thinking over the tag's letters: the grammar accepts it before
   * </think> exactly when it holds no </think>, and then the splitter gives
   * it back as the thinking and "ok" as the answer. Long ones too (the
   * grammar's recursion is in tail position). */
  static const char alphabet[] = "</thinkx>";
  char buf[6000];
  for (int trial = 0; trial < 400; trial++) {
    size_t n = trial < 390 ? 1 + rnd(40) : 5000;
    for (size_t i = 0; i < n; i++)
      buf[i] = alphabet[rnd(sizeof(alphabet) - 1)];
    buf[n] = '\0';
    bool has_close = strstr(buf, "</think>") != NULL;
    char text[6100];
    int len = snprintf(text, sizeof(text), "<think>%s</think>ok", buf);
    CHECK(grammar_accepts(closed, text, (size_t)len) == !has_close);
    CHECK(grammar_accepts(open, text + 7, (size_t)len - 7) == !has_close);
    if (has_close) continue;
    split_case c = {false, text, true, buf, "ok"};
    const char *p[1] = {text};
    size_t l[1] = {(size_t)len};
    check_pieces(&c, p, l, 1, "grammar's thinking");
  }
  qiao_grammar_destroy(closed);
  qiao_grammar_destroy(open);
}

/* The rules written plainly, for whole texts: an independent reference. */
static bool ref_ws(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static void reference_split(bool open, const char *text, bool *thought, char *reasoning,
                            char *content) {
  const char *p = text;
  while (ref_ws(*p))
    p++;
  bool tag = strncmp(p, "<think>", 7) == 0;
  *thought = open || tag;
  reasoning[0] = '\0';
  if (!*thought) {
    strcpy(content, text);
    return;
  }
  const char *body = tag ? p + 7 : text;
  const char *close = strstr(body, "</think>");
  size_t n = close ? (size_t)(close - body) : strlen(body);
  while (n > 0 && ref_ws(*body))
    body++, n--;
  while (n > 0 && ref_ws(body[n - 1]))
    n--;
  memcpy(reasoning, body, n);
  reasoning[n] = '\0';
  const char *answer = close ? close + 8 : "";
  while (ref_ws(*answer))
    answer++;
  strcpy(content, answer);
}

/* Random texts built from pieces of tags, whitespace and letters, split
 * at random points: the stream gives what the reference gives. */
static void check_random_texts(void) {
  static const char *const pieces[] = {"<think>", "</think>", "<",  "</",          "</th",
                                       "<thi",    "think>",   ">",  " ",           "\n",
                                       "\t",      "a",        "bc", "\xe6\x80\x9d"};
  const size_t n_pieces = sizeof(pieces) / sizeof(pieces[0]);
  char text[512], reasoning[512], content[512];
  for (int trial = 0; trial < 20000; trial++) {
    size_t len = 0, k = rnd(16);
    text[0] = '\0';
    for (size_t i = 0; i < k; i++) {
      const char *piece = pieces[rnd((uint32_t)n_pieces)];
      memcpy(text + len, piece, strlen(piece) + 1);
      len += strlen(piece);
    }
    bool open = rnd(2) == 1, thought = false;
    reference_split(open, text, &thought, reasoning, content);
    split_case c = {open, text, thought, reasoning, content};
    const char *p[64];
    size_t l[64], n = 0, at = 0;
    while (at < len && n < 63) { /* random cuts, some of them empty pieces */
      size_t step = rnd(6);
      if (step > len - at) step = len - at;
      p[n] = text + at, l[n++] = step;
      at += step;
    }
    p[n] = text + at, l[n++] = len - at;
    check_pieces(&c, p, l, n, "random text, random cuts");
  }
}

int main(void) {
  size_t n_cases = sizeof(CASES) / sizeof(CASES[0]);
  for (size_t i = 0; i < n_cases; i++)
    check_cuts(&CASES[i]);
  check_holding();
  check_random_texts();

  static const struct {
    const char *path;
    bool tags;
  } vocabs[] = {{"tokenizers/qwen3/tokenizer.json", true},
                {"tokenizers/deepseek_v3/tokenizer.json", false},
                {"tokenizers/llama3/tokenizer.json", false}};
  for (size_t v = 0; v < 3; v++) {
    qiao_tokenizer *tok = NULL;
    CHECK_OK(qiao_tokenizer_open(test_shared_path(vocabs[v].path), &tok));
    if (tok == NULL) continue;
    CHECK(serve_reasoning_vocab_has_tags(tok) == vocabs[v].tags);
    for (size_t i = 0; i < n_cases; i++)
      check_tokens(tok, &CASES[i], vocabs[v].path);
    qiao_tokenizer_destroy(tok);
  }
  char dir[256] = "";
  qiao_tokenizer *r1 = open_r1_tokenizer(dir, sizeof(dir));
  if (r1 != NULL) {
    CHECK(serve_reasoning_vocab_has_tags(r1));
    /* the tags are single tokens there */
    int32_t *ids = NULL;
    size_t n = 0;
    qiao_encode_options enc = {sizeof(enc), false, true};
    CHECK_OK(qiao_tokenizer_encode(r1, "<think>\nx\n</think>", 18, &enc, &ids, &n));
    CHECK(n >= 3 && ids && ids[0] == 128798 && ids[n - 1] == 128799);
    free(ids);
    for (size_t i = 0; i < n_cases; i++)
      check_tokens(r1, &CASES[i], "DeepSeek-R1");
  }
  qiao_tokenizer_destroy(r1);
  if (dir[0] != '\0') {
    char path[512];
    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    CHECK(unlink(path) == 0 && rmdir(dir) == 0);
  }
  check_prompts();
  check_grammar();
  TEST_END();
}

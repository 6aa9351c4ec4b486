/* Every string of shared/reference/tokenizer_refs.json encodes to exactly
 * the ids the reference library produced (HF tokenizers for qwen3/llama3,
 * transformers.js for deepseek_v3, sentencepiece for llama2; no BOS), and
 * decodes back to the string.
 * Usage: tokenizer_refs KEY TOKENIZER (KEY: qwen3, llama3, deepseek_v3, llama2_spm). */
#include <json-c/json.h>

#include "format/import_tokenizer.h"
#include "format/model_internal.h"

#include "tok_test_util.h"

/* The canonical keys the tokenizer.json importer writes (qwen3 only). */
static void check_keys(const char *rel) {
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s", test_shared_path(rel));
  *strrchr(dir, '/') = '\0';
  qiao_model *m;
  CHECK_OK(qiao__model_create("qwen3", "hf", &m));
  CHECK_OK(qiao__import_tokenizer_json(m, test_shared_path(rel), dir));
  qiao_string v;
  CHECK_OK(qiao_model_get_string(m, "tokenizer.model", &v));
  CHECK(v.len == 3 && memcmp(v.data, "bpe", 3) == 0);
  CHECK_OK(qiao_model_get_string(m, "tokenizer.pre", &v));
  CHECK(v.len == 5 && memcmp(v.data, "qwen2", 5) == 0);
  CHECK_OK(qiao_model_get_string(m, "tokenizer.normalizer", &v));
  CHECK(v.len == 3 && memcmp(v.data, "nfc", 3) == 0);
  CHECK_OK(qiao_model_get_string(m, "tokenizer.chat_template", &v));
  CHECK(v.len > 100 && strstr(v.data, "<|im_start|>") != NULL);
  const qiao_kv *merges = qiao_model_kv_find(m, "tokenizer.merges");
  CHECK(merges != NULL && merges->array_len == 151387);
  qiao_model_close(m);
}

/* BOS/EOS and the other settings each importer derives for these files. */
static void check_settings(const qiao_tokenizer *t, const char *key) {
  const int32_t *eos;
  size_t n_eos = qiao_tokenizer_eos_ids(t, &eos);
  if (strcmp(key, "qwen3") == 0) {
    CHECK(qiao_tokenizer_vocab_size(t) == 151669);
    CHECK(qiao_tokenizer_bos_id(t) == -1 && !qiao_tokenizer_adds_bos(t));
    CHECK(n_eos == 2 && eos[0] == 151645 && eos[1] == 151643); /* <|im_end|>, <|endoftext|> */
    CHECK(qiao_tokenizer_find_token(t, "<|im_end|>", 10) == 151645);
    CHECK(qiao_tokenizer_find_token(t, "<think>", 7) == 151667);
    CHECK(strcmp(qiao_tokenizer_token_text(t, 151644), "<|im_start|>") == 0);
  } else if (strcmp(key, "llama3") == 0) {
    CHECK(qiao_tokenizer_vocab_size(t) == 128256);
    CHECK(qiao_tokenizer_bos_id(t) == 128000 && !qiao_tokenizer_adds_bos(t));
    CHECK(n_eos >= 2 && eos[0] == 128001 && qiao_tokenizer_is_eos(t, 128009)); /* <|eot_id|> */
  } else if (strcmp(key, "deepseek_v3") == 0) {
    CHECK(qiao_tokenizer_vocab_size(t) == 128815);
    CHECK(qiao_tokenizer_bos_id(t) == 0 && qiao_tokenizer_adds_bos(t));
    CHECK(n_eos >= 1 && eos[0] == 1); /* <｜end▁of▁sentence｜> */
    /* the tool-call tokens are added tokens, matched in text */
    static const char *const tool_tokens[] = {"<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>",
                                              "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>",
                                              "<｜tool▁sep｜>"};
    static const int32_t tool_ids[] = {128806, 128807, 128808, 128809, 128814};
    for (size_t i = 0; i < 5; i++) {
      CHECK(qiao_tokenizer_find_token(t, tool_tokens[i], strlen(tool_tokens[i])) == tool_ids[i]);
      size_t n;
      int32_t *ids = tok_encode(t, tool_tokens[i], strlen(tool_tokens[i]), false, true, &n);
      CHECK(n == 1 && ids[0] == tool_ids[i]);
      free(ids);
    }
  } else {
    CHECK(qiao_tokenizer_vocab_size(t) == 32000);
    CHECK(qiao_tokenizer_bos_id(t) == 1 && qiao_tokenizer_adds_bos(t));
    CHECK(n_eos == 1 && eos[0] == 2);
    CHECK(strcmp(qiao_tokenizer_token_text(t, 1), "<s>") == 0);
  }
  CHECK(qiao_tokenizer_token_text(t, -1) == NULL);
  CHECK(qiao_tokenizer_token_text(t, (int32_t)qiao_tokenizer_vocab_size(t)) == NULL);
  CHECK(qiao_tokenizer_find_token(t, "no such token \x01", 15) == -1);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s KEY TOKENIZER\n", argv[0]);
    return 2;
  }
  qiao_tokenizer *t = tok_open_shared(argv[2]);
  json_object *root = json_object_from_file(test_shared_path("reference/tokenizer_refs.json"));
  CHECK(root != NULL);
  json_object *texts = NULL, *refs = NULL;
  CHECK(json_object_object_get_ex(root, "texts", &texts));
  CHECK(json_object_object_get_ex(root, argv[1], &refs));
  size_t n_texts = json_object_array_length(texts);
  CHECK(n_texts == json_object_array_length(refs) && n_texts > 0);
  for (size_t i = 0; i < n_texts; i++) {
    json_object *s = json_object_array_get_idx(texts, i), *r = json_object_array_get_idx(refs, i);
    const char *text = json_object_get_string(s);
    size_t len = (size_t)json_object_get_string_len(s);
    size_t n_want = json_object_array_length(r);
    int32_t *want = malloc((n_want + 1) * sizeof(int32_t));
    for (size_t k = 0; k < n_want; k++)
      want[k] = json_object_get_int(json_object_array_get_idx(r, k));
    size_t n;
    int32_t *ids = tok_encode(t, text, len, false, true, &n);
    char label[128];
    snprintf(label, sizeof(label), "%s text %zu \"%.40s\"", argv[1], i, text);
    tok_check_ids(label, ids, n, want, n_want);
    tok_check_roundtrip(t, label, ids, n, text, len);
    free(ids);
    free(want);
  }
  json_object_put(root);
  check_settings(t, argv[1]);
  if (strcmp(argv[1], "qwen3") == 0) check_keys(argv[2]);
  qiao_tokenizer_destroy(t);
  TEST_END();
}

/* Every string of shared/reference/tokenizer_refs.json encodes to exactly
 * the ids the reference library produced (HF tokenizers for qwen3/llama3,
 * sentencepiece for llama2; no BOS), and decodes back to the string.
 * Usage: tokenizer_refs KEY TOKENIZER (KEY: qwen3, llama3, llama2_spm). */
#include <json-c/json.h>

#include "tok_test_util.h"

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
  qiao_tokenizer_destroy(t);
  TEST_END();
}

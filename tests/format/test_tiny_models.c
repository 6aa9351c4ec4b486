/* Every tiny reference model (Hugging Face layout) and the llama2.c
 * stories260K convert to .qiao and .gguf and validate, with identical
 * tensors and metadata; a q8_0 conversion validates too. */
#include <string.h>

#include "format/model_internal.h"
#include "format_test_util.h"

static void convert_and_check(const char *dir, const char *label, const char *src_path,
                              const char *tokenizer) {
  qiao_model_open_options oo = {.struct_size = sizeof(oo), .tokenizer_path = tokenizer};
  qiao_model *src = NULL;
  CHECK_OK(qiao_model_open(src_path, &oo, &src));
  if (src == NULL) {
    fprintf(stderr, "  (%s)\n", label);
    return;
  }
  CHECK_OK(qiao_model_validate(src));
  char name[256];
  static const qiao_file_format formats[] = {QIAO_FILE_QIAO, QIAO_FILE_GGUF};
  for (int f = 0; f < 2; f++) {
    snprintf(name, sizeof(name), "%s.%s", label, f == 0 ? "qiao" : "gguf");
    const char *out = scratch_file(dir, name);
    qiao_convert_options o = {sizeof(o), formats[f], QIAO_DTYPE_COUNT, false};
    CHECK_OK(qiao_model_write(src, out, &o));
    qiao_model *m = NULL;
    CHECK_OK(qiao_model_open(out, NULL, &m));
    if (m) {
      qiao_status *st = qiao_model_validate(m);
      if (st) fprintf(stderr, "  %s: ", name);
      CHECK_OK(st);
      CHECK(tensors_identical(src, m) == 0);
      CHECK(kvs_identical(src, m, "") == 0);
      qiao_hparams a, b;
      CHECK_OK(qiao_model_get_hparams(src, &a));
      CHECK_OK(qiao_model_get_hparams(m, &b));
      CHECK(memcmp(&a, &b, sizeof(a)) == 0);
      if (f == 1 && a.rope_scaling == QIAO_ROPE_SCALING_LLAMA3) {
        /* llama.cpp gets LLaMA-3 scaling as rope_freqs.weight, never as a
         * scaling type it does not know */
        const qiao_tensor *t = qiao_model_tensor_find(m, "rope_freqs.weight");
        CHECK(t != NULL && t->n_dims == 1 && t->shape[0] == a.rope_dim / 2);
        CHECK(qiao_model_kv_find(m, "llama.rope.scaling.type") == NULL);
        CHECK(qiao_model_kv_find(m, "llama.rope.scaling.factor") == NULL);
      }
    }
    qiao_model_close(m);
  }
  snprintf(name, sizeof(name), "%s-q8.qiao", label);
  const char *out = scratch_file(dir, name);
  qiao_convert_options o = {sizeof(o), QIAO_FILE_QIAO, QIAO_DTYPE_Q8_0, false};
  CHECK_OK(qiao_model_write(src, out, &o));
  qiao_model *m = NULL;
  CHECK_OK(qiao_model_open(out, NULL, &m));
  if (m) CHECK_OK(qiao_model_validate(m));
  qiao_model_close(m);
  qiao_model_close(src);
}

/* The folder holding shared file `rel`. */
static const char *shared_folder(const char *rel) {
  static char path[4096];
  snprintf(path, sizeof(path), "%s", test_shared_path(rel));
  *strrchr(path, '/') = '\0';
  return path;
}

int main(void) {
  const char *dir = scratch_dir("format_tiny");
  static const char *const archs[] = {"llama2", "llama3", "qwen2", "qwen3", "qwen3_moe"};
  for (size_t i = 0; i < sizeof(archs) / sizeof(archs[0]); i++) {
    char rel[128];
    snprintf(rel, sizeof(rel), "reference/tiny/%s/config.json", archs[i]);
    convert_and_check(dir, archs[i], shared_folder(rel), NULL);
  }
  char bin[4096], tok[4096];
  snprintf(bin, sizeof(bin), "%s", test_shared_path("models/stories260K/stories260K.bin"));
  snprintf(tok, sizeof(tok), "%s", test_shared_path("models/stories260K/tok512.bin"));
  convert_and_check(dir, "stories260K-llama2c", bin, tok);
  convert_and_check(dir, "stories260K-hf", shared_folder("models/stories260K/hf/config.json"),
                    NULL);
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
  TEST_END();
}

/* stories260K in three formats (GGUF, Hugging Face safetensors, llama2.c
 * .bin + tok512.bin) must give identical canonical tensors: same names,
 * dtypes, shapes and bytes. The HF copy stores q/k in HF's half-split order,
 * so this also checks the llama RoPE permutation.
 *
 * One difference is the files' own: the GGUF stores the tied classifier
 * explicitly as output.weight (a copy of token_embd.weight) while the .bin
 * and the HF copy leave it out and say the embeddings are tied. The test
 * accepts exactly that: an output.weight present on one side only must equal
 * token_embd.weight byte for byte, and the side without it must be tied. */
#include <math.h>
#include <string.h>

#include "qiao/model.h"
#include "test_util.h"

static qiao_model *open_model(const char *rel, const char *tokenizer_rel) {
  char path[4096], tok[4096];
  snprintf(path, sizeof(path), "%s", test_shared_path(rel));
  qiao_model_open_options opts = {sizeof(opts), NULL, false};
  if (tokenizer_rel) {
    snprintf(tok, sizeof(tok), "%s", test_shared_path(tokenizer_rel));
    opts.tokenizer_path = tok;
  }
  qiao_model *m = NULL;
  CHECK_OK(qiao_model_open(path, &opts, &m));
  if (m == NULL) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(1);
  }
  CHECK_OK(qiao_model_validate(m));
  return m;
}

static bool same_tensor(const qiao_tensor *a, const qiao_tensor *b) {
  return a->dtype == b->dtype && a->n_dims == b->n_dims &&
         memcmp(a->shape, b->shape, a->n_dims * sizeof(a->shape[0])) == 0 &&
         a->n_bytes == b->n_bytes && memcmp(a->data, b->data, a->n_bytes) == 0;
}

static bool is_tied(const qiao_model *m) {
  bool tied = false;
  qiao_status *st = qiao_model_get_bool(m, "model.tied_embeddings", &tied);
  qiao_status_free(st);
  return tied;
}

/* Every tensor of `a` is in `b`, identical, except a tied output.weight. */
static void compare_one_way(const qiao_model *a, const char *a_name, const qiao_model *b,
                            const char *b_name) {
  for (uint64_t i = 0; i < qiao_model_tensor_count(a); i++) {
    const qiao_tensor *t = qiao_model_tensor_at(a, i);
    const qiao_tensor *u = qiao_model_tensor_find(b, t->name);
    if (u == NULL && strcmp(t->name, "output.weight") == 0) {
      const qiao_tensor *embd = qiao_model_tensor_find(a, "token_embd.weight");
      CHECK(embd != NULL && same_tensor(t, embd));
      CHECK(is_tied(b));
      continue;
    }
    if (u == NULL) {
      fprintf(stderr, "%s has tensor %s, %s does not\n", a_name, t->name, b_name);
      test_failures++;
      continue;
    }
    if (!same_tensor(t, u)) {
      fprintf(stderr, "tensor %s differs between %s and %s\n", t->name, a_name, b_name);
      test_failures++;
    }
  }
}

static void compare_hparams(const qiao_model *a, const qiao_model *b) {
  qiao_hparams x, y;
  CHECK_OK(qiao_model_get_hparams(a, &x));
  CHECK_OK(qiao_model_get_hparams(b, &y));
  CHECK(strcmp(x.architecture, y.architecture) == 0);
  CHECK(x.vocab_size == y.vocab_size && x.dim == y.dim && x.n_layers == y.n_layers);
  CHECK(x.n_heads == y.n_heads && x.n_kv_heads == y.n_kv_heads && x.head_dim == y.head_dim);
  CHECK(x.ffn_dim == y.ffn_dim && x.rope_dim == y.rope_dim && x.rope_neox == y.rope_neox);
  CHECK(x.rope_neox == 0);
  CHECK(fabsf(x.norm_eps - y.norm_eps) < 1e-9f && x.rope_theta == y.rope_theta);
}

/* The vocab of tok512.bin equals the one embedded in the GGUF. */
static void compare_vocab(const qiao_model *bin, const qiao_model *gguf) {
  const char *keys[] = {"tokenizer.tokens", "tokenizer.scores", "tokenizer.token_types"};
  for (int k = 0; k < 3; k++) {
    const qiao_kv *a = qiao_model_kv_find(bin, keys[k]), *b = qiao_model_kv_find(gguf, keys[k]);
    CHECK(a != NULL && b != NULL);
    if (a == NULL || b == NULL) continue;
    CHECK(a->type == QIAO_VALUE_ARRAY && b->type == QIAO_VALUE_ARRAY);
    CHECK(a->array_len == 512 && b->array_len == 512);
    if (a->array_len != b->array_len) continue;
    for (uint64_t i = 0; i < a->array_len; i++) {
      bool same;
      if (k == 0) {
        const qiao_string *s = a->v.array, *t = b->v.array;
        same = s[i].len == t[i].len && memcmp(s[i].data, t[i].data, s[i].len) == 0;
      } else if (k == 1) {
        same = ((const float *)a->v.array)[i] == ((const float *)b->v.array)[i];
      } else {
        same = ((const int32_t *)a->v.array)[i] == ((const int32_t *)b->v.array)[i];
      }
      if (!same) {
        fprintf(stderr, "%s[%llu] differs between the .bin tokenizer and the GGUF\n", keys[k],
                (unsigned long long)i);
        test_failures++;
        break;
      }
    }
  }
  uint32_t bos = 0;
  CHECK_OK(qiao_model_get_u32(bin, "tokenizer.bos_id", &bos));
  CHECK(bos == 1);
}

int main(void) {
  qiao_model *gguf = open_model("models/stories260K/stories260K.gguf", NULL);
  qiao_model *hf = open_model("models/stories260K/hf", NULL);
  qiao_model *bin =
      open_model("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin");
  CHECK(strcmp(qiao_model_format(hf), "hf") == 0);
  CHECK(strcmp(qiao_model_format(bin), "llama2c") == 0);
  CHECK(qiao_model_tensor_count(bin) == 2 + 5 * 9);
  CHECK(qiao_model_tensor_count(hf) == 2 + 5 * 9);

  const qiao_model *models[3] = {gguf, hf, bin};
  const char *names[3] = {"gguf", "hf", "llama2c"};
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++)
      if (i != j) compare_one_way(models[i], names[i], models[j], names[j]);
  compare_hparams(gguf, hf);
  compare_hparams(gguf, bin);
  compare_vocab(bin, gguf);

  qiao_model_close(gguf);
  qiao_model_close(hf);
  qiao_model_close(bin);
  TEST_END();
}

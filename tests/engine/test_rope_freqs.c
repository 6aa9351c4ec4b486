/* GGUF LLaMA 3 files carry the llama3 RoPE scaling as rope_freqs.weight
 * divisors instead of model.rope.scaling.*: the tiny llama3 reference model
 * rebuilt that way (divisors computed here from the llama3 formula, scaling
 * type none) gives the same logits as with the scaling keys. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine_test_util.h"
#include "format/model_internal.h"

int main(void) {
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s", test_shared_path("reference/tiny/llama3/config.json"));
  *strrchr(dir, '/') = '\0';
  qiao_model *src = NULL, *m = NULL;
  CHECK_OK(qiao_model_open(dir, NULL, &src));
  if (src == NULL) TEST_END();
  qiao_hparams hp;
  CHECK_OK(qiao_model_get_hparams(src, &hp));
  CHECK(hp.rope_scaling == QIAO_ROPE_SCALING_LLAMA3);
  CHECK_OK(qiao__model_create("rope_freqs", "qiao", &m));
  for (uint64_t i = 0; i < qiao_model_kv_count(src); i++) {
    const qiao_kv *kv = qiao_model_kv_at(src, i);
    if (strncmp(kv->key, "model.rope.scaling.", 19) != 0) CHECK_OK(qiao__model_set_kv(m, kv));
  }
  for (uint64_t i = 0; i < qiao_model_tensor_count(src); i++) {
    const qiao_tensor *t = qiao_model_tensor_at(src, i);
    CHECK_OK(
        qiao__model_add_tensor(m, t->name, t->dtype, t->n_dims, t->shape, t->data, t->n_bytes));
  }
  /* divisor = unscaled / scaled frequency (the llama3 rule, as GGUF converters write it) */
  uint64_t half = hp.rope_dim / 2;
  float *div = NULL;
  CHECK_OK(qiao__model_alloc(m, half * 4, (void **)&div));
  for (uint64_t i = 0; i < half; i++) {
    double freq = pow(hp.rope_theta, -2.0 * (double)i / hp.rope_dim), scaled = freq;
    double wavelen = 2 * M_PI / freq, ctx = hp.rope_original_context;
    double lo = hp.rope_low_freq_factor, hi = hp.rope_high_freq_factor;
    if (wavelen > ctx / lo)
      scaled = freq / hp.rope_factor;
    else if (wavelen >= ctx / hi) {
      double smooth = (ctx / wavelen - lo) / (hi - lo);
      scaled = (1 - smooth) * freq / hp.rope_factor + smooth * freq;
    }
    div[i] = (float)(freq / scaled);
  }
  CHECK_OK(qiao__model_add_tensor(m, "rope_freqs.weight", QIAO_DTYPE_F32, 1, &half, div, half * 4));
  qiao_hparams hm;
  CHECK_OK(qiao_model_get_hparams(m, &hm));
  CHECK(hm.rope_scaling == QIAO_ROPE_SCALING_NONE);

  int32_t prompt[64];
  char json[4096];
  snprintf(json, sizeof(json), "%s", test_shared_path("reference/tiny/llama3/reference.json"));
  size_t n = ref_ids(json, "prompt", prompt, 64);
  qiao_engine_options o = qiao_engine_default_options();
  o.max_context = 64;
  qiao_engine *a = NULL, *b = NULL;
  CHECK_OK(qiao_engine_create(src, &o, &a));
  CHECK_OK(qiao_engine_create(m, &o, &b));
  if (a && b) {
    size_t vocab = hp.vocab_size;
    float *la = malloc(n * vocab * 4), *lb = malloc(n * vocab * 4);
    CHECK_OK(all_logits(a, prompt, n, la));
    CHECK_OK(all_logits(b, prompt, n, lb));
    double err = rel_l2(lb, la, n * vocab);
    printf("rope_freqs divisors vs llama3 scaling keys: rel L2 %.3g\n", err);
    CHECK(err < 1e-5);
    /* The divisors matter: all ones (no scaling) changes the logits. */
    for (uint64_t i = 0; i < half; i++)
      div[i] = 1.0f;
    qiao_engine *c = NULL;
    CHECK_OK(qiao_engine_create(m, &o, &c));
    if (c != NULL) {
      CHECK_OK(all_logits(c, prompt, n, lb));
      double diff = rel_l2(lb, la, n * vocab);
      printf("without the divisors: rel L2 %.3g (must differ)\n", diff);
      CHECK(diff > 1e-4);
    }
    qiao_engine_destroy(c);
    free(la);
    free(lb);
  }
  qiao_engine_destroy(a);
  qiao_engine_destroy(b);
  qiao_model_close(m);
  qiao_model_close(src);
  TEST_END();
}

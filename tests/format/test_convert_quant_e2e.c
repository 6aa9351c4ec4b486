/* End to end: every tiny reference architecture converted with
 * `qiao convert --type T` for llama.cpp's mixes and k-quant types (q6_k,
 * q4_k_m, q5_k_s, q3_k), written as .gguf, and run by the engine:
 *  1. the written file opens and validates, with the types the recipe chose
 *     (format_convert_quant checks those names against llama-quantize);
 *  2. the engine adds nothing of its own: with exact activations, the
 *     converted model's logits equal those of its weights dequantized back
 *     to f32 (`qiao convert --type f32`) within binary32 rounding (1e-5
 *     relative L2; the f32 path is held to the transformers references
 *     within 1e-4 by engine_tiny_models), and its 24 greedy ids are the
 *     same.
 * How far each type moves the weights is bounded where the quantizer is
 * checked (format_quant_k: per tensor no worse than llama.cpp's reference
 * quantizer); what that does to these random-weight models' greedy ids
 * against transformers is printed for information only (their logits are
 * nearly tied, so no bound propagated through the layers would be tight;
 * engine_converted_models says the same of q8_0 and q4_0). The tiny models'
 * rows (64 and 176) are shorter than a 256-element super-block, so their
 * tensors take the fallback types (q5_0, q5_1, q8_0, q4_0, f16). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine_test_util.h"
#include "qiao/model.h"

#define KERNEL_BOUND 1e-5

int main(void) {
  const char *bin = getenv("QIAO_BIN");
  if (bin == NULL) {
    fprintf(stderr, "QIAO_BIN is not set (run through ctest)\n");
    return 1;
  }
  const char *archs[] = {"llama2", "llama3", "qwen2", "qwen3", "qwen3_moe"};
  /* between them every type the tiny models' rows fall back to: q8_0,
   * q5_0, q5_1, q4_0 and f16 */
  const char *types[] = {"q6_k", "q4_k_m", "q5_k_s", "q3_k"};
  char tmp[] = "/tmp/qiao_convert_quant_XXXXXX";
  CHECK(mkdtemp(tmp) != NULL);
  for (size_t a = 0; a < sizeof(archs) / sizeof(archs[0]); a++) {
    char rel[256], dir[4096], json[8192];
    snprintf(rel, sizeof(rel), "reference/tiny/%s/model.safetensors", archs[a]);
    snprintf(dir, sizeof(dir), "%s", test_shared_path(rel));
    *strrchr(dir, '/') = '\0';
    snprintf(json, sizeof(json), "%s/reference.json", dir);
    int32_t prompt[64], ref_greedy[64];
    size_t n_prompt = ref_ids(json, "prompt", prompt, 64);
    size_t n_greedy = ref_ids(json, "greedy", ref_greedy, 64);
    CHECK(n_prompt > 0 && n_greedy == 24);
    qiao_model *orig = NULL;
    CHECK_OK(qiao_model_open(dir, NULL, &orig));
    if (orig == NULL) continue;
    qiao_hparams hp;
    CHECK_OK(qiao_model_get_hparams(orig, &hp));
    uint32_t vocab = hp.vocab_size;
    snprintf(rel, sizeof(rel), "reference/tiny/%s/logits.f32", archs[a]);
    size_t ref_bytes = 0;
    float *ref = (float *)test_read_file(test_shared_path(rel), &ref_bytes);
    CHECK(ref_bytes == n_prompt * vocab * 4);
    float *lq = malloc(n_prompt * vocab * 4), *lf = malloc(n_prompt * vocab * 4);
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
      char conv[8192], back[8192], cmd[20000];
      snprintf(conv, sizeof(conv), "%s/%s_%s.gguf", tmp, archs[a], types[t]);
      snprintf(back, sizeof(back), "%s/%s_%s_f32.gguf", tmp, archs[a], types[t]);
      snprintf(cmd, sizeof(cmd), "'%s' convert '%s' '%s' --type %s --quiet 2>/dev/null", bin, dir,
               conv, types[t]);
      if (run_command(cmd) != 0) {
        CHECK(!"qiao convert");
        continue;
      }
      snprintf(cmd, sizeof(cmd), "'%s' convert '%s' '%s' --type f32 --quiet", bin, conv, back);
      CHECK(run_command(cmd) == 0);
      qiao_model *mq = NULL, *mf = NULL;
      CHECK_OK(qiao_model_open(conv, NULL, &mq));
      CHECK_OK(qiao_model_open(back, NULL, &mf));
      if (mq == NULL || mf == NULL) {
        qiao_model_close(mq);
        qiao_model_close(mf);
        continue;
      }
      /* 1. a valid file whose weight matrices were converted */
      CHECK_OK(qiao_model_validate(mq));
      size_t n_converted = 0;
      for (uint64_t i = 0; i < qiao_model_tensor_count(mq); i++)
        n_converted += qiao_model_tensor_at(mq, i)->dtype != QIAO_DTYPE_F32;
      CHECK(n_converted > 0);
      /* 2. the engine on the converted weights = on them dequantized */
      int32_t ids_q[64] = {0}, ids_f[64] = {0};
      evaluate_exact(mq, prompt, n_prompt, lq, ids_q, n_greedy);
      evaluate_exact(mf, prompt, n_prompt, lf, ids_f, n_greedy);
      double kerr = rel_l2(lq, lf, n_prompt * vocab);
      CHECK(kerr < KERNEL_BOUND);
      CHECK(memcmp(ids_q, ids_f, n_greedy * sizeof(int32_t)) == 0);
      double ref_err = 0;
      for (size_t p = 0; p < n_prompt && ref_bytes == n_prompt * vocab * 4; p++)
        ref_err = fmax(ref_err, rel_l2(lq + p * vocab, ref + p * vocab, vocab));
      size_t same = 0;
      while (same < n_greedy && ids_q[same] == ref_greedy[same])
        same++;
      printf("%-9s %-6s %zu tensors converted; vs dequantized f32: rel L2 %.2g (bound %g), greedy "
             "equal; vs transformers (information): rel L2 %.2g, greedy %zu/%zu\n",
             archs[a], types[t], n_converted, kerr, KERNEL_BOUND, ref_err, same, n_greedy);
      qiao_model_close(mq);
      qiao_model_close(mf);
      unlink(conv);
      unlink(back);
    }
    free(lq), free(lf), free(ref);
    qiao_model_close(orig);
  }
  rmdir(tmp);
  TEST_END();
}

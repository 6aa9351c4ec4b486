/* stories260K through the engine: greedy ids equal llama2.c's exactly (from
 * "Once upon a time" and from BOS) for the .gguf, the .bin with tok512.bin
 * and the Hugging Face directory; prompt logits within 1e-4 relative L2 of
 * transformers (float64). */
#include <stdio.h>
#include <string.h>

#include "engine_test_util.h"
#include "qiao/model.h"

int main(void) {
  int32_t ref_prompt_ids[64], ref_bos_ids[300], hf_prompt[16], hf_greedy[64];
  size_t n_prompt_ref = test_llama2c_ids("reference/stories260K/stories260K_greedy_prompt_64.txt",
                                         ref_prompt_ids, 64);
  size_t n_bos_ref =
      test_llama2c_ids("reference/stories260K/stories260K_greedy_bos_256.txt", ref_bos_ids, 300);
  CHECK(n_prompt_ref == 60 && n_bos_ref == 256);
  char json[4096];
  snprintf(json, sizeof(json), "%s", test_shared_path("reference/stories260K/hf_reference.json"));
  size_t n_hf_prompt = ref_ids(json, "prompt", hf_prompt, 16);
  size_t n_hf_greedy = ref_ids(json, "greedy", hf_greedy, 64);
  CHECK(n_hf_prompt == 5 && n_hf_greedy == 24);
  float *hf_logits =
      (float *)test_read_file(test_shared_path("reference/stories260K/hf_logits.f32"), NULL);

  char tok[4096];
  snprintf(tok, sizeof(tok), "%s", test_shared_path("models/stories260K/tok512.bin"));
  const char *models[] = {"models/stories260K/stories260K.gguf",
                          "models/stories260K/stories260K.bin",
                          "models/stories260K/hf/config.json"};
  for (int m = 0; m < 3; m++) {
    char path[4096];
    snprintf(path, sizeof(path), "%s", test_shared_path(models[m]));
    if (m == 2) *strrchr(path, '/') = '\0';
    qiao_model_open_options mo = {sizeof(mo), m == 1 ? tok : NULL, false};
    qiao_model *model = NULL;
    CHECK_OK(qiao_model_open(path, &mo, &model));
    if (model == NULL) continue;
    qiao_engine *e = NULL;
    qiao_engine_options o = qiao_engine_default_options();
    o.n_threads = 2;
    o.max_context = 512;
    CHECK_OK(qiao_engine_create(model, &o, &e));
    if (e != NULL) {
      int32_t ids[300];
      /* "Once upon a time" = BOS 403 407 261 378 (llama2.c forces these). */
      CHECK_OK(greedy(e, hf_prompt, n_hf_prompt, ids, n_prompt_ref));
      CHECK(memcmp(ids, ref_prompt_ids, n_prompt_ref * 4) == 0);
      CHECK(memcmp(ids, hf_greedy, n_hf_greedy * 4) == 0);
      int32_t bos = 1;
      CHECK_OK(greedy(e, &bos, 1, ids, n_bos_ref));
      size_t same = 0;
      while (same < n_bos_ref && ids[same] == ref_bos_ids[same])
        same++;
      if (same != n_bos_ref) fprintf(stderr, "%s: BOS greedy differs at %zu\n", models[m], same);
      CHECK(same == n_bos_ref);
      float logits[5 * 512];
      CHECK_OK(all_logits(e, hf_prompt, n_hf_prompt, logits));
      double worst = 0;
      for (size_t p = 0; p < n_hf_prompt; p++) {
        double err = rel_l2(logits + p * 512, hf_logits + p * 512, 512);
        if (err > worst) worst = err;
      }
      printf("%s: greedy ok, worst logits rel L2 %.3g\n", models[m], worst);
      CHECK(worst < 1e-4);
      if (m == 0) { /* an F16 KV cache: close, and greedy unchanged on the prompt run */
        qiao_engine *h = NULL;
        o.cache_dtype = QIAO_DTYPE_F16;
        CHECK_OK(qiao_engine_create(model, &o, &h));
        o.cache_dtype = QIAO_DTYPE_F32;
        if (h != NULL) {
          CHECK_OK(all_logits(h, hf_prompt, n_hf_prompt, logits));
          double err16 = 0;
          for (size_t p = 0; p < n_hf_prompt; p++) {
            double err = rel_l2(logits + p * 512, hf_logits + p * 512, 512);
            if (err > err16) err16 = err;
          }
          printf("f16 KV cache: worst logits rel L2 %.3g (bound 2e-3; measured 3.6e-4)\n", err16);
          CHECK(err16 < 2e-3);
          CHECK_OK(greedy(h, hf_prompt, n_hf_prompt, ids, n_prompt_ref));
          CHECK(memcmp(ids, ref_prompt_ids, n_prompt_ref * 4) == 0);
        }
        qiao_engine_destroy(h);
      }
    }
    qiao_engine_destroy(e);
    qiao_model_close(model);
  }
  free(hf_logits);
  TEST_END();
}

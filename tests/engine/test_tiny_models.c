/* Every tiny reference architecture (shared/reference/tiny/<arch>): the
 * logits of every prompt position against transformers (float64; qwen3_moe
 * float32) within 1e-4 relative L2, and the 24 greedy ids through the KV
 * cache. Then the same weights converted to f16 and q8_0 (written with
 * qiao_model_write and reopened), held to bounds derived from the formats,
 * not to a measured error:
 *  - every converted weight lies within its format's bound of the f32
 *    original (format_bounds.h: |w' - w| <= 2^-11 |w| for f16; for q8_0,
 *    with d = amax / 127 of the block, d / 2 from rounding q = round(w / d)
 *    plus 127 |d16 - d| <= 127 * 2^-11 d from storing d in f16);
 *  - with exact activations, the converted model's logits equal (1e-5,
 *    binary32 rounding) those of its weights dequantized back to f32, and
 *    its greedy ids are the same: the kernels add no error of their own.
 * So each converted model is the f32 model (held to 1e-4 above) with every
 * weight moved within the format's bound; engine_quantized_logits carries
 * such a bound through to the logits, engine_converted_models does the same
 * for bf16 and q4_0 through `qiao convert`. The error against transformers
 * with the default Q8 activations is printed, for information. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine_test_util.h"
#include "format_bounds.h"
#include "qiao/model.h"

#define TIGHT 1e-4
#define DEQUANT_BOUND 1e-5

static double check_model(const char *arch, qiao_model *model, const int32_t *prompt,
                          size_t n_prompt, const float *ref, const int32_t *ref_greedy,
                          size_t n_greedy, bool exact_greedy, int *greedy_matches) {
  qiao_engine *e = NULL;
  qiao_engine_options o = qiao_engine_default_options();
  o.n_threads = 2;
  o.max_context = 64;
  CHECK_OK(qiao_engine_create(model, &o, &e));
  if (e == NULL) return INFINITY;
  uint32_t vocab = qiao_engine_hparams(e)->vocab_size;
  float *logits = malloc(n_prompt * vocab * sizeof(float));
  double worst = 0;
  CHECK_OK(all_logits(e, prompt, n_prompt, logits));
  for (size_t p = 0; p < n_prompt; p++) {
    double err = rel_l2(logits + p * vocab, ref + p * vocab, vocab);
    if (err > worst) worst = err;
  }
  int32_t ids[64] = {0};
  CHECK_OK(greedy(e, prompt, n_prompt, ids, n_greedy));
  int matches = 0;
  while (matches < (int)n_greedy && ids[matches] == ref_greedy[matches])
    matches++;
  *greedy_matches = matches;
  if (exact_greedy && matches != (int)n_greedy) {
    fprintf(stderr, "%s: greedy ids differ at %d:", arch, matches);
    for (size_t i = 0; i < n_greedy; i++)
      fprintf(stderr, " %d/%d", ids[i], ref_greedy[i]);
    fprintf(stderr, "\n");
    CHECK(matches == (int)n_greedy);
  }
  free(logits);
  qiao_engine_destroy(e);
  return worst;
}

int main(void) {
  const char *archs[] = {"llama2", "llama3", "qwen2", "qwen3", "qwen3_moe"};
  for (size_t a = 0; a < sizeof(archs) / sizeof(archs[0]); a++) {
    char dir[4096], rel[256];
    snprintf(rel, sizeof(rel), "reference/tiny/%s/reference.json", archs[a]);
    char json[4096];
    snprintf(json, sizeof(json), "%s", test_shared_path(rel));
    snprintf(rel, sizeof(rel), "reference/tiny/%s/logits.f32", archs[a]);
    size_t ref_bytes = 0;
    float *ref = (float *)test_read_file(test_shared_path(rel), &ref_bytes);
    snprintf(rel, sizeof(rel), "reference/tiny/%s/config.json", archs[a]);
    snprintf(dir, sizeof(dir), "%s", test_shared_path(rel));
    *strrchr(dir, '/') = '\0';
    int32_t prompt[256], ref_greedy[64];
    size_t n_prompt = ref_ids(json, "prompt", prompt, 256);
    size_t n_greedy = ref_ids(json, "greedy", ref_greedy, 64);
    CHECK(n_prompt > 0 && n_greedy == 24);

    qiao_model *model = NULL;
    CHECK_OK(qiao_model_open(dir, NULL, &model));
    if (model == NULL) {
      free(ref);
      continue;
    }
    int matches = 0;
    double err =
        check_model(archs[a], model, prompt, n_prompt, ref, ref_greedy, n_greedy, true, &matches);
    printf("%-10s f32  worst position rel L2 %.3g, greedy %d/%zu\n", archs[a], err, matches,
           n_greedy);
    CHECK(ref_bytes / 4 % n_prompt == 0);
    CHECK(err < TIGHT);

    /* Converted copies: f16 and q8_0. */
    const qiao_dtype dts[] = {QIAO_DTYPE_F16, QIAO_DTYPE_Q8_0};
    for (int d = 0; d < 2; d++) {
      char path[256];
      snprintf(path, sizeof(path), "/tmp/qiao_engine_test_%d_%s_%d.gguf", (int)getpid(), archs[a],
               d);
      qiao_convert_options co = {sizeof(co), QIAO_FILE_GGUF, dts[d], false};
      CHECK_OK(qiao_model_write(model, path, &co));
      qiao_model *converted = NULL;
      CHECK_OK(qiao_model_open(path, NULL, &converted));
      if (converted != NULL) {
        double cerr = check_model(archs[a], converted, prompt, n_prompt, ref, ref_greedy, n_greedy,
                                  false, &matches);
        size_t n_checked = 0;
        const char *worst_name = "";
        double ratio = format_bounds_model(model, converted, &n_checked, &worst_name);
        printf("%-10s %-4s every weight within the format's bound (worst %.3g of it, %s); "
               "logits: worst position rel L2 %.3g, greedy %d/%zu equal\n",
               archs[a], qiao_dtype_get_info(dts[d])->name, ratio, worst_name, cerr, matches,
               n_greedy);
        /* every tensor but the rope_freqs.weight GGUF derives (llama3) */
        CHECK(n_checked + (qiao_model_tensor_find(converted, "rope_freqs.weight") != NULL) ==
              qiao_model_tensor_count(converted));
        CHECK(ratio <= 1.0);
      }
      if (converted != NULL) {
        /* The converted weights dequantized to f32: the same logits. */
        char back[300];
        snprintf(back, sizeof(back), "%s.f32.gguf", path);
        qiao_convert_options to_f32 = {sizeof(to_f32), QIAO_FILE_GGUF, QIAO_DTYPE_F32, false};
        CHECK_OK(qiao_model_write(converted, back, &to_f32));
        qiao_model *dequant = NULL;
        CHECK_OK(qiao_model_open(back, NULL, &dequant));
        unlink(back);
        CHECK(qiao_model_tensor_find(converted, "blk.0.attn_q.weight")->dtype == dts[d]);
        CHECK(dequant == NULL ||
              qiao_model_tensor_find(dequant, "blk.0.attn_q.weight")->dtype == QIAO_DTYPE_F32);
        qiao_engine *eq = NULL, *ef = NULL;
        qiao_engine_options o = qiao_engine_default_options();
        o.max_context = 64;
        o.exact_matmul = true; /* the kernels' own error: none beyond F32 rounding */
        CHECK_OK(qiao_engine_create(converted, &o, &eq));
        if (dequant) CHECK_OK(qiao_engine_create(dequant, &o, &ef));
        if (eq && ef) {
          size_t vocab = qiao_engine_hparams(eq)->vocab_size;
          float *lq = malloc(n_prompt * vocab * 4), *lf = malloc(n_prompt * vocab * 4);
          CHECK_OK(all_logits(eq, prompt, n_prompt, lq));
          CHECK_OK(all_logits(ef, prompt, n_prompt, lf));
          double derr = rel_l2(lq, lf, n_prompt * vocab);
          printf("%-10s %-4s vs its dequantized f32 weights: rel L2 %.3g (bound %g)\n", archs[a],
                 qiao_dtype_get_info(dts[d])->name, derr, DEQUANT_BOUND);
          CHECK(derr < DEQUANT_BOUND);
          int32_t gq[64] = {0}, gf[64] = {0};
          CHECK_OK(greedy(eq, prompt, n_prompt, gq, n_greedy));
          CHECK_OK(greedy(ef, prompt, n_prompt, gf, n_greedy));
          CHECK(memcmp(gq, gf, n_greedy * sizeof(int32_t)) == 0);
          free(lq);
          free(lf);
        }
        qiao_engine_destroy(eq);
        qiao_engine_destroy(ef);
        qiao_model_close(dequant);
      }
      qiao_model_close(converted);
      unlink(path);
    }
    qiao_model_close(model);
    free(ref);
  }
  TEST_END();
}

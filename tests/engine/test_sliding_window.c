/* A sliding-window model through the engine, with a window (8) shorter than
 * the sequence (36 tokens): shared/reference/tiny/llama2's weights under a
 * Mistral config.json with "sliding_window": 8, written to a temporary
 * Hugging Face folder. The engine's logits, for a prefill of the whole
 * sequence and for one token per call through the paged KV cache (blocks of
 * 4, so the window starts inside a block), are compared with the float64
 * reference forward pass of llama_f64.h (windowed causal attention, written
 * here, sharing nothing with qiao) within 1e-4 relative L2 per position, as
 * the tiny models are; so are the 24 greedy ids. The reference itself is
 * first checked against transformers' logits (no window), and the test
 * checks that the window matters: from position 8 on, the logits without the
 * window differ from it by far more than the tolerance. Last, the model
 * written as GGUF must hold it as llama.cpp names it
 * (llama.attention.sliding_window) and give the same logits. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine_test_util.h"
#include "llama_f64.h"
#include "qiao/model.h"

#define WINDOW 8
#define TIGHT 1e-4
#define N_SEQ 36 /* the 12 prompt ids and the 24 greedy ids of reference.json */

static double worst_rel(const float *a, const float *b, int from, int to, size_t vocab) {
  double worst = 0;
  for (int p = from; p < to; p++) {
    double e = rel_l2(a + p * vocab, b + p * vocab, vocab);
    if (e > worst) worst = e;
  }
  return worst;
}

/* Writes DIR/config.json: the llama2 config as a Mistral one with the window. */
static void write_windowed_config(const char *src_dir, const char *dir) {
  char path[8192];
  snprintf(path, sizeof(path), "%s/config.json", src_dir);
  char *text = test_read_file(path, NULL);
  json_object *c = json_tokener_parse(text);
  free(text);
  json_object *arch = json_object_new_array();
  json_object_array_add(arch, json_object_new_string("MistralForCausalLM"));
  json_object_object_add(c, "architectures", arch);
  json_object_object_add(c, "model_type", json_object_new_string("mistral"));
  json_object_object_add(c, "sliding_window", json_object_new_int(WINDOW));
  snprintf(path, sizeof(path), "%s/config.json", dir);
  CHECK(json_object_to_file_ext(path, c, JSON_C_TO_STRING_PRETTY) == 0);
  json_object_put(c);
  char from[8192];
  snprintf(from, sizeof(from), "%s/model.safetensors", src_dir);
  snprintf(path, sizeof(path), "%s/model.safetensors", dir);
  CHECK(symlink(from, path) == 0);
}

/* Logits of every position, one token per forward call (decode through the cache). */
static void decode_logits(qiao_engine *e, const int32_t *ids, int n, float *out) {
  int32_t seq = -1;
  CHECK_OK(qiao_engine_seq_create(e, &seq));
  size_t vocab = qiao_engine_hparams(e)->vocab_size;
  for (int p = 0; p < n; p++) {
    int32_t tok = ids[p], pos = p;
    uint8_t want = 1;
    qiao_batch b = {1, &tok, &seq, &pos, &want};
    CHECK_OK(qiao_engine_forward(e, &b, out + p * vocab, NULL));
  }
  qiao_engine_seq_free(e, seq);
}

static int argmax(const float *x, size_t n) {
  size_t best = 0;
  for (size_t i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return (int)best;
}

int main(void) {
  char src_dir[4096];
  snprintf(src_dir, sizeof(src_dir), "%s",
           test_shared_path("reference/tiny/llama2/model.safetensors"));
  *strrchr(src_dir, '/') = '\0';
  char json_path[8192], logits_path[8192];
  snprintf(json_path, sizeof(json_path), "%s/reference.json", src_dir);
  snprintf(logits_path, sizeof(logits_path), "%s/logits.f32", src_dir);
  int32_t seq[N_SEQ];
  size_t n_prompt = ref_ids(json_path, "prompt", seq, N_SEQ);
  size_t n_greedy = ref_ids(json_path, "greedy", seq + n_prompt, N_SEQ - n_prompt);
  CHECK(n_prompt == 12 && n_prompt + n_greedy == N_SEQ);

  llama_f64 ref;
  if (llama_f64_load(&ref, src_dir) != 0) {
    fprintf(stderr, "cannot load %s\n", src_dir);
    return 1;
  }
  size_t vocab = (size_t)ref.vocab;
  float *want = malloc(N_SEQ * vocab * 4), *full = malloc(N_SEQ * vocab * 4);
  float *got = malloc(N_SEQ * vocab * 4), *step = malloc(N_SEQ * vocab * 4);

  /* The reference against transformers (no window, the prompt). */
  size_t hf_bytes = 0;
  float *hf = (float *)test_read_file(logits_path, &hf_bytes);
  CHECK(hf_bytes == n_prompt * vocab * 4);
  llama_f64_forward(&ref, seq, N_SEQ, 0, full, NULL);
  double hf_err = worst_rel(full, hf, 0, (int)n_prompt, vocab);
  printf("float64 reference vs transformers (no window): worst rel L2 %.3g\n", hf_err);
  CHECK(hf_err < 1e-6);
  free(hf);

  /* The window matters: identical before it fills, far apart after. */
  llama_f64_forward(&ref, seq, N_SEQ, WINDOW, want, NULL);
  double before = worst_rel(want, full, 0, WINDOW, vocab);
  double after = 1e9;
  for (int p = WINDOW; p < N_SEQ; p++) {
    double e = rel_l2(want + p * vocab, full + p * vocab, vocab);
    if (e < after) after = e;
  }
  printf("window %d vs none: positions < %d rel L2 %.3g, positions >= %d at least %.3g\n", WINDOW,
         WINDOW, before, WINDOW, after);
  CHECK(before < 1e-12);
  CHECK(after > 100 * TIGHT);

  char dir[] = "/tmp/qiao_sliding_window_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  write_windowed_config(src_dir, dir);
  qiao_model *model = NULL;
  CHECK_OK(qiao_model_open(dir, NULL, &model));
  qiao_hparams hp;
  if (model) CHECK_OK(qiao_model_get_hparams(model, &hp));
  CHECK(model == NULL || hp.sliding_window == WINDOW);

  qiao_engine *e = NULL;
  qiao_engine_options o = qiao_engine_default_options();
  o.n_threads = 2;
  o.max_context = 64;
  o.block_size = 4;
  if (model) CHECK_OK(qiao_engine_create(model, &o, &e));
  if (e != NULL) {
    CHECK_OK(all_logits(e, seq, N_SEQ, got));
    double err = worst_rel(got, want, 0, N_SEQ, vocab);
    double err_full = worst_rel(got, full, WINDOW, N_SEQ, vocab);
    printf("engine prefill: worst rel L2 %.3g vs the windowed reference (bound %g), %.3g vs no "
           "window\n",
           err, TIGHT, err_full);
    CHECK(err < TIGHT);
    CHECK(err_full > 100 * TIGHT);

    decode_logits(e, seq, N_SEQ, got);
    err = worst_rel(got, want, 0, N_SEQ, vocab);
    printf("engine decode through the cache: worst rel L2 %.3g (bound %g)\n", err, TIGHT);
    CHECK(err < TIGHT);

    /* Greedy from the prompt: the engine's ids against the reference's
     * argmax, extending the sequence one id at a time. */
    int32_t ids[N_SEQ], ref_seq[N_SEQ];
    size_t n_gen = N_SEQ - n_prompt;
    CHECK_OK(greedy(e, seq, n_prompt, ids, n_gen));
    memcpy(ref_seq, seq, n_prompt * sizeof(int32_t));
    size_t same = 0;
    for (size_t i = 0; i < n_gen; i++) {
      llama_f64_forward(&ref, ref_seq, (int)(n_prompt + i), WINDOW, step, NULL);
      ref_seq[n_prompt + i] = argmax(step + (n_prompt + i - 1) * vocab, vocab);
      same += ids[i] == ref_seq[n_prompt + i];
    }
    printf("greedy with the window: %zu/%zu ids equal the reference's\n", same, n_gen);
    CHECK(same == n_gen);
  }
  qiao_engine_destroy(e);

  /* The window survives conversion: the same model written as GGUF
   * (llama.attention.sliding_window) gives the same logits. */
  char gguf[8192];
  snprintf(gguf, sizeof(gguf), "%s/windowed.gguf", dir);
  qiao_convert_options co = {sizeof(co), QIAO_FILE_GGUF, QIAO_DTYPE_COUNT, false};
  qiao_model *converted = NULL;
  e = NULL;
  if (model) CHECK_OK(qiao_model_write(model, gguf, &co));
  if (model) CHECK_OK(qiao_model_open(gguf, NULL, &converted));
  if (converted) {
    /* under the key llama.cpp reads (GGUF keys are stored as plain strings) */
    size_t len = 0;
    char *bytes = test_read_file(gguf, &len);
    static const char key[] = "llama.attention.sliding_window";
    CHECK(memmem(bytes, len, key, sizeof(key) - 1) != NULL);
    free(bytes);
    CHECK_OK(qiao_engine_create(converted, &o, &e));
  }
  if (e != NULL) {
    CHECK_OK(all_logits(e, seq, N_SEQ, got));
    double err = worst_rel(got, want, 0, N_SEQ, vocab);
    printf("engine prefill of the GGUF copy: worst rel L2 %.3g (bound %g)\n", err, TIGHT);
    CHECK(err < TIGHT);
  }
  qiao_engine_destroy(e);
  qiao_model_close(converted);
  unlink(gguf);
  qiao_model_close(model);
  char path[8192];
  snprintf(path, sizeof(path), "%s/config.json", dir);
  unlink(path);
  snprintf(path, sizeof(path), "%s/model.safetensors", dir);
  unlink(path);
  rmdir(dir);
  llama_f64_free(&ref);
  free(want), free(full), free(got), free(step);
  TEST_END();
}

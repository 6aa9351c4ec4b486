/* The logits of a model whose output matrix is converted (f16, bf16, q8_0,
 * q4_0; every other tensor f32), held to a bound derived from the format and
 * propagated exactly: logits = W h, so converting W moves logit i by at most
 * sum_j bound(W_ij) |h_j| (format_bounds.h: d/2 and the f16 scale's rounding
 * for q8_0, up to |d| for q4_0's clamped nibble, half an ulp for f16/bf16),
 * where h is the final normed state. h and the f32 logits come from the
 * float64 reference forward pass of llama_f64.h (independent of qiao), on
 * shared/reference/tiny/llama2 over its prompt and greedy ids (36
 * positions); the engine runs the converted file with exact activations.
 * Its f32 arithmetic (held to 1e-4 of transformers by engine_tiny_models)
 * gets 1e-4 of sum_j |W_ij h_j| per logit on top: small beside every
 * format's term. Then wherever the reference's top-1 margin exceeds twice the
 * largest bound of its row, the engine's greedy id must be the reference's.
 * The f32 control must meet the slack alone. q8_0 and q4_0 run a second time
 * with the engine's default Q8 activations (device-abi.md §11.4), whose own
 * rounding of h adds sum_j (|W_ij| + bound(W_ij)) |h'_j - h_j| with
 * |h'_j - h_j| bounded as a q8_0 weight is. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine_test_util.h"
#include "format/model_internal.h"
#include "format_bounds.h"
#include "llama_f64.h"

#define N_SEQ 36
#define F32_SLACK 1e-4

/* The llama2 model (opened from its HF folder) with output.weight converted
 * to `dtype` by qiao's own conversion, written to `path`. */
static int write_variant(const qiao_model *src, qiao_dtype dtype, const char *path) {
  qiao_model *m = NULL;
  CHECK_OK(qiao__model_create(path, "gguf", &m));
  if (m == NULL) return -1;
  for (uint64_t i = 0; i < qiao_model_kv_count(src); i++)
    CHECK_OK(qiao__model_set_kv(m, qiao_model_kv_at(src, i)));
  for (uint64_t i = 0; i < qiao_model_tensor_count(src); i++) {
    const qiao_tensor *t = qiao_model_tensor_at(src, i);
    if (strcmp(t->name, "output.weight") != 0) {
      CHECK_OK(
          qiao__model_add_tensor(m, t->name, t->dtype, t->n_dims, t->shape, t->data, t->n_bytes));
      continue;
    }
    uint64_t n = t->n_bytes / 4;
    uint64_t bytes =
        n / qiao_dtype_get_info(dtype)->block_elems * qiao_dtype_get_info(dtype)->block_bytes;
    void *conv = NULL;
    float *w = malloc(t->n_bytes);
    memcpy(w, t->data, t->n_bytes);
    CHECK_OK(qiao__model_alloc(m, bytes, &conv));
    if (conv) qiao__dtype_from_f32(dtype, w, conv, n);
    free(w);
    if (conv) CHECK_OK(qiao__model_add_tensor(m, t->name, dtype, t->n_dims, t->shape, conv, bytes));
  }
  qiao_convert_options co = {sizeof(co), QIAO_FILE_GGUF, QIAO_DTYPE_COUNT, false};
  CHECK_OK(qiao_model_write(m, path, &co));
  qiao_model_close(m);
  return 0;
}

int main(void) {
  char dir[4096], json[8192];
  snprintf(dir, sizeof(dir), "%s", test_shared_path("reference/tiny/llama2/model.safetensors"));
  *strrchr(dir, '/') = '\0';
  snprintf(json, sizeof(json), "%s/reference.json", dir);
  int32_t seq[N_SEQ];
  size_t n_prompt = ref_ids(json, "prompt", seq, N_SEQ);
  size_t n_greedy = ref_ids(json, "greedy", seq + n_prompt, N_SEQ - n_prompt);
  CHECK(n_prompt + n_greedy == N_SEQ);

  llama_f64 ref;
  if (llama_f64_load(&ref, dir) != 0) {
    fprintf(stderr, "cannot load %s\n", dir);
    return 1;
  }
  size_t V = (size_t)ref.vocab, D = (size_t)ref.dim;
  float *want = malloc(N_SEQ * V * 4), *got = malloc(N_SEQ * V * 4);
  double *h = malloc(N_SEQ * D * sizeof(double));
  llama_f64_forward(&ref, seq, N_SEQ, 0, want, h);

  qiao_model *src = NULL;
  CHECK_OK(qiao_model_open(dir, NULL, &src));
  const qiao_tensor *wt = src ? qiao_model_tensor_find(src, "output.weight") : NULL;
  CHECK(wt != NULL && wt->dtype == QIAO_DTYPE_F32 && wt->n_bytes == V * D * 4);
  if (wt == NULL) return 1;
  float *w = malloc(V * D * 4);
  memcpy(w, wt->data, V * D * 4);
  double *bound = malloc(N_SEQ * V * sizeof(double)), *slack = malloc(N_SEQ * V * sizeof(double));

  const qiao_dtype dtypes[] = {QIAO_DTYPE_F32, QIAO_DTYPE_F16, QIAO_DTYPE_BF16, QIAO_DTYPE_Q8_0,
                               QIAO_DTYPE_Q4_0};
  char path[256];
  snprintf(path, sizeof(path), "/tmp/qiao_quantized_logits_%d.gguf", (int)getpid());
  float *hf = malloc(D * sizeof(float));
  double *abound = malloc(D * sizeof(double)), *wb = malloc(V * D * sizeof(double));
  for (size_t run = 0; run < 7; run++) {
    /* runs 0-4: every type with exact activations; 5-6: q8_0 and q4_0 with
     * the default Q8 activations */
    size_t d = run < 5 ? run : run - 2;
    bool q8_act = run >= 5;
    const char *name = qiao_dtype_get_info(dtypes[d])->name;
    format_bounds(dtypes[d], w, V * D, wb); /* rows of D, whole blocks */
    for (size_t p = 0; p < N_SEQ; p++) {
      format_bounds_matvec(dtypes[d], w, V, D, h + p * D, bound + p * V);
      /* Q8 activations (device-abi.md §11.4): h quantized like a q8_0 block
       * (d = amax / 127, q = round(h / d), d possibly kept in f16), so
       * |h' - h| is q8_0's per-element bound, and the logit moves by a
       * further sum_j (|W_ij| + bound(W_ij)) |h'_j - h_j|. */
      for (size_t j = 0; j < D; j++)
        hf[j] = (float)h[p * D + j];
      format_bounds(QIAO_DTYPE_Q8_0, hf, D, abound);
      for (size_t i = 0; i < V; i++) {
        double s = 0, a = 0;
        for (size_t j = 0; j < D; j++) {
          s += fabs(w[i * D + j] * h[p * D + j]);
          a += (fabs(w[i * D + j]) + wb[i * D + j]) * abound[j];
        }
        slack[p * V + i] = F32_SLACK * s;
        if (q8_act) bound[p * V + i] += a;
      }
    }
    qiao_model *m = NULL;
    qiao_engine *e = NULL;
    if (write_variant(src, dtypes[d], path) == 0) CHECK_OK(qiao_model_open(path, NULL, &m));
    CHECK(m == NULL || qiao_model_tensor_find(m, "output.weight")->dtype == dtypes[d]);
    qiao_engine_options o = qiao_engine_default_options();
    o.n_threads = 2;
    o.max_context = 64;
    o.exact_matmul = !q8_act;
    if (m) CHECK_OK(qiao_engine_create(m, &o, &e));
    if (e == NULL) {
      qiao_model_close(m);
      continue;
    }
    CHECK_OK(all_logits(e, seq, N_SEQ, got));
    double worst = 0, worst_format = 0;
    size_t guaranteed = 0, agreed = 0;
    for (size_t p = 0; p < N_SEQ; p++) {
      double row_bound = 0;
      for (size_t i = 0; i < V; i++) {
        double err = fabs((double)got[p * V + i] - want[p * V + i]);
        double b = bound[p * V + i] + slack[p * V + i];
        worst = fmax(worst, err / b);
        if (bound[p * V + i] > 0) worst_format = fmax(worst_format, err / bound[p * V + i]);
        row_bound = fmax(row_bound, b);
      }
      size_t top = 0, mine = 0;
      for (size_t i = 0; i < V; i++) {
        if (want[p * V + i] > want[p * V + top]) top = i;
        if (got[p * V + i] > got[p * V + mine]) mine = i;
      }
      size_t second = top == 0 ? 1 : 0;
      for (size_t i = 0; i < V; i++)
        if (i != top && want[p * V + i] > want[p * V + second]) second = i;
      if (want[p * V + top] - want[p * V + second] > 2 * row_bound) {
        guaranteed++;
        agreed += mine == top;
      }
    }
    printf("output.weight %-4s%s: worst |logit error| / derived bound %.3g (without the f32 slack: "
           "%.3g); argmax guaranteed at %zu of %d positions, equal at %zu\n",
           name, q8_act ? " (Q8 activations)" : "", worst, worst_format, guaranteed, N_SEQ, agreed);
    CHECK(worst <= 1.0);
    CHECK(agreed == guaranteed);
    if (dtypes[d] == QIAO_DTYPE_Q8_0) CHECK(guaranteed > 0); /* the check has teeth */
    qiao_engine_destroy(e);
    qiao_model_close(m);
    unlink(path);
  }
  qiao_model_close(src);
  llama_f64_free(&ref);
  free(want), free(got), free(h), free(w), free(bound), free(slack), free(hf), free(abound),
      free(wb);
  TEST_END();
}

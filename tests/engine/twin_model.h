/* A random model whose matrices are quantized blocks, run by the engine on
 * the CPU backend against its f32 twin (the same blocks dequantized by an
 * implementation separate from the backend's kernels); shared by the tests
 * of block dtypes (kquant_model, iq4_model). The model is a LLaMA of dim
 * 256 and ffn 512 (rows that whole 256-element super-blocks fit) with
 * stories260K's tokenizer and metadata. twin_model_run:
 *   - writes it as .qiao and .gguf and reads both back: the blocks unchanged;
 *   - with exact activations its logits equal the twin's within binary32
 *     rounding (1e-5 relative L2), and its 16 greedy ids are the same;
 *   - with Q8 activations (the default for quantized weights) prints the
 *     distance to the twin (the activations' quantization, bounded per
 *     matmul by device-abi.md §11.4, not through the network), held under
 *     q8_bound when it is positive. */
#ifndef QIAO_TEST_TWIN_MODEL_H
#define QIAO_TEST_TWIN_MODEL_H

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine_test_util.h"
#include "format/model_internal.h"
#include "qiao/model.h"

enum {
  TWIN_DIM = 256,
  TWIN_FFN = 512,
  TWIN_LAYERS = 2,
  TWIN_HEADS = 8,
  TWIN_KV_HEADS = 4,
  TWIN_HEAD_DIM = 32,
  TWIN_N_PROMPT = 6,
  TWIN_N_GREEDY = 16
};

static uint64_t twin_rng = 0x853c49e6748fea9bull;
static inline uint32_t twin_next(void) {
  twin_rng = twin_rng * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(twin_rng >> 32);
}
static inline float twin_uniform(float lo, float hi) {
  return lo + (hi - lo) * (float)(twin_next() >> 8) / (float)(1u << 24);
}

/* The tensors' data, owned here (a model built in memory only points at
 * it), freed once a variant's models are closed. */
static void *twin_owned[64];
static int twin_n_owned;
static inline void *twin_keep(void *p) {
  if (twin_n_owned < 64) twin_owned[twin_n_owned++] = p;
  return p;
}
static inline void twin_free_data(void) {
  while (twin_n_owned > 0)
    free(twin_owned[--twin_n_owned]);
}

/* Adds matrix `name` of rows x cols to q (blocks) and d (their f32 values,
 * kept with twin_keep); `tensor` counts the matrices from 0, `scale` is
 * about the weights' RMS. */
typedef void (*twin_add_matrix_fn)(qiao_model *q, qiao_model *d, const char *name, uint64_t rows,
                                   uint64_t cols, int tensor, float scale, void *user);

static inline void twin_add_norm(qiao_model *q, qiao_model *d, const char *name) {
  float *w = twin_keep(malloc(TWIN_DIM * 4));
  uint64_t shape[1] = {TWIN_DIM};
  for (int i = 0; i < TWIN_DIM; i++)
    w[i] = twin_uniform(0.8f, 1.2f);
  CHECK_OK(qiao__model_add_tensor(q, name, QIAO_DTYPE_F32, 1, shape, w, TWIN_DIM * 4));
  CHECK_OK(qiao__model_add_tensor(d, name, QIAO_DTYPE_F32, 1, shape, w, TWIN_DIM * 4));
}

static inline bool twin_is_override(const char *key) {
  static const char *const keys[] = {"model.dim",      "model.ffn_dim",       "model.n_layers",
                                     "model.n_heads",  "model.n_kv_heads",    "model.head_dim",
                                     "model.rope.dim", "model.context_length"};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
    if (strcmp(key, keys[i]) == 0) return true;
  return false;
}

/* src's metadata (tokenizer, template, ...) with this model's shape. */
static inline void twin_set_metadata(const qiao_model *src, qiao_model *m) {
  for (uint64_t i = 0; i < qiao_model_kv_count(src); i++) {
    const qiao_kv *kv = qiao_model_kv_at(src, i);
    if (!twin_is_override(kv->key)) CHECK_OK(qiao__model_set_kv(m, kv));
  }
  CHECK_OK(qiao__model_set_u32(m, "model.dim", TWIN_DIM));
  CHECK_OK(qiao__model_set_u32(m, "model.ffn_dim", TWIN_FFN));
  CHECK_OK(qiao__model_set_u32(m, "model.n_layers", TWIN_LAYERS));
  CHECK_OK(qiao__model_set_u32(m, "model.n_heads", TWIN_HEADS));
  CHECK_OK(qiao__model_set_u32(m, "model.n_kv_heads", TWIN_KV_HEADS));
  CHECK_OK(qiao__model_set_u32(m, "model.head_dim", TWIN_HEAD_DIM));
  CHECK_OK(qiao__model_set_u32(m, "model.rope.dim", TWIN_HEAD_DIM));
  CHECK_OK(qiao__model_set_u32(m, "model.context_length", 128));
}

/* Logits of the prompt's positions and greedy ids. */
static inline void twin_evaluate(qiao_model *m, bool exact, const int32_t *prompt, float *logits,
                                 int32_t *ids) {
  qiao_engine *e = NULL;
  qiao_engine_options o = qiao_engine_default_options();
  o.n_threads = 2;
  o.max_context = 64;
  o.exact_matmul = exact;
  CHECK_OK(qiao_engine_create(m, &o, &e));
  if (e == NULL) return;
  CHECK_OK(all_logits(e, prompt, TWIN_N_PROMPT, logits));
  CHECK_OK(greedy(e, prompt, TWIN_N_PROMPT, ids, TWIN_N_GREEDY));
  qiao_engine_destroy(e);
}

/* Builds, writes, reads back and runs the variant `name` (files in dir). */
static inline void twin_model_run(const qiao_model *src, const char *dir, const char *name,
                                  twin_add_matrix_fn add_matrix, void *user, double q8_bound) {
  qiao_model *q = NULL, *d = NULL;
  char qpath[4096], dpath[4096], gpath[4096];
  snprintf(qpath, sizeof(qpath), "%s/%s.qiao", dir, name);
  snprintf(gpath, sizeof(gpath), "%s/%s.gguf", dir, name);
  snprintf(dpath, sizeof(dpath), "%s/%s-f32.gguf", dir, name);
  CHECK_OK(qiao__model_create(qpath, "qiao", &q));
  CHECK_OK(qiao__model_create(dpath, "gguf", &d));
  if (q == NULL || d == NULL) return;
  twin_set_metadata(src, q);
  twin_set_metadata(src, d);
  uint32_t vocab = 0;
  CHECK_OK(qiao_model_get_u32(src, "model.vocab_size", &vocab));
  int t = 0;
  add_matrix(q, d, "output.weight", vocab, TWIN_DIM, t++, 0.1f, user);
  add_matrix(q, d, "token_embd.weight", vocab, TWIN_DIM, t++, 1.0f, user);
  twin_add_norm(q, d, "output_norm.weight");
  char tensor[64];
  for (int l = 0; l < TWIN_LAYERS; l++) {
#define MAT(suffix, rows, cols, scale)                                                             \
  snprintf(tensor, sizeof(tensor), "blk.%d.%s", l, suffix);                                        \
  add_matrix(q, d, tensor, rows, cols, t++, scale, user)
    MAT("attn_q.weight", TWIN_DIM, TWIN_DIM, 0.1f);
    MAT("attn_k.weight", TWIN_KV_HEADS * TWIN_HEAD_DIM, TWIN_DIM, 0.1f);
    MAT("attn_v.weight", TWIN_KV_HEADS * TWIN_HEAD_DIM, TWIN_DIM, 0.1f);
    MAT("attn_output.weight", TWIN_DIM, TWIN_DIM, 0.06f);
    MAT("ffn_gate.weight", TWIN_FFN, TWIN_DIM, 0.1f);
    MAT("ffn_up.weight", TWIN_FFN, TWIN_DIM, 0.1f);
    MAT("ffn_down.weight", TWIN_DIM, TWIN_FFN, 0.05f);
#undef MAT
    snprintf(tensor, sizeof(tensor), "blk.%d.attn_norm.weight", l);
    twin_add_norm(q, d, tensor);
    snprintf(tensor, sizeof(tensor), "blk.%d.ffn_norm.weight", l);
    twin_add_norm(q, d, tensor);
  }
  qiao_convert_options keep = {
      .struct_size = sizeof(keep), .format = QIAO_FILE_QIAO, .weight_dtype = QIAO_DTYPE_COUNT};
  CHECK_OK(qiao_model_write(q, qpath, &keep));
  keep.format = QIAO_FILE_GGUF;
  CHECK_OK(qiao_model_write(d, dpath, &keep));
  CHECK_OK(qiao_model_write(q, gpath, &keep));

  /* Read back: the same blocks from .qiao and .gguf. */
  qiao_model *rq = NULL, *rg = NULL, *rd = NULL;
  CHECK_OK(qiao_model_open(qpath, NULL, &rq));
  CHECK_OK(qiao_model_open(gpath, NULL, &rg));
  CHECK_OK(qiao_model_open(dpath, NULL, &rd));
  if (rq) CHECK_OK(qiao_model_validate(rq));
  if (rg) CHECK_OK(qiao_model_validate(rg));
  for (uint64_t i = 0; rq && rg && i < qiao_model_tensor_count(q); i++) {
    const qiao_tensor *a = qiao_model_tensor_at(q, i);
    const qiao_tensor *b = qiao_model_tensor_find(rq, a->name),
                      *c = qiao_model_tensor_find(rg, a->name);
    CHECK(b && c && b->dtype == a->dtype && c->dtype == a->dtype && b->n_bytes == a->n_bytes &&
          c->n_bytes == a->n_bytes);
    if (b && c && b->n_bytes == a->n_bytes && c->n_bytes == a->n_bytes)
      CHECK(memcmp(b->data, a->data, a->n_bytes) == 0 && memcmp(c->data, a->data, a->n_bytes) == 0);
  }

  /* The engine on the blocks against the engine on the twin. */
  int32_t prompt[TWIN_N_PROMPT] = {1, 403, 407, 261, 378, 9};
  size_t n_logits = (size_t)TWIN_N_PROMPT * vocab;
  float *lq = malloc(n_logits * 4), *lg = malloc(n_logits * 4), *ld = malloc(n_logits * 4),
        *l8 = malloc(n_logits * 4);
  int32_t iq[TWIN_N_GREEDY] = {0}, ig[TWIN_N_GREEDY] = {0}, id[TWIN_N_GREEDY] = {0},
          i8[TWIN_N_GREEDY] = {0};
  if (rq && rg && rd) {
    twin_evaluate(rq, true, prompt, lq, iq);
    twin_evaluate(rg, true, prompt, lg, ig);
    twin_evaluate(rd, true, prompt, ld, id);
    twin_evaluate(rq, false, prompt, l8, i8);
    double eq = rel_l2(lq, ld, n_logits), eg = rel_l2(lg, ld, n_logits);
    double e8 = rel_l2(l8, ld, n_logits);
    int same8 = 0;
    while (same8 < TWIN_N_GREEDY && i8[same8] == id[same8])
      same8++;
    fprintf(stderr,
            "%s: exact activations: logits %.2e (.qiao) %.2e (.gguf) from the f32 twin; "
            "Q8 activations: %.2e, first %d of %d greedy ids equal (information)\n",
            name, eq, eg, e8, same8, TWIN_N_GREEDY);
    CHECK(eq <= 1e-5 && eg <= 1e-5);
    if (q8_bound > 0) CHECK(e8 <= q8_bound);
    CHECK(memcmp(iq, id, sizeof(iq)) == 0 && memcmp(ig, id, sizeof(ig)) == 0);
  }
  free(lq);
  free(lg);
  free(ld);
  free(l8);
  qiao_model_close(rq);
  qiao_model_close(rg);
  qiao_model_close(rd);
  qiao_model_close(q);
  qiao_model_close(d);
  twin_free_data();
  unlink(qpath);
  unlink(gpath);
  unlink(dpath);
}

#endif

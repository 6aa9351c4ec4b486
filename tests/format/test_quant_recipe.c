/* llama.cpp's per-tensor recipe for its named mixes where no fallback hides
 * it: a LLaMA-shaped model of 16 layers whose rows are whole 256-element
 * super-blocks (dim 256, ffn 512), untied and tied, through
 * qiao_convert_tensor_dtype. The expected types are what llama-quantize
 * (../shared/peers' llama.cpp) wrote for this very model saved as f32 GGUF
 * (run this program with an output path to write it). With 16 layers, "more
 * bits" are layers 0, 1, 4, 7, 10, 13, 14 and 15. */
#include <stdio.h>
#include <string.h>

#include "format/model_internal.h"
#include "qiao/model.h"
#include "test_util.h"

#define N_LAYERS 16
#define DIM 256
#define FFN 512
#define VOCAB 256

static const float zeros[FFN * DIM];

static qiao_model *build(bool tied) {
  qiao_model *m = NULL;
  CHECK_OK(qiao__model_create("recipe", "qiao", &m));
  if (m == NULL) return NULL;
  CHECK_OK(qiao__model_set_string(m, "general.architecture", "llama", 5));
  CHECK_OK(qiao__model_set_u32(m, "model.vocab_size", VOCAB));
  CHECK_OK(qiao__model_set_u32(m, "model.context_length", 256));
  CHECK_OK(qiao__model_set_u32(m, "model.dim", DIM));
  CHECK_OK(qiao__model_set_u32(m, "model.n_layers", N_LAYERS));
  CHECK_OK(qiao__model_set_u32(m, "model.n_heads", 4));
  CHECK_OK(qiao__model_set_u32(m, "model.n_kv_heads", 4));
  CHECK_OK(qiao__model_set_u32(m, "model.head_dim", 64));
  CHECK_OK(qiao__model_set_u32(m, "model.ffn_dim", FFN));
  CHECK_OK(qiao__model_set_f32(m, "model.norm_eps", 1e-5f));
  CHECK_OK(qiao__model_set_bool(m, "model.tied_embeddings", tied));
  CHECK_OK(qiao__model_set_string(m, "tokenizer.model", "none", 4));
  const uint64_t embd[] = {VOCAB, DIM}, norm[] = {DIM};
  CHECK_OK(qiao__model_add_tensor(m, "token_embd.weight", QIAO_DTYPE_F32, 2, embd, zeros,
                                  VOCAB * DIM * 4));
  if (!tied)
    CHECK_OK(qiao__model_add_tensor(m, "output.weight", QIAO_DTYPE_F32, 2, embd, zeros,
                                    VOCAB * DIM * 4));
  CHECK_OK(
      qiao__model_add_tensor(m, "output_norm.weight", QIAO_DTYPE_F32, 1, norm, zeros, DIM * 4));
  for (int l = 0; l < N_LAYERS; l++) {
    const struct {
      const char *suffix;
      uint64_t rows, cols;
    } mats[] = {{"attn_q.weight", DIM, DIM},   {"attn_k.weight", DIM, DIM},
                {"attn_v.weight", DIM, DIM},   {"attn_output.weight", DIM, DIM},
                {"ffn_gate.weight", FFN, DIM}, {"ffn_up.weight", FFN, DIM},
                {"ffn_down.weight", DIM, FFN}, {"attn_norm.weight", DIM, 0},
                {"ffn_norm.weight", DIM, 0}};
    for (size_t i = 0; i < sizeof(mats) / sizeof(mats[0]); i++) {
      char name[64];
      snprintf(name, sizeof(name), "blk.%d.%s", l, mats[i].suffix);
      const uint64_t dims[] = {mats[i].rows, mats[i].cols};
      uint32_t n_dims = mats[i].cols ? 2 : 1;
      uint64_t n = mats[i].rows * (mats[i].cols ? mats[i].cols : 1);
      CHECK_OK(qiao__model_add_tensor(m, name, QIAO_DTYPE_F32, n_dims, dims, zeros, n * 4));
    }
  }
  return m;
}

/* NAME=TYPE of every tensor that is not f32, in tensor order. */
static void plan(const qiao_model *m, qiao_dtype base, qiao_quant_mix mix, char *out, size_t cap) {
  qiao_convert_options o = {sizeof(o), QIAO_FILE_GGUF, base, false};
  qiao_quantize_options q = {sizeof(q), mix, false};
  size_t len = 0;
  out[0] = '\0';
  for (uint64_t i = 0; i < qiao_model_tensor_count(m); i++) {
    qiao_dtype got = QIAO_DTYPE_COUNT, wanted = QIAO_DTYPE_COUNT;
    CHECK_OK(qiao_convert_tensor_dtype(m, &o, &q, i, &got, &wanted));
    CHECK(got == wanted); /* no fallback in this model */
    if (got == QIAO_DTYPE_F32 || got == QIAO_DTYPE_COUNT) continue;
    len += (size_t)snprintf(out + len, cap - len, "%s=%s ", qiao_model_tensor_at(m, i)->name,
                            qiao_dtype_get_info(got)->name);
  }
}

/* The types of one mix, as a list per layer: which layers' attn_v and
 * ffn_down differ from the base type, and what the others get. */
static void expect(const char *what, const char *got, const char *expected) {
  if (strcmp(got, expected) != 0) {
    fprintf(stderr, "%s:\n  got:      %s\n  expected: %s\n", what, got, expected);
    test_failures++;
  }
}

/* The expected list for a model of 16 layers: attn_v of layer l gets
 * v[l], ffn_down d[l], every other matrix `base`; output (or the tied
 * embeddings) `out`. */
static void expected_list(bool tied, const char *base, const char *out, const char *const *v,
                          const char *const *d, char *buf, size_t cap) {
  size_t len = 0;
  len += (size_t)snprintf(buf + len, cap - len, "token_embd.weight=%s ", tied ? out : base);
  if (!tied) len += (size_t)snprintf(buf + len, cap - len, "output.weight=%s ", out);
  for (int l = 0; l < N_LAYERS; l++)
    len += (size_t)snprintf(buf + len, cap - len,
                            "blk.%d.attn_q.weight=%s blk.%d.attn_k.weight=%s "
                            "blk.%d.attn_v.weight=%s blk.%d.attn_output.weight=%s "
                            "blk.%d.ffn_gate.weight=%s blk.%d.ffn_up.weight=%s "
                            "blk.%d.ffn_down.weight=%s ",
                            l, base, l, base, l, v[l], l, base, l, base, l, base, l, d[l]);
}

int main(int argc, char **argv) {
  if (argc == 2) { /* write the model for llama-quantize */
    qiao_model *m = build(false);
    qiao_convert_options o = {sizeof(o), QIAO_FILE_GGUF, QIAO_DTYPE_COUNT, false};
    CHECK_OK(qiao_model_write(m, argv[1], &o));
    qiao_model_close(m);
    TEST_END();
  }
  /* "more bits" layers for n = 16: 0, 1, 4, 7, 10, 13, 14, 15 */
  static const char *const m4_v[N_LAYERS] = {"q6_k", "q6_k", "q4_k", "q4_k", "q6_k", "q4_k",
                                             "q4_k", "q6_k", "q4_k", "q4_k", "q6_k", "q4_k",
                                             "q4_k", "q6_k", "q6_k", "q6_k"};
  static const char *const m5_v[N_LAYERS] = {"q6_k", "q6_k", "q5_k", "q5_k", "q6_k", "q5_k",
                                             "q5_k", "q6_k", "q5_k", "q5_k", "q6_k", "q5_k",
                                             "q5_k", "q6_k", "q6_k", "q6_k"};
  /* q4_k_s: attn_v of the first 4 layers and ffn_down of the first 2 in q5_k */
  static const char *const s4_v[N_LAYERS] = {"q5_k", "q5_k", "q5_k", "q5_k", "q4_k", "q4_k",
                                             "q4_k", "q4_k", "q4_k", "q4_k", "q4_k", "q4_k",
                                             "q4_k", "q4_k", "q4_k", "q4_k"};
  static const char *const s4_d[N_LAYERS] = {"q5_k", "q5_k", "q4_k", "q4_k", "q4_k", "q4_k",
                                             "q4_k", "q4_k", "q4_k", "q4_k", "q4_k", "q4_k",
                                             "q4_k", "q4_k", "q4_k", "q4_k"};
  static const char *const all4[N_LAYERS] = {"q4_k", "q4_k", "q4_k", "q4_k", "q4_k", "q4_k",
                                             "q4_k", "q4_k", "q4_k", "q4_k", "q4_k", "q4_k",
                                             "q4_k", "q4_k", "q4_k", "q4_k"};
  static const char *const all5[N_LAYERS] = {"q5_k", "q5_k", "q5_k", "q5_k", "q5_k", "q5_k",
                                             "q5_k", "q5_k", "q5_k", "q5_k", "q5_k", "q5_k",
                                             "q5_k", "q5_k", "q5_k", "q5_k"};
  static char got[16384], want[16384];
  for (int tied = 0; tied < 2; tied++) {
    qiao_model *m = build(tied);
    if (m == NULL) continue;
    const struct {
      const char *name;
      qiao_dtype base;
      qiao_quant_mix mix;
      const char *base_name, *out;
      const char *const *v, *const *d;
    } cases[] = {
        {"q4_k_m", QIAO_DTYPE_Q4_K, QIAO_MIX_Q4_K_M, "q4_k", "q6_k", m4_v, m4_v},
        {"q5_k_m", QIAO_DTYPE_Q5_K, QIAO_MIX_Q5_K_M, "q5_k", "q6_k", m5_v, m5_v},
        {"q4_k_s", QIAO_DTYPE_Q4_K, QIAO_MIX_Q4_K_S, "q4_k", "q6_k", s4_v, s4_d},
        {"q5_k_s", QIAO_DTYPE_Q5_K, QIAO_MIX_Q5_K_S, "q5_k", "q6_k", all5, all5},
        /* plain types: every matrix */
        {"q4_k", QIAO_DTYPE_Q4_K, QIAO_MIX_NONE, "q4_k", "q4_k", all4, all4},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
      plan(m, cases[c].base, cases[c].mix, got, sizeof(got));
      expected_list(tied, cases[c].base_name, cases[c].out, cases[c].v, cases[c].d, want,
                    sizeof(want));
      char what[64];
      snprintf(what, sizeof(what), "%s (%s)", cases[c].name, tied ? "tied" : "untied");
      expect(what, got, want);
    }
    /* a mix needs its base type */
    qiao_convert_options o = {sizeof(o), QIAO_FILE_GGUF, QIAO_DTYPE_Q6_K, false};
    qiao_quantize_options q = {sizeof(q), QIAO_MIX_Q4_K_M, false};
    qiao_dtype a, b;
    CHECK_ERR(qiao_convert_tensor_dtype(m, &o, &q, 0, &a, &b), QIAO_INVALID_ARGUMENT);
    qiao_model_close(m);
  }
  TEST_END();
}

/* Which dtype each tensor gets from `qiao convert --type` (format.md §4.2):
 * plain types give every weight matrix the type; llama.cpp's named mixes
 * (Q4_K_M, Q4_K_S, Q5_K_M, Q5_K_S) follow its per-tensor recipe, so that a
 * file qiao writes has the types a user gets from llama-quantize. Rows that
 * are not whole blocks fall back as llama.cpp does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/model_write.h"

static bool has_suffix(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The layer number of "blk.N....", or -1. */
static int layer_of(const char *name) {
  int layer = -1;
  if (sscanf(name, "blk.%d.", &layer) != 1) return -1;
  return layer;
}

/* The types of 1.1 and 1.2 (llama.cpp's rule of which tensors to quantize). */
static bool is_new_type(qiao_dtype t) {
  return t != QIAO_DTYPE_F32 && t != QIAO_DTYPE_F16 && t != QIAO_DTYPE_BF16 &&
         t != QIAO_DTYPE_Q8_0 && t != QIAO_DTYPE_Q4_0;
}

/* llama.cpp quantizes a tensor of 2+ dimensions whose name ends in
 * "weight", except norms and MoE routers (kept as they are). */
static bool allows_quantization(const qiao_tensor *t) {
  return t->n_dims >= 2 && has_suffix(t->name, "weight") && !strstr(t->name, "_norm.weight") &&
         !strstr(t->name, "ffn_gate_inp.weight");
}

static bool is_attn_v(const char *name) {
  return strstr(name, "attn_v.weight") || strstr(name, "attn_qkv.weight") ||
         strstr(name, "attn_kv_b.weight");
}

/* llama.cpp's share of layers that get more bits: the first and last
 * eighth and every third layer between. */
static bool use_more_bits(int i, int n) {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* The type a tensor whose rows are not whole blocks of `t` gets instead
 * (llama.cpp's fallbacks for the k-quants and iq4_xs; f16 after that). */
static qiao_dtype fall_back(qiao_dtype t, uint64_t row) {
  const qiao_dtype_info *info = qiao_dtype_get_info(t);
  if (row % info->block_elems == 0) return t;
  switch (t) {
  case QIAO_DTYPE_Q2_K:
  case QIAO_DTYPE_Q3_K: t = QIAO_DTYPE_Q4_0; break;
  case QIAO_DTYPE_Q4_K: t = QIAO_DTYPE_Q5_0; break;
  case QIAO_DTYPE_Q5_K: t = QIAO_DTYPE_Q5_1; break;
  case QIAO_DTYPE_Q6_K: t = QIAO_DTYPE_Q8_0; break;
  case QIAO_DTYPE_IQ4_XS: t = QIAO_DTYPE_IQ4_NL; break;
  default: return QIAO_DTYPE_F16;
  }
  return row % qiao_dtype_get_info(t)->block_elems == 0 ? t : QIAO_DTYPE_F16;
}

/* llama.cpp visits tensors by layer number (none first), then by name; its
 * counters of attn_v and ffn_down tensors follow that order. */
typedef struct {
  int layer;
  const char *name;
  uint64_t index;
} visit;

static int by_layer_then_name(const void *a, const void *b) {
  const visit *va = a, *vb = b;
  if (va->layer != vb->layer) return va->layer < vb->layer ? -1 : 1;
  return strcmp(va->name, vb->name);
}

/* The mix's type for one quantizable tensor (before fallbacks). */
static qiao_dtype mix_type(const qiao_tensor *t, qiao_dtype base, qiao_quant_mix mix, bool tied,
                           int i_attn_v, int n_attn_v, int i_ffn_down, int n_layer,
                           uint32_t n_expert) {
  const char *name = t->name;
  bool m_mix = mix == QIAO_MIX_Q4_K_M || mix == QIAO_MIX_Q5_K_M;
  if (strcmp(name, "output.weight") == 0 || (tied && strcmp(name, "token_embd.weight") == 0)) {
    if (t->shape[t->n_dims - 1] % qiao_dtype_get_info(base)->block_elems != 0)
      return QIAO_DTYPE_Q8_0;
    return QIAO_DTYPE_Q6_K;
  }
  if (strcmp(name, "token_embd.weight") == 0) return base;
  if (is_attn_v(name)) {
    if (n_expert == 8) return QIAO_DTYPE_Q8_0;
    if (m_mix && use_more_bits(i_attn_v, n_attn_v)) return QIAO_DTYPE_Q6_K;
    if (mix == QIAO_MIX_Q4_K_S && i_attn_v < 4) return QIAO_DTYPE_Q5_K;
    return base;
  }
  if (strstr(name, "attn_k.weight")) return n_expert == 8 ? QIAO_DTYPE_Q8_0 : base;
  if (strstr(name, "ffn_down")) {
    if (m_mix && use_more_bits(i_ffn_down, n_layer)) return QIAO_DTYPE_Q6_K;
    if (mix == QIAO_MIX_Q4_K_S && i_ffn_down < n_layer / 8) return QIAO_DTYPE_Q5_K;
    return base;
  }
  if (strstr(name, "attn_output.weight") && n_expert == 8 &&
      (mix == QIAO_MIX_Q4_K_M || mix == QIAO_MIX_Q4_K_S))
    return QIAO_DTYPE_Q5_K;
  return base;
}

qiao_status *qiao__plan_dtypes(const qiao_model *model, qiao_dtype want, qiao_quant_mix mix,
                               qiao_dtype *out_dtypes, qiao_dtype *out_wanted) {
  uint64_t n = qiao_model_tensor_count(model);
  if (mix != QIAO_MIX_NONE &&
      !((mix == QIAO_MIX_Q4_K_M || mix == QIAO_MIX_Q4_K_S) ? want == QIAO_DTYPE_Q4_K
                                                           : want == QIAO_DTYPE_Q5_K))
    return qiao__error(QIAO_INVALID_ARGUMENT, "convert: mix %d needs its base type", (int)mix);
  qiao_hparams hp = {0};
  if (mix != QIAO_MIX_NONE) {
    qiao_status *st = qiao_model_get_hparams(model, &hp);
    if (st) return st;
  }
  /* llama.cpp's visiting order, and each tensor's rank among the attn_v
   * and ffn_down tensors in it */
  visit *order = malloc((n ? n : 1) * sizeof(*order));
  int *rank = malloc((n ? n : 1) * sizeof(*rank));
  if (order == NULL || rank == NULL) {
    free(order);
    free(rank);
    return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  }
  bool tied = true;
  for (uint64_t i = 0; i < n; i++) {
    const char *name = qiao_model_tensor_at(model, i)->name;
    order[i] = (visit){layer_of(name), name, i};
    rank[i] = 0;
    if (strcmp(name, "output.weight") == 0) tied = false;
  }
  qsort(order, (size_t)n, sizeof(*order), by_layer_then_name);
  int n_attn_v = 0, n_ffn_down = 0;
  for (uint64_t k = 0; k < n; k++) {
    const qiao_tensor *t = qiao_model_tensor_at(model, order[k].index);
    if (is_attn_v(t->name)) rank[order[k].index] = n_attn_v++;
    if (strstr(t->name, "ffn_down") && allows_quantization(t)) rank[order[k].index] = n_ffn_down++;
  }
  free(order);
  for (uint64_t i = 0; i < n; i++) {
    const qiao_tensor *t = qiao_model_tensor_at(model, i);
    uint64_t row = t->shape[t->n_dims - 1];
    qiao_dtype wanted;
    if (want == QIAO_DTYPE_COUNT || t->dtype == QIAO_DTYPE_I32)
      wanted = t->dtype;
    else if (t->n_dims == 1)
      wanted = QIAO_DTYPE_F32;
    else if (is_new_type(want) && !allows_quantization(t))
      wanted = t->dtype; /* norms and routers stay as they are, as in llama.cpp */
    else if (mix == QIAO_MIX_NONE)
      wanted = want;
    else {
      /* MoE layers count by the layer in the name, dense ones in order */
      int i_ffn_down = hp.n_experts > 1 ? layer_of(t->name) : rank[i];
      wanted = mix_type(t, want, mix, tied, rank[i], n_attn_v, i_ffn_down, (int)hp.n_layers,
                        hp.n_experts);
    }
    out_wanted[i] = wanted;
    out_dtypes[i] = wanted == t->dtype ? wanted : fall_back(wanted, row);
  }
  free(rank);
  return NULL;
}

qiao_status *qiao_convert_tensor_dtype(const qiao_model *model, const qiao_convert_options *options,
                                       const qiao_quantize_options *quant, uint64_t index,
                                       qiao_dtype *out_dtype, qiao_dtype *out_wanted) {
  if (model == NULL || options == NULL || index >= qiao_model_tensor_count(model))
    return qiao__error(QIAO_INVALID_ARGUMENT,
                       "qiao_convert_tensor_dtype: model, options and an index below the "
                       "tensor count are required");
  uint64_t n = qiao_model_tensor_count(model);
  qiao_dtype *types = malloc((size_t)n * 2 * sizeof(*types));
  if (types == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  qiao_status *st = qiao__plan_dtypes(model, options->weight_dtype,
                                      quant ? quant->mix : QIAO_MIX_NONE, types, types + n);
  if (st == NULL) {
    *out_dtype = types[index];
    *out_wanted = types[n + index];
  }
  free(types);
  return st;
}

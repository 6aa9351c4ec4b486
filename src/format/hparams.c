/* Reading the decoder hyperparameters from the canonical keys of
 * docs/spec/format.md §7.2, with their defaults and consistency checks. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "format/model_internal.h"

/* Reads an optional u32: `def` when absent, an error when present but wrong. */
static qiao_status *opt_u32(const qiao_model *m, const char *key, uint32_t def, uint32_t *out) {
  if (qiao_model_kv_find(m, key) == NULL) {
    *out = def;
    return NULL;
  }
  return qiao_model_get_u32(m, key, out);
}

static qiao_status *opt_f32(const qiao_model *m, const char *key, float def, float *out) {
  if (qiao_model_kv_find(m, key) == NULL) {
    *out = def;
    return NULL;
  }
  QIAO__TRY(qiao_model_get_f32(m, key, out));
  if (!isfinite(*out)) return qiao__error(QIAO_MALFORMED, "metadata key %s: not finite", key);
  return NULL;
}

static qiao_status *opt_bool(const qiao_model *m, const char *key, bool def, bool *out) {
  if (qiao_model_kv_find(m, key) == NULL) {
    *out = def;
    return NULL;
  }
  return qiao_model_get_bool(m, key, out);
}

/* An optional string compared against `choices` (NULL-terminated); the index
 * of the match, `def` when absent. */
static qiao_status *opt_choice(const qiao_model *m, const char *key, const char *const *choices,
                               int def, int *out) {
  if (qiao_model_kv_find(m, key) == NULL) {
    *out = def;
    return NULL;
  }
  qiao_string s;
  QIAO__TRY(qiao_model_get_string(m, key, &s));
  for (int i = 0; choices[i]; i++) {
    if (strlen(choices[i]) == s.len && memcmp(choices[i], s.data, s.len) == 0) {
      *out = i;
      return NULL;
    }
  }
  return qiao__error(QIAO_UNSUPPORTED, "metadata key %s: unknown value '%.*s'", key,
                     (int)(s.len > 64 ? 64 : s.len), s.data);
}

static qiao_status *req_nonzero(const qiao_model *m, const char *key, uint32_t *out) {
  QIAO__TRY(qiao_model_get_u32(m, key, out));
  if (*out == 0) return qiao__error(QIAO_MALFORMED, "metadata key %s: must not be zero", key);
  return NULL;
}

static qiao_status *bad(const char *key, const char *problem) {
  return qiao__error(QIAO_MALFORMED, "metadata key %s: %s", key, problem);
}

/* Multi-head latent attention and DeepSeekMoE routing (deepseek2). */
static qiao_status *read_mla_moe(const qiao_model *m, qiao_hparams *h) {
  static const char *const gatings[] = {"softmax", "sigmoid", NULL};
  static const char *const group_scores[] = {"max", "top2_sum", NULL};
  const bool deepseek = strcmp(h->architecture, "deepseek2") == 0;
  QIAO__TRY(opt_u32(m, "model.mla.kv_lora_rank", 0, &h->kv_lora_rank));
  QIAO__TRY(opt_u32(m, "model.mla.q_lora_rank", 0, &h->q_lora_rank));
  if (deepseek && h->kv_lora_rank == 0)
    return bad("model.mla.kv_lora_rank", "missing or zero for a deepseek2 model");
  if (!deepseek && (h->kv_lora_rank != 0 || h->q_lora_rank != 0))
    return bad("model.mla.kv_lora_rank", "set for an architecture without latent attention");
  if (deepseek) {
    QIAO__TRY(req_nonzero(m, "model.mla.v_head_dim", &h->v_head_dim));
    if (h->rope_dim == 0 || h->rope_dim >= h->head_dim)
      return bad("model.rope.dim", "must be in [2, head_dim) for latent attention");
    if ((uint64_t)h->v_head_dim * h->n_heads > UINT32_MAX)
      return bad("model.mla.v_head_dim", "n_heads * v_head_dim overflows");
    if ((uint64_t)h->kv_lora_rank + h->rope_dim > UINT32_MAX)
      return bad("model.mla.kv_lora_rank", "kv_lora_rank + rope dim overflows");
  }
  int gating, score;
  QIAO__TRY(opt_u32(m, "model.moe.n_shared_experts", 0, &h->n_shared_experts));
  QIAO__TRY(opt_u32(m, "model.moe.n_dense_lead", 0, &h->n_dense_lead));
  QIAO__TRY(opt_choice(m, "model.moe.gating", gatings, 0, &gating));
  h->expert_gating = (uint32_t)gating;
  QIAO__TRY(opt_choice(m, "model.moe.group_score", group_scores, gating == 1 ? 1 : 0, &score));
  h->expert_group_score = (uint32_t)score;
  QIAO__TRY(opt_u32(m, "model.moe.n_groups", 0, &h->expert_groups));
  QIAO__TRY(opt_u32(m, "model.moe.n_groups_used", h->expert_groups, &h->expert_groups_used));
  QIAO__TRY(opt_f32(m, "model.moe.routed_scale", 1.0f, &h->expert_scale));
  if (!(h->expert_scale > 0)) return bad("model.moe.routed_scale", "must be positive");
  if (!deepseek &&
      (h->n_shared_experts != 0 || gating != 0 || h->expert_groups > 1 || h->expert_scale != 1.0f))
    return bad("model.moe.gating", "DeepSeekMoE routing set for an architecture without it");
  if ((h->n_shared_experts || h->expert_groups > 1) && h->n_experts == 0)
    return bad("model.moe.n_experts", "missing or zero with shared experts or expert groups");
  if (h->expert_groups > 1) {
    uint32_t per = h->n_experts / h->expert_groups;
    if (h->n_experts % h->expert_groups != 0)
      return bad("model.moe.n_groups", "does not divide model.moe.n_experts");
    if (h->expert_groups_used == 0 || h->expert_groups_used > h->expert_groups)
      return bad("model.moe.n_groups_used", "not in [1, model.moe.n_groups]");
    if (score == 1 && per < 2)
      return bad("model.moe.group_score", "top2_sum needs at least 2 experts per group");
    if ((uint64_t)per * h->expert_groups_used < h->n_experts_used)
      return bad("model.moe.n_groups_used", "the kept groups hold fewer experts than are used");
  }
  return NULL;
}

static qiao_status *read_hparams(const qiao_model *m, qiao_hparams *h) {
  static const char *const archs[] = {"llama", "qwen2", "qwen3", "qwen3moe", "deepseek2", NULL};
  static const char *const styles[] = {"normal", "neox", NULL};
  static const char *const scalings[] = {"none", "linear", "llama3", "yarn", NULL};
  memset(h, 0, sizeof(*h));

  int arch;
  if (qiao_model_kv_find(m, "general.architecture") == NULL)
    return bad("general.architecture", "missing");
  QIAO__TRY(opt_choice(m, "general.architecture", archs, 0, &arch));
  snprintf(h->architecture, sizeof(h->architecture), "%s", archs[arch]);

  QIAO__TRY(req_nonzero(m, "model.vocab_size", &h->vocab_size));
  QIAO__TRY(opt_u32(m, "model.context_length", 2048, &h->context_length));
  if (h->context_length == 0) return bad("model.context_length", "must not be zero");
  QIAO__TRY(req_nonzero(m, "model.dim", &h->dim));
  QIAO__TRY(req_nonzero(m, "model.n_layers", &h->n_layers));
  QIAO__TRY(req_nonzero(m, "model.n_heads", &h->n_heads));
  QIAO__TRY(opt_u32(m, "model.n_kv_heads", h->n_heads, &h->n_kv_heads));
  if (h->n_kv_heads == 0) return bad("model.n_kv_heads", "must not be zero");
  if (h->n_heads % h->n_kv_heads != 0)
    return bad("model.n_kv_heads", "does not divide model.n_heads");
  if (qiao_model_kv_find(m, "model.head_dim") == NULL && h->dim % h->n_heads != 0)
    return bad("model.head_dim", "missing, and model.dim is not a multiple of model.n_heads");
  QIAO__TRY(opt_u32(m, "model.head_dim", h->dim / h->n_heads, &h->head_dim));
  if (h->head_dim == 0) return bad("model.head_dim", "must not be zero");
  if ((uint64_t)h->head_dim * h->n_heads > UINT32_MAX)
    return bad("model.head_dim", "n_heads * head_dim overflows");

  QIAO__TRY(opt_u32(m, "model.moe.n_experts", 0, &h->n_experts));
  if (h->n_experts == 0 && strcmp(h->architecture, "qwen3moe") == 0)
    return bad("model.moe.n_experts", "missing or zero for a qwen3moe model");
  if (h->n_experts > 0) {
    QIAO__TRY(req_nonzero(m, "model.moe.n_experts_used", &h->n_experts_used));
    if (h->n_experts_used > h->n_experts)
      return bad("model.moe.n_experts_used", "larger than model.moe.n_experts");
    QIAO__TRY(req_nonzero(m, "model.moe.ffn_dim", &h->expert_ffn_dim));
    QIAO__TRY(opt_bool(m, "model.moe.norm_topk_prob", false, &h->expert_norm_topk));
    QIAO__TRY(opt_u32(m, "model.ffn_dim", 0, &h->ffn_dim));
  } else {
    uint32_t used = 0;
    QIAO__TRY(opt_u32(m, "model.moe.n_experts_used", 0, &used));
    if (used != 0) return bad("model.moe.n_experts_used", "set for a dense model (no experts)");
    QIAO__TRY(req_nonzero(m, "model.ffn_dim", &h->ffn_dim));
  }

  QIAO__TRY(opt_f32(m, "model.norm_eps", 1e-5f, &h->norm_eps));
  if (!(h->norm_eps > 0)) return bad("model.norm_eps", "must be positive");
  QIAO__TRY(opt_f32(m, "model.rope.theta", 10000.0f, &h->rope_theta));
  if (!(h->rope_theta > 0)) return bad("model.rope.theta", "must be positive");
  QIAO__TRY(opt_u32(m, "model.rope.dim", h->head_dim, &h->rope_dim));
  if (h->rope_dim > h->head_dim) return bad("model.rope.dim", "larger than model.head_dim");
  if (h->rope_dim % 2 != 0) return bad("model.rope.dim", "must be even");
  if (h->rope_dim > 0 && h->head_dim % 2 != 0)
    return bad("model.head_dim", "must be even when RoPE is applied");
  int style;
  bool pairs = strcmp(h->architecture, "llama") == 0 || strcmp(h->architecture, "deepseek2") == 0;
  QIAO__TRY(opt_choice(m, "model.rope.style", styles, pairs ? 0 : 1, &style));
  h->rope_neox = (uint32_t)style;
  int scaling;
  QIAO__TRY(opt_choice(m, "model.rope.scaling.type", scalings, 0, &scaling));
  h->rope_scaling = (qiao_rope_scaling)scaling;
  QIAO__TRY(opt_f32(m, "model.rope.scaling.factor", 1.0f, &h->rope_factor));
  if (!(h->rope_factor > 0)) return bad("model.rope.scaling.factor", "must be positive");
  QIAO__TRY(opt_f32(m, "model.rope.scaling.low_freq_factor", 1.0f, &h->rope_low_freq_factor));
  QIAO__TRY(opt_f32(m, "model.rope.scaling.high_freq_factor", 4.0f, &h->rope_high_freq_factor));
  QIAO__TRY(
      opt_u32(m, "model.rope.scaling.original_context_length", 8192, &h->rope_original_context));
  if (h->rope_scaling == QIAO_ROPE_SCALING_LLAMA3) {
    if (!(h->rope_low_freq_factor > 0) || !(h->rope_high_freq_factor > h->rope_low_freq_factor))
      return bad("model.rope.scaling.high_freq_factor",
                 "must be larger than a positive low_freq_factor");
    if (h->rope_original_context == 0)
      return bad("model.rope.scaling.original_context_length", "must not be zero");
  }

  h->attn_scale_mul = 1.0f;
  QIAO__TRY(opt_f32(m, "model.rope.scaling.yarn_beta_fast", 32.0f, &h->rope_yarn_beta_fast));
  QIAO__TRY(opt_f32(m, "model.rope.scaling.yarn_beta_slow", 1.0f, &h->rope_yarn_beta_slow));
  if (h->rope_scaling == QIAO_ROPE_SCALING_YARN) {
    if (!(h->rope_yarn_beta_fast > 0) || !(h->rope_yarn_beta_slow > 0))
      return bad("model.rope.scaling.yarn_beta_fast", "the YaRN betas must be positive");
    if (h->rope_original_context == 0)
      return bad("model.rope.scaling.original_context_length", "must not be zero");
    float log_mul = 0;
    QIAO__TRY(opt_f32(m, "model.rope.scaling.yarn_log_multiplier", 0.0f, &log_mul));
    double mscale = h->rope_factor > 1 ? 1.0 + log_mul * log((double)h->rope_factor) : 1.0;
    h->attn_scale_mul = (float)(mscale * mscale);
  }
  QIAO__TRY(read_mla_moe(m, h));

  QIAO__TRY(opt_u32(m, "model.sliding_window", 0, &h->sliding_window));
  QIAO__TRY(opt_bool(m, "model.tied_embeddings", false, &h->tied_embeddings));
  QIAO__TRY(opt_bool(m, "model.qkv_bias", false, &h->qkv_bias));
  QIAO__TRY(opt_bool(m, "model.qk_norm", false, &h->qk_norm));
  return NULL;
}

qiao_status *qiao_model_get_hparams(const qiao_model *model, qiao_hparams *out) {
  qiao_hparams h;
  qiao_status *st = read_hparams(model, &h);
  if (st) return qiao__annotate(st, "%s", qiao_model_path(model));
  *out = h;
  return NULL;
}

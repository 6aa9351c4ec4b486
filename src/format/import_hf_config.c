/* config.json of a Hugging Face model -> canonical hyperparameters.
 *
 * Both spellings of RoPE settings are read: published checkpoints write
 * `rope_theta` and `rope_scaling` at the top level; transformers 5 writes a
 * `rope_parameters` object holding `rope_theta` and `rope_type` (and the
 * scaling fields). Fields naming code (auto_map) are ignored. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "format/import_hf_internal.h"

#define CONFIG "config.json"

/* A field that is absent or JSON null counts as absent. */
static json_object *field(json_object *obj, const char *key) {
  json_object *v = NULL;
  if (obj == NULL || !json_object_object_get_ex(obj, key, &v)) return NULL;
  return json_object_is_type(v, json_type_null) ? NULL : v;
}

/* `v` (the value of `key`) as a u32. */
static qiao_status *u32_value(const char *dir, const char *key, json_object *v, uint32_t *out) {
  if (!json_object_is_type(v, json_type_int))
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": %s: not an integer", dir, key);
  int64_t x = json_object_get_int64(v);
  if (x < 0 || x > (int64_t)UINT32_MAX)
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": %s: %lld is out of range", dir, key,
                       (long long)x);
  *out = (uint32_t)x;
  return NULL;
}

static qiao_status *get_u32(const char *dir, json_object *obj, const char *key, bool required,
                            uint32_t fallback, uint32_t *out) {
  json_object *v = field(obj, key);
  if (v == NULL) {
    if (required) return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": %s: missing", dir, key);
    *out = fallback;
    return NULL;
  }
  return u32_value(dir, key, v, out);
}

static qiao_status *get_f32(const char *dir, json_object *obj, const char *key, float fallback,
                            float *out) {
  json_object *v = field(obj, key);
  if (v == NULL) {
    *out = fallback;
    return NULL;
  }
  if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": %s: not a number", dir, key);
  double x = json_object_get_double(v);
  if (!isfinite(x) || fabs(x) > 3.0e38)
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": %s: %g is out of range", dir, key, x);
  *out = (float)x;
  return NULL;
}

static qiao_status *get_bool(const char *dir, json_object *obj, const char *key, bool fallback,
                             bool *out, bool *out_stated) {
  json_object *v = field(obj, key);
  if (out_stated) *out_stated = v != NULL;
  if (v == NULL) {
    *out = fallback;
    return NULL;
  }
  if (!json_object_is_type(v, json_type_boolean))
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": %s: not true or false", dir, key);
  *out = json_object_get_boolean(v);
  return NULL;
}

bool qiao__hf_add_id(uint32_t *ids, uint32_t *n, uint32_t id) {
  for (uint32_t j = 0; j < *n; j++)
    if (ids[j] == id) return true;
  if (*n >= QIAO__HF_MAX_EOS_IDS) return false;
  ids[(*n)++] = id;
  return true;
}

qiao_status *qiao__hf_append_ids(const char *what, json_object *value, uint32_t *ids, uint32_t *n) {
  if (value == NULL || json_object_is_type(value, json_type_null)) return NULL;
  bool list = json_object_is_type(value, json_type_array);
  size_t count = list ? json_object_array_length(value) : 1;
  for (size_t i = 0; i < count; i++) {
    json_object *e = list ? json_object_array_get_idx(value, i) : value;
    int64_t x = json_object_is_type(e, json_type_int) ? json_object_get_int64(e) : -1;
    if (x < 0 || x > (int64_t)UINT32_MAX)
      return qiao__error(QIAO_MALFORMED, "%s: not a token id", what);
    if (!qiao__hf_add_id(ids, n, (uint32_t)x))
      return qiao__error(QIAO_LIMIT, "%s: more than %u ids", what, QIAO__HF_MAX_EOS_IDS);
  }
  return NULL;
}

typedef struct arch_entry {
  const char *hf_name, *architecture;
  bool permute_qk, qkv_bias, qk_norm, moe, mla;
} arch_entry;

static const arch_entry architectures[] = {
    {"LlamaForCausalLM", "llama", true, false, false, false, false},
    {"MistralForCausalLM", "llama", true, false, false, false, false},
    {"Qwen2ForCausalLM", "qwen2", false, true, false, false, false},
    {"Qwen3ForCausalLM", "qwen3", false, false, true, false, false},
    {"Qwen3MoeForCausalLM", "qwen3moe", false, false, true, true, false},
    {"DeepseekV2ForCausalLM", "deepseek2", false, false, false, false, true},
    {"DeepseekV3ForCausalLM", "deepseek2", false, false, false, false, true},
};

static qiao_status *parse_architecture(const char *dir, json_object *config, hf_config *cfg,
                                       const arch_entry **out) {
  json_object *list = field(config, "architectures");
  if (list == NULL || !json_object_is_type(list, json_type_array) ||
      json_object_array_length(list) != 1 ||
      !json_object_is_type(json_object_array_get_idx(list, 0), json_type_string))
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": architectures: expected a list of one name",
                       dir);
  const char *name = json_object_get_string(json_object_array_get_idx(list, 0));
  for (size_t i = 0; i < sizeof(architectures) / sizeof(architectures[0]); i++) {
    if (strcmp(name, architectures[i].hf_name) == 0) {
      snprintf(cfg->source_architecture, sizeof(cfg->source_architecture), "%s", name);
      cfg->architecture = architectures[i].architecture;
      *out = &architectures[i];
      return NULL;
    }
  }
  return qiao__error(QIAO_UNSUPPORTED,
                     "%s/" CONFIG ": architectures: '%.64s' is not supported (Llama, "
                     "Mistral, Qwen2, Qwen3, Qwen3Moe, DeepseekV2, DeepseekV3 ForCausalLM)",
                     dir, name);
}

/* YaRN's ramp, its original context and DeepSeek's attention-scale
 * correction: mscale(s, m) = 0.1 m ln(s) + 1; the scores are scaled by
 * mscale(factor, mscale_all_dim)^2 (kept as yarn_log_multiplier = 0.1
 * mscale_all_dim, as GGUF does). A cos/sin multiplier other than 1
 * (mscale differing from mscale_all_dim, or attention_factor) is refused. */
static qiao_status *parse_yarn(const char *dir, json_object *scaling, hf_config *cfg) {
  float factor = 1, mscale = 0, mscale_all = 0, attention_factor = 0;
  QIAO__TRY(get_f32(dir, scaling, "factor", 1.0f, &factor));
  QIAO__TRY(get_u32(dir, scaling, "original_max_position_embeddings", true, 0,
                    &cfg->rope_original_context));
  QIAO__TRY(get_f32(dir, scaling, "beta_fast", 32.0f, &cfg->yarn_beta_fast));
  QIAO__TRY(get_f32(dir, scaling, "beta_slow", 1.0f, &cfg->yarn_beta_slow));
  QIAO__TRY(get_f32(dir, scaling, "mscale", 0.0f, &mscale));
  QIAO__TRY(get_f32(dir, scaling, "mscale_all_dim", 0.0f, &mscale_all));
  QIAO__TRY(get_f32(dir, scaling, "attention_factor", 0.0f, &attention_factor));
  bool truncate = true;
  QIAO__TRY(get_bool(dir, scaling, "truncate", true, &truncate, NULL));
  if (!truncate)
    return qiao__error(QIAO_UNSUPPORTED,
                       "%s/" CONFIG ": rope_scaling.truncate: false is not "
                       "supported",
                       dir);
  if (!(factor >= 1))
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": rope_scaling.factor: below 1", dir);
  double ln = log((double)factor);
  double cos_sin = attention_factor;
  if (attention_factor == 0)
    cos_sin = mscale != 0 && mscale_all != 0 ? (0.1 * mscale * ln + 1) / (0.1 * mscale_all * ln + 1)
                                             : 0.1 * ln + 1;
  if (fabs(cos_sin - 1.0) > 1e-6)
    return qiao__error(QIAO_UNSUPPORTED,
                       "%s/" CONFIG ": rope_scaling: a YaRN attention factor of %g on cos/sin is "
                       "not supported (mscale must equal mscale_all_dim)",
                       dir, cos_sin);
  cfg->yarn_log_multiplier = 0.1f * mscale_all;
  return NULL;
}

/* rope_theta and scaling, from either spelling. */
static qiao_status *parse_rope(const char *dir, json_object *config, hf_config *cfg) {
  json_object *params = field(config, "rope_parameters");
  if (params != NULL && !json_object_is_type(params, json_type_object))
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": rope_parameters: not an object", dir);
  json_object *scaling = field(config, "rope_scaling");
  if (scaling != NULL && !json_object_is_type(scaling, json_type_object))
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": rope_scaling: not an object", dir);
  if (scaling == NULL) scaling = params;
  json_object *theta_from = field(config, "rope_theta") ? config : params;
  QIAO__TRY(get_f32(dir, theta_from, "rope_theta", 10000.0f, &cfg->rope_theta));
  if (!(cfg->rope_theta > 0))
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": rope_theta: not positive", dir);

  float partial = 1.0f;
  QIAO__TRY(get_f32(dir, config, "partial_rotary_factor", 1.0f, &partial));
  if (partial != 1.0f)
    return qiao__error(QIAO_UNSUPPORTED,
                       "%s/" CONFIG ": partial_rotary_factor: %g is not supported", dir, partial);

  cfg->rope_scaling = "none";
  cfg->rope_factor = 1.0f;
  cfg->rope_low_freq_factor = 1.0f;
  cfg->rope_high_freq_factor = 4.0f;
  cfg->rope_original_context = 8192;
  if (scaling == NULL) return NULL;
  json_object *type = field(scaling, "rope_type");
  if (type == NULL) type = field(scaling, "type");
  if (type == NULL) return NULL;
  if (!json_object_is_type(type, json_type_string))
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": rope_type: not a string", dir);
  const char *t = json_object_get_string(type);
  if (strcmp(t, "default") == 0) return NULL;
  if (strcmp(t, "linear") == 0) {
    cfg->rope_scaling = "linear";
  } else if (strcmp(t, "llama3") == 0) {
    cfg->rope_scaling = "llama3";
    QIAO__TRY(get_f32(dir, scaling, "low_freq_factor", 1.0f, &cfg->rope_low_freq_factor));
    QIAO__TRY(get_f32(dir, scaling, "high_freq_factor", 4.0f, &cfg->rope_high_freq_factor));
    QIAO__TRY(get_u32(dir, scaling, "original_max_position_embeddings", false, 8192,
                      &cfg->rope_original_context));
  } else if (strcmp(t, "yarn") == 0 && strcmp(cfg->architecture, "deepseek2") == 0) {
    cfg->rope_scaling = "yarn";
    QIAO__TRY(parse_yarn(dir, scaling, cfg));
  } else {
    return qiao__error(QIAO_UNSUPPORTED,
                       "%s/" CONFIG ": rope_type: '%.32s' scaling is not supported "
                       "(default, linear, llama3; yarn for DeepSeek)",
                       dir, t);
  }
  QIAO__TRY(get_f32(dir, scaling, "factor", 1.0f, &cfg->rope_factor));
  if (!(cfg->rope_factor > 0))
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": factor: not positive", dir);
  return NULL;
}

static qiao_status *parse_moe(const char *dir, json_object *config, hf_config *cfg) {
  /* Published configs say num_experts; transformers 5 writes num_local_experts. */
  const char *key = field(config, "num_experts") ? "num_experts" : "num_local_experts";
  QIAO__TRY(get_u32(dir, config, key, true, 0, &cfg->n_experts));
  QIAO__TRY(get_u32(dir, config, "num_experts_per_tok", true, 0, &cfg->n_experts_used));
  QIAO__TRY(get_u32(dir, config, "moe_intermediate_size", true, 0, &cfg->moe_ffn_dim));
  QIAO__TRY(get_bool(dir, config, "norm_topk_prob", false, &cfg->norm_topk_prob, NULL));
  if (cfg->n_experts == 0 || cfg->n_experts > QIAO__HF_MAX_EXPERTS)
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": num_experts: %u is outside 1..%u", dir,
                       cfg->n_experts, QIAO__HF_MAX_EXPERTS);
  if (cfg->n_experts_used == 0 || cfg->n_experts_used > cfg->n_experts)
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": num_experts_per_tok: %u is outside 1..%u",
                       dir, cfg->n_experts_used, cfg->n_experts);
  /* Qwen3-MoE can mix dense layers in (mlp_only_layers, decoder_sparse_step);
   * the canonical form allows that per layer, but all the models this
   * importer knows are MoE throughout, and the engine assumes it. */
  uint32_t step = 1;
  QIAO__TRY(get_u32(dir, config, "decoder_sparse_step", false, 1, &step));
  json_object *dense = field(config, "mlp_only_layers");
  if (step != 1 || (dense != NULL && (!json_object_is_type(dense, json_type_array) ||
                                      json_object_array_length(dense) != 0)))
    return qiao__error(QIAO_UNSUPPORTED,
                       "%s/" CONFIG ": decoder_sparse_step / mlp_only_layers: mixed "
                       "dense and MoE layers are not supported",
                       dir);
  cfg->ffn_dim = 0;
  return NULL;
}

/* DeepSeek-V2/V3: latent attention sizes and DeepSeekMoE routing. */
static qiao_status *parse_deepseek(const char *dir, json_object *config, hf_config *cfg) {
  cfg->mla = true;
  QIAO__TRY(get_u32(dir, config, "q_lora_rank", false, 0, &cfg->q_lora_rank));
  QIAO__TRY(get_u32(dir, config, "kv_lora_rank", true, 0, &cfg->kv_lora_rank));
  QIAO__TRY(get_u32(dir, config, "qk_nope_head_dim", true, 0, &cfg->qk_nope_dim));
  QIAO__TRY(get_u32(dir, config, "qk_rope_head_dim", true, 0, &cfg->qk_rope_dim));
  QIAO__TRY(get_u32(dir, config, "v_head_dim", true, 0, &cfg->v_head_dim));
  QIAO__TRY(get_bool(dir, config, "rope_interleave", true, &cfg->rope_interleave, NULL));
  if (cfg->kv_lora_rank == 0 || cfg->qk_nope_dim == 0 || cfg->v_head_dim == 0 ||
      cfg->qk_rope_dim == 0 || cfg->qk_rope_dim % 2 != 0 || cfg->kv_lora_rank > 65536 ||
      cfg->qk_nope_dim > 65536 || cfg->qk_rope_dim > 65536 || cfg->v_head_dim > 65536)
    return qiao__error(QIAO_MALFORMED,
                       "%s/" CONFIG ": kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim (even) "
                       "and v_head_dim must be in 1..65536",
                       dir);
  cfg->head_dim = cfg->qk_nope_dim + cfg->qk_rope_dim;
  QIAO__TRY(get_u32(dir, config, "intermediate_size", true, 0, &cfg->ffn_dim));
  if (field(config, "n_routed_experts") == NULL) return NULL; /* dense throughout */
  QIAO__TRY(get_u32(dir, config, "n_routed_experts", true, 0, &cfg->n_experts));
  QIAO__TRY(get_u32(dir, config, "num_experts_per_tok", true, 0, &cfg->n_experts_used));
  QIAO__TRY(get_u32(dir, config, "moe_intermediate_size", true, 0, &cfg->moe_ffn_dim));
  QIAO__TRY(get_bool(dir, config, "norm_topk_prob", false, &cfg->norm_topk_prob, NULL));
  QIAO__TRY(get_u32(dir, config, "n_shared_experts", false, 0, &cfg->n_shared_experts));
  QIAO__TRY(get_u32(dir, config, "first_k_dense_replace", false, 0, &cfg->n_dense_lead));
  QIAO__TRY(get_u32(dir, config, "n_group", false, 0, &cfg->n_groups));
  QIAO__TRY(get_u32(dir, config, "topk_group", false, cfg->n_groups, &cfg->n_groups_used));
  QIAO__TRY(get_f32(dir, config, "routed_scaling_factor", 1.0f, &cfg->routed_scale));
  if (cfg->n_experts == 0 || cfg->n_experts > QIAO__HF_MAX_EXPERTS)
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": n_routed_experts: %u is outside 1..%u", dir,
                       cfg->n_experts, QIAO__HF_MAX_EXPERTS);
  if (cfg->n_experts_used == 0 || cfg->n_experts_used > cfg->n_experts)
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": num_experts_per_tok: %u is outside 1..%u",
                       dir, cfg->n_experts_used, cfg->n_experts);
  uint32_t freq = 1;
  QIAO__TRY(get_u32(dir, config, "moe_layer_freq", false, 1, &freq));
  if (freq != 1)
    return qiao__error(QIAO_UNSUPPORTED, "%s/" CONFIG ": moe_layer_freq: %u is not supported (1)",
                       dir, freq);
  bool v3 = strcmp(cfg->source_architecture, "DeepseekV3ForCausalLM") == 0;
  const char *scoring = v3 ? "sigmoid" : "softmax", *method = v3 ? "noaux_tc" : "greedy";
  json_object *v = field(config, "scoring_func");
  if (v != NULL && json_object_is_type(v, json_type_string)) scoring = json_object_get_string(v);
  v = field(config, "topk_method");
  if (v != NULL && json_object_is_type(v, json_type_string)) method = json_object_get_string(v);
  if (strcmp(scoring, "softmax") != 0 && strcmp(scoring, "sigmoid") != 0)
    return qiao__error(QIAO_UNSUPPORTED, "%s/" CONFIG ": scoring_func: '%.32s' is not supported",
                       dir, scoring);
  cfg->gating = strcmp(scoring, "sigmoid") == 0 ? "sigmoid" : "softmax";
  if (strcmp(method, "noaux_tc") == 0) {
    cfg->group_score = "top2_sum";
  } else if (strcmp(method, "group_limited_greedy") == 0) {
    cfg->group_score = "max";
  } else if (strcmp(method, "greedy") == 0) {
    cfg->group_score = "max";
    cfg->n_groups = cfg->n_groups_used = 0;
  } else {
    return qiao__error(QIAO_UNSUPPORTED, "%s/" CONFIG ": topk_method: '%.32s' is not supported",
                       dir, method);
  }
  /* DeepSeek-V2 scales only the weights it does not normalize. */
  if (!v3 && cfg->norm_topk_prob && cfg->n_experts_used > 1) cfg->routed_scale = 1.0f;
  return NULL;
}

static qiao_status *check_unsupported(const char *dir, json_object *config) {
  static const char *const refused[] = {"quantization_config", "mlp_bias"};
  for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
    json_object *v = field(config, refused[i]);
    /* FP8 checkpoints: the weights' importer checks the rest (import_hf_fp8.c) */
    json_object *method = i == 0 ? field(v, "quant_method") : NULL;
    if (method != NULL && json_object_is_type(method, json_type_string) &&
        strcmp(json_object_get_string(method), "fp8") == 0)
      continue;
    if (v != NULL && !(json_object_is_type(v, json_type_boolean) && !json_object_get_boolean(v)))
      return qiao__error(QIAO_UNSUPPORTED, "%s/" CONFIG ": %s: not supported", dir, refused[i]);
  }
  bool window = false;
  QIAO__TRY(get_bool(dir, config, "use_sliding_window", false, &window, NULL));
  if (window)
    return qiao__error(QIAO_UNSUPPORTED,
                       "%s/" CONFIG ": use_sliding_window: per-layer sliding windows "
                       "are not supported",
                       dir);
  return NULL;
}

qiao_status *qiao__hf_parse_config(const char *dir, json_object *config, hf_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  if (!json_object_is_type(config, json_type_object))
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": not a JSON object", dir);
  const arch_entry *arch = NULL;
  QIAO__TRY(parse_architecture(dir, config, cfg, &arch));
  cfg->permute_qk = arch->permute_qk;
  cfg->qk_norm = arch->qk_norm;
  QIAO__TRY(check_unsupported(dir, config));

  QIAO__TRY(get_u32(dir, config, "vocab_size", true, 0, &cfg->vocab_size));
  QIAO__TRY(get_u32(dir, config, "hidden_size", true, 0, &cfg->dim));
  QIAO__TRY(get_u32(dir, config, "num_hidden_layers", true, 0, &cfg->n_layers));
  QIAO__TRY(get_u32(dir, config, "num_attention_heads", true, 0, &cfg->n_heads));
  QIAO__TRY(get_u32(dir, config, "max_position_embeddings", false, 2048, &cfg->context_length));
  if (cfg->n_layers == 0 || cfg->n_layers > QIAO__HF_MAX_LAYERS)
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": num_hidden_layers: %u is outside 1..%u", dir,
                       cfg->n_layers, QIAO__HF_MAX_LAYERS);
  if (cfg->n_heads == 0)
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": num_attention_heads: zero", dir);
  QIAO__TRY(get_u32(dir, config, "num_key_value_heads", false, cfg->n_heads, &cfg->n_kv_heads));
  if (field(config, "head_dim") == NULL && cfg->dim % cfg->n_heads != 0)
    return qiao__error(QIAO_MALFORMED,
                       "%s/" CONFIG ": num_attention_heads: %u does not divide "
                       "hidden_size %u (and head_dim is not given)",
                       dir, cfg->n_heads, cfg->dim);
  QIAO__TRY(get_u32(dir, config, "head_dim", false, cfg->dim / cfg->n_heads, &cfg->head_dim));
  if (cfg->n_kv_heads == 0 || cfg->n_heads % cfg->n_kv_heads != 0)
    return qiao__error(QIAO_MALFORMED,
                       "%s/" CONFIG ": num_key_value_heads: %u does not divide %u heads", dir,
                       cfg->n_kv_heads, cfg->n_heads);
  if (cfg->head_dim == 0 || cfg->head_dim % 2 != 0)
    return qiao__error(QIAO_MALFORMED, "%s/" CONFIG ": head_dim: %u is not even", dir,
                       cfg->head_dim);
  QIAO__TRY(get_f32(dir, config, "rms_norm_eps", 1e-5f, &cfg->norm_eps));
  QIAO__TRY(parse_rope(dir, config, cfg));
  QIAO__TRY(get_u32(dir, config, "sliding_window", false, 0, &cfg->sliding_window));
  if (strcmp(cfg->architecture, "llama") != 0) cfg->sliding_window = 0; /* see use_sliding_window */
  QIAO__TRY(get_bool(dir, config, "tie_word_embeddings", false, &cfg->tied_embeddings,
                     &cfg->tied_stated));
  bool bias = arch->qkv_bias;
  if (!bias) QIAO__TRY(get_bool(dir, config, "attention_bias", false, &bias, NULL));
  cfg->qkv_bias = bias;

  if (arch->mla) {
    QIAO__TRY(parse_deepseek(dir, config, cfg));
  } else if (arch->moe) {
    QIAO__TRY(parse_moe(dir, config, cfg));
  } else {
    QIAO__TRY(get_u32(dir, config, "intermediate_size", true, 0, &cfg->ffn_dim));
  }

  char what[4200];
  json_object *bos = field(config, "bos_token_id");
  if (bos != NULL) {
    snprintf(what, sizeof(what), "%s/" CONFIG ": bos_token_id", dir);
    if (!json_object_is_type(bos, json_type_int))
      return qiao__error(QIAO_MALFORMED, "%s: not a token id", what);
    uint32_t ids[QIAO__HF_MAX_EOS_IDS] = {0}, n = 0;
    QIAO__TRY(qiao__hf_append_ids(what, bos, ids, &n));
    cfg->bos_id = ids[0];
    cfg->has_bos = true;
  }
  snprintf(what, sizeof(what), "%s/" CONFIG ": eos_token_id", dir);
  QIAO__TRY(qiao__hf_append_ids(what, field(config, "eos_token_id"), cfg->eos_ids, &cfg->n_eos));
  return NULL;
}

static qiao_status *set_str(qiao_model *model, const char *key, const char *value) {
  return qiao__model_set_string(model, key, value, strlen(value));
}

qiao_status *qiao__hf_set_hparams(qiao_model *model, const char *dir, const hf_config *cfg) {
  size_t len = strlen(dir);
  while (len > 1 && dir[len - 1] == '/')
    len--;
  const char *base = dir + len;
  while (base > dir && base[-1] != '/')
    base--;
  QIAO__TRY(set_str(model, "general.architecture", cfg->architecture));
  QIAO__TRY(qiao__model_set_string(model, "general.name", base, (uint64_t)(dir + len - base)));
  QIAO__TRY(set_str(model, "general.source_format", "hf"));
  QIAO__TRY(set_str(model, "general.source_architecture", cfg->source_architecture));
  QIAO__TRY(qiao__model_set_u32(model, "model.vocab_size", cfg->vocab_size));
  QIAO__TRY(qiao__model_set_u32(model, "model.context_length", cfg->context_length));
  QIAO__TRY(qiao__model_set_u32(model, "model.dim", cfg->dim));
  QIAO__TRY(qiao__model_set_u32(model, "model.n_layers", cfg->n_layers));
  QIAO__TRY(qiao__model_set_u32(model, "model.n_heads", cfg->n_heads));
  QIAO__TRY(qiao__model_set_u32(model, "model.n_kv_heads", cfg->n_kv_heads));
  QIAO__TRY(qiao__model_set_u32(model, "model.head_dim", cfg->head_dim));
  QIAO__TRY(qiao__model_set_u32(model, "model.ffn_dim", cfg->ffn_dim));
  QIAO__TRY(qiao__model_set_f32(model, "model.norm_eps", cfg->norm_eps));
  QIAO__TRY(qiao__model_set_f32(model, "model.rope.theta", cfg->rope_theta));
  QIAO__TRY(
      qiao__model_set_u32(model, "model.rope.dim", cfg->mla ? cfg->qk_rope_dim : cfg->head_dim));
  bool pairs = cfg->permute_qk || (cfg->mla && cfg->rope_interleave);
  QIAO__TRY(set_str(model, "model.rope.style", pairs ? "normal" : "neox"));
  QIAO__TRY(set_str(model, "model.rope.scaling.type", cfg->rope_scaling));
  if (strcmp(cfg->rope_scaling, "none") != 0)
    QIAO__TRY(qiao__model_set_f32(model, "model.rope.scaling.factor", cfg->rope_factor));
  if (strcmp(cfg->rope_scaling, "llama3") == 0) {
    QIAO__TRY(qiao__model_set_f32(model, "model.rope.scaling.low_freq_factor",
                                  cfg->rope_low_freq_factor));
    QIAO__TRY(qiao__model_set_f32(model, "model.rope.scaling.high_freq_factor",
                                  cfg->rope_high_freq_factor));
    QIAO__TRY(qiao__model_set_u32(model, "model.rope.scaling.original_context_length",
                                  cfg->rope_original_context));
  }
  if (strcmp(cfg->rope_scaling, "yarn") == 0) {
    QIAO__TRY(qiao__model_set_u32(model, "model.rope.scaling.original_context_length",
                                  cfg->rope_original_context));
    QIAO__TRY(qiao__model_set_f32(model, "model.rope.scaling.yarn_beta_fast", cfg->yarn_beta_fast));
    QIAO__TRY(qiao__model_set_f32(model, "model.rope.scaling.yarn_beta_slow", cfg->yarn_beta_slow));
    QIAO__TRY(qiao__model_set_f32(model, "model.rope.scaling.yarn_log_multiplier",
                                  cfg->yarn_log_multiplier));
  }
  QIAO__TRY(qiao__model_set_u32(model, "model.sliding_window", cfg->sliding_window));
  QIAO__TRY(qiao__model_set_bool(model, "model.tied_embeddings", cfg->tied_embeddings));
  QIAO__TRY(qiao__model_set_bool(model, "model.qkv_bias", cfg->qkv_bias));
  QIAO__TRY(qiao__model_set_bool(model, "model.qk_norm", cfg->qk_norm));
  QIAO__TRY(qiao__model_set_u32(model, "model.moe.n_experts", cfg->n_experts));
  if (cfg->n_experts > 0) {
    QIAO__TRY(qiao__model_set_u32(model, "model.moe.n_experts_used", cfg->n_experts_used));
    QIAO__TRY(qiao__model_set_u32(model, "model.moe.ffn_dim", cfg->moe_ffn_dim));
    QIAO__TRY(qiao__model_set_bool(model, "model.moe.norm_topk_prob", cfg->norm_topk_prob));
  }
  if (cfg->mla) {
    if (cfg->q_lora_rank > 0)
      QIAO__TRY(qiao__model_set_u32(model, "model.mla.q_lora_rank", cfg->q_lora_rank));
    QIAO__TRY(qiao__model_set_u32(model, "model.mla.kv_lora_rank", cfg->kv_lora_rank));
    QIAO__TRY(qiao__model_set_u32(model, "model.mla.v_head_dim", cfg->v_head_dim));
  }
  if (cfg->mla && cfg->n_experts > 0) {
    QIAO__TRY(qiao__model_set_u32(model, "model.moe.n_shared_experts", cfg->n_shared_experts));
    QIAO__TRY(qiao__model_set_u32(model, "model.moe.n_dense_lead", cfg->n_dense_lead));
    QIAO__TRY(set_str(model, "model.moe.gating", cfg->gating));
    QIAO__TRY(set_str(model, "model.moe.group_score", cfg->group_score));
    QIAO__TRY(qiao__model_set_u32(model, "model.moe.n_groups", cfg->n_groups));
    QIAO__TRY(qiao__model_set_u32(model, "model.moe.n_groups_used", cfg->n_groups_used));
    QIAO__TRY(qiao__model_set_f32(model, "model.moe.routed_scale", cfg->routed_scale));
  }
  return NULL;
}

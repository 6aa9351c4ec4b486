/* Internal: the pieces of the Hugging Face directory importer
 * (import_hf*.c). A directory holds config.json, model.safetensors or shards
 * named by model.safetensors.index.json, and optionally tokenizer.json,
 * tokenizer_config.json and generation_config.json. Only data is read:
 * nothing that names code (auto_map, custom modelling files) is acted on. */
#ifndef QIAO_IMPORT_HF_INTERNAL_H
#define QIAO_IMPORT_HF_INTERNAL_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "format/import_safetensors.h"
#include "format/model_internal.h"

/* Largest JSON file read (config.json, the shard index, generation_config). */
#define QIAO__HF_MAX_JSON_BYTES (64u << 20)
/* Bounds on what config.json may ask for, so that tables sized from it stay
 * small; real models are far below. */
#define QIAO__HF_MAX_LAYERS 4096u
#define QIAO__HF_MAX_EXPERTS 4096u
#define QIAO__HF_MAX_EOS_IDS 64u

/* What config.json says, in canonical terms. */
typedef struct hf_config {
  char source_architecture[64]; /* "LlamaForCausalLM" */
  const char *architecture;     /* "llama", "qwen2", "qwen3", "qwen3moe", "deepseek2" */
  bool permute_qk;              /* llama: rows of q/k moved to the pair order of normal RoPE */
  uint32_t vocab_size, context_length, dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim;
  float norm_eps, rope_theta;
  const char *rope_scaling; /* "none", "linear", "llama3", "yarn" */
  float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
  uint32_t rope_original_context;
  uint32_t sliding_window;
  bool tied_embeddings, tied_stated; /* tied_stated: config.json says either way */
  bool qkv_bias, qk_norm;
  uint32_t n_experts, n_experts_used, moe_ffn_dim;
  bool norm_topk_prob;
  /* deepseek2: latent attention, DeepSeekMoE routing, YaRN */
  bool mla;
  uint32_t q_lora_rank, kv_lora_rank, qk_nope_dim, qk_rope_dim, v_head_dim;
  bool rope_interleave;
  uint32_t n_shared_experts, n_dense_lead, n_groups, n_groups_used;
  const char *gating, *group_score; /* "softmax"/"sigmoid", "max"/"top2_sum" */
  float routed_scale;
  float yarn_beta_fast, yarn_beta_slow, yarn_log_multiplier;
  bool has_bos;
  uint32_t bos_id;
  uint32_t n_eos;
  uint32_t eos_ids[QIAO__HF_MAX_EOS_IDS];
} hf_config;

/* Every tensor of every shard, with the tables that own their names. */
typedef struct hf_weights {
  qiao_st_table *tables;
  uint64_t n_tables;
} hf_weights;

/* Reads `dir`/`file` into `*out` (NULL when the file is absent and not
 * `required`). The JSON nesting is bounded; the caller puts the object. */
qiao_status *qiao__hf_read_json(qiao_model *model, const char *dir, const char *file, bool required,
                                json_object **out);

/* Joins `dir` and `file` into `buf` (of `cap` bytes), failing when too long. */
qiao_status *qiao__hf_join(const char *dir, const char *file, char *buf, size_t cap);

/* Adds `id` to ids[*n] unless present; false when the list is full
 * (QIAO__HF_MAX_EOS_IDS). */
bool qiao__hf_add_id(uint32_t *ids, uint32_t *n, uint32_t id);
/* Appends the token id or list of ids `value` (NULL or JSON null: none) to
 * ids[*n], skipping repeats; `what` names the file and field in messages. */
qiao_status *qiao__hf_append_ids(const char *what, json_object *value, uint32_t *ids, uint32_t *n);

/* config.json -> `cfg`, then the canonical general.* and model.* keys. */
qiao_status *qiao__hf_parse_config(const char *dir, json_object *config, hf_config *cfg);
qiao_status *qiao__hf_set_hparams(qiao_model *model, const char *dir, const hf_config *cfg);

/* model.safetensors, or the shards of model.safetensors.index.json, mapped
 * into the model and parsed. Free with qiao__hf_weights_free. */
qiao_status *qiao__hf_load_weights(qiao_model *model, const char *dir, hf_weights *out);
void qiao__hf_weights_free(hf_weights *w);

/* Renames every tensor to its canonical name, permuting llama q/k rows and
 * stacking MoE experts in model memory. Decides tied embeddings when
 * config.json does not say (updates cfg->tied_embeddings). */
qiao_status *qiao__hf_add_tensors(qiao_model *model, const char *dir, hf_config *cfg,
                                  const hf_weights *w);

/* generation_config.json: generation.* keys and its eos ids (merged into
 * cfg's, preferred first). */
qiao_status *qiao__hf_read_generation(qiao_model *model, const char *dir, json_object *gen,
                                      hf_config *cfg);

#endif
